"""Shared pieces of the dataset readers: the RawRecord every reader yields and small helpers.

Conventions (all readers)
- Energies in ``RawRecord.dft`` are per atom (eV/atom) and keyed by the exact materials-table
  column names, whose suffix states the convention: ``*_mp2020`` = MP2020-corrected GGA/GGA+U,
  ``*_raw`` = uncorrected VASP energy. Forces are n_sites x 3 flattened (eV/Å).
- A reader never raises for one bad file or row: it yields a RawRecord with ``error`` set and goes
  on. Only a path that does not exist (or a wrong ``--format``) raises, before anything is read.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from pymatgen.core import Lattice, Structure

from mliap_tui.cache import MATERIALS_COLUMNS

#: The DFT columns a reader may fill; names are the materials-table columns (units in the names).
DFT_KEYS: tuple[str, ...] = (
    "e_form_per_atom_dft_mp2020",
    "e_above_hull_dft_mp2020",
    "e_per_atom_dft_mp2020",
    "e_per_atom_dft_raw",
    "forces_dft_ev_per_ang",
)
assert all(key in MATERIALS_COLUMNS for key in DFT_KEYS), "DFT_KEYS out of sync with cache.MATERIALS_COLUMNS"

_COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


@dataclass
class RawRecord:
    """One crystal as read from a file or service, before validation.

    material_id: unique id (``mp-149``, ``wbm-1-2``, a file stem, ...).
    source: the file (or service) it came from.
    structure: the pymatgen Structure, or None when ``error`` says why it could not be read.
    dft: DFT reference values keyed by materials-table column names (eV/atom, forces eV/Å);
         a key that is absent means "not given by this source".
    meta: extra facts from the source that are not table columns (e.g. a reported space group;
          ``own_dft_settings``: the energies come from another DFT setup than the Materials
          Project's, so they are never put on the MP2020 scale).
    """

    material_id: str
    source: str
    structure: Structure | None = None
    dft: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and self.structure is not None


def error_record(material_id: str, source: str | Path, reason: str, **meta: Any) -> RawRecord:
    """A RawRecord that carries only the reason it could not be read."""
    return RawRecord(material_id=str(material_id), source=str(source), error=reason, meta=dict(meta))


def base_name(path: str | Path) -> str:
    """File name without compression and format suffixes: ``mp20_test.csv.gz`` -> ``mp20_test``."""
    name = Path(path).name
    for suffix in _COMPRESSED:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    stem, dot, _ = name.rpartition(".")
    return stem if dot and stem else name


def format_suffix(path: str | Path) -> str:
    """Lower-case format suffix ignoring a compression suffix: ``x.json.gz`` -> ``.json``."""
    name = Path(path).name.lower()
    for suffix in _COMPRESSED:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return Path(name).suffix


def open_text(path: str | Path) -> io.TextIOBase:
    """Open a text file, transparently decompressing .gz/.bz2/.xz (by suffix)."""
    path = Path(path)
    opener = _COMPRESSED.get(path.suffix.lower())
    if opener is not None:
        return opener(path, "rt", encoding="utf-8", newline="")  # type: ignore[return-value]
    return open(path, encoding="utf-8", newline="")


def read_text(path: str | Path) -> str:
    with open_text(path) as fh:
        return fh.read()


def require_path(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    return path


def parse_float(value: Any, name: str) -> float | None:
    """A float from a CSV cell or JSON value; None for empty/None; ValueError for non-numbers.

    ``'nan'``/``'inf'`` parse to the float NaN/inf on purpose: the importer rejects them per row
    with a reason, which is clearer than silently treating them as missing.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name} is a boolean ({value!r}), expected a number")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if text == "" or text.lower() in {"none", "null"}:
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} is not a number: {text[:40]!r}") from None


def per_atom_ev(total_ev: Any, n_sites: int, name: str) -> float | None:
    """Energy per atom (eV/atom) from a per-cell energy (eV); None when the total is missing."""
    total = parse_float(total_ev, name)
    if total is None:
        return None
    if n_sites <= 0:
        return math.nan
    return total / n_sites


_IGNORED_CIF_WARNINGS = ("fractional coordinates rounded", "is deprecated", "No _symmetry_equiv_pos_as_xyz")


def structure_from_cif_text(text: str) -> Structure:
    """Parse the first structure of a CIF; ValueError with pymatgen's own reason when it fails.

    The CIF is read as written (no reduction to the primitive cell, no site merging beyond
    pymatgen's defaults), so a P1 CIF gives back its own cell and site order.
    """
    from pymatgen.io.cif import CifParser

    if not text.strip():
        raise ValueError("empty CIF")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            structures = CifParser.from_str(text).parse_structures(primitive=False)
        except Exception as exc:  # noqa: BLE001 - any parser failure is a per-row error
            structures = []
            failure = f"{type(exc).__name__}: {exc}"
        else:
            failure = ""
    if structures:
        return structures[0]
    messages: list[str] = []
    for w in caught:
        text = str(w.message).replace("Issues encountered while parsing CIF:", "")
        for line in text.splitlines():
            line = " ".join(line.split()).rstrip(".")
            if line and not any(skip in line for skip in _IGNORED_CIF_WARNINGS) and line not in messages:
                messages.append(line)
    if failure:
        messages.append(failure)
    raise ValueError(f"malformed CIF ({cif_reason(messages)})")


_STRAY = "Possible issue in CIF file at line:"


def cif_reason(messages: list[str]) -> str:
    """One short human reason from pymatgen's warning stream: the first real parser message, plus
    a few words of the text it could not place (pymatgen reports them one word per warning)."""
    stray = [m[len(_STRAY):].strip() for m in messages if m.startswith(_STRAY)]
    real = [m for m in messages if not m.startswith(_STRAY) and not m.startswith("No structure parsed")]
    reason = real[0] if real else (next((m for m in messages if not m.startswith(_STRAY)), "") or "no structure found")
    if "Singular matrix" in reason:
        reason = f"degenerate cell, zero volume ({reason})"
    if stray:
        words = " ".join(w for w in stray[:4] if w)
        reason += f"; unexpected text near {words!r}" + ("..." if len(stray) > 4 else "")
    return reason[:160]


def structure_from_dict(obj: Any) -> Structure:
    """A Structure from a pymatgen ``Structure.as_dict()`` dict (or a Structure itself)."""
    if isinstance(obj, Structure):
        return obj
    if not isinstance(obj, Mapping):
        raise ValueError(f"structure is {type(obj).__name__}, expected a pymatgen Structure dict")
    try:
        return Structure.from_dict(obj)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"invalid structure dict ({type(exc).__name__}: {exc})") from None


def structure_from_atoms(atoms: Any) -> Structure:
    """A pymatgen Structure from an ASE Atoms, keeping the cell and atom order exactly.

    Raises ValueError for an Atoms that is not periodic in all three directions (a molecule).
    """
    import numpy as np

    if not all(atoms.pbc):
        raise ValueError(f"not periodic in 3D (pbc={list(map(bool, atoms.pbc))}); only crystals can be imported")
    cell = np.asarray(atoms.cell.array, dtype=float)
    return Structure(Lattice(cell), list(atoms.get_chemical_symbols()), atoms.get_positions(), coords_are_cartesian=True)


def iter_safely(source: str | Path, material_id: str, gen: Iterator[RawRecord]) -> Iterator[RawRecord]:
    """Yield from ``gen``; if it raises mid-way, yield one error record for the rest of the file."""
    try:
        yield from gen
    except Exception as exc:  # noqa: BLE001 - a broken file must not stop the import
        yield error_record(material_id, source, f"file could not be read further ({type(exc).__name__}: {exc})")


def load_json(path: str | Path) -> Any:
    """Parse a (possibly compressed) JSON file; ValueError('empty file' / 'malformed JSON ...')."""
    import json

    text = read_text(path)
    if not text.strip():
        raise ValueError("empty file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"malformed JSON ({exc})") from None
