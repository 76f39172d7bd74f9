"""Lossless conversion between pymatgen/ASE structures and rows of the materials table.

A structure is stored as three list columns: ``lattice_ang`` (3x3 row vectors, flattened),
``species`` (element symbol per site) and ``frac_coords`` (n_sites x 3, flattened), all float64.
That round-trips an ordered crystal bit for bit and rebuilds an ASE ``Atoms`` without pymatgen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from pymatgen.core import Lattice, Structure

from mliap_tui.core.geometry import closest_pair
from mliap_tui.core.vocab import (
    DEFAULT_MAX_ATOMS,
    DEFAULT_MIN_DISTANCE_ANG,
    DEFAULT_MIN_VOLUME_PER_ATOM_ANG3,
    MAX_LATTICE_LENGTH_ANG,
)


class StructureError(ValueError):
    """A structure that cannot be stored or evaluated (disorder, bad cell, unknown element...)."""


@dataclass(frozen=True)
class CellLimits:
    """What import accepts as a physical crystal (lengths Å, volumes Å^3)."""

    min_distance_ang: float = DEFAULT_MIN_DISTANCE_ANG
    min_volume_per_atom_ang3: float = DEFAULT_MIN_VOLUME_PER_ATOM_ANG3
    max_atoms: int = DEFAULT_MAX_ATOMS
    max_lattice_length_ang: float = MAX_LATTICE_LENGTH_ANG


def check_cell(lattice_ang: np.ndarray, species: list[str], frac_coords: np.ndarray,
               limits: CellLimits = CellLimits()) -> str | None:
    """Why a cell is physically impossible (short human reason), or None when it is fine.

    Checks, in order: finite numbers, the atom count, lattice vector lengths, the volume per atom
    and the closest approach of two atoms (periodic images included; the pair is named).
    """
    lattice = np.asarray(lattice_ang, dtype=float).reshape(3, 3)
    frac = np.asarray(frac_coords, dtype=float).reshape(-1, 3)
    n = len(frac)
    if not (np.isfinite(lattice).all() and np.isfinite(frac).all()):
        return "NaN or infinite lattice or coordinates"
    if n > limits.max_atoms:
        return f"{n} atoms, more than the limit of {limits.max_atoms} (--max-atoms)"
    lengths = np.linalg.norm(lattice, axis=1)
    if lengths.max() > limits.max_lattice_length_ang:
        return f"lattice vector of {lengths.max():.4g} Å (longer than {limits.max_lattice_length_ang:g} Å)"
    volume = abs(float(np.linalg.det(lattice)))
    if volume / max(n, 1) < limits.min_volume_per_atom_ang3:
        return (f"cell volume {volume / max(n, 1):.3g} Å³/atom, below {limits.min_volume_per_atom_ang3:g} Å³/atom "
                "(collapsed or mis-scaled cell)")
    if limits.min_distance_ang > 0:
        i, j, d = closest_pair(lattice, frac, limits.min_distance_ang)
        if d < limits.min_distance_ang:
            pair = f"{species[i]}{i + 1} and its own periodic image" if i == j else f"{species[i]}{i + 1} and {species[j]}{j + 1}"
            return f"atoms {d:.3f} Å apart ({pair}), closer than {limits.min_distance_ang:g} Å (--min-distance)"
    return None


def structure_columns(structure: Structure, limits: CellLimits | None = None) -> dict[str, Any]:
    """The structure-derived columns of a materials row. Raises StructureError when unusable
    (disordered, empty, zero volume, unknown element, or, with ``limits``, physically impossible:
    :func:`check_cell`)."""
    if not structure.is_ordered:
        bad = next(i for i, site in enumerate(structure) if not site.is_ordered)
        raise StructureError(
            f"disordered or partially occupied site {bad} ({structure[bad].species_string}): "
            "only ordered crystals can be evaluated"
        )
    if len(structure) == 0:
        raise StructureError("structure has no sites")
    volume = structure.lattice.volume
    if not np.isfinite(volume) or abs(volume) < 1e-6:
        raise StructureError(f"zero or invalid cell volume ({volume:.3g} Å^3)")
    species = []
    for site in structure:
        el = site.specie
        symbol = getattr(el, "symbol", None) or str(el)
        # DummySpecies (unknown symbols) have no atomic number we can feed a model
        if not hasattr(el, "Z") or getattr(el, "Z", 0) in (0, None) or type(el).__name__ == "DummySpecies":
            raise StructureError(f"unknown element symbol {symbol!r}")
        species.append(getattr(el, "element", el).symbol if hasattr(el, "element") else symbol)
    if limits is not None:
        reason = check_cell(structure.lattice.matrix, species, structure.frac_coords, limits)
        if reason is not None:
            raise StructureError(reason)
    comp = structure.composition.element_composition
    elements = sorted(el.symbol for el in comp.elements)
    return {
        "formula": comp.reduced_formula,
        "elements": elements,
        "chemsys": "-".join(elements),
        "n_sites": len(structure),
        "lattice_ang": np.asarray(structure.lattice.matrix, dtype=float).ravel().tolist(),
        "species": species,
        "frac_coords": np.asarray(structure.frac_coords, dtype=float).ravel().tolist(),
    }


def row_arrays(row: Mapping[str, Any]) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(lattice 3x3, species, frac_coords n x 3) of a materials row."""
    lattice = np.asarray(row["lattice_ang"], dtype=float).reshape(3, 3)
    species = list(row["species"])
    frac = np.asarray(row["frac_coords"], dtype=float).reshape(-1, 3)
    return lattice, species, frac


def row_to_structure(row: Mapping[str, Any]) -> Structure:
    lattice, species, frac = row_arrays(row)
    return Structure(Lattice(lattice), species, frac, coords_are_cartesian=False)


def row_to_atoms(row: Mapping[str, Any]):
    """ASE Atoms of a materials row (periodic in 3D)."""
    from ase import Atoms

    lattice, species, frac = row_arrays(row)
    return Atoms(symbols=species, scaled_positions=frac, cell=lattice, pbc=True)
