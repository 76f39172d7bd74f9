"""The parquet cache: one schema, defined here, with a version.

Layout under the cache root (default ``./cache``, or ``--cache DIR`` / ``$MLIAP_TUI_CACHE``)::

    <root>/datasets/<dataset>/materials.parquet            one row per crystal (MATERIALS_SCHEMA)
    <root>/datasets/<dataset>/import_report.json           what the last import loaded/rejected
    <root>/datasets/<dataset>/atom_properties.parquet      per-atom values some sets carry (Si sets: r)
    <root>/datasets/<dataset>/predictions/<model>/<mode>/part-*.parquet
                                                           committed result chunks (PREDICTIONS_SCHEMA)

Every write goes to a temporary file in the same folder and is renamed into place, so a reader
(or a killed writer) never sees half a file. Reads are lazy ``polars.scan_parquet`` scans.
Energies are in eV/atom unless a column name says otherwise; forces in eV/Å; stress in GPa;
lengths in Å.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import polars as pl

SCHEMA_VERSION = 1
DEFAULT_SYMPREC_ANG = 0.1  # Materials Project default symmetry tolerance (Å)

#: Column -> (dtype, description with unit). The single source of truth for the materials table.
MATERIALS_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "material_id": (pl.Utf8, "unique id, e.g. mp-149 or wbm-1-2"),
    "dataset": (pl.Utf8, "name of the dataset this row was imported into"),
    "source": (pl.Utf8, "file or service the row came from"),
    "formula": (pl.Utf8, "reduced formula"),
    "elements": (pl.List(pl.Utf8), "sorted element symbols"),
    "chemsys": (pl.Utf8, "chemical system, elements joined by '-' in alphabetical order"),
    "n_sites": (pl.Int32, "number of sites in the stored cell"),
    "lattice_ang": (pl.List(pl.Float64), "3x3 lattice matrix, row vectors, flattened (Å)"),
    "species": (pl.List(pl.Utf8), "element symbol of each site"),
    "frac_coords": (pl.List(pl.Float64), "fractional coordinates, n_sites x 3 flattened"),
    # DFT reference values. Conventions are in the names: mp2020 = MP2020-corrected GGA/GGA+U,
    # raw = uncorrected VASP energy.
    "e_form_per_atom_dft_mp2020": (pl.Float64, "DFT formation energy, MP2020-corrected (eV/atom)"),
    "e_above_hull_dft_mp2020": (pl.Float64, "DFT energy above the MP convex hull, MP2020 (eV/atom)"),
    "e_per_atom_dft_mp2020": (pl.Float64, "DFT total energy, MP2020-corrected (eV/atom)"),
    "e_per_atom_dft_raw": (pl.Float64, "DFT total energy, uncorrected (eV/atom)"),
    "e_per_atom_dft_origin": (
        pl.Utf8,
        "how the total energies were obtained: 'reported' or 'rebuilt' (e_form + MP elemental refs)",
    ),
    "mp2020_correction_per_atom": (
        pl.Float64,
        "MP2020 energy correction of this composition/structure (eV/atom); mp2020 = raw + this",
    ),
    "mp2020_run_type": (pl.Utf8, "GGA or GGA+U, as the Materials Project would have run it"),
    "forces_dft_ev_per_ang": (pl.List(pl.Float64), "DFT forces, n_sites x 3 flattened (eV/Å)"),
    # Symmetry (mliap_tui.symmetry), computed at import with `symprec_ang`.
    "symprec_ang": (pl.Float64, "spglib distance tolerance used for the symmetry columns (Å; angle tolerance 5°)"),
    "spacegroup_number": (pl.Int16, "international space-group number (1-230)"),
    "spacegroup_symbol": (pl.Utf8, "Hermann-Mauguin symbol"),
    "crystal_system": (pl.Utf8, "triclinic ... cubic"),
    "wyckoff": (pl.Utf8, "occupied orbits as 'mult+letter:element' joined by spaces, e.g. '2a:Ti 4f:O'"),
    "lattice_dof": (pl.Int16, "free lattice parameters of the crystal system"),
    "wyckoff_dof": (pl.Int16, "free coordinates summed over occupied Wyckoff orbits"),
    "total_dof": (pl.Int16, "lattice_dof + wyckoff_dof"),
    "polar_dof": (pl.Int16, "floating-origin directions of a polar group (subtract to remove them)"),
}

#: Column -> (dtype, description). One row per (material, model, mode) evaluation.
PREDICTION_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "material_id": (pl.Utf8, "material this prediction is for"),
    "model": (pl.Utf8, "model id from the registry, e.g. chgnet-0.3.0"),
    "mode": (pl.Utf8, "'static' (single point on the DFT structure) or 'relax'"),
    "status": (pl.Utf8, "'ok' or 'failed'"),
    "error": (pl.Utf8, "failure reason when status == 'failed'"),
    "n_sites": (pl.Int32, "atoms in the evaluated cell"),
    "e_per_atom_pred_native": (pl.Float64, "model energy in the model's own convention (eV/atom)"),
    "e_per_atom_pred_mp2020": (pl.Float64, "model energy on the MP2020-corrected convention (eV/atom)"),
    "forces_pred_ev_per_ang": (pl.List(pl.Float64), "predicted forces, n_sites x 3 flattened (eV/Å)"),
    "stress_pred_gpa": (pl.List(pl.Float64), "predicted stress, Voigt 6 (GPa)"),
    "relaxed_lattice_ang": (pl.List(pl.Float64), "relax mode: final lattice, flattened (Å)"),
    "relaxed_frac_coords": (pl.List(pl.Float64), "relax mode: final fractional coordinates"),
    "relaxed_spacegroup_number": (pl.Int16, "relax mode: space group of the relaxed cell"),
    "relaxed_total_dof": (pl.Int16, "relax mode: total DOF of the relaxed cell"),
    "relax_steps": (pl.Int32, "relax mode: optimiser steps taken"),
    "device": (pl.Utf8, "cpu, cuda:0, ..."),
    "dtype": (pl.Utf8, "float32 or float64"),
    "wall_s": (pl.Float64, "seconds of model time attributed to this structure (batch time / batch size)"),
    "run_id": (pl.Utf8, "id of the run that produced the row"),
    "created_unix_s": (pl.Float64, "when the row was committed (Unix seconds)"),
}

MATERIALS_SCHEMA = pl.Schema({name: dtype for name, (dtype, _) in MATERIALS_COLUMNS.items()})
PREDICTIONS_SCHEMA = pl.Schema({name: dtype for name, (dtype, _) in PREDICTION_COLUMNS.items()})
PREDICTION_KEY = ("material_id", "model", "mode")

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def default_cache_root() -> Path:
    """``$MLIAP_TUI_CACHE`` if set, else ``./cache``."""
    return Path(os.environ.get("MLIAP_TUI_CACHE", "cache"))


def check_name(name: str, what: str = "name") -> str:
    """Dataset and model names become folder names: refuse anything that is not a plain name."""
    if not _SAFE_NAME.match(name):
        raise ValueError(f"invalid {what} {name!r}: use letters, digits, '.', '_', '+', '-'")
    return name


def conform(df: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """Select and cast ``df`` to ``schema`` exactly, adding missing columns as nulls."""
    missing = [pl.lit(None, dtype=dtype).alias(name) for name, dtype in schema.items() if name not in df.columns]
    if missing:
        df = df.with_columns(missing)
    return df.select([pl.col(name).cast(dtype, strict=False) for name, dtype in schema.items()])


def write_parquet_atomic(df: pl.DataFrame, path: Path, metadata: dict[str, str] | None = None) -> Path:
    """Write ``df`` to ``path`` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    meta = {"mliap_tui_schema_version": str(SCHEMA_VERSION), **(metadata or {})}
    try:
        df.write_parquet(tmp, metadata=meta)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json_atomic(obj: object, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class Cache:
    """Paths and lazy scans of one cache root."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def open(cls, root: str | Path | None = None) -> "Cache":
        return cls(Path(root) if root is not None else default_cache_root())

    # ---- paths -------------------------------------------------------------------------
    def dataset_dir(self, dataset: str) -> Path:
        return self.root / "datasets" / check_name(dataset, "dataset name")

    def materials_path(self, dataset: str) -> Path:
        return self.dataset_dir(dataset) / "materials.parquet"

    def report_path(self, dataset: str) -> Path:
        return self.dataset_dir(dataset) / "import_report.json"

    def atom_properties_path(self, dataset: str) -> Path:
        """Per-atom side table (material_id, atom_index, ...) of datasets that carry one."""
        return self.dataset_dir(dataset) / "atom_properties.parquet"

    def predictions_dir(self, dataset: str, model: str | None = None, mode: str | None = None) -> Path:
        path = self.dataset_dir(dataset) / "predictions"
        if model is not None:
            path = path / check_name(model, "model id")
            if mode is not None:
                path = path / check_name(mode, "mode")
        return path

    def datasets(self) -> list[str]:
        base = self.root / "datasets"
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if (p / "materials.parquet").is_file())

    # ---- materials ---------------------------------------------------------------------
    def write_materials(self, dataset: str, df: pl.DataFrame) -> Path:
        """Store the materials table of ``dataset`` (replaces the previous one)."""
        df = conform(df, MATERIALS_SCHEMA)
        dup = df["material_id"].is_duplicated()
        if dup.any():
            raise ValueError(f"duplicate material_id in materials table: {df.filter(dup)['material_id'].unique().to_list()[:5]}")
        return write_parquet_atomic(df.sort("material_id"), self.materials_path(dataset))

    def scan_materials(self, dataset: str) -> pl.LazyFrame:
        path = self.materials_path(dataset)
        if not path.is_file():
            known = ", ".join(self.datasets()) or "none"
            raise FileNotFoundError(
                f"dataset {dataset!r} is not in the cache at {self.root} (known: {known}). "
                f"Import it first: mliap-tui data import {dataset if dataset == 'sample' else 'PATH'}"
            )
        return pl.scan_parquet(path)

    def has_materials(self, dataset: str) -> bool:
        return self.materials_path(dataset).is_file()

    # ---- predictions -------------------------------------------------------------------
    def write_prediction_chunk(self, dataset: str, model: str, mode: str, df: pl.DataFrame) -> Path:
        """Commit one chunk of results; the rename makes it visible all at once."""
        df = conform(df, PREDICTIONS_SCHEMA)
        name = f"part-{int(1e6 * _now()):020d}-{uuid.uuid4().hex[:8]}.parquet"
        return write_parquet_atomic(df, self.predictions_dir(dataset, model, mode) / name)

    def prediction_files(self, dataset: str, model: str | None = None, mode: str | None = None) -> list[Path]:
        base = self.predictions_dir(dataset, model, mode)
        if not base.is_dir():
            return []
        return sorted(p for p in base.rglob("part-*.parquet"))

    def scan_predictions(
        self, dataset: str, models: Iterable[str] | None = None, mode: str | None = None
    ) -> pl.LazyFrame:
        """All committed predictions, one row per (material, model, mode): the newest wins.

        A failed row is superseded by a later ok row for the same key, so re-running after a
        fix replaces failures without duplicates.
        """
        files = []
        for model in models if models is not None else [None]:
            files += self.prediction_files(dataset, model, mode)
        if not files:
            return pl.LazyFrame(schema=PREDICTIONS_SCHEMA)
        lf = pl.scan_parquet(files, schema=PREDICTIONS_SCHEMA, missing_columns="insert")
        if mode is not None:
            lf = lf.filter(pl.col("mode") == mode)
        return lf.sort("created_unix_s").unique(subset=list(PREDICTION_KEY), keep="last", maintain_order=True)

    def done_keys(self, dataset: str, model: str, mode: str, include_failed: bool = False) -> set[str]:
        """material_ids already evaluated by ``model`` in ``mode`` (ok ones; failed too if asked)."""
        lf = self.scan_predictions(dataset, [model], mode)
        if not include_failed:
            lf = lf.filter(pl.col("status") == "ok")
        return set(lf.select("material_id").collect()["material_id"].to_list())


def _now() -> float:
    import time

    return time.time()
