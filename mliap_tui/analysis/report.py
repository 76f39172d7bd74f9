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
    # units live in the table titles (meV/atom) so the columns fit 80 characters
    table.add_column("n", justify="right", no_wrap=True)
    table.add_column("MAE", justify="right", no_wrap=True)
    table.add_column("mean\nsigned", justify="right", no_wrap=True)
    table.add_column("RMSE", justify="right", no_wrap=True)
    table.add_column("% under", justify="right", no_wrap=True)


def _stat_cells(row: dict) -> list[str]:
    return [
        f"{row['n']:,}",
        f"{row['mae'] * MEV:.1f}",
        _signed(row["mean_signed"]),
        f"{row['rmse'] * MEV:.1f}",
        f"{100 * row['frac_under']:.0f}%",
    ]


SHORT_LABEL = {
    "e_per_atom": "E = Eform = Ehull",
    "e_form_per_atom": "Eform",
    "e_above_hull": "Ehull (DFT hull)",
    "e_above_hull_rebuilt": "Ehull rebuilt",
}
SAME_ERROR_NOTE = (
    "E (total energy), Eform and Ehull on the fixed DFT hull share one error per crystal: the same "
    "elemental references and hull enter prediction and DFT."
)


def model_table(table: pl.DataFrame, metrics: list[str], title: str, caption: str = "") -> Table:
    caption = "signed error = prediction - DFT (negative = underpredicted). " + caption
    out = Table(title=title, caption=caption.strip(), caption_justify="left")
    out.add_column("model", no_wrap=True)
    out.add_column("metric", no_wrap=True)
    _stat_columns(out)
    for metric in metrics:
        for row in per_model(table, metric).iter_rows(named=True):
            out.add_row(row["model"], SHORT_LABEL[metric], *_stat_cells(row))
        out.add_section()
    return out


def rebuilt_hull_note(table: pl.DataFrame) -> str:
    """How informative the rebuilt hulls are: crystals whose chemical system has other compounds here."""
    one = table.unique("material_id")
    shared = one.group_by("chemsys").len().filter(pl.col("len") > 1)["len"].sum() or 0
    return (
        f"Ehull rebuilt: hulls rebuilt per chemical system from this dataset's {len(one):,} crystals and the MP "
        f"elemental references, with predicted and with DFT energies; {shared:,} crystals share their chemical "
        "system with another one here (the rest only meet the elemental references; a complete set such as "
        "`data import mp` makes this method meaningful)."
    )


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
    out = Table(title=f"{METRIC_LABEL[metric]} error by {label}, meV/atom")
    out.add_column(label, no_wrap=True)
    out.add_column("model", no_wrap=True)
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
    metrics = ["e_per_atom", "e_above_hull_rebuilt"]
    note = SAME_ERROR_NOTE + " " + rebuilt_hull_note(table)
    out: list = [model_table(table, metrics, f"errors vs DFT, meV/atom ({scope})", note)]
    if not near_hull:
        near = near_hull_rows(table)
        if len(near):
            out.append(model_table(near, ["e_above_hull"], f"near-hull subset (DFT Ehull < 50 meV/atom), meV/atom ({scope})"))
    failures = failures_table(table)
    if failures is not None:
        out.append(failures)
    if by:
        out.append(group_table(table, metric, by))
    return out
