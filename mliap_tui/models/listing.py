"""What ``mliap-tui models`` prints: the registry with what can run here and what to do if not."""

from __future__ import annotations

import json

from rich.table import Table

from mliap_tui.models.registry import REGISTRY, availability

CONVENTION_LABEL = {
    "mp2020": "MP2020-corrected",
    "raw_pbe": "raw PBE (+MP2020 added)",
    "r2scan": "r2SCAN (not compared)",
}


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


def models_table() -> Table:
    table = Table(title="model registry", caption="ready = package installed and weights loadable on this machine")
    for col in ("model", "family", "energy convention", "elements", "ready", "notes"):
        table.add_column(col, overflow="fold")
    for row in models_rows():
        ready = "[green]yes[/green]" if row["ready"] else "[red]no[/red]"
        table.add_row(
            row["id"],
            row["family"],
            CONVENTION_LABEL.get(row["energy_convention"], row["energy_convention"]),
            "?" if row["n_elements"] is None else str(row["n_elements"]),
            ready,
            row["message"],
        )
    return table
