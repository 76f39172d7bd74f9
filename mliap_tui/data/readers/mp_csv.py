"""MP-20 / MPTS-52 CSV files (CDVAE/DiffCSP layout): one crystal per row, the structure as a CIF.

Columns used
- ``material_id``; ``cif`` (a P1 CIF of the DFT-relaxed cell);
- ``formation_energy_per_atom`` -> ``e_form_per_atom_dft_mp2020`` (eV/atom, MP2020-corrected);
- ``e_above_hull`` (MP-20) or ``energy_above_hull`` (MPTS-52) -> ``e_above_hull_dft_mp2020`` (eV/atom);
- ``spacegroup.number`` (MP-20) is kept in ``meta['spacegroup_number_reported']`` for cross-checks.
These files carry no total energies: the importer rebuilds them from e_form and the MP elemental
references (``e_per_atom_dft_origin = 'rebuilt'``).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Iterator

from mliap_tui.data.readers._common import (
    RawRecord,
    base_name,
    error_record,
    iter_safely,
    open_text,
    parse_float,
    require_path,
    structure_from_cif_text,
)

FORMAT = "mp_csv"
REQUIRED_COLUMNS = ("material_id", "cif")
E_FORM_COLUMNS = ("formation_energy_per_atom",)
E_HULL_COLUMNS = ("e_above_hull", "energy_above_hull")
SPACEGROUP_COLUMNS = ("spacegroup.number", "spacegroup_number")

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # CIFs of large cells exceed the 128 kB default


def _first_present(row: dict[str, str], names: tuple[str, ...]) -> tuple[str | None, str | None]:
    for name in names:
        if name in row:
            return name, row[name]
    return None, None


def record_from_row(row: dict[str, str], row_number: int, source: str) -> RawRecord:
    """One RawRecord from one CSV row (``row_number`` counts data rows from 1, for messages)."""
    material_id = (row.get("material_id") or "").strip()
    label = material_id or f"row {row_number}"
    if not material_id:
        return error_record(label, source, f"row {row_number}: empty material_id")
    try:
        structure = structure_from_cif_text(row.get("cif") or "")
    except ValueError as exc:
        return error_record(material_id, source, f"row {row_number}: {exc}")
    dft: dict[str, float | None] = {}
    meta: dict[str, object] = {"row": row_number}
    try:
        name, value = _first_present(row, E_FORM_COLUMNS)
        if name is not None:
            dft["e_form_per_atom_dft_mp2020"] = parse_float(value, name)
        name, value = _first_present(row, E_HULL_COLUMNS)
        if name is not None:
            dft["e_above_hull_dft_mp2020"] = parse_float(value, name)
        name, value = _first_present(row, SPACEGROUP_COLUMNS)
        if name is not None and value not in (None, ""):
            meta["spacegroup_number_reported"] = int(float(value))
    except ValueError as exc:
        return error_record(material_id, source, f"row {row_number}: {exc}")
    dft = {k: v for k, v in dft.items() if v is not None}
    return RawRecord(material_id=material_id, source=source, structure=structure, dft=dft, meta=meta)


def read_mp_csv(path: str | Path) -> Iterator[RawRecord]:
    """Yield one RawRecord per row of an MP-20/MPTS-52 CSV (optionally .gz/.bz2/.xz)."""
    path = require_path(path)
    source = str(path)
    return iter_safely(source, base_name(path), _read(path, source))


def _read(path: Path, source: str) -> Iterator[RawRecord]:
    with open_text(path) as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames
        if not header:
            yield error_record(base_name(path), source, "empty file")
            return
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            yield error_record(
                base_name(path), source, f"not an MP-20/MPTS-52 CSV: missing column(s) {', '.join(missing)}"
            )
            return
        for number, row in enumerate(reader, start=1):
            yield record_from_row(row, number, source)
