"""What ``mliap-tui summary`` reports, as data: per-model error statistics of the tidy error
table, the near-hull subset, failures, an optional breakdown, and the notes that explain them.

eV/atom throughout (renderers convert to meV/atom). Rendering lives in ``mliap_tui.cli.render``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import polars as pl

from mliap_tui.analysis.aggregate import near_hull as near_hull_rows
from mliap_tui.analysis.aggregate import per_group, per_model
from mliap_tui.analysis.errors import ERROR_INPUT_COLUMNS, error_table
from mliap_tui.analysis.weights import WeightsNote, weights_notes
from mliap_tui.cache import Cache
from mliap_tui.core.vocab import GROUPINGS, METRIC_SYMBOL, METRICS, Mode

SAME_ERROR_NOTE = (
    "E (total energy), Eform and Ehull on the fixed DFT hull share one error per crystal: the same "
    "elemental references and hull enter prediction and DFT."
)
#: The label of the total-energy row, which stands for all three fixed-hull metrics.
SAME_ERROR_LABEL = "E = Eform = Ehull"


@dataclass(frozen=True)
class DatasetHolds:
    """What reference data a dataset carries, which decides what can be compared (crystals)."""

    n: int
    mp2020_energies: int  # DFT total energies on the MP2020 scale
    thermo: int  # formation energies or Ehull (the MP hull)
    own_energies: int  # DFT energies from the set's own settings only (not comparable with MP)
    forces: int  # DFT forces

    @property
    def compares_energies(self) -> bool:
        return self.mp2020_energies > 0

    def next_step(self, dataset: str, forces_computed: bool = True, mode: str = Mode.STATIC) -> str:
        """The command a user most likely wants after ``run`` (in ``mode``) on this dataset."""
        if mode == Mode.RELAX and self.compares_energies:
            return f"mliap-tui study dof --data {dataset}   (static vs relaxed; S in the app)"
        if self.forces and not self.compares_energies:
            if not forces_computed:
                return f"mliap-tui run --data {dataset} --models ... --forces   (its DFT forces need predicted ones)"
            return f"mliap-tui softening --data {dataset}   (and rare-events; or f in the app)"
        if self.thermo:
            return f"mliap-tui summary --data {dataset} --by dof   (or mliap-tui to explore)"
        return f"mliap-tui summary --data {dataset}   (or mliap-tui to explore)"


def dataset_holds(cache: Cache, dataset: str) -> DatasetHolds:
    row = cache.scan_materials(dataset).select(
        pl.len(),
        pl.col("e_per_atom_dft_mp2020").is_not_null().sum(),
        (pl.col("e_form_per_atom_dft_mp2020").is_not_null() | pl.col("e_above_hull_dft_mp2020").is_not_null()).sum(),
        (pl.col("e_per_atom_dft_raw").is_not_null() & pl.col("e_per_atom_dft_mp2020").is_null()).sum(),
        pl.col("forces_dft_ev_per_ang").is_not_null().sum(),
    ).collect().row(0)
    return DatasetHolds(*(int(x) for x in row))


def not_compared(models: Iterable[str]) -> dict[str, str]:
    """Models whose predictions are not compared with the DFT energies, and why (registry models
    on another energy convention, e.g. r2SCAN)."""
    from mliap_tui.cache.weights import VARIANT_SEP
    from mliap_tui.core.vocab import EnergyConvention
    from mliap_tui.models.registry import REGISTRY

    out = {}
    for m in models:
        spec = REGISTRY.get(m.split(VARIANT_SEP)[0])  # a model~fingerprint label is still that model
        reason = EnergyConvention(spec.energy_convention).not_compared_because if spec is not None else None
        if reason:
            out[m] = reason
    return out


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
    same_error: bool = True  # the total-energy row stands for Eform and the fixed-hull Ehull too


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
    notes: list[str] = field(default_factory=list)  # models left out of the statistics, and why
    weighting: str = "crystal"  # by element: each crystal counts once, or by the element's fraction
    weights: list[WeightsNote] = field(default_factory=list)  # what model~fingerprint labels stand for


def summarize(
    cache: Cache,
    dataset: str,
    by: str | None = None,
    mode: str = "static",
    metric: str = "e_above_hull",
    near_hull: bool = False,
    weighting: str = "crystal",
) -> Summary:
    """The summary of ``dataset``'s ``mode`` predictions (see the module docstring)."""
    out = Summary(dataset=dataset, mode=mode, scope=f"{dataset}, {mode}", by=by, metric=metric)
    holds = dataset_holds(cache, dataset)
    if not holds.compares_energies:
        what = ("its DFT energies come from its own settings, not the Materials Project's"
                if holds.own_energies else "it has no DFT energies on the MP2020 scale")
        out.empty_reason = f"dataset {dataset!r}: energies are not compared with DFT here ({what})."
        if holds.forces:
            out.empty_reason += (f" It carries DFT forces: mliap-tui softening --data {dataset} and "
                                 f"mliap-tui rare-events --data {dataset} (after run --forces).")
        return out
    columns = [*SUMMARY_MATERIAL_COLUMNS, *(["elements"] if by == "element" else [])]
    table = error_table(cache, dataset, mode=mode, rebuilt_hull=bool(holds.thermo), sort=False, material_columns=columns)
    if not len(table):
        out.empty_reason = f"no {mode} predictions for dataset {dataset!r} yet: mliap-tui run --data {dataset}"
        return out
    if near_hull:
        table = near_hull_rows(table)
        out.scope += ", DFT Ehull < 50 meV/atom"
    metrics = ["e_per_atom", "e_above_hull_rebuilt"] if holds.thermo else ["e_per_atom"]
    caption = SAME_ERROR_NOTE + " " + rebuilt_hull_note(table) if holds.thermo else (
        "total energies only: this dataset has no formation energies or Ehull to compare")
    out.blocks.append(StatsBlock(
        f"errors vs DFT, meV/atom ({out.scope})", metrics, {m: per_model(table, m) for m in metrics}, caption,
        same_error=bool(holds.thermo),
    ))
    if not near_hull and holds.thermo:
        near = near_hull_rows(table)
        if len(near):
            out.blocks.append(StatsBlock(
                f"near-hull subset (DFT Ehull < 50 meV/atom), meV/atom ({out.scope})", ["e_above_hull"],
                {"e_above_hull": per_model(near, "e_above_hull")},
            ))
    out.failures = failure_reasons(table)
    out.weights = weights_notes(cache, table)
    for model, reason in not_compared(table["model"].unique().to_list()).items():
        out.notes.append(f"{model}: {reason} (its {table.filter(pl.col('model') == model).height:,} predictions are "
                         "cached, not in these tables)")
    if by == "element":
        from mliap_tui.analysis.elements import element_errors

        if weighting == "fraction":
            species = cache.scan_materials(dataset).select("material_id", "species").collect()
            table = table.join(species, on="material_id", how="left")
        out.grouped = element_errors(table, metric, weighting).sort("z", "model").rename({"element": "group"})
        out.weighting = weighting
    elif by:
        dft_column = METRICS[metric][0]
        if metric != "e_per_atom" and not table[dft_column].is_not_null().any():
            # e.g. WBM: total energies only. Say so and show what it has, not an empty table.
            out.notes.append(f"{dataset} has no DFT {METRIC_SYMBOL[metric]} values: the table by "
                             f"{GROUPINGS[by]} shows the total-energy error instead")
            out.metric = metric = "e_per_atom"
        if by == "near_hull" and not table["e_above_hull_dft_mp2020"].is_not_null().any():
            out.notes.append(f"{dataset} has no DFT Ehull: no near-hull split (try --by dof)")
        out.grouped = per_group(table, metric, by)
    return out
