"""Si rare-event testing sets (Liu, He, Mo, npj Comput. Mater. 9, 174 (2023)).

Layout of one set (mogroupumd/Silicon_MLIP_datasets, e.g. ``Interstitial-RE_Testing_Set/``)::

    DATA.json               {"Energies": {"DFT_K4": [...], "DFT_K2": [...]},        eV per cell
                             "Forces":   {"DFT_K4": [[[fx,fy,fz], ...]], "DFT_K2", "DFT_K1"},  eV/Å
                             "r":   [[distance of each atom to the migrating atom (Å)]],
                             "r_v": [[distance of each atom to the vacancy/defect (Å)]]}
    structure_poscars.zip   <i>.POSCAR.vasp, i = index into the DATA.json lists

Conventions
- The DFT reference is the densest k-mesh of the set, ``DFT_K4`` (4x4x4; K2 and K1 are coarser
  meshes kept in the file for convergence checks). ``k_mesh`` picks another one.
- The total energy (eV per cell) becomes ``e_per_atom_dft_raw`` (eV/atom): it comes from the
  set's own DFT settings, so compare energies only relative to a per-set reference.
- ``r == 0`` marks the migrating (rare-event) atoms; ``r`` is capped at 5.5 Å in the data (5.5
  means "5.5 Å or farther"). These per-atom values are not materials-table columns: they are in
  ``RawRecord.meta`` (``r_ang``, ``r_v_ang``) and :func:`atom_properties_frame` returns them as
  a tidy table, which ``mliap_tui.data.importer.import_dataset`` stores at
  ``Cache.atom_properties_path(dataset)``.
- material_id: ``<prefix>-<index:03d>``, prefix ``si-int`` / ``si-vac`` from the folder name
  (``si-re`` otherwise).
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from mliap_tui.data.readers._common import RawRecord, error_record, require_path

if TYPE_CHECKING:
    import polars as pl

DATA_FILE = "DATA.json"
POSCAR_ZIP = "structure_poscars.zip"
DEFAULT_K_MESH = "DFT_K4"
R_CAP_ANG = 5.5  # r values are capped at this distance in the published data (Å)
_POSCAR_NAME = re.compile(r"^(?:.*/)?(\d+)\.POSCAR(?:\.vasp)?$")


def is_si_rare_event_set(path: str | Path) -> bool:
    """True for a folder holding DATA.json + structure_poscars.zip, or such a DATA.json itself."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if path.is_file() and path.name != DATA_FILE:
        return False
    return (folder / DATA_FILE).is_file() and (folder / POSCAR_ZIP).is_file()


def id_prefix(folder: Path) -> str:
    name = folder.name.lower()
    if "interstitial" in name:
        return "si-int"
    if "vacancy" in name:
        return "si-vac"
    return "si-re"


def _folder(path: str | Path) -> Path:
    path = require_path(path)
    return path if path.is_dir() else path.parent


def _load(folder: Path) -> dict[str, Any]:
    with open(folder / DATA_FILE, encoding="utf-8") as fh:
        return json.load(fh)


def _poscars(folder: Path) -> dict[int, str]:
    out: dict[int, str] = {}
    with zipfile.ZipFile(folder / POSCAR_ZIP) as zf:
        for name in zf.namelist():
            m = _POSCAR_NAME.match(name)
            if m:
                out[int(m.group(1))] = zf.read(name).decode("utf-8")
    return out


def read_si_rare_events(path: str | Path, k_mesh: str = DEFAULT_K_MESH) -> Iterator[RawRecord]:
    """Yield one RawRecord per cell of a Si rare-event set (folder or its DATA.json)."""
    folder = _folder(path)
    if not is_si_rare_event_set(folder):
        raise ValueError(f"{folder} has no {DATA_FILE} + {POSCAR_ZIP}: not a Si rare-event set")
    return _read(folder, k_mesh)


def _read(folder: Path, k_mesh: str) -> Iterator[RawRecord]:
    from pymatgen.core import Structure

    source, prefix = str(folder), id_prefix(folder)
    try:
        data = _load(folder)
        forces_all = data["Forces"][k_mesh]
        energies_all = data.get("Energies", {}).get(k_mesh)
        r_all, rv_all = data.get("r"), data.get("r_v")
        poscars = _poscars(folder)
    except Exception as exc:  # noqa: BLE001 - a broken set is one error record
        yield error_record(prefix, source, f"unreadable set ({type(exc).__name__}: {exc})")
        return
    for i, forces in enumerate(forces_all):
        mid = f"{prefix}-{i:03d}"
        text = poscars.get(i)
        if text is None:
            yield error_record(mid, source, f"no {i}.POSCAR.vasp in {POSCAR_ZIP}")
            continue
        try:
            structure = Structure.from_str(text, fmt="poscar")
            f = np.asarray(forces, dtype=float)
            if f.shape != (len(structure), 3):
                raise ValueError(f"forces have shape {f.shape}, expected ({len(structure)}, 3)")
            dft: dict[str, Any] = {"forces_dft_ev_per_ang": f.ravel().tolist()}
            if energies_all is not None and energies_all[i] is not None:
                dft["e_per_atom_dft_raw"] = float(energies_all[i]) / len(structure)
            # the set's own DFT settings (not MP's): the importer keeps the energy raw, off the MP2020 scale
            meta: dict[str, Any] = {"index": i, "k_mesh": k_mesh, "own_dft_settings": True}
            for key, name in (("r_ang", r_all), ("r_v_ang", rv_all)):
                if name is not None:
                    vals = np.asarray(name[i], dtype=float)
                    if vals.shape != (len(structure),):
                        raise ValueError(f"{key} has shape {vals.shape}, expected ({len(structure)},)")
                    meta[key] = vals.tolist()
        except Exception as exc:  # noqa: BLE001
            yield error_record(mid, source, f"cell {i}: {type(exc).__name__}: {exc}")
            continue
        yield RawRecord(material_id=mid, source=source, structure=structure, dft=dft, meta=meta)


def atom_properties_from_meta(pairs) -> pl.DataFrame | None:
    """Tidy frame (material_id, atom_index, r_ang, r_v_ang, is_rare_event = r == 0) from
    ``(material_id, RawRecord.meta)`` pairs; None when no record carried per-atom distances."""
    import polars as pl

    rows: dict[str, list] = {"material_id": [], "atom_index": [], "r_ang": [], "r_v_ang": []}
    for material_id, meta in pairs:
        if "r_ang" not in meta:
            continue
        r = meta["r_ang"]
        rv = meta.get("r_v_ang") or [None] * len(r)
        rows["material_id"] += [material_id] * len(r)
        rows["atom_index"] += list(range(len(r)))
        rows["r_ang"] += list(r)
        rows["r_v_ang"] += list(rv)
    if not rows["material_id"]:
        return None
    df = pl.DataFrame(rows, schema={"material_id": pl.Utf8, "atom_index": pl.Int32, "r_ang": pl.Float64, "r_v_ang": pl.Float64})
    return df.with_columns(is_rare_event=pl.col("r_ang") == 0.0)


def atom_properties_frame(path: str | Path, k_mesh: str = DEFAULT_K_MESH):
    """The per-atom table of a set folder (see :func:`atom_properties_from_meta`)."""
    return atom_properties_from_meta((rec.material_id, rec.meta) for rec in read_si_rare_events(path, k_mesh) if rec.ok)
