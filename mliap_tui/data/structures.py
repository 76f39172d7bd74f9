"""Lossless conversion between pymatgen/ASE structures and rows of the materials table.

A structure is stored as three list columns: ``lattice_ang`` (3x3 row vectors, flattened),
``species`` (element symbol per site) and ``frac_coords`` (n_sites x 3, flattened), all float64.
That round-trips an ordered crystal bit for bit and rebuilds an ASE ``Atoms`` without pymatgen.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from pymatgen.core import Lattice, Structure


class StructureError(ValueError):
    """A structure that cannot be stored or evaluated (disorder, bad cell, unknown element...)."""


def structure_columns(structure: Structure) -> dict[str, Any]:
    """The structure-derived columns of a materials row. Raises StructureError when unusable."""
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
