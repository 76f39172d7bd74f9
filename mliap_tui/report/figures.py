"""Publication figures (matplotlib): what ``mliap-tui figures`` writes, the report embeds and the
app's ``w`` key saves.

Each builder is a pure function of analysis tables returning a :class:`matplotlib.figure.Figure`
(the object-oriented API, no pyplot state: safe from the app's worker threads). Every figure says
what it shows and from what: axis labels with units, the dataset and mode, each model's id with
its weights fingerprint and package version (:func:`model_labels`), and the n behind each series.

Why matplotlib and not plotly/pymatviz: vector PDF/SVG and PNG straight from the process, offline,
no browser or kaleido; fonts and sizes a journal accepts; the ``html`` format is the SVG inline in a
page. The periodic table is drawn here from the element positions of
:func:`mliap_tui.analysis.elements.table_position` (the same layout as the app's heat map).
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import polars as pl

from mliap_tui import __version__
from mliap_tui.analysis.elements import MAX_Z, table_position
from mliap_tui.core.units import MEV_PER_EV
from mliap_tui.core.vocab import CRYSTAL_SYSTEMS, METRIC_LABEL, METRICS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from mliap_tui.analysis.force_audit import ForceAudit
    from mliap_tui.analysis.pes.slices import PesSlice

FORMATS = ("png", "svg", "pdf", "html")
#: Okabe-Ito: distinguishable for colour-blind readers and in greyscale print
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
MAX_SCATTER_POINTS = 20_000
FIG_WIDTH_IN = 6.4


class FiguresUnavailable(ImportError):
    """matplotlib is not installed: ``pip install 'mliap-tui[figures]'``."""


def require_matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise FiguresUnavailable(
            "figures need matplotlib: pip install 'mliap-tui[figures]' (or pip install matplotlib)") from exc
    return Figure


@dataclass(frozen=True)
class Context:
    """What every figure's footer states."""

    dataset: str
    mode: str
    labels: dict[str, str]  # model -> "chgnet-0.3.0 (weights 1a2b3c4, chgnet 0.4.2)"

    def footer(self, n: int | str | None = None, extra: str = "") -> str:
        parts = [f"dataset {self.dataset}", self.mode]
        if n is not None:
            parts.append(f"n = {n:,}" if isinstance(n, int) else f"n = {n}")
        if extra:
            parts.append(extra)
        parts.append(f"mliap-tui {__version__}, {_dt.date.today().isoformat()}")
        return " · ".join(parts)

    def label(self, model: str) -> str:
        return self.labels.get(model, model)


def model_labels(table: pl.DataFrame) -> dict[str, str]:
    """model -> 'model (weights <fingerprint[:7]>, <package version>)' from the error table's
    provenance columns (rows from before weights were recorded say so)."""
    out: dict[str, str] = {}
    if table.is_empty() or "model" not in table.columns:
        return out
    cols = [c for c in ("weights_fingerprint", "package_version") if c in table.columns]
    for row in table.select("model", *cols).unique(subset=["model"], keep="last").iter_rows(named=True):
        fp, version = row.get("weights_fingerprint"), row.get("package_version")
        bits = [f"weights {fp[:7]}" if fp else "weights unrecorded"]
        if version:
            bits.append(version)
        out[row["model"]] = f"{row['model']} ({', '.join(bits)})"
    return out


def _new(height_in: float = 4.8, width_in: float = FIG_WIDTH_IN) -> Figure:
    Figure = require_matplotlib()
    return Figure(figsize=(width_in, height_in), layout="constrained", dpi=100)


def _finish(fig: Figure, title: str, footer: str) -> Figure:
    import textwrap

    fig.suptitle("\n".join(textwrap.wrap(title, int(fig.get_figwidth() / 0.095))), fontsize=11)
    width_chars = int(fig.get_figwidth() / 0.052)  # 6.5 pt text is ~0.05 in per character
    # supxlabel: constrained layout keeps room for it (a plain fig.text would overlap the axes)
    fig.supxlabel("\n".join(textwrap.wrap(footer, width_chars)), x=0.995, ha="right", fontsize=6.5, color="#555555")
    fig.get_layout_engine().set(h_pad=0.12)
    return fig


def _ok(table: pl.DataFrame, metric: str, model: str | None = None) -> pl.DataFrame:
    dft, _pred, err = METRICS[metric]
    out = table.filter((pl.col("status") == "ok") & pl.col(err).is_not_null() & pl.col(dft).is_not_null())
    return out if model is None else out.filter(pl.col("model") == model)


def crystals_times_models(table: pl.DataFrame, metric: str, models: Sequence[str] | None = None) -> str:
    """'400 crystals × 3 models' (ok values of ``metric``), the n of a multi-model figure."""
    ok = _ok(table, metric)
    if models is not None:
        ok = ok.filter(pl.col("model").is_in(list(models)))
    n_models = ok["model"].n_unique() if ok.height else 0
    crystals = ok["material_id"].n_unique() if ok.height else 0
    return f"{crystals:,} crystals × {n_models} model{'s' if n_models != 1 else ''}"


def models_with_results(table: pl.DataFrame, metric: str) -> list[str]:
    """Models with at least one successful value of ``metric`` (r2SCAN models have none on the PBE scale)."""
    ok = _ok(table, metric)
    return sorted(ok["model"].unique().to_list()) if ok.height else []


# ---- energies ------------------------------------------------------------------------------------


def parity(table: pl.DataFrame, model: str, metric: str, ctx: Context) -> Figure:
    """Predicted vs DFT ``metric`` (eV/atom) of one model, the y = x line, MAE and mean signed error."""
    dft, pred, err = METRICS[metric]
    ok = _ok(table, metric, model)
    fig = _new(5.2, 5.2)
    ax = fig.add_subplot()
    n = ok.height
    shown = ok.sample(MAX_SCATTER_POINTS, seed=0) if n > MAX_SCATTER_POINTS else ok
    x, y = shown[dft].to_numpy(), shown[pred].to_numpy()
    if n:
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        pad = 0.03 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="#888888", lw=1, ls="--", label="y = x")
        ax.scatter(x, y, s=8, alpha=0.6, color=COLOURS[0], edgecolors="none", label=f"{model} (n = {n:,})")
        e = ok[err].to_numpy() * MEV_PER_EV
        ax.text(0.03, 0.97, f"MAE {np.mean(np.abs(e)):.1f} meV/atom\nmean signed {np.mean(e):+.1f} meV/atom",
                transform=ax.transAxes, va="top", fontsize=9,
                bbox={"boxstyle": "round", "fc": "white", "ec": "#cccccc"})
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_aspect("equal")
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.text(0.5, 0.5, f"no successful {model} values of this metric", ha="center", transform=ax.transAxes)
    ax.set_xlabel(f"DFT {METRIC_LABEL[metric]} (eV/atom)")
    ax.set_ylabel(f"predicted {METRIC_LABEL[metric]} (eV/atom)")
    sample = f", {len(shown):,} drawn" if n > MAX_SCATTER_POINTS else ""
    return _finish(fig, f"{ctx.label(model)}: {METRIC_LABEL[metric]}", ctx.footer(n, sample.lstrip(", ")))


def error_histogram(table: pl.DataFrame, metric: str, ctx: Context, models: Sequence[str] | None = None) -> Figure:
    """Signed error (prediction - DFT, meV/atom) of each model, step histograms on shared bins."""
    err = METRICS[metric][2]
    models = list(models) if models is not None else models_with_results(table, metric)
    fig = _new(4.4 + 0.18 * len(models))
    ax = fig.add_subplot()
    errors = {m: _ok(table, metric, m)[err].to_numpy() * MEV_PER_EV for m in models}
    pooled = np.concatenate([v for v in errors.values() if v.size] or [np.zeros(0)])
    n_total = int(pooled.size)
    if n_total:
        lo, hi = np.percentile(pooled, [0.5, 99.5]) if n_total >= 200 else (pooled.min(), pooled.max())
        if hi <= lo:
            lo, hi = lo - 1.0, hi + 1.0
        bins = np.linspace(lo, hi, max(10, min(80, int(math.sqrt(n_total)) + 1)))
        for k, (m, v) in enumerate(errors.items()):
            if not v.size:
                continue
            outside = int(((v < lo) | (v > hi)).sum())
            label = (f"{ctx.label(m)}: n = {v.size:,}, MAE {np.mean(np.abs(v)):.1f} meV/atom, "
                     f"mean {np.mean(v):+.1f} meV/atom")
            if outside:
                label += f", {outside:,} in the edge bins"
            ax.hist(np.clip(v, lo, hi), bins=bins, histtype="step", lw=1.6, color=COLOURS[k % len(COLOURS)], label=label)
        ax.axvline(0.0, color="#444444", lw=0.8)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    ax.set_xlabel(f"{METRIC_LABEL[metric]} error, prediction − DFT (meV/atom)")
    ax.set_ylabel("materials")
    clip = "0.5–99.5 percentile range shown; values beyond it are counted in the edge bins" if n_total >= 200 else ""
    return _finish(fig, f"signed {METRIC_LABEL[metric]} errors (< 0: underpredicted)",
                   ctx.footer(crystals_times_models(table, metric, models), clip))


def grouped_errors(stats: pl.DataFrame, metric: str, by_label: str, ctx: Context,
                   group_order: Sequence[str] | None = None) -> Figure:
    """MAE (top) and mean signed error (bottom) per group and model, meV/atom, bars with n.

    ``stats``: one row per (group, model) with ``n``, ``mae``, ``mean_signed`` (eV/atom) and,
    when present, 95 % intervals ``mae_lo``/``mae_hi``/``mean_signed_lo``/``mean_signed_hi``
    (eV/atom) drawn as error bars.
    """
    groups = list(group_order) if group_order else list(dict.fromkeys(stats["group"].to_list()))
    models = sorted(stats["model"].unique().to_list()) if stats.height else []
    fig = _new(5.6, max(FIG_WIDTH_IN, 0.55 * len(groups) * max(1, len(models)) ** 0.5 + 2.5))
    axes = fig.subplots(2, 1, sharex=True)
    width = 0.8 / max(1, len(models))
    x0 = np.arange(len(groups))
    has_ci = {"mae_lo", "mae_hi"} <= set(stats.columns)
    for k, m in enumerate(models):
        part = {r["group"]: r for r in stats.filter(pl.col("model") == m).iter_rows(named=True)}
        xs = x0 + (k - (len(models) - 1) / 2) * width
        for ax, col in zip(axes, ("mae", "mean_signed")):
            vals = np.array([(part.get(g) or {}).get(col) or np.nan for g in groups], float) * MEV_PER_EV
            yerr = None
            if has_ci:
                lo = np.array([(part.get(g) or {}).get(f"{col}_lo") or np.nan for g in groups], float) * MEV_PER_EV
                hi = np.array([(part.get(g) or {}).get(f"{col}_hi") or np.nan for g in groups], float) * MEV_PER_EV
                yerr = np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)])
            ax.bar(xs, vals, width=0.92 * width, color=COLOURS[k % len(COLOURS)], yerr=yerr, capsize=2,
                   error_kw={"lw": 0.8}, label=ctx.label(m) if col == "mae" else None)
    axes[0].set_ylabel("MAE (meV/atom)")
    axes[1].set_ylabel("mean signed error\n(meV/atom)")
    axes[1].axhline(0.0, color="#444444", lw=0.8)
    n_of = {g: int(stats.filter(pl.col("group") == g)["n"].max() or 0) for g in groups}
    long = max((len(g) for g in groups), default=0) > 6
    axes[1].set_xticks(x0, [f"{g}\nn={n_of[g]:,}" for g in groups], rotation=30 if long else 0,
                       ha="right" if long else "center", fontsize=8)
    axes[1].set_xlabel(by_label)
    if models:
        axes[0].legend(fontsize=7, frameon=False)
    ci = "; bars: 95 % bootstrap intervals" if has_ci else ""
    per_model = stats.group_by("model").agg(pl.col("n").sum())["n"] if stats.height else pl.Series([0])
    n = f"{int(per_model.max()):,} crystals × {len(models)} model{'s' if len(models) != 1 else ''}"
    return _finish(fig, f"{METRIC_LABEL[metric]} error by {by_label}",
                   ctx.footer(n, f"n under each group: crystals with a value (the largest over models){ci}"))


def crystal_system(table: pl.DataFrame, metric: str, ctx: Context) -> Figure:
    """:func:`grouped_errors` by crystal system, in the order triclinic ... cubic."""
    from mliap_tui.analysis.aggregate import per_group

    stats = per_group(table, metric, "crystal_system")
    order = [cs for cs in CRYSTAL_SYSTEMS if cs in set(stats["group"].to_list())]
    return grouped_errors(stats, metric, "crystal system", ctx, order)


def periodic_table(elements: pl.DataFrame, model: str, metric: str, ctx: Context, weighting: str = "crystal") -> Figure:
    """MAE per element (meV/atom) of one model on the periodic table; n crystals under each symbol.

    ``elements``: :func:`mliap_tui.analysis.elements.element_errors` rows. The colour scale tops
    at the 95th percentile of the element MAEs (the cells above it say so with a ▲).
    """
    import matplotlib
    from ase.data import chemical_symbols
    from matplotlib import cm, colors
    from matplotlib.patches import Rectangle

    stats = {r["element"]: r for r in elements.filter(pl.col("model") == model).iter_rows(named=True)}
    maes = np.array([r["mae"] for r in stats.values() if r["mae"] is not None], float) * MEV_PER_EV
    top = float(np.percentile(maes, 95)) if maes.size else 1.0
    norm = colors.Normalize(0.0, top or 1.0)
    cmap = matplotlib.colormaps["viridis"]
    fig = _new(4.6, 8.4)
    ax = fig.add_subplot()
    for z in range(1, MAX_Z + 1):
        row, col = table_position(z)
        y = -(row + (0.5 if row >= 8 else 0))
        el = chemical_symbols[z]
        r = stats.get(el)
        value = None if r is None or r["mae"] is None else r["mae"] * MEV_PER_EV
        face = "#f2f2f2" if value is None else cmap(norm(min(value, top)))
        ax.add_patch(Rectangle((col, y), 0.94, 0.94, fc=face, ec="white"))
        dark = value is not None and norm(min(value, top)) < 0.6
        ink = "white" if dark else "#222222" if value is not None else "#aaaaaa"
        ax.text(col + 0.47, y + 0.62, el + ("▲" if value is not None and value > top else ""), ha="center",
                va="center", fontsize=7, color=ink, weight="bold" if value is not None else "normal")
        if r is not None:
            ax.text(col + 0.47, y + 0.24, f"{value:.0f}\nn={r['n']}", ha="center", va="center", fontsize=3.6,
                    color=ink, linespacing=0.9)
    ax.set_xlim(-0.2, 18.1)
    ax.set_ylim(-10.6, 1.1)
    ax.set_aspect("equal")
    ax.axis("off")
    sm = cm.ScalarMappable(norm=norm, cmap=cmap)
    bar = fig.colorbar(sm, ax=ax, orientation="horizontal", fraction=0.04, pad=0.02, shrink=0.6)
    bar.set_label(f"MAE of {METRIC_LABEL[metric]} (meV/atom), crystals holding the element"
                  + (", weighted by atomic fraction" if weighting == "fraction" else ""), fontsize=8)
    n = len(elements.filter(pl.col("model") == model))
    return _finish(fig, f"{ctx.label(model)}: {METRIC_LABEL[metric]} error by element",
                   ctx.footer(None, f"{n} elements; grey: no crystal; ▲ above the 95th percentile ({top:.0f} meV/atom)"))


# ---- PES slices ------------------------------------------------------------------------------------


def pes_slice(s: PesSlice, model: str, ctx: Context) -> Figure:
    """A PES slice of one model: 1D curve or 2D map of E − E(DFT structure) (meV/atom) over the
    valid points, masked points hatched grey, collapses marked, the DFT point and minima marked."""
    from mliap_tui.analysis.pes import stats as pes_stats

    axes = s.axes
    e_rel = pes_stats.relative_mev(s.energies[model], s.spec.center)
    valid = pes_stats.valid_points(e_rel, s.mask, s.collapse_ev_per_atom)
    st = next(x for x in pes_stats.analyze_slice(s) if x.source == model)
    fig = _new(4.8, 5.4 if len(axes) == 2 else FIG_WIDTH_IN)
    ax = fig.add_subplot()
    xs = [np.asarray(a.physical(s.grid_values(k)), float) for k, a in enumerate(axes)]
    title = (f"{ctx.label(model)}: {s.crystal.material_id} PES slice, "
             + " × ".join(a.describe_range(r) for a, r in zip(axes, s.spec.ranges)))
    clip = ""
    if len(axes) == 1:
        y = np.where(valid, e_rel, np.nan)
        ax.plot(xs[0], y, "-o", ms=3, color=COLOURS[0], label=f"{model} ({int(valid.sum())} valid points)")
        bad = np.isfinite(e_rel) & ~valid
        if bad.any():
            ax.plot(xs[0][bad], np.zeros(int(bad.sum())), "x", color="#D55E00", label="masked or collapse (not drawn)")
        ax.axvline(0.0, color="#888888", lw=0.8, ls="--", label="DFT structure")
        ax.set_xlabel(f"{axes[0].name}: {axes[0].physical_unit} from the DFT structure ({axes[0].dft_label})")
        ax.set_ylabel("E − E(DFT structure) (meV/atom)")
        ax.legend(fontsize=7)
    else:
        grid = np.where(valid, e_rel, np.nan).T  # rows = second axis
        scale = pes_stats.colour_scale(e_rel, valid)
        from matplotlib import colors

        im = ax.pcolormesh(xs[0], xs[1], grid, shading="nearest", cmap="viridis",
                           norm=colors.Normalize(scale.lo, scale.hi))
        masked = np.where(s.mask.T, 1.0, np.nan)
        if np.isfinite(masked).any():
            ax.pcolormesh(xs[0], xs[1], masked, shading="nearest", cmap=colors.ListedColormap(["#bbbbbb"]))
        collapsed = pes_stats.collapsed_points(e_rel, s.collapse_ev_per_atom)
        if collapsed.any():
            i, j = np.nonzero(collapsed)
            ax.scatter(xs[0][i], xs[1][j], marker="X", s=40, color="#D55E00", label=f"model collapse ({len(i)})")
        ax.scatter([0.0], [0.0], marker="+", s=90, color="white", linewidths=1.6, label="DFT structure")
        mi = st.min_index
        ax.scatter([xs[0][mi[0]]], [xs[1][mi[1]]], marker="x", s=60, color="#E69F00", linewidths=1.6, label="minimum")
        if st.local_minima:
            p = np.array(st.local_minima)
            ax.scatter(xs[0][p[:, 0]], xs[1][p[:, 1]], marker="o", s=22, facecolors="none", edgecolors="white",
                       label="other local minima")
        if st.saddles:
            p = np.array(st.saddles)
            ax.scatter(xs[0][p[:, 0]], xs[1][p[:, 1]], marker="s", s=18, facecolors="none", edgecolors="#CC79A7",
                       label="saddle points")
        bar = fig.colorbar(im, ax=ax, shrink=0.85, extend="both")
        bar.set_label("E − E(DFT structure) (meV/atom)", fontsize=8)
        clip = f"colours: {scale.clip_text}"
        ax.set_xlabel(f"{axes[0].name} ({axes[0].physical_unit}; {axes[0].dft_label})", fontsize=8)
        ax.set_ylabel(f"{axes[1].name} ({axes[1].physical_unit}; {axes[1].dft_label})", fontsize=8)
        ax.legend(fontsize=6, loc="upper right", framealpha=0.7)
    extra = (f"{int(valid.sum())}/{valid.size} valid points; grey: atoms closer than {s.closest_approach:g} × the "
             f"sum of covalent radii{'; ' + clip if clip else ''}")
    return _finish(fig, title, ctx.footer(None, extra))


# ---- forces ----------------------------------------------------------------------------------------


def force_parity(audit: ForceAudit, ctx: Context) -> Figure:
    """MLIP vs DFT force components (eV/Å) per model with the slope through the origin (softening)."""
    from mliap_tui.analysis import softening

    fig = _new(5.4, 5.4)
    ax = fig.add_subplot()
    lo = hi = 0.0
    n_total = 0
    for k, m in enumerate(audit.models):
        x, y = softening.parity_points(audit.pairs, m, MAX_SCATTER_POINTS // max(1, len(audit.models)))
        if not x.size:
            continue
        fit = softening.fit_slope(y, x)
        n_total += int(x.size)
        ax.scatter(x, y, s=4, alpha=0.35, color=COLOURS[k % len(COLOURS)], edgecolors="none",
                   label=f"{ctx.label(m)}: slope {fit['slope_origin']:.3f}, n = {x.size:,}")
        lo, hi = min(lo, x.min(), y.min()), max(hi, x.max(), y.max())
    ax.plot([lo, hi], [lo, hi], color="#444444", lw=1, ls="--", label="y = x")
    ax.set_xlabel("DFT force component (eV/Å)")
    ax.set_ylabel("MLIP force component (eV/Å)")
    ax.set_aspect("equal")
    ax.legend(fontsize=6.5, loc="upper left")
    return _finish(fig, "force parity: a slope < 1 is a softened PES (Deng et al. 2025)",
                   ctx.footer(f"{n_total:,} force components drawn", f"{len(audit.per_structure):,} structure-model "
                              "pairs; slope: least squares through the origin over every component"))


def rare_event_cdf(audit: ForceAudit, ctx: Context) -> Figure:
    """CDFs of |ΔF| (eV/Å) and Δθ (degrees) per model, rare-event (migrating) atoms vs all atoms."""
    from mliap_tui.analysis import rare_events

    fig = _new(4.2, 8.4)
    panels = fig.subplots(1, 2)
    for ax, column, unit, label in ((panels[0], "df_ev_per_ang", "eV/Å", "|ΔF|"), (panels[1], "dtheta_deg", "°", "Δθ")):
        if not len(audit.atoms) or column not in audit.atoms.columns:
            continue
        vals_all = audit.atoms[column].abs().drop_nulls().drop_nans().to_numpy()
        top = 60.0 if column == "dtheta_deg" else float(np.percentile(vals_all, 99) if vals_all.size else 1.0)
        grid = np.linspace(0.0, top, 200)
        for k, m in enumerate(audit.models):
            sub = audit.atoms.filter(pl.col("model") == m)
            for style, name, part in (("-", "all atoms", sub), ("--", "rare-event atoms", sub.filter(pl.col("is_rare_event")))):
                v = part[column].abs().drop_nulls().drop_nans().to_numpy()
                if not v.size:
                    continue
                ax.plot(grid, rare_events.cdf(v, grid), style, color=COLOURS[k % len(COLOURS)], lw=1.4,
                        label=f"{ctx.label(m)}, {name} (n = {v.size:,})")
        ax.set_xlabel(f"{label} ({unit})")
        ax.set_ylabel("fraction of atoms ≤ x")
        ax.set_ylim(0, 1.01)
        ax.legend(fontsize=6)
    n_models = len(audit.models)
    n_atoms = len(audit.atoms) // max(1, n_models)
    return _finish(fig, "force errors on migrating atoms vs all atoms (Liu, He, Mo 2023)",
                   ctx.footer(f"{n_atoms:,} atoms × {n_models} model{'s' if n_models != 1 else ''}",
                              "rare-event atoms: the migrating atom (r = 0 Å)"))


__all__ = [
    "COLOURS",
    "FORMATS",
    "Context",
    "FiguresUnavailable",
    "require_matplotlib",
    "crystal_system",
    "error_histogram",
    "force_parity",
    "grouped_errors",
    "model_labels",
    "models_with_results",
    "parity",
    "periodic_table",
    "pes_slice",
    "rare_event_cdf",
]
