"""What ``mliap-tui models`` lists: the registry with what can run here and what to do if not.

Plain data (rendered by ``mliap_tui.cli.render.models_table``).
"""

from __future__ import annotations

import json

from mliap_tui.models.registry import REGISTRY, availability


def models_rows() -> list[dict]:
    rows = []
    for spec in REGISTRY.values():
        avail = availability(spec)
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
            }
        )
    return rows


def models_json() -> str:
    return json.dumps(models_rows(), indent=2)
