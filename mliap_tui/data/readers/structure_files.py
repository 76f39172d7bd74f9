"""A folder of structure files: ``*.cif``, ``*.vasp``, ``POSCAR*``, ``CONTCAR*`` (optionally .gz).

One crystal per file (the first block of a multi-block CIF); material_id = the file stem
(``mp-149.cif`` -> ``mp-149``; ``POSCAR_mp-149`` -> ``POSCAR_mp-149``). These files carry no
energies, so only structures are read; the table gets symmetry and MP2020 corrections, not DFT
references. A single structure file may be given instead of a folder. The folder is not searched
recursively; files that are not structures (README, .json, ...) are skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from pymatgen.core import Structure

from mliap_tui.data.readers._common import (
    RawRecord,
    base_name,
    error_record,
    format_suffix,
    read_text,
    require_path,
    structure_from_cif_text,
)

FORMAT = "structure_files"
_POSCAR_PREFIXES = ("poscar", "contcar")


def is_structure_file(path: Path) -> bool:
    """True for *.cif, *.vasp, POSCAR*, CONTCAR* (case-insensitive, compression suffix ignored)."""
    if not path.is_file() or path.name.startswith("."):
        return False
    return format_suffix(path) in (".cif", ".vasp") or path.name.lower().startswith(_POSCAR_PREFIXES)


def structure_paths(folder: Path) -> list[Path]:
    """Structure files of a folder, sorted by name."""
    return sorted((p for p in folder.iterdir() if is_structure_file(p)), key=lambda p: p.name)


def material_id_for(path: Path) -> str:
    """File stem; for POSCAR*/CONTCAR* the whole name (``POSCAR.mp-1`` must not become ``POSCAR``)."""
    if path.name.lower().startswith(_POSCAR_PREFIXES):
        name = path.name
        return name[:-3] if name.lower().endswith(".gz") else name
    return base_name(path)


def read_structure_file(path: Path) -> RawRecord:
    """One RawRecord from one CIF/POSCAR file; never raises for a bad file."""
    source, material_id = str(path), material_id_for(path)
    try:
        text = read_text(path)
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        return error_record(material_id, source, f"unreadable file ({type(exc).__name__}: {exc})")
    if not text.strip():
        return error_record(material_id, source, "empty file")
    try:
        if format_suffix(path) == ".cif":
            structure = structure_from_cif_text(text)
        else:
            structure = _poscar_structure(text)
    except ValueError as exc:
        return error_record(material_id, source, str(exc))
    return RawRecord(material_id=material_id, source=source, structure=structure)


def _poscar_structure(text: str) -> Structure:
    from pymatgen.io.vasp import Poscar

    try:
        return Poscar.from_str(text).structure
    except Exception as exc:  # noqa: BLE001 - any parser failure is a per-file error
        raise ValueError(f"malformed POSCAR ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})") from None


def read_structure_files(path: str | Path) -> Iterator[RawRecord]:
    """Yield one RawRecord per structure file of a folder (or for a single structure file)."""
    path = require_path(path)
    if path.is_file():
        return iter([read_structure_file(path)])
    files = structure_paths(path)
    if not files:
        return iter([error_record(path.name, path, "no *.cif, *.vasp, POSCAR* or CONTCAR* files in folder")])
    return (read_structure_file(p) for p in files)
