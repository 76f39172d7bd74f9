"""Where the cache keeps things, and how it writes and reads them.

Layout under the cache root (default ``./cache``, or ``--cache DIR`` / ``$MLIAP_TUI_CACHE``)::

    <root>/datasets/<dataset>/materials.parquet            one row per crystal (MATERIALS_SCHEMA)
    <root>/datasets/<dataset>/import_report.json           what the last import loaded/rejected
    <root>/datasets/<dataset>/atom_properties.parquet      per-atom values some sets carry (Si sets: r)
    <root>/datasets/<dataset>/predictions/<model>/<mode>/part-*.parquet
                                                           committed result chunks (PREDICTIONS_SCHEMA)
    <root>/datasets/<dataset>/derived/relax_geometry/<model>/part-*.parquet
                                                           relaxed vs DFT cell, per relaxed row
                                                           (RELAX_GEOMETRY_SCHEMA; recomputable)

Every write goes to a temporary file in the same folder and is renamed into place, so a reader
(or a killed writer) never sees half a file; a write that fails (disk full, read-only, a folder
that vanished) raises :class:`CacheWriteError` and leaves nothing behind. Reads are lazy
``polars.scan_parquet`` scans; a file that is not a whole parquet file is moved to
``<root>/quarantine/`` and the rest is read (:mod:`mliap_tui.cache.quarantine`).
Columns, dtypes and units: :mod:`mliap_tui.cache.schema`.
"""

from __future__ import annotations

import io
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import polars as pl

from mliap_tui.cache.quarantine import check_parquet, quarantine
from mliap_tui.cache.schema import (
    MATERIALS_SCHEMA,
    PREDICTION_KEY,
    PREDICTIONS_SCHEMA,
    RELAX_GEOMETRY_KEY,
    RELAX_GEOMETRY_SCHEMA,
    SCHEMA_VERSION,
)
from mliap_tui.core.files import WriteError, write_bytes_atomic

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


class CacheWriteError(WriteError):
    """A cache file could not be written (disk full, permissions, read-only, vanished folder).
    Nothing half-written is left and nothing is claimed: the next run computes what is missing."""


def write_parquet_atomic(df: pl.DataFrame, path: Path, metadata: dict[str, str] | None = None,
                         make_parents: bool = True) -> Path:
    """Write ``df`` to ``path`` through a temporary file and an atomic rename (CacheWriteError on failure).

    The parquet bytes are built in memory and written with plain file I/O, so a full disk is
    reported as ENOSPC on the path (polars would report a thrift transport error).
    """
    meta = {"mliap_tui_schema_version": str(SCHEMA_VERSION), **(metadata or {})}
    buf = io.BytesIO()
    df.write_parquet(buf, metadata=meta)
    try:
        return write_bytes_atomic(buf.getvalue(), path, make_parents=make_parents)
    except WriteError as exc:
        raise CacheWriteError(exc.path, exc.cause, exc.advice) from exc.cause


def write_json_atomic(obj: object, path: Path) -> Path:
    try:
        return write_bytes_atomic(json.dumps(obj, indent=2, default=str).encode(), path)
    except WriteError as exc:
        raise CacheWriteError(exc.path, exc.cause, exc.advice) from exc.cause


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

    def download_dir(self, dataset: str) -> Path:
        """Pages of a download in progress (``data import mp``), committed as they arrive."""
        return self.dataset_dir(dataset) / "download"

    def claims_dir(self, dataset: str, model: str, mode: str) -> Path:
        """Lease files of the shards being evaluated (:mod:`mliap_tui.cache.claims`)."""
        return self.dataset_dir(dataset) / "claims" / check_name(model, "model id") / check_name(mode, "mode")

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
        error = check_parquet(path)
        if error is not None:
            source = self._import_source(dataset)
            note = quarantine(self.root, path, dataset, None, None, error)
            raise CorruptMaterials(
                f"the materials table of dataset {dataset!r} is unreadable ({error}) and was "
                f"{'moved to ' + note.moved_to if note.moved_to else 'left in place'}; its predictions are kept: "
                f"import it again with mliap-tui data import {source or 'SOURCE'} --name {dataset}"
            )
        return pl.scan_parquet(path)

    def _import_source(self, dataset: str) -> str | None:
        """The source the dataset was imported from (its import report), for re-import advice."""
        try:
            sources = json.loads(self.report_path(dataset).read_text()).get("sources") or []
        except (OSError, ValueError):
            return None
        return sources[0] if len(sources) == 1 else None

    def has_materials(self, dataset: str) -> bool:
        return self.materials_path(dataset).is_file()

    # ---- predictions -------------------------------------------------------------------
    def write_prediction_chunk(self, dataset: str, model: str, mode: str, df: pl.DataFrame) -> Path:
        """Commit one chunk of results; the rename makes it visible all at once.

        The dataset folder must exist: a cache that vanished during a run is reported
        (CacheWriteError), not silently re-created without its materials table.
        """
        df = conform(df, PREDICTIONS_SCHEMA)
        if not self.dataset_dir(dataset).is_dir():
            raise CacheWriteError(self.dataset_dir(dataset), FileNotFoundError(2, "the dataset folder vanished"),
                                  "the cache folder was deleted or unmounted during the run: restore it, or import "
                                  "the dataset again, then run the same command")
        name = f"part-{int(1e6 * _now()):020d}-{uuid.uuid4().hex[:8]}-n{df.height}.parquet"
        folder = self.predictions_dir(dataset, model, mode)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheWriteError(folder, exc) from exc
        return write_parquet_atomic(df, folder / name, make_parents=False)

    def prediction_files(self, dataset: str, model: str | None = None, mode: str | None = None) -> list[Path]:
        """Committed chunk and compacted files; any that is not a whole parquet file is quarantined and left out."""
        base = self.predictions_dir(dataset, model, mode)
        if not base.is_dir():
            return []
        good = []
        for p in sorted(q for pattern in PREDICTION_FILE_PATTERNS for q in base.rglob(pattern)):
            error = check_parquet(p)
            if error is None:
                good.append(p)
                continue
            rel = p.relative_to(self.predictions_dir(dataset)).parts
            quarantine(self.root, p, dataset, rel[0] if len(rel) > 2 else model, rel[1] if len(rel) > 2 else mode, error)
        return good

    def scan_predictions(
        self, dataset: str, models: Iterable[str] | None = None, mode: str | None = None
    ) -> pl.LazyFrame:
        """All committed predictions, one row per (material, model, weights, mode): the newest wins.

        A failed row is superseded by a later ok row for the same key, so re-running after a
        fix replaces failures without duplicates. Rows made with other weights under the same
        model id (``weights_fingerprint``) are kept beside each other, never merged.
        Keys never span folders (a folder holds one
        model and mode), so the newest-wins pass runs per folder, and a folder holding only its
        compacted file (:mod:`mliap_tui.cache.compact`, already one row per key) is read as is.
        A scan lists the files when it is made: collect it with :func:`collect_fresh` where a
        compaction may replace them meanwhile.
        """
        files = []
        for model in models if models is not None else [None]:
            files += self.prediction_files(dataset, model, mode)
        if not files:
            return pl.LazyFrame(schema=PREDICTIONS_SCHEMA)
        folders: dict[Path, list[Path]] = {}
        for f in files:
            folders.setdefault(f.parent, []).append(f)
        frames = []
        for group in folders.values():
            lf = pl.scan_parquet(group, schema=PREDICTIONS_SCHEMA, missing_columns="insert")
            if mode is not None:
                lf = lf.filter(pl.col("mode") == mode)
            if not (len(group) == 1 and is_compacted(group[0])):
                lf = newest_wins(lf)
            frames.append(lf)
        return frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical")

    # ---- derived per-row values (recomputable; kept because they are slow) --------------
    def relax_geometry_dir(self, dataset: str, model: str | None = None) -> Path:
        path = self.dataset_dir(dataset) / "derived" / "relax_geometry"
        return path / check_name(model, "model id") if model is not None else path

    def write_relax_geometry_chunk(self, dataset: str, model: str, df: pl.DataFrame) -> Path:
        """Commit one chunk of relaxed-vs-DFT comparisons of ``model`` (RELAX_GEOMETRY_SCHEMA)."""
        df = conform(df, RELAX_GEOMETRY_SCHEMA)
        name = f"part-{int(1e6 * _now()):020d}-{uuid.uuid4().hex[:8]}-n{df.height}.parquet"
        return write_parquet_atomic(df, self.relax_geometry_dir(dataset, model) / name)

    def scan_relax_geometry(self, dataset: str, models: Iterable[str] | None = None) -> pl.LazyFrame:
        """Every committed comparison, one row per RELAX_GEOMETRY_KEY (the newest wins). A
        damaged file is skipped (and moved to quarantine): its rows are simply computed again."""
        files: list[Path] = []
        for model in models if models is not None else [None]:
            base = self.relax_geometry_dir(dataset, model)
            if base.is_dir():
                for path in sorted(base.rglob("part-*.parquet")):
                    error = check_parquet(path)
                    if error is None:
                        files.append(path)
                    else:
                        quarantine(self.root, path, dataset, None, None, error)
        if not files:
            return pl.LazyFrame(schema=RELAX_GEOMETRY_SCHEMA)
        lf = pl.scan_parquet(files, schema=RELAX_GEOMETRY_SCHEMA, missing_columns="insert")
        return lf.unique(subset=list(RELAX_GEOMETRY_KEY), keep="last", maintain_order=True)

    def verify(self, datasets: Iterable[str]) -> tuple[int, list]:
        """Read every file of ``datasets`` in full; quarantine what cannot be read.

        Returns (files checked, quarantine notes). Finds what the cheap frame check of
        :meth:`prediction_files` cannot: damage inside a file whose ends look whole.
        """
        notes, n = [], 0
        for dataset in datasets:
            mats = self.materials_path(dataset)
            paths = ([(mats, None, None)] if mats.is_file() else []) + [
                (p, *p.relative_to(self.predictions_dir(dataset)).parts[:2]) for p in self.prediction_files(dataset)
            ]
            for path, model, mode in paths:
                n += 1
                error = check_parquet(path)
                if error is None:
                    try:
                        pl.read_parquet(path)
                    except Exception as exc:  # noqa: BLE001 - any read failure means a damaged file
                        error = f"unreadable parquet ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})"
                if error is not None:
                    notes.append(quarantine(self.root, path, dataset, model, mode, error))
        return n, notes

    def done_keys(self, dataset: str, model: str, mode: str, include_failed: bool = False,
                  weights_fingerprint: str | None = None) -> set[str]:
        """material_ids already evaluated by ``model`` in ``mode`` (ok ones; failed too if asked).

        With ``weights_fingerprint``, only rows made with those weights count (what the engine
        asks); without it, rows of any weights do.
        """

        def build() -> pl.LazyFrame:
            lf = self.scan_predictions(dataset, [model], mode)
            if weights_fingerprint is not None:
                lf = lf.filter(pl.col("weights_fingerprint") == weights_fingerprint)
            if not include_failed:
                lf = lf.filter(pl.col("status") == "ok")
            return lf.select("material_id")

        return set(collect_fresh(build)["material_id"].to_list())


#: committed prediction files: worker chunks and compacted files (one per folder after ``cache compact``)
PREDICTION_FILE_PATTERNS = ("part-*.parquet", "compact-*.parquet")
COMPACTED_PREFIX = "compact-"


def is_compacted(path: Path) -> bool:
    """A compacted file holds one row per key, sorted by material_id (see :mod:`.compact`)."""
    return Path(path).name.startswith(COMPACTED_PREFIX)


def newest_wins(lf: pl.LazyFrame) -> pl.LazyFrame:
    """One row per (material, model, mode): the one committed last."""
    return lf.sort("created_unix_s").unique(subset=list(PREDICTION_KEY), keep="last", maintain_order=True)


def collect_fresh(build: Callable[[], pl.LazyFrame], attempts: int = 5) -> pl.DataFrame:
    """``build().collect()``, built again when a file it listed vanished before it was read.

    A compaction (or a quarantine) may remove chunk files between the listing of a scan and its
    reading; the rows are then in the compacted file, which a fresh listing finds.
    """
    for attempt in range(attempts):
        lf = build()  # its own errors (an unknown or damaged dataset) are not retried
        try:
            return lf.collect()
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
            _sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


class CorruptMaterials(FileNotFoundError):
    """A dataset's materials table is unreadable (it was quarantined): import the dataset again."""


def _now() -> float:
    import time

    return time.time()


def _sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)
