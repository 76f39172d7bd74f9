"""Per-weights records in the cache: which weights made rows, and their canary check.

Layout under the cache root::

    <root>/weights/<model>/<fingerprint>.json

One JSON object per (model id, weights fingerprint): where the weights came from, the package
version that loaded them, and the result of the load-time canary check
(:mod:`mliap_tui.models.canary`) per package version. Prediction rows carry the fingerprint
(``weights_fingerprint``); this record says what it stands for. Plain dicts here: the models layer
owns their meaning.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl

from mliap_tui.cache.store import Cache, check_name, write_json_atomic

#: model label of a weights variant: ``<model id>~<first 7 hex of the fingerprint>``
VARIANT_SEP = "~"
#: label suffix of rows written before the cache recorded weights (schema 1)
UNRECORDED = "unrecorded"

_FINGERPRINT = re.compile(r"^[0-9a-f]{16,64}$")


def weights_dir(cache: Cache) -> Path:
    return Path(cache.root) / "weights"


def weights_record_path(cache: Cache, model: str, fingerprint: str) -> Path:
    if not _FINGERPRINT.match(fingerprint or ""):
        raise ValueError(f"invalid weights fingerprint {fingerprint!r}: expected hex sha256")
    return weights_dir(cache) / check_name(model, "model id") / f"{fingerprint}.json"


def read_weights_record(cache: Cache, model: str, fingerprint: str) -> dict[str, Any] | None:
    """The record of (model, fingerprint), or None when there is none (or it is unreadable)."""
    path = weights_record_path(cache, model, fingerprint)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_weights_record(cache: Cache, model: str, fingerprint: str, record: dict[str, Any]) -> Path:
    """Store (replace) the record of (model, fingerprint), atomically."""
    return write_json_atomic(record, weights_record_path(cache, model, fingerprint))


def weights_records(cache: Cache) -> list[dict[str, Any]]:
    """Every record in the cache, oldest first (by ``first_seen_unix_s``)."""
    base = weights_dir(cache)
    if not base.is_dir():
        return []
    out = []
    for path in sorted(base.glob("*/*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            out.append(data)
    return sorted(out, key=lambda r: (r.get("first_seen_unix_s") or 0.0, r.get("model", "")))


def label_weight_variants(predictions: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame | pl.DataFrame:
    """Tell weights apart in a predictions frame: ``model`` becomes ``<id>~<fingerprint[:7]>`` for a
    model id that has rows of more than one weights in the frame (``<id>~unrecorded`` for rows
    from before weights were recorded), and stays the plain id otherwise. ``model_id`` keeps the
    id. Everything that groups by ``model`` (summary, explorer, export) then shows them apart.
    """
    fp = pl.col("weights_fingerprint")
    variants = fp.fill_null("").n_unique().over("model")
    suffix = pl.when(fp.is_null()).then(pl.lit(UNRECORDED)).otherwise(fp.str.slice(0, 7))
    return predictions.with_columns(
        model_id=pl.col("model"),
        model=pl.when(variants > 1).then(pl.col("model") + pl.lit(VARIANT_SEP) + suffix).otherwise(pl.col("model")),
    )


__all__ = [
    "UNRECORDED",
    "VARIANT_SEP",
    "label_weight_variants","read_weights_record", "weights_dir", "weights_record_path", "weights_records", "write_weights_record"]
