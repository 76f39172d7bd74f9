"""The Study screen: the static-vs-relaxed symmetry study of one dataset (``mliap-tui study dof``).

Per model (``m``): the errors of one metric (``t``) in one view (``v``, or ``1`` ``2`` ``3``):
static (the model at the DFT structure), relaxed (the model-relaxed energy vs DFT) or relaxed -
static on the same crystals; by total DOF bin, crystal system or near-hull band (``b``). Every row
has its crystal count and 95 % bootstrap intervals; the relaxed view adds what relaxing did
(relaxation energy, RMSD to the DFT structure, space group kept/lowered/raised). Under the table,
the DOF trend of the model and view in plain language.

The numbers come from :mod:`mliap_tui.analysis.study`; nothing here computes a statistic. The
first open after a relax run compares the relaxed cells with the DFT structures (StructureMatcher,
cached in the cache for the next time), shown as progress while the error tables are already up.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any, Sequence

import polars as pl
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from mliap_tui.analysis.study import ALL, StudyData
from mliap_tui.analysis.uncertainty import DEFAULT_N_BOOT, DEFAULT_SEED, MIN_N_INTERVAL
from mliap_tui.cache import Cache
from mliap_tui.core.units import format_mev, format_mev_interval, format_signed
from mliap_tui.core.vocab import (
    CRYSTAL_SYSTEMS,
    GROUPINGS,
    METRIC_LABEL,
    STUDY_GROUPINGS,
    STUDY_VIEWS,
    CrystalSystem,
)
from mliap_tui.tui.commands import StudyCommands
from mliap_tui.tui.messages import (
    StudyFailed,
    StudyLoaded,
    StudyProgress,
    StudyStatsReady,
)

VIEWS: tuple[str, ...] = tuple(STUDY_VIEWS)
VIEW_NAMES = {"static": "static", "relax": "relaxed", "difference": "difference"}
#: Table header of each grouping's column (narrow).
GROUP_HEADERS = {"dof": "DOF", "crystal_system": "system", "near_hull": "DFT Ehull"}
#: Terminal columns from which the relaxed view shows every relaxation column with its interval.
WIDE_FROM = 120


def _style(value: float | None) -> str | None:
    if value is None or value != value:
        return None
    return "red" if value < 0 else "green" if value > 0 else None


def _group_label(group: str, grouping: str) -> str:
    if grouping == "crystal_system" and group in CRYSTAL_SYSTEMS:
        return CrystalSystem(group).abbrev
    return group


def table_rows(errors: pl.DataFrame, relax: pl.DataFrame, model: str, view: str, grouping: str,
               wide: bool = False) -> tuple[list[str], list[list[Any]]]:
    """(column labels, rows of cells) of one model and view: the 'all' row first, then each group.
    Energies in meV/atom with their 95 % intervals; the relaxed view adds what relaxing did."""
    delta = view == "difference"
    columns = [GROUP_HEADERS.get(grouping, grouping), "n",
               "ΔMAE meV/at" if delta else "MAE meV/atom", "Δsigned meV/at" if delta else "signed meV/atom"]
    with_relax = view == "relax" and relax.height > 0
    if with_relax:
        columns += (["Erelax meV/atom", "RMSD Å", "no match", "k/l/r", "ΔV %", "steps"] if wide
                    else ["Erelax", "RMSD Å", "k/l/r"])
    err = errors.filter((pl.col("model") == model) & (pl.col("view") == view))
    rel = relax.filter(pl.col("model") == model)
    keys: dict[tuple[int, str, str], None] = {}
    for frame in (err, rel) if with_relax or not err.height else (err,):
        for row in frame.select("grouping", "order", "group").iter_rows():
            if row[0] in (ALL, grouping):
                keys[(0 if row[0] == ALL else 1, row[1], row[2])] = None
    rows = []
    for level, order, group in sorted(keys, key=lambda k: (k[0], k[1], k[2])):
        grouping_of = ALL if level == 0 else grouping
        e = err.filter((pl.col("grouping") == grouping_of) & (pl.col("group") == group))
        r = rel.filter((pl.col("grouping") == grouping_of) & (pl.col("group") == group))
        er = e.row(0, named=True) if e.height else None
        rr = r.row(0, named=True) if r.height else None
        n = er["n"] if er else rr["n"] if rr else 0
        label = Text("all", style="bold") if level == 0 else Text(_group_label(group, grouping))
        cells: list[Any] = [label, f"{n:,}"]
        if er:
            cells.append(format_mev_interval(er["mae_ev_per_atom"], er["mae_lo_ev_per_atom"], er["mae_hi_ev_per_atom"],
                                             signed=delta))
            cells.append(Text(format_mev_interval(er["mean_signed_ev_per_atom"], er["mean_signed_lo_ev_per_atom"],
                                                  er["mean_signed_hi_ev_per_atom"], signed=True),
                              style=_style(er["mean_signed_ev_per_atom"]) or ""))
        else:
            cells += ["-", "-"]
        if with_relax:
            cells += _relax_cells(rr, wide)
        rows.append(cells)
    return columns, rows


def _relax_cells(row: dict | None, wide: bool) -> list[Any]:
    if row is None:
        return ["-"] * (6 if wide else 3)
    rmsd = row["rmsd_median_ang"]
    e = (format_mev_interval(row["e_relax_ev_per_atom"], row["e_relax_lo_ev_per_atom"], row["e_relax_hi_ev_per_atom"],
                             signed=True) if wide else format_mev(row["e_relax_ev_per_atom"], signed=True))
    sym = f"{row['n_kept']}/{row['n_lowered']}/{row['n_raised']}"
    cells: list[Any] = [e, "-" if rmsd is None else f"{rmsd:.3f}"]
    if wide:
        cells.append(f"{row['n_compared'] - row['n_matched']:,}" if row["n_compared"] else "-")
    cells.append(sym)
    if wide:
        vol, steps = row["volume_change_mean_pct"], row["relax_steps_median"]
        cells += [format_signed(vol, 2), "-" if steps is None else f"{steps:.0f}"]
    return cells


class StudyScreen(Screen):
    """Static vs relaxed errors by DOF / crystal system / near hull, with intervals and the trend."""

    COMMANDS = {StudyCommands}
    BINDINGS = [
        Binding("escape,q,backspace", "back", "Back", id="study.back"),
        Binding("v", "next_view", "View", id="study.next_view"),
        Binding("m", "next_model", "Model", id="study.next_model"),
        Binding("b", "next_grouping", "By", id="study.next_grouping"),
        Binding("t", "next_metric", "Metric", id="study.next_metric"),
        Binding("1", "show_view('static')", "Static", show=False, id="study.view_static"),
        Binding("2", "show_view('relax')", "Relaxed", show=False, id="study.view_relax"),
        Binding("3", "show_view('difference')", "Difference", show=False, id="study.view_difference"),
        Binding("R", "reload", "Reload", show=False, id="study.reload"),
    ]

    def __init__(self, cache: Cache, dataset: str, models: Sequence[str] | None = None, *,
                 n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED) -> None:
        super().__init__()
        self.cache, self.dataset = cache, dataset
        self.models = list(models) if models else None
        self.n_boot, self.seed = n_boot, seed
        self.view = "static"
        self.grouping = "dof"
        self.metric: str | None = None
        self.model_index = 0
        self.data: StudyData | None = None
        self.stats: dict[tuple, tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]] = {}
        self.progress: tuple[int, int] | None = None
        self.error: str | None = None
        self._tokens = itertools.count(1)
        self._token = 0
        self._stop = threading.Event()
        self._shown_wide: bool | None = None

    # ---- layout -----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◇")
        with VerticalScroll(id="study-body"):
            yield Static("loading the study…", id="study-head")
            yield Static("", id="study-notes")
            yield DataTable(id="study-table", zebra_stripes=True, cursor_type="row")
            yield Static("", id="study-trend")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = f"{self.dataset} · study: static vs relaxed, by DOF"
        self.load()

    def on_unmount(self) -> None:
        self._stop.set()

    @property
    def model(self) -> str | None:
        models = self.data.models if self.data else []
        return models[self.model_index % len(models)] if models else None

    @property
    def wide(self) -> bool:
        return self.size.width >= WIDE_FROM

    # ---- loading ----------------------------------------------------------------------------
    def load(self) -> None:
        self._stop.set()
        self._stop = threading.Event()
        self._token = next(self._tokens)
        self.stats.clear()
        self._load(self._token, self._stop)

    @work(thread=True, exclusive=True, group="study-load")
    def _load(self, token: int, stop: threading.Event) -> None:
        from mliap_tui.analysis.relax_geometry import (
            pending_rows,
            update_relax_geometry,
        )
        from mliap_tui.analysis.study import load_study
        from mliap_tui.core.host import usable_cores

        try:
            data = load_study(self.cache, self.dataset, self.models, compute_geometry=False)
            pending = pending_rows(self.cache, self.dataset, self.models).height if data.relaxed_models else 0
            self.post_message(StudyLoaded(token, data, pending))
            if not pending or stop.is_set():
                return
            update_relax_geometry(self.cache, self.dataset, self.models, n_jobs=max(1, usable_cores() - 1),
                                  on_progress=lambda d, t: self.post_message(StudyProgress(token, d, t)),
                                  should_stop=stop.is_set)
            if stop.is_set():
                return
            data = load_study(self.cache, self.dataset, self.models, compute_geometry=False)
            self.post_message(StudyLoaded(token, data, 0))
        except Exception as exc:  # noqa: BLE001 - shown on screen
            self.post_message(StudyFailed(token, f"{type(exc).__name__}: {exc}"))

    def on_study_loaded(self, message: StudyLoaded) -> None:
        if message.token != self._token:
            return
        self.data = message.data
        self.stats.clear()
        self.progress = (0, message.geometry_pending) if message.geometry_pending else None
        if self.metric not in self.data.metrics:
            self.metric = self.data.default_metric()
        if self.grouping not in self.data.groupings:
            self.grouping = "dof"
        if self.view != "static" and not self.data.relaxed_models:
            self.view = "static"
        self.refresh_view()

    def on_study_progress(self, message: StudyProgress) -> None:
        if message.token != self._token:
            return
        self.progress = (message.done, message.total)
        self._show_notes()

    def on_study_failed(self, message: StudyFailed) -> None:
        if message.token != self._token:
            return
        self.error = message.error
        self.query_one("#study-head", Static).update(Text(f"could not load the study: {message.error}", style="red"))

    # ---- statistics ---------------------------------------------------------------------------
    @property
    def key(self) -> tuple:
        return (self.metric, self.grouping)

    def refresh_view(self) -> None:
        """Show the current model/view, computing the (metric, grouping) tables first if needed."""
        if self.data is None:
            return
        self._show_head()
        self._show_notes()
        if self.key in self.stats:
            self._show_table()
            return
        self.query_one("#study-trend", Static).update(Text("computing intervals…", style="dim"))
        self._compute(self._token, self.data, self.key)

    @work(thread=True, exclusive=True, group="study-stats")
    def _compute(self, token: int, data: StudyData, key: tuple) -> None:
        from mliap_tui.analysis.study import error_stats, relax_stats, trend_stats

        metric, grouping = key
        kw = {"n_boot": self.n_boot, "seed": self.seed}
        try:
            if metric is not None:
                errors = pl.concat([error_stats(data, metric, ALL, **kw), error_stats(data, metric, grouping, **kw)])
                trends = trend_stats(data, metric, **kw)
            else:
                errors, trends = error_stats(data, "e_per_atom", **kw), trend_stats(data, "e_per_atom", **kw)
            relax = pl.concat([relax_stats(data, ALL, **kw), relax_stats(data, grouping, **kw)])
        except Exception as exc:  # noqa: BLE001 - shown on screen
            self.post_message(StudyFailed(token, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(StudyStatsReady(token, key, errors, relax, trends))

    def on_study_stats_ready(self, message: StudyStatsReady) -> None:
        if message.token != self._token:
            return
        self.stats[message.key] = (message.errors, message.relax, message.trends)  # type: ignore[assignment]
        if message.key == self.key:
            self._show_table()

    # ---- drawing ------------------------------------------------------------------------------
    def _show_head(self) -> None:
        data = self.data
        if data is None:
            return
        models = data.models
        head = Text()
        head.append(self.model or "no model", style="bold")
        if len(models) > 1:
            head.append(f" ({self.model_index % len(models) + 1}/{len(models)}, m)", style="dim")
        head.append("  view ")
        for view in VIEWS:
            available = view == "static" or self.model in data.relaxed_models
            style = "bold reverse" if view == self.view else ("" if available else "dim")
            head.append(f" {VIEW_NAMES[view]} ", style=style)
        head.append(" (v)", style="dim")
        metric = METRIC_LABEL[self.metric] if self.metric else "no energy metric"
        head.append(f"\n{metric}", style="bold")
        head.append(" (t) by ", style="dim")
        head.append(GROUPINGS[self.grouping], style="bold")
        head.append(" (b)", style="dim")
        head.append(f"  ·  meV/atom, signed = model - DFT; [lo,hi] = 95% bootstrap interval "
                    f"({self.n_boot:,} resamples, seed {self.seed}; none under {MIN_N_INTERVAL} crystals)", style="dim")
        self.query_one("#study-head", Static).update(head)

    def _show_notes(self) -> None:
        data = self.data
        if data is None:
            return
        text = Text()
        lines: list[tuple[str, str]] = []
        if data.fallback:
            lines.append((data.fallback, "yellow"))
        if self.progress:
            done, total = self.progress
            lines.append((f"comparing relaxed cells with the DFT structures (StructureMatcher): {done:,}/{total:,}; "
                          "RMSD and space groups follow", "cyan"))
        if self.view != "static" and self.model not in data.relaxed_models:
            model = (self.model or "").split("~")[0]
            lines.append((f"{self.model} has no relaxed rows: r opens the Run screen (mode relax), or in a shell "
                          f"mliap-tui run --data {data.dataset} --models {model} --mode relax", "bold yellow"))
        pairing = [n for n in data.notes if self.model and n.startswith(f"{self.model}:")]
        lines += [(n, "dim") for n in pairing[:2]]
        for i, (line, style) in enumerate(lines):
            text.append(("\n" if i else "") + line, style=style)
        notes = self.query_one("#study-notes", Static)
        notes.update(text)
        notes.display = bool(lines)

    def _show_table(self) -> None:
        if self.data is None or self.key not in self.stats:
            return
        errors, relax, trends = self.stats[self.key]
        model = self.model
        table = self.query_one("#study-table", DataTable)
        table.clear(columns=True)
        self._shown_wide = self.wide
        if model is None:
            self.query_one("#study-trend", Static).update(
                Text(self.data.empty_reason or "no predictions", style="yellow"))
            return
        columns, rows = table_rows(errors, relax, model, self.view, self.grouping, self.wide)
        for i, label in enumerate(columns):
            table.add_column(label, key=f"c{i}")
        for row in rows:
            table.add_row(*(cell if isinstance(cell, Text) else Text(str(cell), justify="right") for cell in row))
        self._show_trend(trends, model)

    def _show_trend(self, trends: pl.DataFrame, model: str) -> None:
        text = Text()
        mine = trends.filter((pl.col("model") == model) & (pl.col("view") == self.view)) if trends.height else trends
        if self.view == "relax" and self.data is not None and model in self.data.relaxed_models:
            text.append("k/l/r: space group kept / lowered / raised (symmetry operations per cell); RMSD: median "
                        "over matched crystals\n", style="dim")
        if not mine.height:
            text.append("no DOF trend to show here", style="dim")
        for i, row in enumerate(mine.iter_rows(named=True)):
            label = "DOF trend |error|: " if row["quantity"] == "abs" else "signed: "
            text.append(("\n" if i else "") + label, style="dim")
            text.append(row["sentence"], style="bold" if row["significant"] else "")
        self.query_one("#study-trend", Static).update(text)

    def on_resize(self) -> None:
        if self._shown_wide is not None and self.wide != self._shown_wide:
            self._show_table()

    # ---- actions ------------------------------------------------------------------------------
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_next_view(self) -> None:
        self.action_show_view(VIEWS[(VIEWS.index(self.view) + 1) % len(VIEWS)])

    def action_show_view(self, view: str) -> None:
        if view not in VIEWS:
            return
        self.view = view
        self.refresh_view()

    def action_next_model(self) -> None:
        if self.data and self.data.models:
            self.model_index = (self.model_index + 1) % len(self.data.models)
            self.refresh_view()

    def select_model(self, model: str) -> None:
        if self.data and model in self.data.models:
            self.model_index = self.data.models.index(model)
            self.refresh_view()

    def action_next_grouping(self) -> None:
        groupings = list(self.data.groupings) if self.data else list(STUDY_GROUPINGS)
        if not groupings:
            return
        i = groupings.index(self.grouping) if self.grouping in groupings else -1
        self.set_grouping(groupings[(i + 1) % len(groupings)])

    def set_grouping(self, grouping: str) -> None:
        if self.data is not None and grouping not in self.data.groupings:
            self.notify(f"{self.dataset} has no DFT Ehull: no near-hull split", severity="warning", timeout=4)
            return
        self.grouping = grouping
        self.refresh_view()

    def action_next_metric(self) -> None:
        metrics = self.data.metrics if self.data else []
        if not metrics:
            self.notify("this dataset has no DFT energies to compare", timeout=4)
            return
        i = metrics.index(self.metric) if self.metric in metrics else -1
        self.set_metric(metrics[(i + 1) % len(metrics)])

    def set_metric(self, metric: str) -> None:
        if self.data is not None and metric in self.data.metrics:
            self.metric = metric
            self.refresh_view()

    def action_reload(self) -> None:
        self.query_one("#study-head", Static).update("reloading…")
        self.load()


__all__ = ["StudyScreen", "table_rows"]
