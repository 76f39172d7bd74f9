"""Where the cache keeps things, and how it writes and reads them.

Layout under the cache root (default ``./cache``, or ``--cache DIR`` / ``$MLIAP_TUI_CACHE``)::

    <root>/datasets/<dataset>/materials.parquet            one row per crystal (MATERIALS_SCHEMA)
    <root>/datasets/<dataset>/import_report.json           what the last import loaded/rejected
    <root>/datasets/<dataset>/atom_properties.parquet      per-atom values some sets carry (Si sets: r)
    <root>/datasets/<dataset>/predictions/<model>/<mode>/part-*.parquet
                                                           committed result chunks (PREDICTIONS_SCHEMA)

Every write goes to a temporary file in the same folder and is renamed into place, so a reader
(or a killed writer) never sees half a file. Reads are lazy ``polars.scan_parquet`` scans.
Columns, dtypes and units: :mod:`mliap_tui.cache.schema`.
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

from mliap_tui.cache.schema import (
    MATERIALS_SCHEMA,
    PREDICTION_KEY,
    PREDICTIONS_SCHEMA,
    SCHEMA_VERSION,
)

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
        """All committed predictions, one row per (material, model, weights, mode): the newest wins.

        A failed row is superseded by a later ok row for the same key, so re-running after a
        fix replaces failures without duplicates. Rows made with other weights under the same
        model id (``weights_fingerprint``) are kept beside each other, never merged.
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

    def done_keys(self, dataset: str, model: str, mode: str, include_failed: bool = False,
                  weights_fingerprint: str | None = None) -> set[str]:
        """material_ids already evaluated by ``model`` in ``mode`` (ok ones; failed too if asked).

        With ``weights_fingerprint``, only rows made with those weights count (what the engine
        asks); without it, rows of any weights do.
        """
        lf = self.scan_predictions(dataset, [model], mode)
        if weights_fingerprint is not None:
            lf = lf.filter(pl.col("weights_fingerprint") == weights_fingerprint)
        if not include_failed:
            lf = lf.filter(pl.col("status") == "ok")
        return set(lf.select("material_id").collect()["material_id"].to_list())


def _now() -> float:
    import time

    return time.time()
