"""pymatgen ComputedStructureEntry JSON (what mp-api ``get_entries`` and matbench-discovery produce).

Accepted containers: a list of entry dicts; ``{"entries": [...]}``; a dict ``material_id -> entry``;
a pandas ``to_json`` table (column- or records-oriented) with one column of entry dicts (e.g.
matbench-discovery's ``mp-computed-structure-entries.json.gz``, column ``entry``); a single entry.

Energy conventions
- ``energy`` in an entry dict is the uncorrected VASP energy per cell (eV) ->
  ``e_per_atom_dft_raw`` = energy / n_sites.
- ``e_per_atom_dft_mp2020`` = (energy + correction) / n_sites only when the entry's
  ``energy_adjustments`` are MP2020 ones (name ``MP2020 ...`` or made by
  ``MaterialsProject2020Compatibility``). An entry without adjustments, or with another scheme,
  gives only the raw energy; the importer then applies MP2020 itself.
- ``data`` values, when present: ``formation_energy_per_atom`` / ``e_form_per_atom_mp2020`` ->
  ``e_form_per_atom_dft_mp2020``; ``energy_above_hull`` / ``e_above_hull`` / ``e_above_hull_mp2020``
  -> ``e_above_hull_dft_mp2020`` (eV/atom).
- material_id: the container key, else ``data['material_id']``, else ``entry_id``, else
  ``<file stem>-<index>``.
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
    require_path,
    structure_from_dict,
)

FORMAT = "entries_json"
E_FORM_DATA_KEYS = ("e_form_per_atom_mp2020", "formation_energy_per_atom")
E_HULL_DATA_KEYS = ("e_above_hull_mp2020", "energy_above_hull", "e_above_hull")


def _is_entry_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and (
        "Entry" in str(obj.get("@class", "")) or ("energy" in obj and ("structure" in obj or "composition" in obj))
    )


def iter_entry_dicts(obj: Any) -> Iterator[tuple[str | None, Any]]:
    """(id from the container or None, entry dict) for every entry in any accepted container."""
    if _is_entry_dict(obj):
        yield None, obj
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, Mapping) and not _is_entry_dict(item):
                # pandas records orient: {"material_id": ..., "entry": {...}}
                entry_col = next((k for k, v in item.items() if _is_entry_dict(v)), None)
                if entry_col is not None:
                    mid = item.get("material_id")
                    yield (str(mid) if mid else None), item[entry_col]
                    continue
            yield None, item
    elif isinstance(obj, Mapping):
        if isinstance(obj.get("entries"), list):
            yield from iter_entry_dicts(obj["entries"])
            return
        columns = [k for k, v in obj.items() if isinstance(v, Mapping) and v and all(_is_entry_dict(x) for x in v.values())]
        if columns and all(isinstance(v, Mapping) for v in obj.values()):
            # pandas column orient: {"entry": {"0": {...}}, "material_id": {"0": "mp-1"}}
            ids = obj.get("material_id") or obj.get("mat_id") or {}
            for index, entry in obj[columns[0]].items():
                mid = ids.get(index) if isinstance(ids, Mapping) else None
                yield (str(mid) if mid else str(index)), entry
        else:
            for key, entry in obj.items():
                yield str(key), entry
    else:
        raise ValueError(f"not a ComputedStructureEntry JSON: top level is {type(obj).__name__}")


def _is_mp2020_adjustment(adj: Mapping[str, Any]) -> bool:
    cls = adj.get("cls") or {}
    made_by = cls.get("@class", "") if isinstance(cls, Mapping) else str(cls)
    return "MP2020" in str(adj.get("name", "")) or made_by == "MaterialsProject2020Compatibility"


def _correction_from_adjustments(entry: Mapping[str, Any]) -> float:
    """Total correction (eV per cell) of an entry dict that lists adjustments but no 'correction'."""
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    try:
        return float(ComputedStructureEntry.from_dict(dict(entry)).correction)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"unreadable energy_adjustments ({type(exc).__name__}: {exc})") from None


def record_from_entry(entry: Any, index: int, source: str, stem: str, key: str | None = None) -> RawRecord:
    """One RawRecord from one ComputedStructureEntry dict (``index`` from 0, for messages)."""
    data = entry.get("data") or {} if isinstance(entry, Mapping) else {}
    material_id = key or (data.get("material_id") if isinstance(data, Mapping) else None)
    if not material_id and isinstance(entry, Mapping):
        material_id = entry.get("entry_id")
    material_id = str(material_id) if material_id else f"{stem}-{index}"
    if not isinstance(entry, Mapping):
        return error_record(material_id, source, f"entry {index}: not an entry dict ({type(entry).__name__})")
    if entry.get("structure") is None:
        return error_record(
            material_id, source, f"entry {index}: {entry.get('@class', 'entry')} has no structure (need ComputedStructureEntry)"
        )
    try:
        structure = structure_from_dict(entry["structure"])
        n_sites = len(structure)
        energy = parse_float(entry.get("energy"), "energy")
        correction = parse_float(entry.get("correction"), "correction")
        adjustments = [a for a in entry.get("energy_adjustments") or [] if isinstance(a, Mapping)]
        if correction is None and adjustments:
            correction = _correction_from_adjustments(entry)
        dft: dict[str, Any] = {}
        if energy is not None and n_sites:
            dft["e_per_atom_dft_raw"] = energy / n_sites
            if adjustments and all(_is_mp2020_adjustment(a) for a in adjustments) and correction is not None:
                dft["e_per_atom_dft_mp2020"] = (energy + correction) / n_sites
        if isinstance(data, Mapping):
            for target, keys in (("e_form_per_atom_dft_mp2020", E_FORM_DATA_KEYS), ("e_above_hull_dft_mp2020", E_HULL_DATA_KEYS)):
                for k in keys:
                    value = parse_float(data.get(k), f"data.{k}")
                    if value is not None:
                        dft[target] = value
                        break
    except ValueError as exc:
        return error_record(material_id, source, f"entry {index}: {exc}")
    meta = {"index": index}
    if adjustments:
        meta["energy_adjustments"] = sorted({str(a.get("name", "?")) for a in adjustments})
    return RawRecord(material_id=material_id, source=source, structure=structure, dft=dft, meta=meta)


def read_entries_json(path: str | Path) -> Iterator[RawRecord]:
    """Yield one RawRecord per ComputedStructureEntry in a (possibly compressed) JSON file."""
    path = require_path(path)
    return iter_safely(str(path), base_name(path), _read(path))


def _read(path: Path) -> Iterator[RawRecord]:
    source, stem = str(path), base_name(path)
    try:
        obj = load_json(path)
        pairs = iter_entry_dicts(obj)
    except ValueError as exc:
        yield error_record(stem, source, str(exc))
        return
    for index, (key, entry) in enumerate(pairs):
        yield record_from_entry(entry, index, source, stem, key)
