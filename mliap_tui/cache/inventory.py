"""What a cache holds, counted from its files (``mliap-tui cache info``).

Every count is a count of rows on disk: ``rows`` are the rows stored in a folder's committed
files (from their parquet footers), ``pairs`` the (material, model, mode) keys they hold after the
newest-wins read (what every reader sees; ``rows - pairs`` superseded rows go at the next
compaction), ``failed`` the pairs whose newest row failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import polars as pl

from mliap_tui.cache.claims import LEASE_SUFFIX, ClaimBoard, LeaseState, Owner
from mliap_tui.cache.compact import prediction_folders, rows_in
from mliap_tui.cache.derived import derived_files
from mliap_tui.cache.store import Cache, collect_fresh, is_compacted


@dataclass
class FolderInfo:
    """One (dataset, model, mode) predictions folder."""

    dataset: str
    model: str
    mode: str
    files: int = 0
    compacted: int = 0  # of which compacted files
    rows: int = 0  # rows on disk
    pairs: int = 0  # distinct (material, model, mode) keys, newest row each
    failed: int = 0  # pairs whose newest row failed
    bytes: int = 0
    claims: int = 0  # live leases (a run is evaluating shards of it now)


@dataclass
class DatasetInfo:
    dataset: str
    materials: int = 0
    materials_bytes: int = 0
    derived_files: int = 0
    derived_bytes: int = 0
    folders: list[FolderInfo] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return self.materials_bytes + self.derived_bytes + sum(f.bytes for f in self.folders)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def live_claims(cache: Cache, dataset: str, model: str, mode: str) -> int:
    """Lease files of live owners in a folder's claims (shards being evaluated now)."""
    folder = cache.claims_dir(dataset, model, mode)
    if not folder.is_dir() or not any(folder.glob(f"*{LEASE_SUFFIX}")):
        return 0
    board = ClaimBoard(folder, Owner.current("cache-info"))
    return sum(1 for _, holder in board.leases() if holder.state == LeaseState.LIVE)


def folder_info(cache: Cache, dataset: str, model: str, mode: str) -> FolderInfo:
    files = cache.prediction_files(dataset, model, mode)
    info = FolderInfo(dataset, model, mode, files=len(files), compacted=sum(map(is_compacted, files)),
                      bytes=sum(_size(f) for f in files), claims=live_claims(cache, dataset, model, mode))
    if files:
        info.rows = rows_in(files)
        counts = collect_fresh(lambda: cache.scan_predictions(dataset, [model], mode).select(
            pl.len().alias("pairs"), (pl.col("status") == "failed").sum().alias("failed")))
        info.pairs, info.failed = int(counts["pairs"][0]), int(counts["failed"][0] or 0)
    return info


def cache_info(cache: Cache, datasets: Iterable[str] | None = None) -> list[DatasetInfo]:
    """One DatasetInfo per dataset (default: every dataset of the cache)."""
    out = []
    names = list(datasets) if datasets is not None else cache.datasets()
    for dataset in names:
        info = DatasetInfo(dataset)
        path = cache.materials_path(dataset)
        if path.is_file():
            info.materials_bytes = _size(path)
            info.materials = int(cache.scan_materials(dataset).select(pl.len()).collect().item())
        derived = derived_files(cache, dataset)
        info.derived_files, info.derived_bytes = len(derived), sum(_size(p) for p in derived)
        info.folders = [folder_info(cache, *folder) for folder in prediction_folders(cache, [dataset])]
        out.append(info)
    return out


__all__ = ["DatasetInfo", "FolderInfo", "cache_info", "folder_info", "live_claims"]
