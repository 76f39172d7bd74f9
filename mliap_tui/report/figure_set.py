"""Which figures a cached dataset can give, and writing them to files.

:func:`dataset_figures` looks at what the dataset holds (energies on the MP2020 scale, DFT
forces, cached PES slices of its crystals) and returns one :class:`FigureJob` per figure; nothing
is drawn until a job's ``build`` is called, so a caller can count, filter and report progress.
:func:`save` writes one figure as png, svg, pdf or html (the SVG inline in a small page).
"""

from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import polars as pl

from mliap_tui.cache import Cache
from mliap_tui.core.files import write_bytes_atomic
from mliap_tui.core.vocab import METRIC_LABEL
from mliap_tui.report import figures as F

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class FigureJob:
    name: str  # file stem, e.g. "parity_e_above_hull_chgnet-0.3.0"
    caption: str
    section: str  # energies | forces | pes
    build: Callable[[], Figure]


@dataclass
class FigurePlan:
    dataset: str
    mode: str
    jobs: list[FigureJob] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be drawn, and why


def safe_stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_") or "figure"


def energy_context(cache: Cache, dataset: str, mode: str, models: Sequence[str] | None = None):
    """(error table, figure context) of ``dataset``'s ``mode`` predictions (rebuilt hull added)."""
    from mliap_tui.analysis.errors import error_table
    from mliap_tui.cache.weights import label_weight_variants

    table = error_table(cache, dataset, mode=mode, models=list(models) if models else None, rebuilt_hull=True)
    if "weights_fingerprint" in table.columns:
        table = label_weight_variants(table)
    return table, F.Context(dataset, mode, F.model_labels(table))


def prediction_labels(cache: Cache, dataset: str, mode: str | None = None) -> dict[str, str]:
    """model -> label with weights and version (:func:`figures.model_labels`) from the cached predictions."""
    from mliap_tui.cache.weights import label_weight_variants

    preds = label_weight_variants(cache.scan_predictions(dataset, None, mode)).select(
        "model", "weights_fingerprint", "package_version", "created_unix_s").sort("created_unix_s").collect()
    return F.model_labels(preds)


def study_stats_for_figure(stats: pl.DataFrame) -> pl.DataFrame:
    """``analysis.study.error_stats`` rows -> the columns :func:`figures.grouped_errors` draws
    (group, model, n, mae, mean_signed and their ``_lo``/``_hi`` bounds, eV/atom)."""
    cols = {"mae_ev_per_atom": "mae", "mae_lo_ev_per_atom": "mae_lo", "mae_hi_ev_per_atom": "mae_hi",
            "mean_signed_ev_per_atom": "mean_signed", "mean_signed_lo_ev_per_atom": "mean_signed_lo",
            "mean_signed_hi_ev_per_atom": "mean_signed_hi"}
    return stats.sort("order", "model").select("group", "model", "n", *[pl.col(a).alias(b) for a, b in cols.items()])


def dof_stats(cache: Cache, dataset: str, mode: str, models: Sequence[str], metric: str) -> pl.DataFrame:
    """MAE and mean signed error per total-DOF bin of ``mode``'s rows, with the study view's
    bootstrap intervals (every ok row of the mode: not paired with the other mode)."""
    from mliap_tui.analysis.study import error_stats, load_study

    data = load_study(cache, dataset, None, paired=False, geometry=False)
    data.models = [m for m in data.models if m in set(models)]
    return study_stats_for_figure(error_stats(data, metric, "dof", views=(mode,)))


def study_dof_stats(cache: Cache, dataset: str, models: Sequence[str], metric: str) -> pl.DataFrame:
    """Static and relaxed errors per total-DOF bin on the same crystals (the study's pairing), one
    bar per model and view ("chgnet-0.3.0 · at DFT geometry", "... · relaxed"); empty without relaxed rows."""
    from mliap_tui.analysis.study import error_stats, load_study

    data = load_study(cache, dataset, None, geometry=False)
    data.models = [m for m in data.relaxed_models if m in set(models)]
    stats = error_stats(data, metric, "dof", views=("static", "relax"))
    if stats.is_empty():
        return study_stats_for_figure(stats)
    word = pl.when(pl.col("view") == "relax").then(pl.lit("relaxed")).otherwise(pl.lit("at DFT geometry"))
    return study_stats_for_figure(stats.with_columns(model=pl.col("model") + " · " + word))


def dataset_figures(cache: Cache, dataset: str, mode: str = "static", models: Sequence[str] | None = None,
                    metric: str = "e_above_hull", weighting: str = "crystal", pes: bool = True,
                    forces: bool = True) -> FigurePlan:
    """Every figure ``dataset`` can give (see the module docstring)."""
    from mliap_tui.analysis.summary import dataset_holds

    plan = FigurePlan(dataset, mode)
    holds = dataset_holds(cache, dataset)
    if holds.compares_energies:
        _energy_jobs(cache, plan, models, metric, weighting, holds)
    else:
        plan.notes.append(f"{dataset}: no DFT energies on the MP2020 scale, so no energy figures")
    if forces and holds.forces:
        _force_jobs(cache, plan, models)
    if pes:
        _pes_jobs(cache, plan, models)
    return plan


def _energy_jobs(cache: Cache, plan: FigurePlan, models, metric: str, weighting: str, holds) -> None:
    from mliap_tui.analysis.elements import element_errors

    table, ctx = energy_context(cache, plan.dataset, plan.mode, models)
    if not holds.thermo and metric != "e_per_atom":
        plan.notes.append(f"{plan.dataset}: no formation energies or Ehull, so figures show the total energy")
        metric = "e_per_atom"
    shown = F.models_with_results(table, metric)
    if not shown:
        plan.notes.append(f"no successful {plan.mode} predictions of {METRIC_LABEL[metric]} in {plan.dataset}: "
                          f"mliap-tui run --data {plan.dataset} --mode {plan.mode}")
        return
    skipped = sorted(set(table["model"].unique().to_list()) - set(shown))
    if skipped:
        plan.notes.append(f"{', '.join(skipped)}: no {METRIC_LABEL[metric]} on the PBE/MP2020 scale, not drawn")
    table = table.filter(pl.col("model").is_in(shown))
    label = METRIC_LABEL[metric]
    for m in shown:
        plan.jobs.append(FigureJob(f"parity_{metric}_{safe_stem(m)}", f"{ctx.label(m)}: {label}, predicted vs DFT",
                                   "energies", lambda m=m: F.parity(table, m, metric, ctx)))
    plan.jobs.append(FigureJob(f"error_histogram_{metric}", f"signed {label} errors of every model", "energies",
                               lambda: F.error_histogram(table, metric, ctx, shown)))
    plan.jobs.append(FigureJob(f"errors_by_dof_{metric}", f"{label} error by total DOF bin, 95 % bootstrap intervals",
                               "energies", lambda: F.grouped_errors(dof_stats(cache, plan.dataset, plan.mode, shown, metric),
                                                                    metric, "total DOF bin", ctx)))
    if plan.mode == "static" and cache.scan_predictions(plan.dataset, None, "relax").select(pl.len()).collect().item():
        plan.jobs.append(FigureJob(f"static_vs_relaxed_by_dof_{metric}",
                                   f"{label} error by total DOF bin, static vs relaxed on the same crystals, 95 % "
                                   "bootstrap intervals", "energies",
                                   lambda: F.grouped_errors(study_dof_stats(cache, plan.dataset, shown, metric), metric,
                                                            "total DOF bin, static vs relaxed", ctx)))
    plan.jobs.append(FigureJob(f"errors_by_crystal_system_{metric}", f"{label} error by crystal system", "energies",
                               lambda: F.crystal_system(table, metric, ctx)))
    if weighting == "fraction":
        species = cache.scan_materials(plan.dataset).select("material_id", "species").collect()
        el_table = table.join(species, on="material_id", how="left")
    else:
        el_table = table
    elements = element_errors(el_table, metric, weighting)
    for m in shown:
        plan.jobs.append(FigureJob(f"ptable_{metric}_{safe_stem(m)}", f"{ctx.label(m)}: {label} error by element",
                                   "energies", lambda m=m: F.periodic_table(elements, m, metric, ctx, weighting)))


def _force_jobs(cache: Cache, plan: FigurePlan, models) -> None:
    from mliap_tui.analysis.force_audit import force_audit

    audit = force_audit(cache, [plan.dataset], models)
    if audit.empty:
        plan.notes.append(f"{plan.dataset} has DFT forces but no predicted ones: "
                          f"mliap-tui run --data {plan.dataset} --forces")
        return
    ctx = F.Context(plan.dataset, "static", prediction_labels(cache, plan.dataset, "static"))
    plan.jobs.append(FigureJob("force_parity", "force components, MLIP vs DFT, with the softening slope", "forces",
                               lambda: F.force_parity(audit, ctx)))
    if len(audit.atoms) and bool(audit.atoms["is_rare_event"].any()):
        plan.jobs.append(FigureJob("rare_event_cdf", "force errors on migrating vs all atoms", "forces",
                                   lambda: F.rare_event_cdf(audit, ctx)))


def _pes_jobs(cache: Cache, plan: FigurePlan, models) -> None:
    from mliap_tui.analysis.pes.slices import cached_slices, load_cached_slice

    for cs in cached_slices(cache, plan.dataset):
        chosen = [m for m in cs.models if not models or m in models]
        if not chosen:
            continue
        holder: dict = {}

        def load(cs=cs):
            if "s" not in holder or holder.get("key") != cs:
                holder.update(s=load_cached_slice(cache, plan.dataset, cs), key=cs)
            return holder["s"]

        axes = "_".join(safe_stem(a) for a in cs.axes)
        rng = "_".join(f"{r:.4g}" for r in cs.ranges)
        labels = prediction_labels(cache, cs.dataset)
        for m in chosen:
            ctx = F.Context(plan.dataset, "PES slice", labels)
            plan.jobs.append(FigureJob(
                f"pes_{safe_stem(cs.material_id)}_{axes}_{rng}_{safe_stem(m)}",
                f"{m}: PES slice of {cs.material_id} along {' × '.join(cs.axes)} ({cs.points} points per axis)",
                "pes", lambda m=m, load=load, ctx=ctx: F.pes_slice(load(), m, ctx)))


def figure_bytes(fig: Figure, fmt: str, dpi: int = 200) -> bytes:
    """The figure as png/svg/pdf bytes, or an HTML page holding its SVG."""
    if fmt not in F.FORMATS:
        raise ValueError(f"unknown figure format {fmt!r}: use {', '.join(F.FORMATS)}")
    buf = io.BytesIO()
    fig.savefig(buf, format="svg" if fmt == "html" else fmt, dpi=dpi,
                metadata={"Creator": "mliap-tui"} if fmt in ("png", "svg", "pdf") else None)
    data = buf.getvalue()
    if fmt == "html":
        title = html.escape(fig._suptitle.get_text() if fig._suptitle is not None else "figure")
        svg = data.decode()
        svg = svg[svg.index("<svg"):]
        data = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head>"
                f"<body style='margin:1em;font-family:sans-serif'>{svg}</body></html>").encode()
    return data


def save(fig: Figure, out_dir: Path, stem: str, fmt: str, dpi: int = 200) -> Path:
    """Write one figure atomically as ``out_dir/stem.fmt``; the path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem}.{fmt}"
    write_bytes_atomic(figure_bytes(fig, fmt, dpi), path)
    return path


@dataclass(frozen=True)
class Written:
    path: Path
    caption: str
    section: str
    n_bytes: int


def write_plan(plan: FigurePlan, out_dir: Path, fmt: str = "png", dpi: int = 200,
               on_figure: Callable[[int, int, FigureJob], None] | None = None) -> tuple[list[Written], list[str]]:
    """Build and write every job of ``plan``; (files written, errors) — one failed figure does not
    stop the others."""
    written, errors = [], []
    for k, job in enumerate(plan.jobs):
        if on_figure is not None:
            on_figure(k, len(plan.jobs), job)
        try:
            fig = job.build()
            path = save(fig, out_dir, job.name, fmt, dpi)
        except Exception as exc:  # noqa: BLE001 - one figure's failure is reported, the rest are written
            errors.append(f"{job.name}: {type(exc).__name__}: {exc}")
            continue
        written.append(Written(path, job.caption, job.section, path.stat().st_size))
    return written, errors


__all__ = ["FigureJob", "FigurePlan", "Written", "dataset_figures", "energy_context", "figure_bytes", "safe_stem",
           "save", "write_plan"]
