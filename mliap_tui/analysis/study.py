"""The static-vs-relaxed symmetry study: is a model's energy error there at the DFT geometry
(static), does it appear when the model relaxes the crystal, and does it grow with DOF?

For each model, on the crystals of one dataset:

* errors of total energy, formation energy, Ehull on the fixed DFT hull and Ehull on the rebuilt
  hull (:mod:`mliap_tui.analysis.errors`: MP2020 convention, prediction minus DFT) in three views:
  ``static`` (model at the DFT structure), ``relax`` (model-relaxed energy against the DFT energy)
  and ``difference`` (relaxed minus static, the same crystals paired);
* what the relaxation did: relaxation energy ``E_relaxed - E_static`` (per atom), RMS
  displacement to the DFT structure and volume change (:mod:`.relax_geometry`), and the space
  group kept / lowered / raised (:func:`mliap_tui.symmetry.symmetry_change`);
* all of it for every crystal and per total-DOF bin, crystal system and near-hull band, with
  bootstrap 95 % intervals of each MAE and mean signed error, and the DOF trend: the slope of
  the error on total DOF (eV/atom per DOF) with its interval and Spearman's rank correlation
  with its p-value (:mod:`.uncertainty`).

Pairing: by default a model's static and relaxed statistics use the same crystals (those with an
ok row in both modes), so "static vs relaxed" compares like with like; a model without relaxed
rows shows its static statistics on every crystal. ``paired=False`` uses every ok row of each mode.

A dataset without DFT Ehull (e.g. the WBM set of matcalc, total energies only) falls back to the
metrics it has (total energy, and Ehull on hulls rebuilt from its own entries), saying so in
``StudyData.fallback``; one without DFT energies on the MP2020 scale keeps the relaxation part.

Tables are tidy polars frames keyed by ``model``, ``view`` (or ``mode``) and ``grouping``/``group``;
energies are eV/atom (``*_ev_per_atom``), lengths Å, volumes %, slopes eV/atom per DOF.
Rendering lives in ``mliap_tui.cli.render`` and the Study screen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import polars as pl

from mliap_tui.analysis.aggregate import with_group
from mliap_tui.analysis.errors import add_rebuilt_hull, error_table
from mliap_tui.analysis.summary import dataset_holds, not_compared, rebuilt_hull_note
from mliap_tui.analysis.uncertainty import (
    DEFAULT_LEVEL,
    DEFAULT_N_BOOT,
    DEFAULT_SEED,
    MIN_N_INTERVAL,
    SIGNIFICANCE_P,
    bootstrap_errors,
    bootstrap_paired_delta,
    trend,
)
from mliap_tui.cache import Cache
from mliap_tui.cache.weights import label_weight_variants
from mliap_tui.core.units import (
    MEV_PER_EV,
    format_interval,
    format_p_value,
    format_signed,
    plural,
)
from mliap_tui.core.vocab import (
    GROUPINGS,
    METRIC_LABEL,
    METRICS,
    NEAR_HULL_EV_PER_ATOM,
    STUDY_GROUPINGS,
    STUDY_VIEWS,
    SYMMETRY_CHANGES,
    Mode,
)

#: The grouping of every crystal (the headline rows).
ALL = "all"
#: Metrics in the order the study shows them.
STUDY_METRICS: tuple[str, ...] = tuple(METRICS)
#: Columns of the per-crystal rows that the statistics read.
_ROW_COLUMNS = (
    "material_id", "formula", "chemsys", "model", "model_id", "weights_fingerprint", "mode", "total_dof",
    "crystal_system", "spacegroup_number", "spacegroup_symbol", "e_above_hull_dft_mp2020",
)


@dataclass
class StudyData:
    """The per-crystal rows of a study and what they can show (see the module docstring).

    ``rows``: one row per (material, model, mode) ok evaluation that counts, with the signed
    errors ``d_*`` (eV/atom) of every metric, the grouping columns, and for relaxed rows
    ``e_relax_minus_static_ev_per_atom``, ``matched``, ``rmsd_ang``, ``volume_change_pct``,
    ``symmetry_change``, ``relax_steps``.
    """

    dataset: str
    rows: pl.DataFrame
    models: list[str] = field(default_factory=list)
    relaxed_models: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)  # metrics with at least one error
    groupings: list[str] = field(default_factory=list)  # study groupings this dataset supports
    notes: list[str] = field(default_factory=list)
    fallback: str | None = None  # one line: what this dataset lacks and what is shown instead
    empty_reason: str | None = None
    near_hull_only: bool = False
    paired: bool = True
    relax_command: str | None = None  # how to get the relaxed rows that are missing
    rebuilt_hull_note: str | None = None  # how informative the rebuilt hulls are here

    @property
    def missing_relax(self) -> list[str]:
        return [m for m in self.models if m not in self.relaxed_models]

    def default_metric(self) -> str | None:
        for metric in ("e_above_hull", "e_per_atom", *self.metrics):
            if metric in self.metrics:
                return metric
        return None


def interval_note(n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED, level: float = DEFAULT_LEVEL) -> str:
    """What every ``[lo,hi]`` of the study means, in one line."""
    return (f"[lo,hi] = {100 * level:g}% bootstrap percentile interval ({n_boot:,} resamples of the crystals, "
            f"seed {seed}; none under {MIN_N_INTERVAL} crystals)")


# ---- loading ------------------------------------------------------------------------------------


def _failure_notes(both: pl.DataFrame, dataset: str) -> list[str]:
    notes = []
    failed = both.filter(pl.col("status") == "failed").group_by("model", "mode").len().sort("model", "mode")
    for model, mode, n in failed.iter_rows():
        notes.append(f"{model}: {plural(n, f'{mode} row')} failed, left out (mliap-tui summary --data {dataset} "
                     f"--mode {mode} lists why)")
    return notes


def _pair(ok: pl.DataFrame, notes: list[str]) -> pl.DataFrame:
    """Keep, for each model with relaxed rows, only the crystals it has in both modes."""
    key = ["material_id", "model"]
    static = ok.filter(pl.col("mode") == Mode.STATIC)
    relax = ok.filter(pl.col("mode") == Mode.RELAX)
    relaxed_models = set(relax["model"].to_list())
    common = static.select(key).join(relax.select(key), on=key, how="inner")
    for model in sorted(relaxed_models):
        n_s = static.filter(pl.col("model") == model).height
        n_r = relax.filter(pl.col("model") == model).height
        n_c = common.filter(pl.col("model") == model).height
        if n_s > n_c:
            notes.append(f"{model}: static and relaxed on the same {plural(n_c, 'crystal')} "
                         f"({n_s:,} have static results; --unpaired uses all)")
        if n_r > n_c:
            notes.append(f"{model}: {plural(n_r - n_c, 'relaxed crystal')} without a static result left out "
                         "(run static on them to pair them)")
    keep_static = pl.concat([static.filter(~pl.col("model").is_in(list(relaxed_models))),
                             static.join(common, on=key, how="semi")])
    return pl.concat([keep_static, relax.join(common, on=key, how="semi")])


def _relaxation_columns(cache: Cache, dataset: str, ok: pl.DataFrame, model_ids: list[str] | None,
                        geometry: bool, compute: bool, n_jobs: int | None,
                        on_progress: Callable[[int, int], None] | None,
                        should_stop: Callable[[], bool] | None) -> pl.DataFrame:
    """Relaxed rows get E_relaxed - E_static, steps, and the geometry comparison."""
    key = ["material_id", "model_id", "weights_fingerprint"]
    static_e = ok.filter(pl.col("mode") == Mode.STATIC).select(
        *key, pl.col("e_per_atom_pred_native").alias("_e_static"))
    extra = (cache.scan_predictions(dataset, model_ids, Mode.RELAX)
             .select("material_id", pl.col("model").alias("model_id"), "weights_fingerprint", "created_unix_s",
                     "relax_steps")
             .collect())
    out = (ok.join(static_e, on=key, how="left", nulls_equal=True)
           .join(extra, on=key, how="left", nulls_equal=True)
           .with_columns(
               e_relax_minus_static_ev_per_atom=pl.when(pl.col("mode") == Mode.RELAX)
               .then(pl.col("e_per_atom_pred_native") - pl.col("_e_static")).otherwise(None),
               relax_steps=pl.when(pl.col("mode") == Mode.RELAX).then(pl.col("relax_steps")).otherwise(None),
           ).drop("_e_static"))
    geo_cols = ["matched", "rmsd_ang", "max_dist_ang", "volume_change_pct", "symmetry_change",
                "spacegroup_number_relaxed"]
    if geometry and out.filter(pl.col("mode") == Mode.RELAX).height:
        from mliap_tui.analysis.relax_geometry import relax_geometry

        geo = relax_geometry(cache, dataset, model_ids, compute=compute, n_jobs=n_jobs, on_progress=on_progress,
                             should_stop=should_stop).select(
            "material_id", pl.col("model").alias("model_id"), "weights_fingerprint",
            pl.col("pred_created_unix_s").alias("created_unix_s"), *geo_cols)
        out = out.join(geo.with_columns(mode=pl.lit(Mode.RELAX.value)),
                       on=[*key, "created_unix_s", "mode"], how="left", nulls_equal=True)
    else:
        out = out.with_columns(matched=pl.lit(None, pl.Boolean), rmsd_ang=pl.lit(None, pl.Float64),
                               max_dist_ang=pl.lit(None, pl.Float64), volume_change_pct=pl.lit(None, pl.Float64),
                               symmetry_change=pl.lit(None, pl.Utf8), spacegroup_number_relaxed=pl.lit(None, pl.Int16))
    return out


def load_study(
    cache: Cache,
    dataset: str,
    models: Sequence[str] | None = None,
    *,
    near_hull_only: bool = False,
    paired: bool = True,
    geometry: bool = True,
    compute_geometry: bool = True,
    n_jobs: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> StudyData:
    """Read ``dataset``'s static and relaxed predictions (of ``models``: ids, default every model
    in the cache) into the per-crystal rows of the study. ``geometry``: join the comparison of the
    relaxed cells with the DFT ones (:mod:`.relax_geometry`), computing the missing ones first
    unless ``compute_geometry`` is false (``on_progress(done, total)``, ``should_stop()``)."""
    model_ids = list(models) if models else None
    holds = dataset_holds(cache, dataset)
    data = StudyData(dataset=dataset, rows=pl.DataFrame(), near_hull_only=near_hull_only, paired=paired)
    tables = [error_table(cache, dataset, mode, model_ids) for mode in (Mode.STATIC, Mode.RELAX)]
    both = pl.concat([t for t in tables if t.height], how="vertical_relaxed") if any(t.height for t in tables) else tables[0]
    if both.is_empty():
        data.empty_reason = (f"no predictions for dataset {dataset!r} yet: mliap-tui run --data {dataset} "
                             f"--models {','.join(model_ids or ['chgnet-0.3.0', 'sevennet-0'])}")
        return data
    # one label per (model id, weights) across both modes
    both = label_weight_variants(both.with_columns(model=pl.col("model_id")).drop("model_id"))
    data.notes += _failure_notes(both, dataset)
    ok = both.filter(pl.col("status") == "ok")
    data.models = sorted(ok["model"].unique().to_list())
    if paired:
        ok = _pair(ok, data.notes)
    data.relaxed_models = sorted(ok.filter(pl.col("mode") == Mode.RELAX)["model"].unique().to_list())
    if holds.compares_energies and ok.height:
        # hulls of exactly the crystals compared: the stored ones when those are the whole set
        # (summary/export computed them), else computed here and not stored (a paired subset)
        ok = add_rebuilt_hull(ok, cache, dataset, store=False)
    else:
        ok = ok.with_columns(d_e_above_hull_rebuilt=pl.lit(None, pl.Float64))
    excluded = not_compared(data.models)
    if excluded:
        ok = ok.with_columns([pl.when(pl.col("model").is_in(list(excluded))).then(None).otherwise(pl.col(METRICS[m][2]))
                              .alias(METRICS[m][2]) for m in STUDY_METRICS])
        data.notes += [f"{m}: {reason} (energy errors left out; the relaxation columns stay)" for m, reason in excluded.items()]
    ok = _relaxation_columns(cache, dataset, ok, model_ids, geometry, compute_geometry, n_jobs, on_progress,
                             should_stop)
    if near_hull_only:
        ok = ok.filter(pl.col("e_above_hull_dft_mp2020") < NEAR_HULL_EV_PER_ATOM)
    errors = [METRICS[m][2] for m in STUDY_METRICS]
    keep = [c for c in _ROW_COLUMNS if c in ok.columns] + errors + [
        "e_relax_minus_static_ev_per_atom", "relax_steps", "matched", "rmsd_ang", "max_dist_ang", "volume_change_pct",
        "symmetry_change", "spacegroup_number_relaxed", "relaxed_spacegroup_number"]
    data.rows = ok.select([c for c in keep if c in ok.columns]).sort("model", "mode", "material_id")
    data.metrics = [m for m in STUDY_METRICS if data.rows[METRICS[m][2]].is_not_null().any()]
    if "e_above_hull_rebuilt" in data.metrics:
        data.rebuilt_hull_note = rebuilt_hull_note(data.rows)
    has_ehull = bool(data.rows["e_above_hull_dft_mp2020"].is_not_null().any())
    data.groupings = [g for g in STUDY_GROUPINGS if g != "near_hull" or has_ehull]
    if not holds.compares_energies:
        data.fallback = (f"{dataset} has no DFT energies on the MP2020 scale: no energy errors, only what the "
                         "relaxation did (relaxation energy, RMSD, space group)")
    elif not has_ehull:
        data.fallback = (f"{dataset} has no DFT Ehull: showing total energy (its error is the formation-energy "
                         "error too) and Ehull on hulls rebuilt from its own crystals; no near-hull split")
    if data.missing_relax:
        ids = ",".join(m.split("~")[0] for m in data.missing_relax)
        data.relax_command = f"mliap-tui run --data {dataset} --models {ids} --mode relax"
    return data


# ---- statistics ---------------------------------------------------------------------------------


def _groups(rows: pl.DataFrame, grouping: str) -> list[tuple[str, int, pl.DataFrame]]:
    """(group label, order, rows) of ``grouping`` (``ALL``: one group of every row)."""
    if grouping == ALL:
        return [(ALL, 0, rows)] if rows.height else []
    grouped = with_group(rows, grouping)
    out = []
    for (label,), part in grouped.group_by("group", maintain_order=True):
        out.append((str(label), int(part["_order"].min()), part.drop("group", "_order")))
    return sorted(out, key=lambda g: (g[1], g[0]))


def _paired_frame(rows: pl.DataFrame, err: str) -> pl.DataFrame:
    """Static and relaxed signed errors of the same crystals side by side (one model's rows)."""
    static = rows.filter(pl.col("mode") == Mode.STATIC).select(
        pl.exclude("mode", err), pl.col(err).alias("_static"))
    relax = rows.filter(pl.col("mode") == Mode.RELAX).select("material_id", pl.col(err).alias("_relax"))
    return static.join(relax, on="material_id", how="inner")


def _stat_row(model: str, view: str, metric: str, grouping: str, group: str, order: int, est) -> dict:
    return {
        "model": model, "view": view, "metric": metric, "grouping": grouping, "group": group, "order": order,
        "n": est.n, "mae_ev_per_atom": est.mae.value, "mae_lo_ev_per_atom": est.mae.lo,
        "mae_hi_ev_per_atom": est.mae.hi, "mean_signed_ev_per_atom": est.mean_signed.value,
        "mean_signed_lo_ev_per_atom": est.mean_signed.lo, "mean_signed_hi_ev_per_atom": est.mean_signed.hi,
    }


_ERROR_SCHEMA = {
    "model": pl.Utf8, "view": pl.Utf8, "metric": pl.Utf8, "grouping": pl.Utf8, "group": pl.Utf8, "order": pl.Int64,
    "n": pl.Int64, "mae_ev_per_atom": pl.Float64, "mae_lo_ev_per_atom": pl.Float64, "mae_hi_ev_per_atom": pl.Float64,
    "mean_signed_ev_per_atom": pl.Float64, "mean_signed_lo_ev_per_atom": pl.Float64,
    "mean_signed_hi_ev_per_atom": pl.Float64,
}


def error_stats(data: StudyData, metric: str, grouping: str = ALL, *, views: Iterable[str] = tuple(STUDY_VIEWS),
                n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED, level: float = DEFAULT_LEVEL) -> pl.DataFrame:
    """MAE and mean signed error (eV/atom) with bootstrap intervals per (model, view, group).

    View ``difference``: MAE(relaxed) - MAE(static) and mean(relaxed) - mean(static) on the
    crystals with both (for E, Eform and the fixed-hull Ehull the mean difference is the mean
    relaxation energy), intervals from resampling crystals jointly.
    """
    err = METRICS[metric][2]
    out: list[dict] = []
    if metric not in data.metrics:
        return pl.DataFrame(schema=_ERROR_SCHEMA)
    rows = data.rows.filter(pl.col(err).is_not_null())
    for model in data.models:
        mine = rows.filter(pl.col("model") == model)
        for view in views:
            if view == "difference":
                frame = _paired_frame(mine, err)
                for group, order, part in _groups(frame, grouping):
                    est = bootstrap_paired_delta(part["_static"].to_numpy(), part["_relax"].to_numpy(), n_boot, seed, level)
                    out.append(_stat_row(model, view, metric, grouping, group, order, est))
                continue
            for group, order, part in _groups(mine.filter(pl.col("mode") == view), grouping):
                est = bootstrap_errors(part[err].to_numpy(), n_boot, seed, level)
                out.append(_stat_row(model, view, metric, grouping, group, order, est))
    return pl.DataFrame(out, schema=_ERROR_SCHEMA) if out else pl.DataFrame(schema=_ERROR_SCHEMA)


_RELAX_SCHEMA = {
    "model": pl.Utf8, "grouping": pl.Utf8, "group": pl.Utf8, "order": pl.Int64, "n": pl.Int64,
    "e_relax_ev_per_atom": pl.Float64, "e_relax_lo_ev_per_atom": pl.Float64, "e_relax_hi_ev_per_atom": pl.Float64,
    "e_relax_median_ev_per_atom": pl.Float64, "n_compared": pl.Int64, "n_matched": pl.Int64,
    "rmsd_median_ang": pl.Float64, "rmsd_mean_ang": pl.Float64, "volume_change_mean_pct": pl.Float64,
    "relax_steps_median": pl.Float64, **{f"n_{c}": pl.Int64 for c in SYMMETRY_CHANGES},
}


def relax_stats(data: StudyData, grouping: str = ALL, *, n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED,
                level: float = DEFAULT_LEVEL) -> pl.DataFrame:
    """Per (model, group) of relaxed rows: relaxation energy E_relaxed - E_static (eV/atom, mean
    with interval, median), structures compared and matched, RMSD of the matched ones (Å), mean
    volume change (%), median optimiser steps, and the count of each space-group change."""
    out: list[dict] = []
    relaxed = data.rows.filter(pl.col("mode") == Mode.RELAX) if data.rows.height else data.rows
    for model in data.relaxed_models:
        mine = relaxed.filter(pl.col("model") == model)
        for group, order, part in _groups(mine, grouping):
            e = part["e_relax_minus_static_ev_per_atom"].drop_nulls().to_numpy()
            est = bootstrap_errors(e, n_boot, seed, level).mean_signed
            matched = part.filter(pl.col("matched") == True)  # noqa: E712 - polars expression
            changes = part["symmetry_change"].drop_nulls().value_counts()
            counts = dict(zip(changes["symmetry_change"].to_list(), changes["count"].to_list())) if changes.height else {}
            out.append({
                "model": model, "grouping": grouping, "group": group, "order": order, "n": part.height,
                "e_relax_ev_per_atom": est.value, "e_relax_lo_ev_per_atom": est.lo, "e_relax_hi_ev_per_atom": est.hi,
                "e_relax_median_ev_per_atom": float(np.median(e)) if len(e) else None,
                "n_compared": int(part["matched"].is_not_null().sum()), "n_matched": matched.height,
                "rmsd_median_ang": matched["rmsd_ang"].median(), "rmsd_mean_ang": matched["rmsd_ang"].mean(),
                "volume_change_mean_pct": part["volume_change_pct"].mean(),
                "relax_steps_median": part["relax_steps"].median(),
                **{f"n_{c}": int(counts.get(c, 0)) for c in SYMMETRY_CHANGES},
            })
    return pl.DataFrame(out, schema=_RELAX_SCHEMA) if out else pl.DataFrame(schema=_RELAX_SCHEMA)


_TREND_SCHEMA = {
    "model": pl.Utf8, "view": pl.Utf8, "metric": pl.Utf8, "quantity": pl.Utf8, "n": pl.Int64,
    "slope_ev_per_atom_per_dof": pl.Float64, "slope_lo_ev_per_atom_per_dof": pl.Float64,
    "slope_hi_ev_per_atom_per_dof": pl.Float64, "spearman_rho": pl.Float64, "spearman_p": pl.Float64,
    "significant": pl.Boolean, "direction": pl.Int64, "sentence": pl.Utf8,
}


def trend_stats(data: StudyData, metric: str, *, views: Iterable[str] = tuple(STUDY_VIEWS),
                n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED, level: float = DEFAULT_LEVEL) -> pl.DataFrame:
    """The DOF trend per (model, view): slope of |error| (``quantity='abs'``) and of the signed
    error (``'signed'``) on the crystal's total DOF, eV/atom per DOF, with interval; Spearman rho
    and p; whether it is significant; and the sentence that says it."""
    if metric not in data.metrics:
        return pl.DataFrame(schema=_TREND_SCHEMA)
    err = METRICS[metric][2]
    rows = data.rows.filter(pl.col(err).is_not_null())
    out = []
    for model in data.models:
        mine = rows.filter(pl.col("model") == model)
        for view in views:
            if view == "difference":
                frame = _paired_frame(mine, err)
                x = frame["total_dof"].to_numpy().astype(float)
                signed = (frame["_relax"] - frame["_static"]).to_numpy()
                absolute = (frame["_relax"].abs() - frame["_static"].abs()).to_numpy()
            else:
                part = mine.filter(pl.col("mode") == view)
                x = part["total_dof"].to_numpy().astype(float)
                signed = part[err].to_numpy()
                absolute = np.abs(signed)
            if len(x) == 0:
                continue
            for quantity, y in (("abs", absolute), ("signed", signed)):
                t = trend(x, y, n_boot, seed, level)
                row = {"model": model, "view": view, "metric": metric, "quantity": quantity, "n": t.n,
                       "slope_ev_per_atom_per_dof": t.slope.value, "slope_lo_ev_per_atom_per_dof": t.slope.lo,
                       "slope_hi_ev_per_atom_per_dof": t.slope.hi, "spearman_rho": t.rho, "spearman_p": t.p_value,
                       "significant": t.significant, "direction": t.direction}
                row["sentence"] = trend_sentence(row)
                out.append(row)
    return pl.DataFrame(out, schema=_TREND_SCHEMA) if out else pl.DataFrame(schema=_TREND_SCHEMA)


_TREND_WORDS = {
    # (view kind, quantity) -> (rising, falling, no trend)
    ("mode", "abs"): ("error grows with DOF", "error shrinks with DOF", "no significant trend of |error| with DOF"),
    ("mode", "signed"): ("signed error rises with DOF (toward overprediction)",
                         "signed error falls with DOF (toward underprediction)",
                         "no significant trend of the signed error with DOF"),
    ("difference", "abs"): ("relaxing adds more error at higher DOF", "relaxing removes more error at higher DOF",
                            "no significant DOF trend of relaxed - static |error|"),
    ("difference", "signed"): ("relaxed - static signed error rises with DOF",
                               "relaxed - static signed error falls with DOF",
                               "no significant DOF trend of relaxed - static signed error"),
}


def trend_sentence(row: dict) -> str:
    """A trend row in plain language, numbers in meV/atom per DOF: 'error grows with DOF: slope
    +1.20 meV/atom per DOF [0.40,2.00], Spearman rho=+0.21, p=3.2e-05 (n=400)'. A trend is stated
    only when the rank correlation (p < 0.05) and the slope interval (excluding 0) agree; when
    only one of them sees it, the sentence says which."""
    words = _TREND_WORDS[("difference" if row["view"] == "difference" else "mode", row["quantity"])]
    slope = row["slope_ev_per_atom_per_dof"]
    if slope is None or not math.isfinite(slope):
        return f"{words[2]} (too few crystals or one DOF value only, n={row['n']})"
    lo, hi, rho, p = (row["slope_lo_ev_per_atom_per_dof"], row["slope_hi_ev_per_atom_per_dof"],
                      row["spearman_rho"], row["spearman_p"])
    rank_sig = p is not None and math.isfinite(p) and p < SIGNIFICANCE_P
    slope_sig = lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi) and (lo > 0 or hi < 0)
    if row["direction"]:
        head = words[0] if row["direction"] > 0 else words[1]
    elif rank_sig and slope_sig:
        head = f"{words[2]} (the rank correlation and the slope disagree in sign)"
    elif rank_sig:
        head = f"{words[2]} (ranks say {'rising' if rho > 0 else 'falling'}, p < {SIGNIFICANCE_P:g}, but the slope interval includes 0)"
    elif slope_sig:
        head = f"{words[2]} (the slope interval excludes 0, but the rank correlation is not significant)"
    else:
        head = words[2]
    interval = format_interval(lo, hi, 2, scale=MEV_PER_EV)
    rho_text = "-" if rho is None or not math.isfinite(rho) else format_signed(rho, 2)
    return (f"{head}: slope {format_signed(slope * MEV_PER_EV, 2)} meV/atom per DOF {interval}, "
            f"Spearman rho={rho_text}, p={format_p_value(p)} (n={row['n']:,})").replace("  ", " ")


# ---- everything the `study dof` command shows ----------------------------------------------------


@dataclass
class Study:
    """What ``mliap-tui study dof`` prints (and ``--csv`` writes)."""

    data: StudyData
    metric: str | None
    by: str
    n_boot: int
    seed: int
    level: float
    headline: pl.DataFrame  # error_stats of every metric over every crystal
    grouped: pl.DataFrame  # error_stats of ``metric`` by ``by``
    relax: pl.DataFrame  # relax_stats over every crystal and by ``by``
    trends: pl.DataFrame  # trend_stats of ``metric``
    notes: list[str] = field(default_factory=list)

    @property
    def interval(self) -> str:
        return interval_note(self.n_boot, self.seed, self.level)

    def tables(self) -> dict[str, pl.DataFrame]:
        """The tidy tables by name (what ``--csv`` writes, one file each)."""
        return {"errors": pl.concat([self.headline, self.grouped]) if self.grouped.height else self.headline,
                "relaxation": self.relax, "trend": self.trends}


def run_study(
    cache: Cache,
    dataset: str,
    models: Sequence[str] | None = None,
    *,
    metric: str | None = None,
    by: str = "dof",
    near_hull_only: bool = False,
    paired: bool = True,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    level: float = DEFAULT_LEVEL,
    geometry: bool = True,
    n_jobs: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Study:
    """Load ``dataset`` and compute every table of the study (see the module docstring). A metric
    or grouping the dataset cannot show falls back to one it can, with a note."""
    if by not in STUDY_GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}: use {', '.join(STUDY_GROUPINGS)}")
    if metric is not None and metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}: use {', '.join(METRICS)}")
    data = load_study(cache, dataset, models, near_hull_only=near_hull_only, paired=paired, geometry=geometry,
                      n_jobs=n_jobs, on_progress=on_progress)
    notes: list[str] = []
    chosen = metric
    if data.empty_reason is None:
        if near_hull_only and "near_hull" not in data.groupings:
            notes.append(f"--near-hull: {dataset} has no DFT Ehull, so no crystal is near the hull by it")
        if chosen is None or chosen not in data.metrics:
            fallback = data.default_metric()
            if chosen is not None and fallback is not None:
                notes.append(f"{METRIC_LABEL[chosen]} cannot be compared on {dataset}: showing {METRIC_LABEL[fallback]}")
            chosen = fallback
        if by not in data.groupings:
            notes.append(f"--by {by}: {dataset} has no DFT Ehull to split by; showing {GROUPINGS['dof']}")
            by = "dof"
    kw = {"n_boot": n_boot, "seed": seed, "level": level}
    if data.empty_reason is not None or chosen is None:
        empty_err, empty_trend = error_stats(data, "e_per_atom"), trend_stats(data, "e_per_atom")
        relax = (pl.concat([relax_stats(data, ALL, **kw), relax_stats(data, by, **kw)])
                 if data.empty_reason is None else relax_stats(data, ALL, **kw))
        return Study(data, chosen, by, n_boot, seed, level, empty_err, empty_err, relax, empty_trend, notes)
    headline = pl.concat([error_stats(data, m, ALL, **kw) for m in data.metrics])
    grouped = error_stats(data, chosen, by, **kw)
    relax = pl.concat([relax_stats(data, ALL, **kw), relax_stats(data, by, **kw)])
    trends = trend_stats(data, chosen, **kw)
    return Study(data, chosen, by, n_boot, seed, level, headline, grouped, relax, trends, notes)


def csv_paths(path: str | Path) -> dict[str, Path]:
    """Where ``--csv PATH`` writes each table: ``<stem>-errors.csv``, ``<stem>-relaxation.csv``,
    ``<stem>-trend.csv`` beside PATH (``.csv`` optional)."""
    path = Path(path).expanduser()
    stem = path.name[:-4] if path.name.lower().endswith(".csv") else path.name
    return {name: path.with_name(f"{stem}-{name}.csv") for name in ("errors", "relaxation", "trend")}


def write_study_csv(study: Study, path: str | Path, overwrite: bool = False) -> list:
    """Write the study's tidy tables (:meth:`Study.tables`) as CSV files (:func:`csv_paths`);
    refuses before writing anything when one exists and ``overwrite`` is not set."""
    from mliap_tui.analysis.export import write_csv

    paths = csv_paths(path)
    if not overwrite:
        taken = [str(p) for p in paths.values() if p.exists()]
        if taken:
            raise FileExistsError(f"{', '.join(taken)} already exist(s): add --overwrite or choose another name")
    tables = study.tables()
    return [write_csv(tables[name], p, overwrite=True, layout=f"study {name}") for name, p in paths.items()]


__all__ = [
    "ALL",
    "STUDY_METRICS",
    "csv_paths",
    "Study",
    "StudyData",
    "error_stats",
    "interval_note",
    "load_study",
    "relax_stats",
    "run_study",
    "trend_sentence",
    "trend_stats",
    "write_study_csv",
]
