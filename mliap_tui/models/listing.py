"""What ``mliap-tui models`` prints: the registry with what can run here and what to do if not."""

from __future__ import annotations

import json

from rich.console import Group
from rich.markup import escape
from rich.table import Table

from mliap_tui.models.registry import REGISTRY, availability

CONVENTION_LABEL = {
    "mp2020": "MP2020",
    "raw_pbe": "raw PBE",
    "r2scan": "r2SCAN",
}
CONVENTION_NOTE = (
    "energy convention: MP2020 = trained on MP2020-corrected energies, compared as is; raw PBE = "
    "the structure's MP2020 correction is added before comparing; r2SCAN = not compared with the PBE hull"
)


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


def models_table() -> Group:
    """The registry as a table, then one line per model that cannot run here saying what to do."""
    rows = models_rows()
    table = Table(title="model registry", caption="ready = package installed and weights on this machine")
    table.add_column("model", no_wrap=True)
    table.add_column("family", no_wrap=True)
    table.add_column("energy", no_wrap=True)
    table.add_column("elements", justify="right", no_wrap=True)
    table.add_column("ready", no_wrap=True)
    for row in rows:
        table.add_row(
            row["id"],
            row["family"],
            CONVENTION_LABEL.get(row["energy_convention"], row["energy_convention"]),
            "any" if row["n_elements"] is None else str(row["n_elements"]),
            "[green]yes[/green]" if row["ready"] else "[red]no[/red]",
        )
    notes = [f"[bold]{row['id']}[/bold]: {escape(row['message'])}" for row in rows if not row["ready"]]
    parts: list = [table, f"[dim]{CONVENTION_NOTE}[/dim]"]
    if notes:
        parts += ["", "[bold]not ready here, and what to do:[/bold]", *notes]
    return Group(*parts)
