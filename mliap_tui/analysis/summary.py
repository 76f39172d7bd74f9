"""What ``mliap-tui summary`` reports, as data: per-model error statistics of the tidy error
table, the near-hull subset, failures, an optional breakdown, and the notes that explain them.

eV/atom throughout (renderers convert to meV/atom). Rendering lives in ``mliap_tui.cli.render``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from mliap_tui.analysis.aggregate import near_hull as near_hull_rows
from mliap_tui.analysis.aggregate import per_group, per_model
from mliap_tui.analysis.errors import ERROR_INPUT_COLUMNS, error_table
from mliap_tui.cache import Cache

SAME_ERROR_NOTE = (
    "E (total energy), Eform and Ehull on the fixed DFT hull share one error per crystal: the same "
    "elemental references and hull enter prediction and DFT."
)
#: The label of the total-energy row, which stands for all three fixed-hull metrics.
SAME_ERROR_LABEL = "E = Eform = Ehull"


#: the material columns a summary reads (the error table carries them on every prediction row)
SUMMARY_MATERIAL_COLUMNS = [*ERROR_INPUT_COLUMNS, "chemsys", "total_dof", "crystal_system", "spacegroup_number",
                            "spacegroup_symbol"]


def rebuilt_hull_note(table: pl.DataFrame) -> str:
    """How informative the rebuilt hulls are: crystals whose chemical system has other compounds here."""
    one = table.select("material_id", "chemsys").unique("material_id")
    shared = one.group_by("chemsys").len().filter(pl.col("len") > 1)["len"].sum() or 0
    return (
        f"Ehull rebuilt: hulls rebuilt per chemical system from this dataset's {len(one):,} crystals and the MP "
        f"elemental references, with predicted and with DFT energies; {shared:,} crystals share their chemical "
        "system with another one here (the rest only meet the elemental references; a complete set such as "
        "`data import mp` makes this method meaningful)."
    )


def failure_reasons(table: pl.DataFrame, top: int = 3) -> list[tuple[str, int, list[tuple[str, int]]]]:
    """(model, failed rows, [(reason, count)] most common first) per model with failed rows."""
    failed = table.filter(pl.col("status") == "failed")
    out = []
    for (model,), group in failed.group_by("model", maintain_order=True):
        reasons = group["error"].fill_null("?").str.slice(0, 60).value_counts(sort=True).head(top)
        out.append((model, len(group), [(r, int(n)) for r, n in reasons.iter_rows()]))
    return out


@dataclass
class StatsBlock:
    """Per-model statistics of some metrics on some rows, with a title and caption."""

    title: str
    metrics: list[str]
    stats: dict[str, pl.DataFrame]  # metric -> per_model() frame
    caption: str = ""


@dataclass
class Summary:
    dataset: str
    mode: str
    scope: str  # "sample, static[, DFT Ehull < 50 meV/atom]"
    blocks: list[StatsBlock] = field(default_factory=list)
    failures: list[tuple[str, int, list[tuple[str, int]]]] = field(default_factory=list)
    by: str | None = None
    metric: str = "e_above_hull"
    grouped: pl.DataFrame | None = None  # per_group() frame when ``by`` is given
    empty_reason: str | None = None


def summarize(
    cache: Cache,
    dataset: str,
    by: str | None = None,
    mode: str = "static",
    metric: str = "e_above_hull",
    near_hull: bool = False,
) -> Summary:
    """The summary of ``dataset``'s ``mode`` predictions (see the module docstring)."""
    table = error_table(cache, dataset, mode=mode, rebuilt_hull=True, sort=False, material_columns=SUMMARY_MATERIAL_COLUMNS)
    out = Summary(dataset=dataset, mode=mode, scope=f"{dataset}, {mode}", by=by, metric=metric)
    if not len(table):
        out.empty_reason = f"no {mode} predictions for dataset {dataset!r} yet: mliap-tui run --data {dataset}"
        return out
    if near_hull:
        table = near_hull_rows(table)
        out.scope += ", DFT Ehull < 50 meV/atom"
    metrics = ["e_per_atom", "e_above_hull_rebuilt"]
    out.blocks.append(StatsBlock(
        f"errors vs DFT, meV/atom ({out.scope})", metrics, {m: per_model(table, m) for m in metrics},
        SAME_ERROR_NOTE + " " + rebuilt_hull_note(table),
    ))
    if not near_hull:
        near = near_hull_rows(table)
        if len(near):
            out.blocks.append(StatsBlock(
                f"near-hull subset (DFT Ehull < 50 meV/atom), meV/atom ({out.scope})", ["e_above_hull"],
                {"e_above_hull": per_model(near, "e_above_hull")},
            ))
    out.failures = failure_reasons(table)
    if by:
        out.grouped = per_group(table, metric, by)
    return out
