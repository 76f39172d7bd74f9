"""plotext figures of the filtered rows, rendered to ANSI strings sized to their widget.

Every function takes tidy rows (``View.plot_rows()``) or group statistics (``View.by_group``)
and a width x height in terminal cells, and returns the figure as an ANSI string (plotext 6:
``plotext.figure ... .build()``; the explorer shows it with ``rich.text.Text.from_ansi``).
plotext keeps one global figure, so call these from one thread (the widget renders on the UI
thread). Energies are eV/atom in the data; errors are drawn in meV/atom and every axis says its
unit. The legend is a line of its own under the figure (plotext's in-canvas legend box hides
data in a small terminal), coloured like the signals.
"""

from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from mliap_tui.analysis import rare_events, softening
from mliap_tui.core.units import MEV_PER_EV, format_mev, format_signed
from mliap_tui.core.vocab import METRIC_LABEL, METRICS

if TYPE_CHECKING:
    from mliap_tui.analysis.force_audit import ForceAudit

MAX_POINTS = 3000  # scatter points drawn (a fixed-seed sample beyond that, said in the title)
MIN_WIDTH, MIN_HEIGHT = 30, 8
PLOT_KINDS = ("parity", "hist", "dof", "system")
PLOT_TITLES = {
    "parity": "Parity",
    "hist": "Error histogram",
    "dof": "Error vs DOF",
    "system": "By crystal system",
}
#: plotext's colour sequence for successive signals (256-colour codes), restarted in each subplot.
PALETTE = (12, 10, 9, 14, 13, 11, 0, 15, 8, 7, 1, 2, 3, 4, 5, 6)


def _figure(width: int, height: int, rows: int = 1):
    import plotext as plt

    fig = plt.figure
    fig.clear()
    fig.plot_size(width, height)
    if rows > 1:
        fig.subplots(rows, 1)
    fig.theme("simple")  # after subplots(): the theme reaches every subplot
    return fig


def _build(fig) -> str:
    # plotext prints its warnings to stdout; keep them out of the terminal the app draws on
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        out = str(fig.build())
    return out[:-1] if out.endswith("\n") else out  # build() ends with a newline: one row too many


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def legend_line(entries: list[tuple[str, str, int]], width: int) -> str:
    """ANSI line 'symbol label' per entry, each in its 256-colour code; cut to ``width`` cells."""
    parts, used = [], 0
    for symbol, label, colour in entries:
        plain = f"{symbol} {label}"
        if used + len(plain) + 2 > width:
            parts.append("…")
            break
        parts.append(f"\x1b[38;5;{colour}m{symbol}\x1b[0m {label}")
        used += len(plain) + 2
    return "  ".join(parts)


def _ok_rows(rows: pl.DataFrame, model: str | None, metric: str) -> pl.DataFrame:
    dft, pred, err = METRICS[metric]
    out = rows.filter((pl.col("status") == "ok") & pl.col(err).is_not_null() & pl.col(dft).is_not_null())
    if model is not None:
        out = out.filter(pl.col("model") == model)
    return out


def too_small(width: int, height: int) -> str | None:
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        return f"window too small for a plot ({width}x{height} cells; need {MIN_WIDTH}x{MIN_HEIGHT})"
    return None


def parity(rows: pl.DataFrame, model: str | None, metric: str, width: int, height: int) -> str:
    """Predicted vs DFT value (eV/atom) of ``model``, with the y = x line."""
    if (msg := too_small(width, height)) is not None:
        return msg
    if model is None:
        return "no model selected: run a model on this dataset (mliap-tui run), or relax the filter"
    dft, pred, _ = METRICS[metric]
    ok = _ok_rows(rows, model, metric)
    n = ok.height
    if n == 0:
        return f"no successful {model} predictions match the filter"
    shown = ok.sample(MAX_POINTS, seed=0) if n > MAX_POINTS else ok
    x, y = shown[dft].to_list(), shown[pred].to_list()
    lo, hi = min(min(x), min(y)), max(max(x), max(y))
    if hi <= lo:
        hi = lo + 1e-3
    fig = _figure(width, height - 1)
    fig.draw(fig.signal(x, y))
    fig.draw(fig.signal([lo, hi], [lo, hi]).lines())
    sample = f", {len(shown):,} drawn (random sample)" if n > MAX_POINTS else ""
    fig.title(_fit(f"{model}: {METRIC_LABEL[metric]}, predicted vs DFT (eV/atom), n={n:,}{sample}", width - 2))
    fig.label("DFT (eV/atom)", "x")
    fig.label("predicted (eV/atom)", "y")
    return _build(fig) + "\n" + legend_line([("▚", f"{model}", PALETTE[0]), ("─", "y = x (perfect agreement)", PALETTE[1])], width)


def histogram(rows: pl.DataFrame, model: str | None, metric: str, width: int, height: int) -> str:
    """Signed error (prediction - DFT, meV/atom) of ``model``; the 0.5%-99.5% range is binned."""
    if (msg := too_small(width, height)) is not None:
        return msg
    if model is None:
        return "no model selected: run a model on this dataset (mliap-tui run), or relax the filter"
    err = METRICS[metric][2]
    ok = _ok_rows(rows, model, metric)
    if ok.height == 0:
        return f"no successful {model} predictions match the filter"
    d = ok[err] * MEV_PER_EV
    lo, hi = (d.quantile(0.005), d.quantile(0.995)) if ok.height >= 200 else (d.min(), d.max())
    inside = d.filter(d.is_between(lo, hi))
    outside = d.len() - inside.len()
    fig = _figure(width, height - 2)
    bins = max(5, min(60, (width - 12) // 2, int(inside.len() ** 0.5) + 1))
    fig.draw(fig.hist(inside.to_list(), bins=bins))
    if lo < 0 < hi:  # the zero-error line
        counts, _ = _counts(inside.to_list(), bins)
        fig.draw(fig.signal([0.0, 0.0], [0, max(counts)]).lines())
    note = f", {outside:,} outside" if outside else ""
    fig.title(_fit(f"{model}: {METRIC_LABEL[metric]} error (meV/atom), n={d.len():,}{note}", width - 2))
    fig.label("prediction - DFT (meV/atom)", "x")
    fig.label("materials", "y")
    stats = (f"mean {format_signed(d.mean())}  MAE {d.abs().mean():.1f}  underpredicted {100 * (d < 0).mean():.0f}%"
             "  (meV/atom)")
    return _build(fig) + "\n" + legend_line([("█", model, PALETTE[0]), ("│", "zero error", PALETTE[1])], width) + "\n" + _fit(stats, width)


def _counts(values: list[float], bins: int) -> tuple[list[int], list[float]]:
    lo, hi = min(values), max(values)
    step = (hi - lo) / bins or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(int((v - lo) / step), bins - 1)] += 1
    return counts, [lo + i * step for i in range(bins + 1)]


def groups(stats: pl.DataFrame, metric: str, by_label: str, width: int, height: int) -> str:
    """MAE (top) and mean signed error (bottom) per group and model, meV/atom, as grouped bars.

    ``stats``: ``aggregate.per_group`` output (group, model, n, mae, mean_signed, ...). Below
    ``TWO_PANEL_MIN_HEIGHT`` rows the mean signed error is printed as text under one MAE panel.
    """
    if (msg := too_small(width, height)) is not None:
        return msg
    if stats.is_empty():
        return "no successful predictions match the filter"
    group_order = list(dict.fromkeys(stats["group"].to_list()))
    models = sorted(stats["model"].unique().to_list())
    index = {g: i + 1 for i, g in enumerate(group_order)}
    step = 0.8 / len(models)
    two_panels = height >= TWO_PANEL_MIN_HEIGHT
    text_lines = [] if two_panels else _signed_text(stats, models, group_order, width)
    fig = _figure(width, height - 1 - len(text_lines), rows=2 if two_panels else 1)
    panels = [("mae", f"MAE by {by_label}, {METRIC_LABEL[metric]} (meV/atom)")]
    if two_panels:
        panels.append(("mean_signed", "mean signed error (meV/atom; < 0 = underpredicted)"))
    for row, (column, title) in enumerate(panels, start=1):
        sub = fig.subplot(row, 1) if two_panels else fig
        for k, model in enumerate(models):
            part = stats.filter(pl.col("model") == model)
            xs = [index[g] + (k - (len(models) - 1) / 2) * step for g in part["group"].to_list()]
            ys = [v * MEV_PER_EV for v in part[column].to_list()]
            sub.draw(sub.bar(xs, ys, width=0.9 * step))
        values = [v * MEV_PER_EV for v in stats[column].drop_nulls().to_list()] or [0.0]
        top, bottom = max(max(values), 0.0), min(min(values), 0.0)
        sub.ruler("y").lim(bottom, top if top > bottom else bottom + 1.0)
        sub.ruler("x").ticks(list(index.values()), [_short(g) for g in group_order])
        sub.ruler("x").lim(0.5, len(group_order) + 0.5)
        sub.title(_fit(title, width - 2))
    n = int(stats["n"].sum())
    (fig.subplot(2, 1) if two_panels else fig).label(_fit(f"{by_label} ({n:,} predictions)", width - 8), "x")
    legend = [("█", m, PALETTE[k % len(PALETTE)]) for k, m in enumerate(models)]
    return "\n".join([_build(fig), legend_line(legend, width), *text_lines])


TWO_PANEL_MIN_HEIGHT = 24


def _signed_text(stats: pl.DataFrame, models: list[str], group_order: list[str], width: int) -> list[str]:
    """'mean signed (meV/atom) model: group +x ...' lines for a one-panel figure."""
    lines = []
    for m in models:
        part = {g: v for g, v in stats.filter(pl.col("model") == m).select("group", "mean_signed").iter_rows()}
        cells = " ".join(f"{_short(g)} {format_mev(part[g], 0, signed=True)}" for g in group_order if part.get(g) is not None)
        lines.append(_fit(f"mean signed meV/atom, {m}: {cells}", width))
    return lines


def _short(group: str) -> str:
    return {"orthorhombic": "orthorh.", "monoclinic": "monocl.", "tetragonal": "tetrag.", "hexagonal": "hexag."}.get(group, group)


# ---- force audit figures (the Forces screen) ------------------------------------------------------

FORCE_MAX_POINTS = 3000


def force_parity(audit: "ForceAudit", width: int, height: int) -> str:
    """MLIP vs DFT force components (eV/Å), one signal per model, slope of the pooled fit in the legend."""
    if (msg := too_small(width, height)) is not None:
        return msg
    if not len(audit.pairs):
        return "no structures with DFT and predicted forces: run the engine with forces"
    fig = _figure(width, height - 1)
    lo, hi, legend = 0.0, 0.0, []
    for i, model in enumerate(audit.models):
        x, y = softening.parity_points(audit.pairs, model, FORCE_MAX_POINTS // max(1, len(audit.models)))
        if not x.size:
            continue
        fit = softening.fit_slope(y, x)
        fig.draw(fig.signal(x.tolist(), y.tolist()))
        lo, hi = min(lo, x.min(), y.min()), max(hi, x.max(), y.max())
        legend.append(("▚", f"{model} slope {fit['slope_origin']:.3f}", PALETTE[i % len(PALETTE)]))
    fig.draw(fig.signal([lo, hi], [lo, hi]).lines())
    legend.append(("─", "y = x", PALETTE[len(legend) % len(PALETTE)]))
    fig.title(_fit(f"force components, MLIP vs DFT (eV/Å), {len(audit.per_structure):,} structure-model pairs", width - 2))
    fig.label("DFT force (eV/Å)", "x")
    fig.label("MLIP force (eV/Å)", "y")
    return _build(fig) + "\n" + legend_line(legend, width)


def force_cdf(audit: "ForceAudit", column: str, width: int, height: int) -> str:
    """CDF of |dF| (eV/Å) or dθ (degrees) per model, rare-event atoms vs all atoms."""
    if (msg := too_small(width, height)) is not None:
        return msg
    if not len(audit.atoms):
        return "no per-atom force errors yet"
    is_angle = column == "dtheta_deg"
    vals = pl.col(column) if is_angle else pl.col(column).abs()
    top = 60.0 if is_angle else float(np.nanpercentile(audit.atoms[column].abs().to_numpy(), 99) or 1.0)
    grid = np.linspace(0.0, top, 60)
    fig = _figure(width, height - 1)
    legend, k = [], 0
    for model in audit.models:
        sub = audit.atoms.filter(pl.col("model") == model)
        for label, part in (("all", sub), ("RE", sub.filter(pl.col("is_rare_event")))):
            if not len(part):
                continue
            y = rare_events.cdf(part.select(vals.alias("v"))["v"].to_numpy(), grid)
            fig.draw(fig.signal(grid.tolist(), y.tolist()).lines())
            legend.append(("─", f"{model} {label} (n={len(part):,})", PALETTE[k % len(PALETTE)]))
            k += 1
    unit = "dθ (degrees)" if is_angle else "|dF| = ||F_ML|-|F_DFT|| (eV/Å)"
    fig.title(_fit(f"CDF of {unit}; RE = migrating atoms (r == 0)", width - 2))
    fig.label(unit, "x")
    fig.label("fraction of atoms ≤ x", "y")
    return _build(fig) + "\n" + legend_line(legend, width)
