"""Small widgets of the Explore screen: the plot view, the summary strip, the filter status line."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widget import Widget
from textual.widgets import Static

from mliap_tui.core.units import MEV_PER_EV, format_mev, plural
from mliap_tui.core.vocab import METRIC_LABEL, METRICS
from mliap_tui.tui import plots
from mliap_tui.tui.state import View


class PlotView(Widget):
    """A plotext figure of the current view, sized to the widget (re-rendered on resize)."""

    DEFAULT_CSS = """
    PlotView { height: 1fr; width: 1fr; }
    """

    def __init__(self, kind: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        if kind not in plots.PLOT_KINDS:
            raise ValueError(f"unknown plot kind {kind!r}")
        self.kind = kind
        self.view: View | None = None
        self.model: str | None = None
        self._cache: tuple[tuple, Text] | None = None
        self.last_plot: str = ""  # the ANSI string of the last figure (tests read it)

    def show(self, view: View | None, model: str | None) -> None:
        self.view, self.model = view, model
        self.refresh()

    def figure(self, width: int, height: int) -> str:
        view = self.view
        if view is None:
            return "loading…"
        if self.kind == "parity":
            return plots.parity(view.plot_rows(), self.model, view.metric, width, height)
        if self.kind == "hist":
            return plots.histogram(view.plot_rows(), self.model, view.metric, width, height)
        if self.kind == "dof":
            return plots.groups(view.by_group("dof"), view.metric, "total DOF bin", width, height)
        return plots.groups(view.by_group("crystal_system"), view.metric, "crystal system", width, height)

    def render(self) -> Text:
        width, height = self.size.width, self.size.height
        key = (id(self.view), self.model, width, height)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        ansi = self.figure(width, height)
        self.last_plot = ansi
        text = Text.from_ansi(ansi, no_wrap=True, overflow="crop")
        self._cache = (key, text)
        return text


class SummaryStrip(Static):
    """Per-model statistics of the filtered rows for the chosen metric (meV/atom)."""

    def show(self, view: View | None, selected_model: str | None, dataset: str = "", n_raw_energies: int = 0,
             n_dft_forces: int = 0) -> None:
        if view is None:
            self.update("")
            return
        from mliap_tui.analysis.summary import not_compared

        self.update(summary_renderable(view, selected_model, dataset, not_compared(view.models), n_raw_energies,
                                       n_dft_forces))


def _signed(value: float | None) -> Text:
    if value is None:
        return Text("—", style="dim")
    text = format_mev(value, signed=True)
    return Text(text, style="red" if text.startswith("-") else "green")


def summary_renderable(view: View, selected_model: str | None, dataset: str = "",
                       notes: dict[str, str] | None = None, n_raw_energies: int = 0, n_dft_forces: int = 0) -> Group:
    """The summary strip; ``notes``: models whose results are not compared, with the reason;
    ``n_raw_energies`` / ``n_dft_forces``: what a dataset without MP2020 references holds instead."""
    notes = notes or {}
    title = Text.assemble(
        (f"{view.n_materials:,}", "bold"), f" of {plural(view.n_total, 'material')} · ",
        (METRIC_LABEL[view.metric], "bold"), ", meV/atom · Δ = prediction − DFT",
        no_wrap=True, overflow="ellipsis",
    )
    table = Table(box=None, padding=(0, 1), show_edge=False, expand=False)
    table.add_column("model", no_wrap=True)
    table.add_column("n", justify="right")
    table.add_column("MAE", justify="right")
    table.add_column("mean signed", justify="right")
    table.add_column("RMSE", justify="right")
    table.add_column("%under", justify="right")
    table.add_column("failed", justify="right")
    dft_col = METRICS[view.metric][0]
    no_dft = dft_col in view.base.columns and view.base.height and view.base[dft_col].null_count() == view.base.height
    if no_dft:
        hint = ("its DFT energies come from its own settings, not the Materials Project's" if n_raw_energies
                else "it carries no MP2020 DFT energies")
        return Group(title, Text(f"no DFT {METRIC_LABEL[view.metric]} to compare with in {dataset or 'this dataset'}: {hint}"
                                 + ("; its DFT forces are compared on the Forces screen (f)" if n_dft_forces else ""),
                                 style="yellow"))
    if view.summary.is_empty():
        table.add_row(Text("no model results for this dataset yet (mliap-tui run ...)", style="dim"), "", "", "", "", "", "")
    for row in view.summary.iter_rows(named=True):
        marker = "▶ " if row["model"] == selected_model else "  "
        n = row["n"] or 0
        if row["model"] in notes and not n:
            table.add_row(Text(marker + row["model"] + " *", style="bold" if row["model"] == selected_model else "dim"),
                          Text("—", style="dim"), "", "", "", "", Text(f"{row['n_failed']:,}", style="dim"))
            continue
        table.add_row(
            Text(marker + row["model"], style="bold" if row["model"] == selected_model else ""),
            f"{n:,}",
            "—" if row["mae"] is None else f"{row['mae'] * MEV_PER_EV:.1f}",
            _signed(row["mean_signed"]),
            "—" if row["rmse"] is None else f"{row['rmse'] * MEV_PER_EV:.1f}",
            "—" if row["frac_under"] is None else f"{100 * row['frac_under']:.0f}%",
            Text(f"{row['n_failed']:,}", style="red" if row["n_failed"] else "dim"),
        )
    footnotes = [Text(f"* {m}: {why}", style="dim italic", no_wrap=True, overflow="ellipsis")
                 for m, why in notes.items() if m in set(view.summary["model"].to_list())]
    return Group(title, table, *footnotes)


class FilterStatus(Static):
    """One line: the active filter (canonical text + description), or the last filter error."""

    def show(self, text: str, description: str, elapsed_s: float | None = None, error: str | None = None,
             notice: str | None = None) -> None:
        """The active filter; after a rejected one, the error (wrapped, whole) and, below it, the
        filter that is still applied, so the counts on screen are never misread."""
        line = Text()
        if notice:
            line.append(notice, style="bold yellow")
            self.update(line)
            return
        if error:
            line.append("filter error: ", style="bold red")
            line.append(error, style="red")
            line.append("\nstill applied: ", style="bold")
            line.append(text or "no filter", style="bold cyan" if text else "dim")
            if text:
                line.append(f" ({description})", style="dim")
            self.update(line)
            return
        line.no_wrap, line.overflow = True, "ellipsis"
        if not text:
            line.append("no filter", style="dim")
            line.append(" · / to filter, ? for the filter language", style="dim")
        else:
            line.append("active: ", style="bold")
            line.append(text, style="bold cyan")
            line.append("  c clears", style="dim")
            line.append(f"  ({description})", style="dim")
        if elapsed_s is not None:
            line.append(f"  [{elapsed_s * 1000:.0f} ms]", style="dim")
        self.update(line)
