"""Dataset readers: every format becomes a stream of :class:`RawRecord`.

Formats (``detect_format`` picks one from the path, ``--format`` overrides):

=================  ====================================================================
mp_csv             MP-20 / MPTS-52 CSV with a ``cif`` column (e_form, Ehull; MP2020)
entries_json       pymatgen ComputedStructureEntry JSON (raw energy + MP2020 correction)
wbm_json           matcalc WBM JSON (pbe54: uncorrected/corrected energy; pbe52: + e_form)
structure_files    folder of *.cif, *.vasp, POSCAR*, CONTCAR* (structures only)
extxyz             extended XYZ with energies/forces (raw energy by default)
ase_db             ASE database (.db) with energies/forces (raw energy by default)
si_rare_events     Si rare-event set folder (DATA.json + structure_poscars.zip; DFT_K4 forces)
=================  ====================================================================

A reader yields one record per crystal; a bad file or row becomes a record with ``error`` set, so
reading never stops at a bad input. Validation (disorder, zero volume, NaN energies, duplicates)
happens in :mod:`mliap_tui.data.importer`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

from mliap_tui.data.readers._common import (
    DFT_KEYS,
    RawRecord,
    error_record,
    format_suffix,
    open_text,
)
from mliap_tui.data.readers.ase_formats import read_ase_db, read_extxyz
from mliap_tui.data.readers.entries_json import read_entries_json
from mliap_tui.data.readers.mp_csv import read_mp_csv
from mliap_tui.data.readers.si_rare_events import (
    is_si_rare_event_set,
    read_si_rare_events,
)
from mliap_tui.data.readers.structure_files import (
    is_structure_file,
    read_structure_files,
)
from mliap_tui.data.readers.wbm_json import read_wbm_json

__all__ = [
    "DFT_KEYS",
    "FORMATS",
    "RawRecord",
    "detect_format",
    "error_record",
    "read_records",
]

#: format name -> reader(path) -> Iterator[RawRecord]
FORMATS: dict[str, Callable[..., Iterator[RawRecord]]] = {
    "mp_csv": read_mp_csv,
    "entries_json": read_entries_json,
    "wbm_json": read_wbm_json,
    "structure_files": read_structure_files,
    "extxyz": read_extxyz,
    "ase_db": read_ase_db,
    "si_rare_events": read_si_rare_events,
}

_SUFFIX_FORMATS = {
    ".csv": "mp_csv",
    ".extxyz": "extxyz",
    ".xyz": "extxyz",
    ".db": "ase_db",
    ".aselmdb": "ase_db",
    ".cif": "structure_files",
    ".vasp": "structure_files",
}
_SNIFF_CHARS = 256 * 1024


def detect_format(path: str | Path) -> str:
    """The reader format for ``path``, from its suffix (and, for JSON, its first bytes).

    Raises FileNotFoundError for a missing path and ValueError (naming ``--format``) when the
    format cannot be told.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if is_si_rare_event_set(path):
        return "si_rare_events"
    if path.is_dir():
        return "structure_files"
    suffix = format_suffix(path)
    if suffix in _SUFFIX_FORMATS:
        return _SUFFIX_FORMATS[suffix]
    if is_structure_file(path):
        return "structure_files"
    if suffix == ".json":
        return _sniff_json_format(path)
    raise ValueError(
        f"cannot tell the format of {path.name}: pass --format (one of {', '.join(FORMATS)})"
    )


def _sniff_json_format(path: Path) -> str:
    with open_text(path) as fh:
        head = fh.read(_SNIFF_CHARS)
    if not head.strip():
        return "entries_json"  # any JSON reader reports the empty file per file
    if "ComputedStructureEntry" in head or "ComputedEntry" in head:
        return "entries_json"
    if any(f'"{key}"' in head for key in ("uncorrected_energy", "corrected_energy", "corrected_formation_energy_per_atom")):
        return "wbm_json"
    raise ValueError(
        f"cannot tell whether {path.name} is a ComputedStructureEntry JSON or a WBM JSON: "
        "pass --format entries_json or --format wbm_json"
    )


def read_records(path: str | Path, fmt: str | None = None, **options: Any) -> Iterator[RawRecord]:
    """RawRecords of ``path`` read with format ``fmt`` (detected when None).

    ``options`` go to the reader (e.g. ``energy_convention='mp2020'`` for extxyz/ase_db).
    """
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    return FORMATS[fmt](path, **options)
