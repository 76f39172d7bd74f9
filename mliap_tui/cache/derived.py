"""Derived tables kept next to the predictions, so expensive per-row results are computed once.

Some results derived from the predictions take long to compute (the rebuilt-hull Ehull builds a
phase diagram of every chemical system: minutes on the whole Materials Project). The layer that
computes them (``mliap_tui.analysis``) stores them here, one table per (dataset, model, mode,
derivation)::

    <cache>/datasets/<dataset>/derived/<model>/<mode>/<name>.parquet

each tagged (parquet metadata) with the **version** of the inputs it was computed from: a string
the computing layer makes from the rows that went in (a digest of the predictions and DFT values
and the derivation's own version). A lookup with another version misses, so a new run, a
re-import or a changed derivation recomputes it, and compaction (same rows) does not.
This module only stores and looks up; it knows nothing of hulls.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from mliap_tui.cache.quarantine import check_parquet
from mliap_tui.cache.store import Cache, check_name, write_parquet_atomic

VERSION_KEY = "mliap_tui_derived_version"


def derived_dir(cache: Cache, dataset: str) -> Path:
    return cache.dataset_dir(dataset) / "derived"


def model_folder(model: str) -> str:
    """The folder of a model label: ``id~fingerprint`` (one weights set of several under an id,
    ``cache.weights.label_weight_variants``) becomes ``id+wfingerprint``."""
    from mliap_tui.cache.weights import VARIANT_SEP

    return check_name(model.replace(VARIANT_SEP, "+w"), "model id")


def derived_path(cache: Cache, dataset: str, model: str, mode: str, name: str) -> Path:
    return derived_dir(cache, dataset) / model_folder(model) / check_name(mode, "mode") / f"{check_name(name, 'derived table name')}.parquet"


def stored_version(path: Path) -> str | None:
    """The version a derived file was computed for (None when absent or unreadable)."""
    if not path.is_file() or check_parquet(path) is not None:
        return None
    try:
        return pl.read_parquet_metadata(path).get(VERSION_KEY)
    except Exception:  # noqa: BLE001 - a damaged file is a miss; it is rewritten
        return None


def read_derived(cache: Cache, dataset: str, model: str, mode: str, name: str, version: str) -> pl.DataFrame | None:
    """The stored table if it was computed for ``version``; None otherwise (absent, stale, damaged)."""
    path = derived_path(cache, dataset, model, mode, name)
    if stored_version(path) != version:
        return None
    try:
        return pl.read_parquet(path)
    except Exception:  # noqa: BLE001 - damaged: recompute
        return None


def write_derived(cache: Cache, dataset: str, model: str, mode: str, name: str, version: str, df: pl.DataFrame) -> Path:
    """Store ``df`` as the derived table ``name`` of (dataset, model, mode), computed for ``version``.

    Replaces an older version atomically. Raises CacheWriteError when the disk refuses it
    (callers that can go on without the stored copy catch it).
    """
    return write_parquet_atomic(df, derived_path(cache, dataset, model, mode, name), metadata={VERSION_KEY: version})


def derived_files(cache: Cache, dataset: str) -> list[Path]:
    base = derived_dir(cache, dataset)
    return sorted(base.rglob("*.parquet")) if base.is_dir() else []


__all__ = ["VERSION_KEY", "derived_dir", "derived_files", "derived_path", "read_derived", "stored_version", "write_derived"]
