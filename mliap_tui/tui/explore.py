"""The Explore screen: filter line, summary strip, virtual table and plots over the cache."""

from __future__ import annotations

import itertools
from typing import Any

import polars as pl
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, TabbedContent, TabPane

from mliap_tui.analysis.export import tidy_export_frame, wide_export_frame, write_csv
from mliap_tui.analysis.filters import (
    Filter,
    FilterError,
    apply_filter,
    parse_filter,
    wide_column,
)
from mliap_tui.cache import Cache
from mliap_tui.cache.weights import VARIANT_SEP
from mliap_tui.core.units import format_mev, plural
from mliap_tui.core.vocab import (
    CHEAP_METRICS,
    CRYSTAL_SYSTEMS,
    METRIC_LABEL,
    METRIC_SYMBOL,
    METRICS,
    CrystalSystem,
)
from mliap_tui.tui import plots
from mliap_tui.tui.commands import ExploreCommands
from mliap_tui.tui.messages import (
    DatasetLoaded,
    DatasetLoadFailed,
    ResultsChanged,
    ViewComputed,
    ViewFailed,
)
from mliap_tui.tui.ptable import PeriodicTable
from mliap_tui.tui.state import (
    LoadedDataset,
    View,
    check_filter,
    compute_view,
    load_dataset,
    match_column,
)
from mliap_tui.tui.table import Column, VirtualTable
from mliap_tui.tui.widgets import FilterStatus, PlotView, SummaryStrip

TABS = ("table", *plots.PLOT_KINDS, "elements")
TAB_TITLES = {"table": "Table", **plots.PLOT_TITLES, "elements": "By element"}


def _signed_style(value: float) -> str | None:
    return "negative" if value < 0 else "positive" if value > 0 else None


def _pred_renderer(key: str, status_key: str):
    def render(row: dict[str, Any]) -> tuple[str, str | None]:
        status = row.get(status_key)
        if status is None:
            return "not run", "dim"
        if status == "failed":
            return "failed", "failed"
        value = row.get(key)
        return ("—", "dim") if value is None else (f"{value:.3f}", None)

    return render


def fit_model_label(label: str, width: int) -> str:
    """``label`` in at most ``width`` cells; a weights variant (``id~fingerprint``) keeps its
    fingerprint and shortens the id, so two weights of one model never look alike."""
    if len(label) <= width:
        return label
    base, sep, variant = label.rpartition(VARIANT_SEP)
    if sep and len(variant) + 3 <= width:
        return base[: width - len(variant) - 2] + "…" + sep + variant
    return label[: width - 1] + "…"


COMPACT_BELOW = 110  # terminal columns under which the table drops the secondary columns


def table_columns(metric: str, models: list[str], with_match: bool, compact: bool = False) -> list[Column]:
    """The table's columns for a metric: material columns, DFT value (eV/atom), then per model
    the predicted value (eV/atom) and the signed error (meV/atom). ``compact`` (narrow
    terminals) drops lattice/Wyckoff DOF and site count and abbreviates the crystal system."""
    dft, pred, err = METRICS[metric]
    short = METRIC_SYMBOL[metric]
    cols = [
        Column("material_id", "material", 10 if compact else 12, justify="left"),
        Column("formula", "formula", 9 if compact else 10, justify="left"),
        Column("spacegroup_number", "no.", 3, group="space group"),
        Column("spacegroup_symbol", "symbol", 8 if compact else 9, justify="left", group="space group"),
    ]
    if compact:
        cols += [
            Column("crystal_system", "system", 8, justify="left", fmt=lambda v: CrystalSystem(v).abbrev if v in CRYSTAL_SYSTEMS else v),
            Column("total_dof", "DOF", 3),
        ]
    else:
        cols += [
            Column("crystal_system", "system", 12, justify="left"),
            Column("total_dof", "tot", 3, group="DOF"),
            Column("lattice_dof", "lat", 3, group="DOF"),
            Column("wyckoff_dof", "wyk", 3, group="DOF"),
            Column("n_sites", "sites", 5),
        ]
    cols.append(Column(dft, "eV/atom", 9 if compact else 10, group=f"DFT {short}", fmt=lambda v: f"{v:.3f}"))
    pred_label, pred_width = ("eV/atom", 8) if compact else ("pred eV/at", 10)
    for m in models:
        pred_key, err_key, status_key = wide_column(pred, m), wide_column(err, m), wide_column("status", m)
        dim = match_column(m) if with_match else None
        group = fit_model_label(m, pred_width + 9)  # the group spans both columns (and one separator)
        cols.append(Column(pred_key, pred_label, pred_width, group=group, render=_pred_renderer(pred_key, status_key),
                           needs=(status_key,), dim_key=dim))
        # 11 wide: "Δ meV/atom" plus the sort arrow
        cols.append(Column(err_key, "Δ meV/atom", 11, group=group, fmt=lambda v: format_mev(v, signed=True), style=_signed_style, dim_key=dim))
    return cols


class ExploreScreen(Screen):
    """Filter, summarise, tabulate and plot the cached predictions of one dataset."""

    COMMANDS = {ExploreCommands}
    BINDINGS = [
        Binding("slash", "focus_filter", "Filter", id="explore.focus_filter"),
        Binding("c", "clear_filter", "Clear", id="explore.clear_filter"),
        Binding("m", "next_model", "Model", id="explore.next_model"),
        Binding("t", "next_metric", "Metric", id="explore.next_metric"),
        Binding("p", "next_tab", "Plots", id="explore.next_tab"),
        Binding("e", "export", "Export", id="explore.export"),
        Binding("w", "write_figure", "Write figure", show=False, id="explore.write_figure"),
        Binding("S", "study", "Study", id="explore.study"),
        Binding("1", "show_tab('table')", "Table", show=False, id="explore.tab_table"),
        Binding("2", "show_tab('parity')", "Parity plot", show=False, id="explore.tab_parity"),
        Binding("3", "show_tab('hist')", "Error histogram", show=False, id="explore.tab_hist"),
        Binding("4", "show_tab('dof')", "Error vs DOF", show=False, id="explore.tab_dof"),
        Binding("5", "show_tab('system')", "By crystal system", show=False, id="explore.tab_system"),
        Binding("6", "show_tab('elements')", "By element", show=False, id="explore.tab_elements"),
        Binding("d", "next_dataset", "Next dataset", show=False, id="explore.next_dataset"),
        Binding("R", "reload", "Reload cache", show=False, id="explore.reload"),
        Binding("u", "clear_marks", "Unmark all", show=False, id="explore.clear_marks"),
        Binding("escape", "focus_table", "Back to table", show=False, id="explore.focus_table"),
    ]

    def __init__(self, cache: Cache, dataset: str | None = None) -> None:
        super().__init__()
        self.cache = cache
        self.dataset = dataset
        self.mode = "static"
        self.data: LoadedDataset | None = None
        self.view: View | None = None
        self.filter: Filter = Filter()
        self.metric = "e_above_hull"
        self.sort: str | None = None
        self.descending = False
        self.selected_model: str | None = None
        self.filter_error: str | None = None
        self._tokens = itertools.count(1)
        self._load_token = 0
        self._view_token = 0
        self._shown_compact = False
        self._sort_changed = False

    # ---- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◇")
        with Horizontal(id="filter-bar"):
            yield Label("filter ›", id="filter-prompt")
            yield Input(
                placeholder="e.g. sg=136 dof=3..10 el=Ti,O err:ehull>50meV failed · ? help",
                id="filter-input",
            )
        yield FilterStatus(id="filter-status")
        yield SummaryStrip(id="summary")
        with TabbedContent(id="views", initial="table"):
            with TabPane(TAB_TITLES["table"], id="table"):
                yield VirtualTable(id="results")
            for kind in plots.PLOT_KINDS:
                with TabPane(TAB_TITLES[kind], id=kind):
                    yield PlotView(kind, id=f"plot-{kind}")
            with TabPane(TAB_TITLES["elements"], id="elements"):
                yield PeriodicTable(id="ptable")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one(FilterStatus).show("", "")
        self.query_one("#results", VirtualTable).focus()
        datasets = self.cache.datasets()
        if not datasets:
            self.sub_title = "empty cache"
            self.query_one(FilterStatus).show("", "", notice="empty cache: nothing to explore yet")
            self.query_one(SummaryStrip).update(
                f"No datasets in the cache at {self.cache.root}.\n"
                "Import one first: mliap-tui data import sample   (or open another cache: mliap-tui --cache DIR)"
            )
            self.query_one("#results", VirtualTable).set_data(pl.DataFrame({"material_id": []}), [], empty_message="empty cache")
            return
        if self.dataset is None or self.dataset not in datasets:
            if self.dataset is not None:
                self.notify(f"dataset {self.dataset!r} is not in the cache; showing {datasets[0]!r}", severity="warning")
            self.dataset = "sample" if "sample" in datasets else datasets[0]
        self.load()

    # ---- loading --------------------------------------------------------------------------
    def load(self) -> None:
        self._load_token = next(self._tokens)
        self.sub_title = f"{self.dataset} · {self.mode} · loading…"
        self.query_one("#results", VirtualTable).empty_message = f"loading {self.dataset}…"
        self._load_worker(self._load_token, self.dataset, self.mode)

    @work(thread=True, exclusive=True, group="load")
    def _load_worker(self, token: int, dataset: str, mode: str) -> None:
        try:
            data = load_dataset(self.cache, dataset, mode)
        except Exception as exc:  # shown to the user, not raised into the UI thread
            self.post_message(DatasetLoadFailed(token, dataset, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(DatasetLoaded(token, data))

    def on_dataset_loaded(self, message: DatasetLoaded) -> None:
        if message.token != self._load_token:
            return
        self.data = message.data
        if self.metric not in self.data.metrics:  # e.g. the rebuilt hull, not stored for this dataset
            self.metric, self.sort = "e_above_hull", None
        self._report_quarantined()
        self.sub_title = (f"{self.data.dataset} · {self.data.mode} · {plural(self.data.n_materials, 'material')} · "
                          f"{plural(len(self.data.models), 'model')}")
        if self.filter.model_patterns:
            try:
                self.filter = parse_filter(self.filter.text, known_models=self.data.models)
            except FilterError as exc:
                self.filter_error = str(exc)
                self.filter = self.filter.without("model")
        self.refresh_view()

    def _report_quarantined(self) -> None:
        """Unreadable cache files met while loading were set aside: say so, with what to do."""
        from mliap_tui.cache.quarantine import drain

        for note in drain():
            advice = "re-import the dataset" if note.model is None else "run the models again to recompute its rows"
            self.notify(f"{note.describe()}. {advice}.", title="damaged cache file", severity="warning", timeout=20)

    def on_dataset_load_failed(self, message: DatasetLoadFailed) -> None:
        self._report_quarantined()
        if message.token != self._load_token:
            return
        self.sub_title = f"{message.dataset}: failed to load"
        self.query_one(FilterStatus).show("", "", error=f"could not load {message.dataset!r}: {message.error}")

    # ---- view -----------------------------------------------------------------------------
    def refresh_view(self) -> None:
        """Recompute the view (filter, summary, sort) in a worker thread."""
        if self.data is None:
            return
        self._view_token = next(self._tokens)
        self._view_worker(self._view_token, self.data, self.filter, self.metric, self.sort, self.descending,
                          self.selected_model)

    @work(thread=True, exclusive=True, group="view")
    def _view_worker(self, token: int, data: LoadedDataset, flt: Filter, metric: str, sort: str | None, descending: bool,
                     selected: str | None = None) -> None:
        try:
            view = compute_view(data, flt, metric, sort, descending, selected)
        except Exception as exc:
            self.post_message(ViewFailed(token, str(exc)))
            return
        self.post_message(ViewComputed(token, view))

    def on_view_computed(self, message: ViewComputed) -> None:
        if message.token != self._view_token:
            return
        self.show_view(message.view)

    def on_view_failed(self, message: ViewFailed) -> None:
        if message.token != self._view_token:
            return
        self.filter_error = message.error
        if self.view is not None:  # keep showing (and meaning) the last filter that worked
            self.filter = self.view.filter
            self.query_one("#filter-input", Input).value = self.filter.text
        self._show_status()

    def show_view(self, view: View) -> None:
        """Push a computed view to every widget (the redraw half of filter-to-redraw)."""
        self.view = view
        self._shown_compact = self._compact
        if self.selected_model not in view.models:  # default: the model with the most results shown
            counts = dict(zip(view.summary["model"], view.summary["n"]))
            self.selected_model = max(view.models, key=lambda m: counts.get(m) or 0) if view.models else None
        self._set_table(cursor_top=self._sort_changed)
        self._sort_changed = False
        self._show_summary()
        self._show_status()
        self._refresh_plots()

    def _show_summary(self) -> None:
        data = self.data
        self.query_one(SummaryStrip).show(self.view, self.selected_model, self.dataset or "",
                                          data.n_raw_energies if data else 0, data.n_dft_forces if data else 0)

    def _set_table(self, cursor_top: bool = False) -> None:
        """The table of the current view; the selected model's columns come first, so what ``m``
        selects is on screen even when only one model's columns fit (80 columns)."""
        view = self.view
        if view is None:
            return
        models = list(view.models)
        if self.selected_model in models:
            models.remove(self.selected_model)
            models.insert(0, self.selected_model)
        table = self.query_one("#results", VirtualTable)
        empty = ("no materials match the filter: c clears it, / edits it" if self.filter
                 else "no materials in this dataset")
        table.set_data(view, table_columns(view.metric, models, bool(view.match_models), self._compact), fixed=1,
                       sort=view.sort, descending=view.descending, empty_message=empty, cursor_top=cursor_top)

    @property
    def _compact(self) -> bool:
        return self.size.width < COMPACT_BELOW

    def on_resize(self) -> None:
        if self.view is not None and self._compact != self._shown_compact:
            self.show_view(self.view)

    def _show_status(self) -> None:
        elapsed = self.view.elapsed_s if self.view is not None else None
        self.query_one(FilterStatus).show(self.filter.text, self.filter.describe(), elapsed, self.filter_error)
        if self.filter_error is None:
            self.query_one("#filter-input", Input).remove_class("error")
        else:
            self.query_one("#filter-input", Input).add_class("error")

    def _refresh_plots(self) -> None:
        active = self.query_one(TabbedContent).active
        if active in plots.PLOT_KINDS:
            self.query_one(f"#plot-{active}", PlotView).show(self.view, self.selected_model)
        elif active == "elements":
            self.query_one(PeriodicTable).show(self.view, self.selected_model)

    @on(PeriodicTable.ElementPicked)
    def _element_picked(self, event: PeriodicTable.ElementPicked) -> None:
        """Enter on the periodic table: keep the crystals holding that element, show the table."""
        self.add_filter(f"el={event.element}")
        self.action_show_tab("table")

    @on(TabbedContent.TabActivated)
    def _tab_changed(self, event: TabbedContent.TabActivated) -> None:
        self._refresh_plots()

    # ---- filter ---------------------------------------------------------------------------
    def set_filter_text(self, text: str) -> bool:
        """Parse and apply a filter; on error keep the previous filter and show the error."""
        known = self.data.models if self.data is not None else None
        try:
            flt = parse_filter(text, known_models=known)
            if flt.mode == "all" or flt.mode is None:
                raise FilterError("the explorer shows one evaluation mode at a time: mode=static or mode=relax")
            if self.data is not None and flt.mode == self.data.mode:
                check_filter(self.data, flt)
        except FilterError as exc:
            self.filter_error = str(exc)
            self._show_status()
            return False
        self.filter_error = None
        self.filter = flt
        self.query_one("#filter-input", Input).value = flt.text
        if flt.mode != self.mode:
            self.mode = flt.mode
            self.load()
        else:
            self.refresh_view()
        return True

    def add_filter(self, text: str) -> None:
        """Add clauses to the active filter (replacing clauses with the same key)."""
        try:
            merged = self.filter.with_text(text, known_models=self.data.models if self.data else None)
        except FilterError as exc:
            self.filter_error = str(exc)
            self._show_status()
            return
        self.set_filter_text(merged.text)

    @on(Input.Submitted, "#filter-input")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if self.set_filter_text(event.value):
            # stay on the tab the filter was typed on (a plot follows the filter)
            if self.query_one(TabbedContent).active == "table":
                self.query_one("#results", VirtualTable).focus()
            else:
                self.query_one(TabbedContent).focus()

    def action_focus_filter(self) -> None:
        self.query_one("#filter-input", Input).focus()

    def action_write_figure(self) -> None:
        """Write the current plot as a publication PNG (``./figures`` or ``$MLIAP_TUI_FIGURES``)."""
        from mliap_tui.tui.figure_export import explorer_figure, write_current_figure

        write_current_figure(self, explorer_figure)

    def action_focus_table(self) -> None:
        self.query_one(TabbedContent).active = "table"
        self.query_one("#results", VirtualTable).focus()

    def action_clear_filter(self) -> None:
        self.query_one("#filter-input", Input).value = ""
        self.set_filter_text("")

    # ---- model, metric, sort, tabs --------------------------------------------------------
    def select_model(self, model: str) -> None:
        previous, self.selected_model = self.selected_model, model
        if previous and self.sort and self.sort.endswith("@" + previous):
            # sorted by the previous model's column: sort by the same column of this model
            self.sort = self.sort[: -len(previous)] + model
            self._sort_changed = True
            self.refresh_view()
            return
        if self.filter.match == "selected":  # the selection decides which materials are kept
            self.refresh_view()
            return
        if self.view is not None:
            self._set_table()
            self._show_summary()
            self._refresh_plots()

    def action_next_model(self) -> None:
        if self.view is None or not self.view.models:
            self.notify("no model results in this view", severity="warning")
            return
        models = self.view.models
        i = models.index(self.selected_model) if self.selected_model in models else -1
        self.select_model(models[(i + 1) % len(models)])

    @property
    def metrics(self) -> tuple[str, ...]:
        """Metrics of the loaded dataset (the rebuilt-hull one when it is stored for every model)."""
        return self.data.metrics if self.data is not None else CHEAP_METRICS

    def set_metric(self, metric: str) -> None:
        if metric not in self.metrics:
            raise ValueError(f"unknown metric {metric!r}")
        if self.sort is not None:  # keep sorting by the same kind of column (DFT, predicted, error)
            for old, new in zip(METRICS[self.metric], METRICS[metric]):
                if self.sort == old or self.sort.startswith(old + "@"):
                    self.sort = new + self.sort[len(old):]
                    break
        self.metric = metric
        self.refresh_view()

    def action_next_metric(self) -> None:
        metrics = self.metrics
        i = metrics.index(self.metric) if self.metric in metrics else -1
        self.set_metric(metrics[(i + 1) % len(metrics)])
        self.notify(f"metric: {METRIC_LABEL[self.metric]}", timeout=2)

    @on(VirtualTable.SortRequested)
    def _sort_requested(self, event: VirtualTable.SortRequested) -> None:
        if self.sort == event.column:
            self.descending = not self.descending
        else:
            self.sort, self.descending = event.column, False
        self._sort_changed = True  # show the top of the new order
        self.refresh_view()

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        if tab == "table":
            self.query_one("#results", VirtualTable).focus()
        elif tab == "elements":
            self.query_one(PeriodicTable).focus()

    def action_next_tab(self) -> None:
        tabs = self.query_one(TabbedContent)
        i = TABS.index(tabs.active) if tabs.active in TABS else 0
        self.action_show_tab(TABS[(i + 1) % len(TABS)])

    # ---- datasets -------------------------------------------------------------------------
    def set_dataset(self, dataset: str) -> None:
        self.dataset = dataset
        self.data = None
        self.filter = self.filter.without("model")
        self.query_one("#filter-input", Input).value = self.filter.text
        self.query_one("#results", VirtualTable).clear_marks()
        self.load()

    def action_next_dataset(self) -> None:
        datasets = self.cache.datasets()
        if len(datasets) < 2:
            self.notify("only one dataset in the cache", timeout=2)
            return
        i = datasets.index(self.dataset) if self.dataset in datasets else -1
        self.set_dataset(datasets[(i + 1) % len(datasets)])

    def action_reload(self) -> None:
        if self.dataset is not None:
            self.load()

    def on_results_changed(self, message: ResultsChanged) -> None:
        """A run ended (posted through the app): reload, or show the dataset it ran on."""
        message.stop()
        if message.dataset is None or message.dataset == self.dataset:
            self.action_reload()
        else:
            self.set_dataset(message.dataset)

    # ---- detail, marks, export ------------------------------------------------------------
    @on(VirtualTable.RowActivated)
    def _row_activated(self, event: VirtualTable.RowActivated) -> None:
        from mliap_tui.tui.detail import DetailScreen

        if self.data is not None:
            self.app.push_screen(DetailScreen(self.cache, self.data, str(event.key)))

    def action_study(self) -> None:
        """The static-vs-relaxed symmetry study of this dataset (the Study screen)."""
        from mliap_tui.tui.study_screen import StudyScreen

        if not self.dataset:
            self.notify("no dataset to study: import one first (r, then i)", severity="warning")
            return
        self.app.push_screen(StudyScreen(self.cache, self.dataset))

    def action_clear_marks(self) -> None:
        self.query_one("#results", VirtualTable).clear_marks()

    @on(VirtualTable.MarksChanged)
    def _marks_changed(self, event: VirtualTable.MarksChanged) -> None:
        n = len(event.marked)
        self.query_one("#results", VirtualTable).border_subtitle = f"{n} marked (e exports them, u unmarks)" if n else ""

    def export_frame(self, layout: str, marked_only: bool) -> pl.DataFrame:
        """What the export writes: the filtered tidy table, or the table as shown (wide)."""
        if self.data is None or self.view is None:
            raise RuntimeError("nothing loaded yet")
        if layout == "tidy":
            frame = tidy_export_frame(apply_filter(self.data.tidy, self.filter))
        else:
            frame = wide_export_frame(self.view.frame.select([c for c in self.view.frame.columns if not c.startswith("match@")]))
        marked = self.query_one("#results", VirtualTable).marked
        if marked_only and marked:
            frame = frame.filter(pl.col("material_id").is_in(list(marked)))
        return frame

    def action_export(self) -> None:
        from mliap_tui.tui.export_screen import ExportScreen

        if self.data is None or self.view is None:
            self.notify("nothing to export yet", severity="warning")
            return
        view = self.view
        marked = set(self.query_one("#results", VirtualTable).marked)
        tidy_ids = apply_filter(self.data.tidy, self.filter)["material_id"]
        counts = {"tidy": len(tidy_ids), "wide": view.n_materials}
        if marked:
            shown = set(view.base.get_column("material_id").gather(view.order).to_list())
            counts["tidy-marked"] = int(tidy_ids.is_in(list(marked)).sum())
            counts["wide-marked"] = len(marked & shown)

        def writer(path, layout: str, marked_only: bool, overwrite: bool):
            return write_csv(self.export_frame(layout, marked_only), path, overwrite=overwrite, layout=layout)

        def done(result) -> None:
            if result is not None:
                self.notify(f"exported {plural(result.n_rows, 'row')} ({result.layout}) to {result.path}", title="CSV export", timeout=5)

        self.app.push_screen(ExportScreen(self.dataset or "data", self.filter.text, counts, len(marked), writer), done)
