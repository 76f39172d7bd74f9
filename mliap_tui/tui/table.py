"""A virtualised table over a polars DataFrame (Line API, in the spirit of Toolong and
textual-fastdatatable): only the rows on screen are read from the frame and formatted, so a
150k-row table costs the same to draw as a 20-row one.

The widget never sorts or filters: it shows a row source it is given (``set_data``): a polars
DataFrame, or any object with ``height``, ``columns``, ``rows(start, length, fields)``,
``find(column, value)`` and ``frame`` (the Explore screen passes a ``state.View``, which gathers
only the requested rows from the shared dataset table). It draws two header lines (column
groups, column labels with the sort arrow), frozen leading columns, a row cursor and a set of
marked row keys. Sorting is requested from the owner with ``SortRequested``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

import polars as pl
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

CellRenderer = Callable[[Mapping[str, Any]], "tuple[str, str | None]"]


class RowSource(Protocol):
    height: int
    columns: list[str]
    frame: pl.DataFrame

    def rows(self, start: int, length: int, fields: Sequence[str]) -> list[tuple]: ...

    def find(self, column: str, value: Any) -> int | None: ...


class FrameSource:
    """A plain DataFrame as a row source."""

    def __init__(self, frame: pl.DataFrame) -> None:
        self.frame = frame

    @property
    def height(self) -> int:
        return self.frame.height

    @property
    def columns(self) -> list[str]:
        return self.frame.columns

    def rows(self, start: int, length: int, fields: Sequence[str]) -> list[tuple]:
        return self.frame.slice(start, length).select(list(fields)).rows()

    def find(self, column: str, value: Any) -> int | None:
        hits = self.frame.select(pl.arg_where(pl.col(column) == value)).to_series()
        return int(hits[0]) if len(hits) else None


@dataclass(frozen=True)
class Column:
    """One displayed column.

    ``key``: frame column (also the sort key); ``label``: header text (units go here);
    ``group``: text of the line above, merged over consecutive columns with the same group;
    ``fmt``: value -> text (None is shown as an em dash); ``style``: value -> a component
    class suffix ('negative', 'positive', 'failed', 'dim') or None;
    ``render``: row -> (text, style suffix), overrides fmt/style (for cells that depend on
    several columns); ``needs``: the extra frame columns ``render`` reads;
    ``dim_key``: boolean frame column; where it is False the cell is dimmed.
    """

    key: str
    label: str
    width: int
    group: str = ""
    justify: str = "right"
    fmt: Callable[[Any], str] = str
    style: Callable[[Any], str | None] | None = None
    render: CellRenderer | None = None
    needs: tuple[str, ...] = ()
    dim_key: str | None = None


def _fit(text: str, width: int, justify: str) -> str:
    if len(text) > width:
        return text[: max(width - 1, 0)] + "…" if width > 0 else ""
    return text.rjust(width) if justify == "right" else text.ljust(width) if justify == "left" else text.center(width)


class VirtualTable(ScrollView, can_focus=True):
    """Scrollable, sortable table of a polars DataFrame that renders only the visible slice."""

    HEADER_HEIGHT = 2
    GUTTER = 2  # mark symbol + space

    COMPONENT_CLASSES = {
        "virtual-table--header",
        "virtual-table--group",
        "virtual-table--cursor",
        "virtual-table--cursor-cell",
        "virtual-table--marked",
        "virtual-table--fixed",
        "virtual-table--negative",
        "virtual-table--positive",
        "virtual-table--failed",
        "virtual-table--dim",
        "virtual-table--empty",
    }

    BINDINGS = [
        Binding("up,k", "cursor_up", "Up", show=False, id="table.cursor_up"),
        Binding("down,j", "cursor_down", "Down", show=False, id="table.cursor_down"),
        Binding("left,h", "cursor_left", "Left", show=False, id="table.cursor_left"),
        Binding("right,l", "cursor_right", "Right", show=False, id="table.cursor_right"),
        Binding("pageup", "page_up_rows", "Page up", show=False, id="table.page_up"),
        Binding("pagedown", "page_down_rows", "Page down", show=False, id="table.page_down"),
        Binding("home,g", "first_row", "First row", show=False, id="table.first_row"),
        Binding("end,G", "last_row", "Last row", show=False, id="table.last_row"),
        Binding("enter", "activate", "Detail", id="table.details"),
        Binding("space", "toggle_mark", "Mark", show=False, id="table.mark"),
        Binding("s", "sort", "Sort", id="table.sort"),
    ]

    cursor_row: reactive[int] = reactive(0, always_update=True)
    cursor_col: reactive[int] = reactive(0)

    class RowActivated(Message):
        """Enter (or double click) on a row."""

        def __init__(self, table: "VirtualTable", row_index: int, key: Any) -> None:
            super().__init__()
            self.table = table
            self.row_index = row_index
            self.key = key

    class SortRequested(Message):
        """The user asked to sort by ``column`` (the owner decides the direction)."""

        def __init__(self, table: "VirtualTable", column: str) -> None:
            super().__init__()
            self.table = table
            self.column = column

    class MarksChanged(Message):
        def __init__(self, table: "VirtualTable", marked: frozenset) -> None:
            super().__init__()
            self.table = table
            self.marked = marked

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._source: RowSource = FrameSource(pl.DataFrame())
        self._styles: dict[str, Style] = {}
        self._columns: list[Column] = []
        self._fixed = 1
        self._key_column = "material_id"
        self._sort: str | None = None
        self._descending = False
        self._fields: list[str] = []
        self._index: dict[str, int] = {}
        self._rows: dict[int, tuple] = {}
        self._lines: dict[tuple, tuple] = {}
        self._offsets: list[int] = []
        self._fixed_width = 0
        self.marked: set = set()
        self.empty_message = "no rows"

    # ---- data ---------------------------------------------------------------------------
    @property
    def frame(self) -> pl.DataFrame:
        """The rows shown, as one DataFrame (a View materialises itself on first use)."""
        return self._source.frame

    @property
    def source(self) -> RowSource:
        return self._source

    @property
    def columns(self) -> list[Column]:
        return list(self._columns)

    @property
    def row_count(self) -> int:
        return self._source.height

    def set_data(
        self,
        frame: "pl.DataFrame | RowSource",
        columns: Sequence[Column],
        *,
        key_column: str = "material_id",
        fixed: int = 1,
        sort: str | None = None,
        descending: bool = False,
        empty_message: str = "no rows",
        cursor_top: bool = False,
    ) -> None:
        """Show ``frame`` (a DataFrame or a row source) with ``columns``.

        The cursor stays on the same key when that row is still there; ``cursor_top`` (after a
        new sort order) puts it on the first row instead, so the top of the order is on screen."""
        old_key = self.cursor_key
        source = FrameSource(frame) if isinstance(frame, pl.DataFrame) else frame
        self._source = source
        available = set(source.columns)
        self._columns = [c for c in columns if c.key in available or c.render is not None]
        self._fixed = min(fixed, len(self._columns))
        self._key_column = key_column
        self._sort, self._descending = sort, descending
        self.empty_message = empty_message
        fields = [key_column]
        for c in self._columns:
            for name in (c.key, *c.needs, c.dim_key):
                if name and name in available and name not in fields:
                    fields.append(name)
        self._fields = fields
        self._index = {name: i for i, name in enumerate(fields)}
        self._rows = {}
        self._lines = {}
        offsets, x = [], 0
        for i, c in enumerate(self._columns):
            if i == self._fixed:
                x = 0
            offsets.append(x)
            x += c.width + 1
        self._offsets = offsets
        self._fixed_width = self.GUTTER + sum(c.width + 1 for c in self._columns[: self._fixed])
        total = self._fixed_width + sum(c.width + 1 for c in self._columns[self._fixed :])
        self.virtual_size = Size(total, source.height + self.HEADER_HEIGHT)
        self.cursor_col = min(self.cursor_col, max(len(self._columns) - 1, 0))
        row = 0
        if not cursor_top and old_key is not None and source.height and key_column in available:
            row = source.find(key_column, old_key) or 0
        self.cursor_row = min(row, max(source.height - 1, 0))
        if cursor_top:
            self.scroll_to(y=0, animate=False, immediate=True)
        self._scroll_cursor_into_view()
        self.refresh()

    def row(self, index: int) -> dict[str, Any]:
        """The displayed fields of row ``index`` as a dict."""
        return dict(zip(self._fields, self._get_row(index)))

    @property
    def cursor_key(self) -> Any:
        if not self._source.height or not self._fields or self._fields[0] != self._key_column:
            return None
        if 0 <= self.cursor_row < self._source.height:
            return self._get_row(self.cursor_row)[0]
        return None

    def _get_row(self, index: int) -> tuple:
        row = self._rows.get(index)
        if row is None:
            start = max(0, index - 10)
            block = self._source.rows(start, max(self.size.height, 20) + 40, self._fields)
            if len(self._rows) > 4000:
                self._rows = {}
            self._rows.update({start + i: r for i, r in enumerate(block)})
            row = self._rows[index]
        return row

    # ---- rendering ------------------------------------------------------------------------
    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = self.get_component_rich_style(f"virtual-table--{name}", partial=True)
        return style

    def _combo(self, *names: str) -> Style:
        """The widget's base style plus component styles, cached (one lookup per cell)."""
        style = self._styles.get(names)
        if style is None:
            style = self._base_style()
            for name in names:
                style = style + self._style(name)
            self._styles[names] = style
        return style

    def _base_style(self) -> Style:
        style = self._styles.get("__base__")
        if style is None:
            style = self._styles["__base__"] = self.rich_style
        return style

    def notify_style_update(self) -> None:
        self._styles = {}
        self._lines = {}
        super().notify_style_update()

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self._base_style()
        if y == 0:
            return self._group_line(width, base)
        if y == 1:
            return self._header_line(width, base)
        index = int(self.scroll_offset.y) + y - self.HEADER_HEIGHT
        if index >= self._source.height:
            if index == 0 and y == self.HEADER_HEIGHT:
                text = _fit(f"  {self.empty_message}", width, "left")
                return Strip([Segment(text, base + self._style("empty"))], width)
            return Strip.blank(width, base)
        return self._row_line(index, width, base)

    def _left(self) -> int:
        """Where the scrolling region starts: the horizontal scroll snapped to the next column
        start, so the first scrolling column is always whole (no header or cell fragments)."""
        x = int(self.scroll_offset.x)
        starts = [self._offsets[i] for i in range(self._fixed, len(self._columns))]
        return next((o for o in starts if o >= x), starts[-1] if starts else 0)

    def _join_regions(self, fixed: list[Segment], scrolling: list[Segment], width: int, base: Style,
                      first_start: int = 0) -> Strip:
        """Fixed columns, then the scrolling ones from :meth:`_left` (``scrolling`` begins at
        ``first_start``, the offset of its first segment)."""
        rest_width = width - self._fixed_width
        if rest_width <= 0:
            return Strip(fixed).crop(0, width).extend_cell_length(width, base)
        x = self._left() - first_start
        right = Strip(scrolling).crop(x, x + rest_width)
        return Strip([*fixed, *right], self._fixed_width + right.cell_length).extend_cell_length(width, base)

    def _group_line(self, width: int, base: Style) -> Strip:
        style = base + self._style("group")
        fixed = [Segment(" " * self.GUTTER, style)]
        scrolling: list[Segment] = []
        spans: list[tuple[int, str, int]] = []  # (region, group, width)
        left = self._left()  # a group label spans only its columns that are on screen
        for i, c in enumerate(self._columns):
            if i >= self._fixed and self._offsets[i] < left:
                continue
            region = 0 if i < self._fixed else 1
            if spans and spans[-1][0] == region and spans[-1][1] == c.group and c.group:
                r, g, w = spans[-1]
                spans[-1] = (r, g, w + c.width + 1)
            else:
                spans.append((region, c.group, c.width + 1))
        for region, group, w in spans:
            if group:
                label = f" {group} " if len(group) + 2 <= w - 1 else group
                text = label.center(w - 1, "─" if len(label) + 2 <= w - 1 else " ") + " "
            else:
                text = " " * w
            (fixed if region == 0 else scrolling).append(Segment(_fit(text, w, "left"), style))
        return self._join_regions(fixed, scrolling, width, base, first_start=left)

    def _header_line(self, width: int, base: Style) -> Strip:
        style = base + self._style("header")
        cursor_style = style + Style(underline=True)
        fixed = [Segment(" " * self.GUTTER, style)]
        scrolling: list[Segment] = []
        for i, c in enumerate(self._columns):
            label = c.label
            if c.key == self._sort:
                label = f"{label}{'▼' if self._descending else '▲'}"
            seg_style = cursor_style if (i == self.cursor_col and self.has_focus) else style
            segs = [Segment(_fit(label, c.width, c.justify), seg_style), Segment(" ", style)]
            (fixed if i < self._fixed else scrolling).extend(segs)
        return self._join_regions(fixed, scrolling, width, base)

    def _row_line(self, index: int, width: int, base: Style) -> Strip:
        is_cursor = index == self.cursor_row
        focused_cell = self.cursor_col if (is_cursor and self.has_focus) else -1
        values = self._get_row(index)
        marked = values[0] in self.marked
        key = (index, is_cursor, marked, focused_cell)
        cached = self._lines.get(key)
        if cached is None:
            cached = self._row_segments(values, is_cursor, marked, focused_cell)
            if len(self._lines) > 2000:
                self._lines = {}
            self._lines[key] = cached
        fixed, scrolling, row_style = cached
        return self._join_regions(fixed, scrolling, width, row_style)

    def _row_segments(self, values: tuple, is_cursor: bool, marked: bool, focused_cell: int):
        """(fixed segments, scrolling segments, row style) of one row; runs of one style are merged."""
        row = dict(zip(self._fields, values))
        row_names = ("marked",) * marked + ("cursor",) * is_cursor
        row_style = self._combo(*row_names)
        parts: tuple[list, list] = ([("●" if marked else " ") + " ", row_style], [])
        for i, c in enumerate(self._columns):
            if c.render is not None:
                text, suffix = c.render(row)
            else:
                value = row.get(c.key)
                text = "—" if value is None else c.fmt(value)
                suffix = c.style(value) if (c.style is not None and value is not None) else None
            names = row_names
            if suffix:
                names = names + (suffix,)
            if c.dim_key is not None and row.get(c.dim_key) is False:
                names = names + ("dim",)
            if i == focused_cell:
                names = names + ("cursor-cell",)
            target = parts[0] if i < self._fixed else parts[1]
            for text_part, style in ((_fit(text, c.width, c.justify), self._combo(*names)), (" ", row_style)):
                if target and target[-1] is style:  # same style as the previous run: extend it
                    target[-2] += text_part
                else:
                    target.extend((text_part, style))
        fixed = [Segment(parts[0][j], parts[0][j + 1]) for j in range(0, len(parts[0]), 2)]
        scrolling = [Segment(parts[1][j], parts[1][j + 1]) for j in range(0, len(parts[1]), 2)]
        return fixed, scrolling, row_style

    # ---- cursor ---------------------------------------------------------------------------
    @property
    def _page(self) -> int:
        return max(self.size.height - self.HEADER_HEIGHT, 1)

    def watch_cursor_row(self, old: int, new: int) -> None:
        self._scroll_cursor_into_view()
        self.refresh()

    def watch_cursor_col(self, old: int, new: int) -> None:
        self._scroll_cursor_into_view()
        self.refresh()

    def _scroll_cursor_into_view(self) -> None:
        if not self.is_mounted:
            return
        top = int(self.scroll_offset.y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, immediate=True)
        elif self.cursor_row >= top + self._page:
            self.scroll_to(y=self.cursor_row - self._page + 1, animate=False, immediate=True)
        if self.cursor_col >= self._fixed and self._columns:
            start = self._offsets[self.cursor_col]
            end = start + self._columns[self.cursor_col].width + 1
            left = int(self.scroll_offset.x)
            visible = max(self.size.width - self._fixed_width, 1)
            if start < left:
                self.scroll_to(x=start, animate=False, immediate=True)
            elif end > left + visible:
                # scroll to a column start, so the first column on screen is whole
                starts = [self._offsets[i] for i in range(self._fixed, self.cursor_col + 1)]
                self.scroll_to(x=next(o for o in starts if o >= end - visible), animate=False, immediate=True)

    def _move(self, rows: int) -> None:
        if self._source.height:
            self.cursor_row = max(0, min(self._source.height - 1, self.cursor_row + rows))

    def action_cursor_up(self) -> None:
        self._move(-1)

    def action_cursor_down(self) -> None:
        self._move(1)

    def action_page_up_rows(self) -> None:
        self._move(-self._page)

    def action_page_down_rows(self) -> None:
        self._move(self._page)

    def action_first_row(self) -> None:
        self._move(-self._source.height)

    def action_last_row(self) -> None:
        self._move(self._source.height)

    def action_cursor_left(self) -> None:
        self.cursor_col = max(0, self.cursor_col - 1)

    def action_cursor_right(self) -> None:
        self.cursor_col = min(max(len(self._columns) - 1, 0), self.cursor_col + 1)

    def action_activate(self) -> None:
        if self.cursor_key is not None:
            self.post_message(self.RowActivated(self, self.cursor_row, self.cursor_key))

    def action_toggle_mark(self) -> None:
        key = self.cursor_key
        if key is None:
            return
        self.marked.symmetric_difference_update({key})
        self.post_message(self.MarksChanged(self, frozenset(self.marked)))
        self._move(1)
        self.refresh()

    def clear_marks(self) -> None:
        self.marked.clear()
        self.post_message(self.MarksChanged(self, frozenset()))
        self.refresh()

    def action_sort(self) -> None:
        if self._columns:
            self.post_message(self.SortRequested(self, self._columns[self.cursor_col].key))

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    # ---- mouse ----------------------------------------------------------------------------
    def column_x(self, key: str) -> int:
        """Screen x (cells from the widget's left edge, current horizontal scroll) where the
        column ``key`` starts; what a click on its header needs."""
        i = [c.key for c in self._columns].index(key)
        if i < self._fixed:
            return self.GUTTER + self._offsets[i]
        return self._fixed_width + self._offsets[i] - self._left()

    def _column_at(self, x: int) -> int | None:
        if x < self.GUTTER:
            return None
        if x < self._fixed_width:
            pos = x - self.GUTTER
            for i in range(self._fixed):
                if self._offsets[i] <= pos < self._offsets[i] + self._columns[i].width + 1:
                    return i
            return None
        pos = x - self._fixed_width + self._left()
        for i in range(self._fixed, len(self._columns)):
            if self._offsets[i] <= pos < self._offsets[i] + self._columns[i].width + 1:
                return i
        return None

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        col = self._column_at(offset.x)
        if offset.y < self.HEADER_HEIGHT:
            if col is not None and offset.y == 1:
                self.cursor_col = col
                self.post_message(self.SortRequested(self, self._columns[col].key))
            return
        index = int(self.scroll_offset.y) + offset.y - self.HEADER_HEIGHT
        if 0 <= index < self._source.height:
            self.cursor_row = index
            if col is not None:
                self.cursor_col = col
            if event.chain >= 2:
                self.action_activate()
