"""What ``mliap-tui models`` lists: the registry and the installed plug-ins, what can run here and
what to do if not, how each model's numbers were verified on this machine, and the weights the
cache has seen.

Verification (``core.vocab.Verification``):

* ``real weights``: the model's default (published) weights passed the canary check here (the
  result is in the cache's weights records, made by a run);
* ``refused``: they failed it;
* ``structural``: only the adapter is checked, against the family's own ASE calculator on a small
  model built at test time (MACE, matgl, ORB in CI) or on the bundled weights (CHGNet, SevenNet);
  the published weights have not been through the canary here;
* ``none``: neither (a plug-in before its first run).

Plain data (rendered by ``mliap_tui.cli.render.models_table``).
"""

from __future__ import annotations

import json
from typing import Any

from mliap_tui.cache import Cache
from mliap_tui.cache.weights import read_weights_record, weights_records
from mliap_tui.core.vocab import CanaryVerdict, Verification
from mliap_tui.models.base import ModelSpec
from mliap_tui.models.identity import resolve_identity
from mliap_tui.models.registry import (
    REGISTRY,
    STRUCTURALLY_CHECKED_FAMILIES,
    availability,
)


def _canary_of(record: dict[str, Any] | None, package_version: str | None) -> dict[str, Any] | None:
    results = (record or {}).get("canary") or {}
    if not results:
        return None
    return results.get(package_version or "") or max(results.values(), key=lambda r: r.get("created_unix_s") or 0)


def verification(spec: ModelSpec, cache: Cache | None) -> tuple[str, dict[str, Any] | None, str | None]:
    """(Verification, the canary result of the default weights or None, their fingerprint or None)."""
    fingerprint, canary = None, None
    try:
        identity = resolve_identity(spec)
        fingerprint = identity.fingerprint
    except OSError:
        identity = None
    if cache is not None and identity is not None and fingerprint is not None:
        canary = _canary_of(read_weights_record(cache, spec.id, fingerprint), identity.package_version)
    if canary is not None and canary.get("verdict") == CanaryVerdict.PASSED:
        return Verification.REAL_WEIGHTS.value, canary, fingerprint
    if canary is not None and canary.get("verdict") == CanaryVerdict.FAILED:
        return Verification.REFUSED.value, canary, fingerprint
    if spec.family in STRUCTURALLY_CHECKED_FAMILIES:
        return Verification.STRUCTURAL.value, canary, fingerprint
    return Verification.NONE.value, canary, fingerprint


def models_rows(cache: Cache | None = None) -> list[dict]:
    """One row per registry model and installed plug-in (see the module docstring)."""
    from mliap_tui.models.plugins import plugin_specs

    rows = []
    for spec in [*REGISTRY.values(), *plugin_specs()[0]]:
        avail = availability(spec)
        verified, canary, fingerprint = verification(spec, cache)
        rows.append(
            {
                "id": spec.id,
                "family": spec.family,
                "version": spec.version,
                "energy_convention": spec.energy_convention,
                "n_elements": len(spec.elements) if spec.elements is not None else None,
                "installed": avail.installed,
                "weights_available": avail.weights_available,
                "ready": avail.installed and avail.weights_available,
                "message": avail.message,
                "plugin": spec.id not in REGISTRY,
                "weights_fingerprint": fingerprint,
                "verified": verified,
                "canary_verdict": canary.get("verdict") if canary else None,
                "canary_mae_ev_per_atom": canary.get("mae_ev_per_atom") if canary else None,
                "canary_reason": canary.get("reason") if canary else None,
            }
        )
    return rows


def plugin_problems() -> list[str]:
    """One line per installed plug-in that could not be loaded."""
    from mliap_tui.models.plugins import plugin_specs

    return plugin_specs()[1]


def weights_seen(cache: Cache | None) -> list[dict[str, Any]]:
    """The weights records of ``cache`` (every model id x weights that made rows or was checked)."""
    if cache is None:
        return []
    out = []
    for record in weights_records(cache):
        canary = _canary_of(record, record.get("package_version"))
        out.append({
            "model": record.get("model"),
            "weights_fingerprint": record.get("fingerprint"),
            "source": record.get("source", ""),
            "package_version": record.get("package_version"),
            "canary_verdict": canary.get("verdict") if canary else None,
            "canary_mae_ev_per_atom": canary.get("mae_ev_per_atom") if canary else None,
            "canary_reason": canary.get("reason") if canary else None,
            "trusted_by_user": bool(record.get("trusted_by_user")),
        })
    return out


def models_json(cache: Cache | None = None) -> str:
    """The rows as a JSON list; each row also lists ``weights_seen``: the weights of that model id
    the cache has records of (fingerprint, source, canary)."""
    seen = weights_seen(cache)
    rows = [{**row, "weights_seen": [w for w in seen if w["model"] == row["id"]]} for row in models_rows(cache)]
    return json.dumps(rows, indent=2, default=str)
