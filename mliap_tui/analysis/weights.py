"""Which weights the rows of a table were made with, for the notes under summaries and lists.

A model id whose rows come from more than one weights is shown as ``<id>~<fingerprint[:7]>``
(``cache.weights.label_weight_variants``); these notes say what each label stands for (where the
weights came from, the canary verdict), flag rows that ran only because of ``--trust-model`` and
models whose canary could not judge them (r2SCAN, a plug-in outside the canary's elements).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from mliap_tui.cache import Cache
from mliap_tui.cache.weights import UNRECORDED, read_weights_record
from mliap_tui.core.vocab import CanaryVerdict
from mliap_tui.models.identity import short_source


@dataclass(frozen=True)
class WeightsNote:
    label: str  # the model label in the table
    model_id: str
    fingerprint: str | None
    source: str  # where the weights came from ("" when unknown)
    canary: str  # the canary verdict line ("" when none recorded)
    trust_override: bool  # some rows ran only because of --trust-model

    def text(self) -> str:
        if self.fingerprint is None:
            return f"{self.label}: rows from before mliap-tui recorded weights ({UNRECORDED}): their weights are unknown"
        parts = [short_source(self.source) or "source not recorded"]
        if self.canary:
            parts.append(f"canary {self.canary}")
        if self.trust_override:
            parts.append("FAILED the canary, run with --trust-model")
        return f"{self.label}: " + "; ".join(parts)


def canary_line(record: dict, package_version: str | None = None) -> str:
    """The canary verdict of a weights record (for ``package_version``, else the newest)."""
    results = record.get("canary") or {}
    if not results:
        return ""
    data = results.get(package_version or "") or max(results.values(), key=lambda r: r.get("created_unix_s") or 0)
    mae = data.get("mae_ev_per_atom")
    if mae is None:
        return f"{data.get('verdict', '?')} ({data.get('reason', '')})"
    return f"{data.get('verdict', '?')}, MAE {1000 * mae:.0f} meV/atom"


def weights_notes(cache: Cache, table: pl.DataFrame) -> list[WeightsNote]:
    """A note per model label that needs one: weights variants and rows run with --trust-model."""
    if table.is_empty() or "weights_fingerprint" not in table.columns:
        return []
    per = (
        table.group_by("model", "model_id", "weights_fingerprint")
        .agg(pl.col("trust_override").fill_null(False).any().alias("trust"))
        .sort("model")
    )
    out = []
    for label, model_id, fp, trust in per.iter_rows():
        record = read_weights_record(cache, model_id, fp) if fp else None
        canary = canary_line(record or {})
        if label == model_id and not trust and canary.startswith(CanaryVerdict.PASSED.value):
            continue  # one weights, and they passed the canary: nothing to say
        out.append(WeightsNote(label, model_id, fp, (record or {}).get("source", ""), canary, bool(trust)))
    return out


def provenance(cache: Cache, dataset: str) -> pl.DataFrame:
    """Who made the rows of ``dataset``: one row per (model label, mode) with the model id, weights
    fingerprint, package version(s), devices, runs, first and last commit (Unix s), ok/failed
    counts, where the weights came from and the canary verdict. For reports and provenance notes."""
    from mliap_tui.cache.weights import label_weight_variants

    preds = label_weight_variants(cache.scan_predictions(dataset)).collect()
    if preds.is_empty():
        return pl.DataFrame()
    per = (
        preds.group_by("model", "mode")
        .agg(
            pl.col("model_id").first(),
            pl.col("weights_fingerprint").drop_nulls().first(),
            pl.col("package_version").drop_nulls().unique().sort().str.join(", ").alias("package_versions"),
            pl.col("device").drop_nulls().unique().sort().str.join(", ").alias("devices"),
            pl.col("run_id").n_unique().alias("runs"),
            pl.col("created_unix_s").min().alias("first_unix_s"),
            pl.col("created_unix_s").max().alias("last_unix_s"),
            (pl.col("status") == "ok").sum().alias("ok"),
            (pl.col("status") == "failed").sum().alias("failed"),
            pl.col("trust_override").fill_null(False).any().alias("trust_override"),
        )
        .sort("model", "mode")
    )
    sources, canaries = [], []
    for model_id, fp in per.select("model_id", "weights_fingerprint").iter_rows():
        record = read_weights_record(cache, model_id, fp) if fp else None
        sources.append(short_source((record or {}).get("source", "")) if record else "")
        canaries.append(canary_line(record or {}))
    return per.with_columns(pl.Series("source", sources, pl.Utf8), pl.Series("canary", canaries, pl.Utf8))


__all__ = ["WeightsNote", "canary_line", "provenance", "weights_notes"]
