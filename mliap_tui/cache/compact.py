"""Compaction: the committed chunk files of one (dataset, model, mode) merged into one file.

A run commits its rows in chunks (``part-*.parquet``, a few hundred rows each), and every reader
then pays for a newest-wins pass over all of them. Compaction reads a **snapshot** of the
folder's files, keeps the newest row of each (material, model, mode) (what every reader sees),
sorts it by material_id and writes it as one ``compact-<time>-<id>-n<rows>.parquet`` file
(temporary file + atomic rename), then deletes the files of the snapshot, and only those:

* a chunk a concurrent writer commits meanwhile is not in the snapshot and stays, so no row is
  lost; readers merge it with the compacted file as with any chunk (newest wins);
* between the rename and the deletions a reader sees the compacted rows twice (as the file and as
  the chunks), which the newest-wins pass folds into one; a reader whose listing named a chunk
  deleted before it read it lists again (:func:`mliap_tui.cache.store.collect_fresh`);
* a killed compaction leaves either the old chunks, or the compacted file with some old chunks:
  the same rows either way, merged again by the next compaction.

Two compactions of one folder do not run at once: the second finds the first's lease
(:mod:`mliap_tui.cache.claims`, key ``compaction``) and skips. Runs compact what they committed
when they end; ``mliap-tui cache compact`` compacts a whole cache.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import polars as pl

from mliap_tui.cache.claims import ClaimBoard, Heartbeat, Owner
from mliap_tui.cache.schema import PREDICTIONS_SCHEMA
from mliap_tui.cache.store import (
    COMPACTED_PREFIX,
    Cache,
    is_compacted,
    newest_wins,
    write_parquet_atomic,
)

COMPACTION_KEY = "compaction"


@dataclass
class CompactResult:
    """What one compaction did. Rows are rows on disk: ``rows_before`` in the merged files,
    ``rows_after`` in the compacted file (fewer when superseded rows were dropped)."""

    dataset: str
    model: str
    mode: str
    files_before: int = 0
    files_merged: int = 0
    rows_before: int = 0
    rows_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    path: str | None = None
    seconds: float = 0.0
    skipped: str | None = None  # why nothing was done
    removed: list[str] = field(default_factory=list, repr=False)

    @property
    def changed(self) -> bool:
        return self.path is not None


def prediction_folders(cache: Cache, datasets: Iterable[str] | None = None) -> list[tuple[str, str, str]]:
    """(dataset, model, mode) of every predictions folder that holds committed files."""
    out = []
    for dataset in datasets if datasets is not None else cache.datasets():
        base = cache.predictions_dir(dataset)
        if not base.is_dir():
            continue
        for model_dir in sorted(p for p in base.iterdir() if p.is_dir()):
            for mode_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
                if any(mode_dir.glob("*.parquet")):
                    out.append((dataset, model_dir.name, mode_dir.name))
    return out


def rows_in(files: Iterable[Path]) -> int:
    """Rows stored in parquet ``files`` (read from their footers)."""
    files = list(files)
    if not files:
        return 0
    return int(pl.scan_parquet(files, schema=PREDICTIONS_SCHEMA, missing_columns="insert").select(pl.len()).collect().item())


def compact(cache: Cache, dataset: str, model: str, mode: str, owner: Owner | None = None) -> CompactResult:
    """Merge the committed files of ``dataset``/``model``/``mode`` into one (see the module docstring)."""
    t0 = time.perf_counter()
    result = CompactResult(dataset, model, mode)
    board = ClaimBoard(cache.claims_dir(dataset, model, mode), owner or Owner.current("compaction"))
    if board.try_claim(COMPACTION_KEY, {"what": "compaction"}) is None:
        result.skipped = f"another process is compacting it ({board.holder(COMPACTION_KEY).describe()})"
        return result
    try:
        with Heartbeat(board):
            for attempt in range(5):
                files = cache.prediction_files(dataset, model, mode)
                result.files_before = len(files)
                if not files or (len(files) == 1 and is_compacted(files[0])):
                    result.skipped = "nothing to compact" if not files else "already compact"
                    return result
                # the snapshot: exactly these files are merged and then removed
                try:
                    frame = newest_wins(pl.scan_parquet(files, schema=PREDICTIONS_SCHEMA, missing_columns="insert")
                                        ).sort("material_id").collect()
                    break
                except FileNotFoundError:  # one was quarantined meanwhile: list again
                    if attempt == 4:
                        raise
            result.rows_before = rows_in(files)
            result.bytes_before = sum(_size(f) for f in files)
            name = f"{COMPACTED_PREFIX}{int(time.time() * 1e6):020d}-{uuid.uuid4().hex[:8]}-n{frame.height}.parquet"
            path = write_parquet_atomic(frame, cache.predictions_dir(dataset, model, mode) / name,
                                        metadata={"mliap_tui_compacted_files": str(len(files))}, make_parents=False)
            for f in files:
                try:
                    f.unlink()
                    result.removed.append(str(f))
                except FileNotFoundError:
                    pass
            result.files_merged = len(files)
            result.rows_after = frame.height
            result.bytes_after = _size(path)
            result.path = str(path)
            return result
    finally:
        board.release_all()
        result.seconds = time.perf_counter() - t0


def compact_all(cache: Cache, datasets: Iterable[str] | None = None, owner: Owner | None = None) -> list[CompactResult]:
    """Compact every predictions folder of ``datasets`` (default: all)."""
    return [compact(cache, *folder, owner=owner) for folder in prediction_folders(cache, datasets)]


def _size(path: Path) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


__all__ = ["COMPACTION_KEY", "CompactResult", "compact", "compact_all", "prediction_folders", "rows_in"]
