"""Rich tables for ``mliap-tui summary`` (eV/atom in the data, meV/atom on screen)."""

from __future__ import annotations

import polars as pl
from rich.table import Table

from mliap_tui.analysis.aggregate import near_hull as near_hull_rows
from mliap_tui.analysis.aggregate import per_group, per_model
from mliap_tui.analysis.errors import METRIC_LABEL, error_table
from mliap_tui.cache import Cache

MEV = 1000.0


def _signed(value: float | None) -> str:
    if value is None:
        return "-"
    colour = "red" if value < 0 else "green"
    return f"[{colour}]{value * MEV:+.1f}[/{colour}]"


def _stat_columns(table: Table) -> None:
    table.add_column("n", justify="right")
    table.add_column("MAE\nmeV/atom", justify="right")
    table.add_column("mean signed\nmeV/atom", justify="right")
    table.add_column("RMSE\nmeV/atom", justify="right")
    table.add_column("under-\npredicted", justify="right")


def _stat_cells(row: dict) -> list[str]:
    return [
        f"{row['n']:,}",
        f"{row['mae'] * MEV:.1f}",
        _signed(row["mean_signed"]),
        f"{row['rmse'] * MEV:.1f}",
        f"{100 * row['frac_under']:.0f}%",
    ]


def model_table(table: pl.DataFrame, metrics: list[str], title: str) -> Table:
    out = Table(title=title, caption="signed error = prediction - DFT (negative = underpredicted)")
    out.add_column("model")
    out.add_column("metric")
    _stat_columns(out)
    for metric in metrics:
        for row in per_model(table, metric).iter_rows(named=True):
            out.add_row(row["model"], METRIC_LABEL[metric], *_stat_cells(row))
        out.add_section()
    return out


def failures_table(table: pl.DataFrame) -> Table | None:
    failed = table.filter(pl.col("status") == "failed")
    if not len(failed):
        return None
    out = Table(title="failed evaluations (not in the error statistics)")
    out.add_column("model")
    out.add_column("failed", justify="right")
    out.add_column("most common reasons", overflow="fold")
    for model, group in failed.group_by("model", maintain_order=True):
        reasons = group["error"].fill_null("?").str.slice(0, 60).value_counts(sort=True).head(3)
        out.add_row(model[0], str(len(group)), "; ".join(f"{r} (x{n})" for r, n in reasons.iter_rows()))
    return out


def group_table(table: pl.DataFrame, metric: str, by: str) -> Table:
    label = {"dof": "total DOF", "crystal_system": "crystal system", "spacegroup": "space group"}[by]
    out = Table(title=f"{METRIC_LABEL[metric]} error by {label}")
    out.add_column(label)
    out.add_column("model")
    _stat_columns(out)
    previous = None
    for row in per_group(table, metric, by).iter_rows(named=True):
        if previous is not None and row["group"] != previous:
            out.add_section()
        out.add_row(row["group"] if row["group"] != previous else "", row["model"], *_stat_cells(row))
        previous = row["group"]
    return out


def render_summary(
    cache: Cache,
    dataset: str,
    by: str | None = None,
    mode: str = "static",
    metric: str = "e_above_hull",
    near_hull: bool = False,
) -> list:
    table = error_table(cache, dataset, mode=mode, rebuilt_hull=True)
    if not len(table):
        return [f"no {mode} predictions for dataset {dataset!r} yet: mliap-tui run --data {dataset}"]
    scope = f"{dataset}, {mode}"
    if near_hull:
        table = near_hull_rows(table)
        scope += ", DFT Ehull < 50 meV/atom"
    metrics = ["e_per_atom", "e_form_per_atom", "e_above_hull", "e_above_hull_rebuilt"]
    out: list = [model_table(table, metrics, f"errors vs DFT ({scope})")]
    if not near_hull:
        near = near_hull_rows(table)
        if len(near):
            out.append(model_table(near, ["e_above_hull"], f"near-hull subset (DFT Ehull < 50 meV/atom, {scope})"))
    failures = failures_table(table)
    if failures is not None:
        out.append(failures)
    if by:
        out.append(group_table(table, metric, by))
    return out
