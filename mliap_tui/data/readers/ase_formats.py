"""extxyz files and ASE databases with DFT energies and forces (e.g. MPtrj frames).

Conventions
- The total energy (eV per cell) becomes ``e_per_atom_dft_raw`` (eV/atom) by default: MPtrj-style
  frames store the uncorrected VASP energy. Pass ``energy_convention='mp2020'`` for files that
  store MP2020-corrected energies.
- Forces (eV/Å, n_sites x 3) become ``forces_dft_ev_per_ang``, flattened.
- Energy keys looked up, in order: the calculator result ``energy``, then ``info``/key-value
  ``energy``, ``dft_energy``, ``REF_energy``, ``total_energy``. Forces: calculator ``forces``, then
  arrays/data ``forces``, ``dft_forces``, ``REF_forces``.
- material_id: an id key (``material_id``, ``mp_id``, ``mat_id``, ``structure_id``, ``key``,
  ``name``; extxyz also ``id``) if present, else ``<file stem>-<index>``: the 0-based frame index
  for extxyz, the database row id (1-based) for an ASE db.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from mliap_tui.data.readers._common import (
    RawRecord,
    base_name,
    error_record,
    open_text,
    parse_float,
    require_path,
    structure_from_atoms,
)

ID_KEYS = ("material_id", "mp_id", "mat_id", "structure_id", "key", "name")
ENERGY_KEYS = ("energy", "dft_energy", "REF_energy", "total_energy")
FORCE_KEYS = ("forces", "dft_forces", "REF_forces")
ENERGY_CONVENTIONS = {"raw": "e_per_atom_dft_raw", "mp2020": "e_per_atom_dft_mp2020"}


def _energy_column(energy_convention: str) -> str:
    if energy_convention not in ENERGY_CONVENTIONS:
        raise ValueError(f"energy_convention must be one of {sorted(ENERGY_CONVENTIONS)}, got {energy_convention!r}")
    return ENERGY_CONVENTIONS[energy_convention]


def _first(mappings: list[Mapping[str, Any]], keys: tuple[str, ...]) -> Any:
    for mapping in mappings:
        for key in keys:
            value = mapping.get(key)
            if value is not None:
                return value
    return None


def dft_from_atoms(atoms: Any, extra: list[Mapping[str, Any]], energy_column: str) -> dict[str, Any]:
    """DFT values of one frame: per-atom energy under ``energy_column`` and flattened forces."""
    results = dict(getattr(atoms.calc, "results", None) or {})
    n_sites = len(atoms)
    dft: dict[str, Any] = {}
    energy = parse_float(_first([results, *extra], ENERGY_KEYS), "energy")
    if energy is not None:
        dft[energy_column] = energy / n_sites if n_sites else float("nan")
    forces = _first([results, dict(atoms.arrays), *extra], FORCE_KEYS)
    if forces is not None:
        forces = np.asarray(forces, dtype=float)
        if forces.shape != (n_sites, 3):
            raise ValueError(f"forces have shape {forces.shape}, expected ({n_sites}, 3)")
        dft["forces_dft_ev_per_ang"] = forces.ravel().tolist()
    return dft


def record_from_atoms(
    atoms: Any, label_id: str, source: str, energy_column: str, extra: list[Mapping[str, Any]], where: str
) -> RawRecord:
    """One RawRecord from one ASE Atoms; ``where`` (``frame 3``, ``row 2``) prefixes messages."""
    found = _first(extra, ID_KEYS)
    material_id = str(found) if found not in (None, "") else label_id
    try:
        structure = structure_from_atoms(atoms)
        dft = dft_from_atoms(atoms, extra, energy_column)
    except ValueError as exc:
        return error_record(material_id, source, f"{where}: {exc}")
    return RawRecord(material_id=material_id, source=source, structure=structure, dft=dft, meta={"where": where})


# ---- extxyz ---------------------------------------------------------------------------------


def read_extxyz(path: str | Path, energy_convention: str = "raw") -> Iterator[RawRecord]:
    """Yield one RawRecord per frame of an extxyz file (optionally compressed)."""
    path = require_path(path)
    return _read_extxyz(path, _energy_column(energy_convention))


def _read_extxyz(path: Path, energy_column: str) -> Iterator[RawRecord]:
    from ase.io import iread

    source, stem = str(path), base_name(path)
    index = -1
    try:
        with open_text(path) as fh:
            if not fh.read(4096).strip():
                yield error_record(stem, source, "empty file")
                return
            fh.seek(0)
            for index, atoms in enumerate(iread(fh, index=":", format="extxyz")):
                extra = [dict(atoms.info)]
                yield record_from_atoms(atoms, f"{stem}-{index}", source, energy_column, extra, f"frame {index}")
    except Exception as exc:  # noqa: BLE001 - a malformed frame ends the file, not the import
        detail = " ".join(str(exc).split())[:300]
        yield error_record(
            f"{stem}-{index + 1}", source, f"frame {index + 1} onward unreadable ({type(exc).__name__}: {detail})"
        )


# ---- ASE database ---------------------------------------------------------------------------


def read_ase_db(path: str | Path, energy_convention: str = "raw") -> Iterator[RawRecord]:
    """Yield one RawRecord per row of an ASE database (.db sqlite, .json, .aselmdb by suffix)."""
    path = require_path(path)
    return _read_ase_db(path, _energy_column(energy_convention))


def _read_ase_db(path: Path, energy_column: str) -> Iterator[RawRecord]:
    from ase.db import connect

    source, stem = str(path), base_name(path)
    if path.stat().st_size == 0:
        yield error_record(stem, source, "empty file")
        return
    try:
        db = connect(str(path), create_indices=False) if path.suffix == ".db" else connect(str(path))
        rows = db.select()
        for row in rows:
            where = f"row {row.id}"
            try:
                atoms = row.toatoms()
                extra = [dict(row.key_value_pairs), dict(row.data or {})]
            except Exception as exc:  # noqa: BLE001
                yield error_record(f"{stem}-{row.id}", source, f"{where}: unreadable ({type(exc).__name__}: {exc})")
                continue
            yield record_from_atoms(atoms, f"{stem}-{row.id}", source, energy_column, extra, where)
    except Exception as exc:  # noqa: BLE001 - not a database, or a corrupt one
        detail = " ".join(str(exc).split())[:300]
        yield error_record(stem, source, f"not a readable ASE database ({type(exc).__name__}: {detail})")
