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


__all__ = ["WeightsNote", "canary_line", "weights_notes"]
