"""matcalc benchmark WBM JSON: a list of ``{material_id, formula, structure, <energies>}`` records.

Energies are per cell (eV) in the file and become per atom here (divided by the structure's
number of sites). Two layouts exist:
- pbe54 (``wbm_random_1000_pbe54``): ``uncorrected_energy`` -> ``e_per_atom_dft_raw``,
  ``corrected_energy`` -> ``e_per_atom_dft_mp2020``.
- pbe52 (``wbm_random_972_pbe52``): ``energy`` -> ``e_per_atom_dft_raw``,
  ``corrected_energy`` -> ``e_per_atom_dft_mp2020``,
  ``corrected_formation_energy_per_atom`` (eV/atom) -> ``e_form_per_atom_dft_mp2020``.
  The uncorrected ``formation_energy_per_atom`` has no column and is dropped.
The corrected energies are MP2020-compatible (e.g. ScTeI: corrected - energy = 2 x -0.379 (I)
+ 2 x -0.422 (Te) eV, the MP2020 anion corrections).
A dict ``material_id -> record`` is accepted as well as a list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

from mliap_tui.data.readers._common import (
    RawRecord,
    base_name,
    error_record,
    iter_safely,
    load_json,
    parse_float,
    per_atom_ev,
    require_path,
    structure_from_dict,
)

FORMAT = "wbm_json"
#: file key (eV per cell) -> materials column (eV/atom)
PER_CELL_KEYS = {
    "uncorrected_energy": "e_per_atom_dft_raw",
    "energy": "e_per_atom_dft_raw",
    "corrected_energy": "e_per_atom_dft_mp2020",
}
#: file key (eV/atom) -> materials column (eV/atom)
PER_ATOM_KEYS = {
    "corrected_formation_energy_per_atom": "e_form_per_atom_dft_mp2020",
    "e_above_hull": "e_above_hull_dft_mp2020",
}
ENERGY_KEYS = tuple(PER_CELL_KEYS) + tuple(PER_ATOM_KEYS)


def looks_like_wbm_record(obj: Any) -> bool:
    return isinstance(obj, Mapping) and "structure" in obj and any(k in obj for k in ENERGY_KEYS) and "@class" not in obj


def record_from_wbm(item: Any, index: int, source: str, stem: str, key: str | None = None) -> RawRecord:
    """One RawRecord from one WBM record (``index`` from 0, for messages)."""
    material_id = (item.get("material_id") if isinstance(item, Mapping) else None) or key or f"{stem}-{index}"
    material_id = str(material_id)
    if not isinstance(item, Mapping):
        return error_record(material_id, source, f"record {index}: not a JSON object ({type(item).__name__})")
    if item.get("structure") is None:
        return error_record(material_id, source, f"record {index}: no structure")
    try:
        structure = structure_from_dict(item["structure"])
        n_sites = len(structure)
        dft: dict[str, Any] = {}
        for file_key, column in PER_CELL_KEYS.items():
            if file_key in item and column not in dft:
                value = per_atom_ev(item[file_key], n_sites, file_key)
                if value is not None:
                    dft[column] = value
        for file_key, column in PER_ATOM_KEYS.items():
            value = parse_float(item.get(file_key), file_key)
            if value is not None:
                dft[column] = value
    except ValueError as exc:
        return error_record(material_id, source, f"record {index}: {exc}")
    meta = {"index": index}
    if item.get("formula"):
        meta["formula_reported"] = item["formula"]
    return RawRecord(material_id=material_id, source=source, structure=structure, dft=dft, meta=meta)


def read_wbm_json(path: str | Path) -> Iterator[RawRecord]:
    """Yield one RawRecord per record of a matcalc WBM JSON file (optionally compressed)."""
    path = require_path(path)
    return iter_safely(str(path), base_name(path), _read(path))


def _read(path: Path) -> Iterator[RawRecord]:
    source, stem = str(path), base_name(path)
    try:
        obj = load_json(path)
    except ValueError as exc:
        yield error_record(stem, source, str(exc))
        return
    if isinstance(obj, Mapping) and not looks_like_wbm_record(obj):
        items: list[tuple[str | None, Any]] = [(str(k), v) for k, v in obj.items()]
    elif isinstance(obj, list):
        items = [(None, v) for v in obj]
    elif looks_like_wbm_record(obj):
        items = [(None, obj)]
    else:
        yield error_record(stem, source, f"not a WBM JSON: top level is {type(obj).__name__}")
        return
    for index, (key, item) in enumerate(items):
        yield record_from_wbm(item, index, source, stem, key)
