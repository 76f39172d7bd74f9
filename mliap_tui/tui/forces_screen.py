"""Force audit screen: softening scale and rare-event force errors of one or more datasets.

Tabs: force parity plot (MLIP vs DFT components, eV/Å) with each model's fitted slope; CDFs of
|dF| (eV/Å) and dθ (degrees) for rare-event atoms vs all atoms; distance-binned errors; the
per-structure table (slope, intercept, R², MAE, cMAE) with a filter and CSV export.

Filter syntax (the input above the table): space-separated terms, all must hold:
``model=chgnet`` / ``data=si-vac`` / ``id=007`` (substring), ``slope<0.8``, ``slope>1``,
``mae>0.2``, ``cmae<0.1`` (eV/Å).

The figure functions are plain (no textual) so tests can call them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import polars as pl
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static, TabbedContent, TabPane

from mliap_tui.analysis import rare_events, softening
from mliap_tui.cache import Cache
from mliap_tui.tui.plots import PALETTE, _build, _figure, _fit, legend_line, too_small

MAX_POINTS = 3000


@dataclass
class ForceAudit:
    pairs: pl.DataFrame
    per_structure: pl.DataFrame
    aggregate: pl.DataFrame
    atoms: pl.DataFrame
    summary: pl.DataFrame
    binned: pl.DataFrame

    @property
    def models(self) -> list[str]:
        return sorted(self.pairs["model"].unique().to_list()) if len(self.pairs) else []


def load_force_audit(cache: Cache, datasets: Sequence[str], models: Sequence[str] | None = None) -> ForceAudit:
    frames = [softening.load_force_pairs(cache, d, models) for d in datasets]
    pairs = pl.concat(frames, how="vertical") if frames else pl.DataFrame()
    per = softening.softening_table(pairs)
    agg = softening.aggregate_softening(pairs, per) if len(pairs) else pl.DataFrame()
    atoms = pl.concat([rare_events.atom_errors(softening.load_force_pairs(cache, d, models),
                                               rare_events.load_atom_properties(cache, d)) for d in datasets],
                      how="diagonal_relaxed") if datasets else pl.DataFrame()
    summary = rare_events.rare_event_summary(atoms) if len(atoms) else pl.DataFrame()
    binned = rare_events.distance_binned(atoms) if len(atoms) else pl.DataFrame()
    return ForceAudit(pairs, per, agg, atoms, summary, binned)


# --------------------------------------------------------------------------------------------
# figures (plain functions)
# --------------------------------------------------------------------------------------------


def parity_figure(audit: ForceAudit, width: int, height: int) -> str:
    """MLIP vs DFT force components (eV/Å), one signal per model, slope of the pooled fit in the legend."""
    if (msg := too_small(width, height)) is not None:
        return msg
    if not len(audit.pairs):
        return "no structures with DFT and predicted forces: run the engine with forces"
    fig = _figure(width, height - 1)
    lo, hi, legend = 0.0, 0.0, []
    for i, model in enumerate(audit.models):
        x, y = softening.parity_points(audit.pairs, model, MAX_POINTS // max(1, len(audit.models)))
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


def cdf_figure(audit: ForceAudit, column: str, width: int, height: int) -> str:
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


def summary_text(audit: ForceAudit) -> Text:
    lines = []
    for r in audit.aggregate.iter_rows(named=True) if len(audit.aggregate) else []:
        lines.append(f"{r['dataset']:<16} {r['model']:<14} slope median {r['slope_median']:.3f} "
                     f"(<1: {100 * r['frac_slope_below_1']:.0f} %)  MAE {r['mae_ev_per_ang']:.3f}  "
                     f"cMAE {r['cmae_ev_per_ang']:.3f} eV/Å")
    for r in audit.summary.iter_rows(named=True) if len(audit.summary) else []:
        lines.append(f"{r['dataset']:<16} {r['model']:<14} {r['atoms']:<9} |dF|>0.5 eV/Å "
                     f"{100 * r['frac_abs_df_gt_0.5']:.1f} %  dθ>15° {100 * r['frac_dtheta_gt_15']:.1f} %  "
                     f"dθ>30° {100 * r['frac_dtheta_gt_30']:.1f} %")
    return Text("\n".join(lines) or "nothing computed yet")


def binned_text(audit: ForceAudit) -> Text:
    if not len(audit.binned):
        return Text("no per-atom distances to the migrating atom in these datasets (Si rare-event sets have them)")
    lines = [f"{'dataset':<16} {'model':<14} {'r (Å)':<9} {'n':>6} {'mean|dF|':>9} {'|dF|>.5':>8} {'dθ med':>7} {'>15°':>6} {'>30°':>6}"]
    for r in audit.binned.sort("dataset", "model", "bin_index").iter_rows(named=True):
        lines.append(f"{r['dataset']:<16} {r['model']:<14} {r['r_bin_ang']:<9} {r['n_atoms']:>6} "
                     f"{r['mean_abs_df_ev_per_ang']:>9.3f} {100 * r['frac_abs_df_gt_0.5']:>7.1f}% "
                     f"{r['median_dtheta_deg']:>7.1f} {100 * r['frac_dtheta_gt_15']:>5.1f}% {100 * r['frac_dtheta_gt_30']:>5.1f}%")
    lines.append("|dF| eV/Å, angles degrees; fractions of the atoms in the bin")
    return Text("\n".join(lines))


_NUM_TERM = re.compile(r"^(slope|mae|cmae|r2|b)\s*([<>])\s*(-?[0-9.]+)$")
_NUM_COLS = {"slope": "slope_origin", "mae": "mae_ev_per_ang", "cmae": "cmae_ev_per_ang", "r2": "r2",
             "b": "intercept_ev_per_ang"}
_STR_COLS = {"model": "model", "data": "dataset", "dataset": "dataset", "id": "material_id"}


def filter_structures(per: pl.DataFrame, text: str) -> pl.DataFrame:
    """Apply the filter terms (module doc) to the per-structure table; ValueError for a bad term."""
    out = per
    for term in text.split():
        m = _NUM_TERM.match(term)
        if m:
            col, op, val = _NUM_COLS[m.group(1)], m.group(2), float(m.group(3))
            out = out.filter(pl.col(col) < val if op == "<" else pl.col(col) > val)
            continue
        key, eq, val = term.partition("=")
        if eq and key in _STR_COLS:
            out = out.filter(pl.col(_STR_COLS[key]).str.contains(val, literal=True))
            continue
        raise ValueError(f"bad filter term {term!r}: use model=, data=, id=, slope<x, mae>x, cmae<x, r2<x")
    return out


# --------------------------------------------------------------------------------------------
# the screen
# --------------------------------------------------------------------------------------------


class FigureView(Static):
    """A Static re-rendering a figure function at its own size."""

    def __init__(self, draw, *, id: str | None = None) -> None:
        super().__init__("loading…", id=id)
        self.draw = draw
        self.audit: ForceAudit | None = None
        self.last_plot = ""

    def set_audit(self, audit: ForceAudit) -> None:
        self.audit = audit
        self.redraw()

    def redraw(self) -> None:
        if self.audit is None or self.size.width == 0:
            return
        self.last_plot = self.draw(self.audit, self.size.width, max(self.size.height, 8))
        self.update(Text.from_ansi(self.last_plot, no_wrap=True, overflow="crop"))

    def on_resize(self) -> None:
        self.redraw()


class ForcesScreen(Screen):
    """Softening scale and rare-event force errors of ``datasets`` (forces eV/Å, angles degrees)."""

    BINDINGS = [
        Binding("escape,q", "app.pop_screen", "Back", id="forces.back"),
        Binding("e", "export", "Export CSV", id="forces.export"),
        Binding("slash", "focus_filter", "Filter", id="forces.filter"),
    ]
    DEFAULT_CSS = """
    #forces-summary { height: auto; max-height: 8; }
    #forces-filter { height: 3; }
    FigureView { height: 1fr; }
    """

    def __init__(self, cache: Cache, datasets: Sequence[str], models: Sequence[str] | None = None,
                 export_path: str | Path = "force_audit_structures.csv") -> None:
        super().__init__()
        self.cache, self.datasets = cache, list(datasets)
        self.models = list(models) if models else None
        self.export_path = Path(export_path)
        self.audit: ForceAudit | None = None
        self.shown: pl.DataFrame | None = None

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Static("loading…", id="forces-summary")
        with TabbedContent(id="forces-tabs"):
            with TabPane("Parity", id="tab-parity"):
                yield FigureView(parity_figure, id="fig-parity")
            with TabPane("|dF| CDF", id="tab-df"):
                yield FigureView(lambda a, w, h: cdf_figure(a, "df_ev_per_ang", w, h), id="fig-df")
            with TabPane("dθ CDF", id="tab-dtheta"):
                yield FigureView(lambda a, w, h: cdf_figure(a, "dtheta_deg", w, h), id="fig-dtheta")
            with TabPane("By distance", id="tab-binned"):
                yield Static("", id="forces-binned")
            with TabPane("Structures", id="tab-structures"):
                yield Input(placeholder="filter: model=chgnet data=si-vac slope<0.8 mae>0.2", id="forces-filter")
                yield DataTable(id="forces-table", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "force audit · " + ", ".join(self.datasets)
        table = self.query_one("#forces-table", DataTable)
        table.add_columns("dataset", "material", "model", "N", "slope", "slope+b", "b eV/Å", "R²", "MAE eV/Å", "cMAE eV/Å")
        self._load()

    @work(thread=True, exclusive=True)
    def _load(self) -> None:
        try:
            audit = load_force_audit(self.cache, self.datasets, self.models)
        except Exception as exc:  # noqa: BLE001 - show the reason on screen
            self.app.call_from_thread(self.query_one("#forces-summary", Static).update, f"[red]{type(exc).__name__}: {exc}[/red]")
            return
        self.app.call_from_thread(self._show, audit)

    def _show(self, audit: ForceAudit) -> None:
        self.audit = audit
        self.query_one("#forces-summary", Static).update(summary_text(audit))
        self.query_one("#forces-binned", Static).update(binned_text(audit))
        for fid in ("#fig-parity", "#fig-df", "#fig-dtheta"):
            self.query_one(fid, FigureView).set_audit(audit)
        self._fill_table(audit.per_structure)

    def _fill_table(self, per: pl.DataFrame) -> None:
        self.shown = per
        table = self.query_one("#forces-table", DataTable)
        table.clear()

        def f(x, d=3):
            return "-" if x is None or not np.isfinite(x) else f"{x:.{d}f}"

        for r in per.sort("slope_origin", nulls_last=True).iter_rows(named=True):
            table.add_row(r["dataset"], r["material_id"], r["model"], str(r["n_sites"]), f(r["slope_origin"]),
                          f(r["slope"]), f(r["intercept_ev_per_ang"], 4), f(r["r2"]), f(r["mae_ev_per_ang"]),
                          f(r["cmae_ev_per_ang"]))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.audit is None:
            return
        try:
            self._fill_table(filter_structures(self.audit.per_structure, event.value))
        except ValueError as exc:
            self.notify(str(exc), severity="error")

    def action_focus_filter(self) -> None:
        self.query_one("#forces-tabs", TabbedContent).active = "tab-structures"
        self.query_one("#forces-filter", Input).focus()

    def action_export(self) -> None:
        if self.shown is None:
            return
        self.shown.write_csv(self.export_path)
        self.notify(f"wrote {len(self.shown)} rows to {self.export_path}")
