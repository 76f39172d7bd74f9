"""The periodic-table heat map of the Explore screen: MAE per element of the selected model on the
filtered rows (meV/atom), drawn in the terminal with a colour scale and its legend.

A crystal counts for every element it holds (:func:`mliap_tui.analysis.elements.element_errors`).
Arrow keys move the element cursor; Enter filters the explorer to the element (``el=X``).
Layout: one terminal line per period on small screens (80x24), two (symbol, then the MAE) when
there is room; lanthanides and actinides on two rows below.
"""

from __future__ import annotations

import math

import polars as pl
from ase.data import chemical_symbols
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widget import Widget

from mliap_tui.analysis.elements import MAX_Z, element_errors, table_position
from mliap_tui.core.units import MEV_PER_EV, format_mev, plural
from mliap_tui.core.vocab import METRIC_LABEL, METRICS

CELL = 4  # characters per element cell
#: a perceptually ordered 256-colour ramp (dark blue -> yellow), low error to high error
RAMP = (17, 18, 19, 25, 31, 37, 36, 71, 107, 143, 179, 214, 208, 202, 196)


def colour(value: float | None, top: float) -> int | None:
    if value is None or not math.isfinite(value) or top <= 0:
        return None
    k = min(len(RAMP) - 1, int(len(RAMP) * min(value, top) / top))
    return RAMP[k]


class PeriodicTable(Widget, can_focus=True):
    """MAE per element of one model; the cursor picks an element (Enter filters to it)."""

    BINDINGS = [
        Binding("up", "move(-1, 0)", "Up", show=False, id="ptable.up"),
        Binding("down", "move(1, 0)", "Down", show=False, id="ptable.down"),
        Binding("left", "move(0, -1)", "Left", show=False, id="ptable.left"),
        Binding("right", "move(0, 1)", "Right", show=False, id="ptable.right"),
        Binding("enter", "pick", "Filter to element", id="ptable.pick"),
    ]
    DEFAULT_CSS = """
    PeriodicTable { height: 1fr; width: 1fr; }
    """

    class ElementPicked(Message):
        """Enter on an element: the explorer adds ``el=<element>`` to its filter."""

        def __init__(self, element: str) -> None:
            super().__init__()
            self.element = element

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.stats: dict[str, dict] = {}
        self.model: str | None = None
        self.metric = "e_above_hull"
        self.cursor = "O"
        self._grid = {table_position(z): chemical_symbols[z] for z in range(1, MAX_Z + 1)}
        self._pos = {el: rc for rc, el in self._grid.items()}

    def show(self, view, model: str | None) -> None:
        """Element errors of ``model`` on the view's rows (eV/atom)."""
        self.model, self.stats = model, {}
        if view is not None and model is not None:
            self.metric = view.metric
            err = METRICS[view.metric][2]
            rows = view.frame.select(
                "material_id", "elements",
                pl.col(f"status@{model}").cast(pl.Utf8).alias("status") if f"status@{model}" in view.frame.columns
                else pl.lit(None, pl.Utf8).alias("status"),
                pl.col(f"{err}@{model}").alias(err) if f"{err}@{model}" in view.frame.columns
                else pl.lit(None, pl.Float64).alias(err),
            ).with_columns(model=pl.lit(model))
            table = element_errors(rows, view.metric)
            self.stats = {r["element"]: r for r in table.iter_rows(named=True)}
        self.refresh()

    # ---- drawing ----------------------------------------------------------------------------
    def _top(self) -> float:
        maes = sorted(r["mae"] for r in self.stats.values() if r["mae"] is not None)
        if not maes:
            return 0.0
        return maes[min(len(maes) - 1, int(0.95 * (len(maes) - 1)))] or maes[-1]

    def render(self) -> Text:
        if self.model is None:
            return Text("no model results in this view", style="dim")
        tall = self.size.height >= 2 * 9 + 4  # room for the MAE under each symbol
        roomy = tall or self.size.height >= 14  # room for a title and a gap above the f-block
        top = self._top()
        out = Text()
        if roomy:
            out.append(f"{self.model}: MAE of {METRIC_LABEL[self.metric]} per element (meV/atom); "
                       "a crystal counts for every element it holds\n", style="bold")
        for row in (*range(7), 8, 9):
            if row == 8 and roomy:
                out.append("\n")
            lines = [Text(), Text()] if tall else [Text()]
            for col in range(18):
                el = self._grid.get((row, col))
                for k, line in enumerate(lines):
                    if el is None:
                        line.append(" " * CELL)
                        continue
                    stat = self.stats.get(el)
                    c = colour(stat["mae"] if stat else None, top)
                    style = Style(bgcolor=f"color({c})", color="white" if c is not None and c < 100 else "black") \
                        if c is not None else Style(color="grey35")
                    if el == self.cursor and self.has_focus:
                        style += Style(reverse=True, bold=True)
                    elif el == self.cursor:
                        style += Style(underline=True, bold=True)
                    if k == 0:
                        line.append(f"{el:<{CELL - 1}} ", style)
                    else:
                        line.append(f"{format_mev(stat['mae'], 0) if stat else '':>{CELL - 1}} ", style)
            for line in lines:
                out.append_text(line)
                out.append("\n")
        out.append_text(self._legend(top))
        out.append("\n")
        out.append_text(self._detail())
        return out

    def _legend(self, top: float) -> Text:
        text = Text(f"{self.model} MAE ", style="bold")
        text.append("0 ", style="dim")
        for c in RAMP:
            text.append("  ", Style(bgcolor=f"color({c})"))
        text.append(f" ≥{top * MEV_PER_EV:.0f} meV/atom", style="dim")
        text.append("  grey: no crystal", style="grey35")
        return text

    def _detail(self) -> Text:
        stat = self.stats.get(self.cursor)
        if stat is None:
            return Text(f"{self.cursor}: no crystal of the filtered view holds it · arrows move, "
                        "enter filters to an element", style="dim")
        return Text.assemble(
            (f"{self.cursor}", "bold"),
            f": {plural(stat['n'], 'crystal')} · MAE {format_mev(stat['mae'])} · mean signed "
            f"{format_mev(stat['mean_signed'], signed=True)} meV/atom · ",
            (f"enter filters to {self.cursor}", "dim"),
        )

    # ---- keys -------------------------------------------------------------------------------
    def action_move(self, drow: int, dcol: int) -> None:
        row, col = self._pos.get(self.cursor, (1, 16))
        rows = [*range(7), 8, 9]
        for _ in range(20):
            if dcol:
                col = (col + dcol) % 18
            else:
                row = rows[(rows.index(row) + drow) % len(rows)]
            if (row, col) in self._grid:
                self.cursor = self._grid[(row, col)]
                break
            if drow:  # moving vertically into a gap: slide to the nearest element of that row
                cols = [c for r, c in self._grid if r == row]
                if cols:
                    col = min(cols, key=lambda c: abs(c - col))
                    self.cursor = self._grid[(row, col)]
                    break
        self.refresh()

    def action_pick(self) -> None:
        self.post_message(self.ElementPicked(self.cursor))


__all__ = ["PeriodicTable"]
