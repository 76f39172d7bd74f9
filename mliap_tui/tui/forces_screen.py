"""Force audit screen: softening scale and rare-event force errors of one or more datasets.

Tabs: force parity plot (MLIP vs DFT components, eV/Å) with each model's fitted slope; CDFs of
|dF| (eV/Å) and dθ (degrees) for rare-event atoms vs all atoms; distance-binned errors; the
per-structure table (slope, intercept, R², MAE, cMAE) with a filter and CSV export.

The filter above the table is the explorer's filter language (:mod:`mliap_tui.analysis.filters`)
with its force keys: ``model=chgnet*``, ``data=si-vacancy``, ``id=...``, ``slope<0.8``,
``mae>0.2``, ``cmae<0.1`` (eV/Å), ``r2<0.9``, ``b>0.01``. The numbers come from
:func:`mliap_tui.analysis.force_audit.force_audit`; the figures are in :mod:`mliap_tui.tui.plots`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import polars as pl
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import (
    DataTable,
    Footer,
    Header,
    Input,
    Static,
    TabbedContent,
    TabPane,
)

from mliap_tui.analysis.filters import FilterError, apply_filter, parse_filter
from mliap_tui.analysis.force_audit import ForceAudit, force_audit
from mliap_tui.cache import Cache
from mliap_tui.core.units import plural
from mliap_tui.tui.plots import force_cdf, force_parity


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
        Binding("w", "write_figure", "Write figure", show=False, id="forces.write_figure"),
        Binding("slash", "focus_filter", "Filter", id="forces.filter"),
        Binding("1", "show_tab('tab-parity')", "Parity", show=False, id="forces.tab_parity"),
        Binding("2", "show_tab('tab-df')", "|dF| CDF", show=False, id="forces.tab_df"),
        Binding("3", "show_tab('tab-dtheta')", "dθ CDF", show=False, id="forces.tab_dtheta"),
        Binding("4", "show_tab('tab-binned')", "By distance", show=False, id="forces.tab_binned"),
        Binding("5", "show_tab('tab-structures')", "Structures", show=False, id="forces.tab_structures"),
        Binding("i", "import_sample", "Import force sample", show=False, id="forces.import_sample"),
    ]

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
                yield FigureView(force_parity, id="fig-parity")
            with TabPane("|dF| CDF", id="tab-df"):
                yield FigureView(lambda a, w, h: force_cdf(a, "df_ev_per_ang", w, h), id="fig-df")
            with TabPane("dθ CDF", id="tab-dtheta"):
                yield FigureView(lambda a, w, h: force_cdf(a, "dtheta_deg", w, h), id="fig-dtheta")
            with TabPane("By distance", id="tab-binned"):
                yield Static("", id="forces-binned")
            with TabPane("Structures", id="tab-structures"):
                yield Input(placeholder="filter: model=chgnet* data=si-vacancy slope<0.8 mae>0.2", id="forces-filter")
                yield Static("", id="forces-filter-status")
                yield DataTable(id="forces-table", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#forces-table", DataTable)
        table.add_columns("dataset", "material", "model", "N", "slope", "slope+b", "b eV/Å", "R²", "MAE eV/Å", "cMAE eV/Å")
        self._load()

    EMPTY_CACHE = Text.assemble(
        ("No dataset with DFT forces in the cache yet.", "bold yellow"), "\n",
        "Press ", ("i", "bold"), " to import the shipped force sample (5 MPtrj frames and 8 Si vacancy-migration cells, "
        "real DFT forces; or in a shell: mliap-tui data import sample-forces), then ", ("r", "bold"),
        " to run a model on it with ", ("forces", "bold"), " ticked, and come back with ", ("f", "bold"), ".",
    )

    @work(thread=True, exclusive=True)
    def _load(self) -> None:
        if not self.datasets:
            self.app.call_from_thread(self._show_empty)
            return
        try:
            audit = force_audit(self.cache, self.datasets, self.models)
        except Exception as exc:  # noqa: BLE001 - show the reason on screen
            self.app.call_from_thread(self.query_one("#forces-summary", Static).update, f"[red]{type(exc).__name__}: {exc}[/red]")
            return
        self.app.call_from_thread(self._show, audit)

    def _show_empty(self) -> None:
        self.sub_title = "force audit · no dataset with DFT forces"
        self.query_one("#forces-summary", Static).update(self.EMPTY_CACHE)
        for fid in ("#fig-parity", "#fig-df", "#fig-dtheta"):
            self.query_one(fid, FigureView).update("nothing to plot yet")

    def action_import_sample(self) -> None:
        if self.datasets:
            self.notify("the cache already has datasets with DFT forces", timeout=3)
            return
        self.query_one("#forces-summary", Static).update("importing the shipped force sample…")
        self._import()

    @work(thread=True, exclusive=True, group="import")
    def _import(self) -> None:
        from mliap_tui.data.importer import import_force_sample
        from mliap_tui.tui.app import datasets_with_dft_forces

        try:
            reports = import_force_sample(self.cache, n_jobs=1)
        except Exception as exc:  # noqa: BLE001 - shown, not raised
            self.app.call_from_thread(self.notify, f"import failed: {exc}", severity="error")
            return
        self.datasets = datasets_with_dft_forces(self.cache)
        done = ", ".join(f"{r.dataset} ({r.n_loaded})" for r in reports)
        self.app.call_from_thread(self.notify, f"imported {done}: now r, a model with forces ticked, s", timeout=10)
        self._load()

    def _show(self, audit: ForceAudit) -> None:
        self.audit = audit
        self.sub_title = "force audit · " + ", ".join(self.datasets)
        if audit.empty:
            for fid in ("#fig-parity", "#fig-df", "#fig-dtheta"):
                self.query_one(fid, FigureView).update("nothing to plot yet: no predicted forces")
            self.query_one("#forces-summary", Static).update(Text.assemble(
                (f"No predicted forces yet for {', '.join(self.datasets)}.", "bold yellow"),
                " Run a model with forces: ", ("r", "bold"), ", tick ", ("forces", "bold"), ", ", ("s", "bold"),
                f"  (or mliap-tui run --data {self.datasets[0]} --models chgnet-0.3.0 --forces)"))
            return
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
        status = self.query_one("#forces-filter-status", Static)
        try:
            flt = parse_filter(event.value)
            shown = apply_filter(self.audit.per_structure, flt)
        except FilterError as exc:
            status.update(Text.assemble(("filter error: ", "bold red"), (str(exc), "red"),
                                        f"\nstill showing {plural(len(self.shown) if self.shown is not None else 0, 'structure-model pair')}"))
            return
        self._fill_table(shown)
        total = len(self.audit.per_structure)
        if not len(shown):
            status.update(Text(f"no structure matches {flt.text!r} (of {total}): edit the filter, or submit it empty",
                               style="yellow"))
        else:
            status.update(Text(f"{len(shown)} of {plural(total, 'structure-model pair')} · {flt.describe()}", style="dim"))

    def action_show_tab(self, tab: str) -> None:
        self.query_one("#forces-tabs", TabbedContent).active = tab

    def action_focus_filter(self) -> None:
        self.query_one("#forces-tabs", TabbedContent).active = "tab-structures"
        self.query_one("#forces-filter", Input).focus()

    def action_write_figure(self) -> None:
        """Write the parity or CDF figure as a publication PNG (``./figures`` or ``$MLIAP_TUI_FIGURES``)."""
        from mliap_tui.tui.figure_export import forces_figure, write_current_figure

        write_current_figure(self, forces_figure)

    def action_export(self) -> None:
        if self.shown is None:
            return
        from mliap_tui.analysis.export import write_csv

        try:
            result = write_csv(self.shown, self.export_path, overwrite=True)
        except OSError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        self.notify(f"wrote {plural(result.n_rows, 'row')} to {result.path}")
