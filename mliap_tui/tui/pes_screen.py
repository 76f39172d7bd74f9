"""PES slice screen: a symmetry-restricted slice (mliap_tui.analysis.pes.slices) of one material.

2D slices are drawn as a heatmap of E − E(DFT) in meV/atom. Where the screen is short, grid rows
are paired in half blocks (``▀``: foreground = upper grid row, background = lower; each grid
column two cells wide); where it is tall enough, each grid row is a text row and each column up
to four cells wide. Colours follow :func:`mliap_tui.analysis.pes.stats.colour_scale`: set by the
valid points only (evaluated, not masked, not a model collapse), clipped at percentiles, the clip
stated under the colour bar. Masked points (atoms closer than the closest-approach rule) are
grey, model-collapse points red and marked ``!``, points not computed (yet) dark. Marks: ``+`` the
DFT structure, ``×`` the lowest valid point (``⊕`` when they coincide), ``o`` other local minima,
``s`` saddle points. Axes are labelled in Å of displacement (coordinates) or % strain (lattice), and the
header names each coordinate's value at the DFT point. 1D scans are a plotext line plot of the
valid points with every source overlaid.

Keys: ``m`` next source (each model, then the reference grid), ``d`` difference mode (shown
source minus the next), ``a`` next axes (every pair, then every single axis), ``+``/``-`` range
×2 / ÷2, ``g`` load a reference grid CSV (your DFT energies), ``x`` cancel the computation
(keeping what is done), ``R`` recompute / resume. One computation runs at a time: it evaluates
the grid in this process through the engine's batched adapters (the model is loaded once per
session; every core but one, :func:`app_torch_threads`), with a progress bar and ETA; results
are cached, so a slice asked again is read back.
"""

from __future__ import annotations

import itertools
import math
import threading
from typing import Sequence

import numpy as np
from rich.color import Color
from rich.console import Group
from rich.style import Style
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, ProgressBar, Static

from mliap_tui.analysis.pes import stats as pa
from mliap_tui.cache import Cache
from mliap_tui.core.units import format_duration

HALF = "▀"
#: viridis, 9 anchors (low energy = dark blue, high = yellow)
VIRIDIS = [(68, 1, 84), (72, 40, 120), (62, 73, 137), (49, 104, 142), (38, 130, 142), (31, 158, 137),
           (53, 183, 121), (109, 205, 89), (253, 231, 37)]
DIVERGING = [(33, 102, 172), (103, 169, 207), (209, 229, 240), (247, 247, 247), (253, 219, 199), (239, 138, 98),
             (178, 24, 43)]
NAN_RGB = (28, 28, 28)  # not computed (yet), or failed
MASK_RGB = (120, 120, 120)  # physically impossible geometry
COLLAPSE_RGB = (230, 0, 90)  # model collapse
RANGE_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def _interp(cmap: Sequence[tuple[int, int, int]], u: float) -> tuple[int, int, int]:
    if not math.isfinite(u):
        return NAN_RGB
    u = min(max(u, 0.0), 1.0) * (len(cmap) - 1)
    i = min(int(u), len(cmap) - 2)
    f = u - i
    a, b = cmap[i], cmap[i + 1]
    return tuple(int(round(a[k] + f * (b[k] - a[k]))) for k in range(3))  # type: ignore[return-value]


def point_colours(values: np.ndarray, valid: np.ndarray, masked: np.ndarray, collapsed: np.ndarray,
                  scale: pa.ColourScale) -> np.ndarray:
    """RGB (grid shape + (3,)) of every point: scale colour where valid, else the category colour."""
    cmap = DIVERGING if scale.diverging else VIRIDIS
    out = np.zeros(values.shape + (3,), int)
    for idx in itertools.product(*(range(n) for n in values.shape)):
        if valid[idx]:
            rgb = _interp(cmap, scale.fraction(values[idx]))
        elif collapsed[idx]:
            rgb = COLLAPSE_RGB
        elif masked[idx]:
            rgb = MASK_RGB
        else:
            rgb = NAN_RGB
        out[idx] = rgb
    return out


def _ink(rgb: Sequence[int]) -> Color:
    """Black or white, whichever reads on ``rgb``."""
    lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return Color.from_rgb(0, 0, 0) if lum > 140 else Color.from_rgb(255, 255, 255)


def heatmap_layout(nx: int, ny: int, width: int, height: int, margin: int = 8) -> tuple[int, bool]:
    """(cell width, one text row per grid row?) for a map of nx × ny points in width × height cells."""
    for cell_w in (4, 3, 2):
        if margin + cell_w * nx <= width and ny <= height:
            return cell_w, True
    return 2, False


def heatmap_text(values: np.ndarray, colours: np.ndarray, x_vals: np.ndarray, y_vals: np.ndarray, x_unit: str,
                 marks: dict[tuple[int, int], str], cell_w: int = 2, full_rows: bool = False, margin: int = 8) -> Text:
    """The map: ``values[i, j]`` (i along x, j along y; y grows upwards), ``colours`` per point,
    ``marks`` {(i, j): glyph}; y labels at the top, the DFT row and the bottom; x labels under it."""
    nx, ny = values.shape
    dft_j = ny // 2
    out = Text()
    rows = list(range(ny - 1, -1, -1))
    if full_rows:
        lines = [(j, None) for j in rows]
    else:
        lines = [(rows[k], rows[k + 1] if k + 1 < len(rows) else None) for k in range(0, len(rows), 2)]
    for r, (top, bottom) in enumerate(lines):
        shown = [j for j in (top, bottom) if j is not None]
        if r == 0:
            label = f"{y_vals[top]:+.2f}"
        elif r == len(lines) - 1:
            label = f"{y_vals[shown[-1]]:+.2f}"
        elif dft_j in shown:
            label = f"{y_vals[dft_j]:+.2f}"
        else:
            label = ""
        out.append(f"{label:>{margin - 1}} ")
        for i in range(nx):
            top_rgb = colours[i, top]
            marked = [(j, marks[(i, j)]) for j in shown if (i, j) in marks]
            if full_rows:
                colour = Color.from_rgb(*top_rgb)
                if marked:
                    glyph = marked[0][1]
                    out.append(glyph.center(cell_w), style=Style(color=_ink(top_rgb), bgcolor=colour, bold=True))
                else:
                    out.append("█" * cell_w, style=Style(color=colour, bgcolor=colour))
                continue
            bottom_rgb = colours[i, bottom] if bottom is not None else None
            if marked:
                j, glyph = marked[0]
                rgb = top_rgb if j == top else bottom_rgb
                out.append(glyph + " " * (cell_w - 1), style=Style(color=_ink(rgb), bgcolor=Color.from_rgb(*rgb), bold=True))
            else:
                bg = Color.from_rgb(*bottom_rgb) if bottom_rgb is not None else Color.default()
                out.append(HALF * cell_w, style=Style(color=Color.from_rgb(*top_rgb), bgcolor=bg))
        out.append("\n")
    width = cell_w * nx
    axis = [" "] * width
    c = nx // 2
    for i, align in ((0, "left"), (c, "centre"), (nx - 1, "right")):
        s = f"{x_vals[i]:+.2f}"
        pos = {"left": 0, "centre": cell_w * c + cell_w // 2 - len(s) // 2, "right": width - len(s)}[align]
        for k, ch in enumerate(s):
            if 0 <= pos + k < width:
                axis[pos + k] = ch
    out.append(" " * margin + "".join(axis) + f" {x_unit}")
    return out


def colour_bar(scale: pa.ColourScale, unit: str = "meV/atom", width: int = 20) -> Text:
    """``-3.21 ████ +180.45 meV/atom  (1st–95th percentile of 386 valid points (4 below ... clipped))``."""
    cmap = DIVERGING if scale.diverging else VIRIDIS
    out = Text()
    lo = f"≤{scale.lo:+.2f}" if scale.n_below else f"{scale.lo:+.2f}"
    hi = f"≥{scale.hi:+.2f}" if scale.n_above else f"{scale.hi:+.2f}"
    out.append(lo + " ", style="bold")
    for k in range(width):
        out.append("█", style=Style(color=Color.from_rgb(*_interp(cmap, k / (width - 1)))))
    out.append(f" {hi} {unit}", style="bold")
    out.append(f"\ncolour: {scale.clip_text}", style="dim")
    return out


def legend(n_masked: int, n_collapsed: int, n_missing: int, diff: bool = False) -> Text:
    out = Text()
    out.append("+", style="bold")
    out.append(" DFT  ")
    if not diff:
        out.append("×", style="bold")
        out.append(" min  ")
        out.append("o", style="bold")
        out.append(" local min  ")
        out.append("s", style="bold")
        out.append(" saddle  ")
    for n, rgb, what in ((n_masked, MASK_RGB, "masked"), (n_collapsed, COLLAPSE_RGB, "! collapse"),
                         (n_missing, NAN_RGB, "not computed")):
        if n:
            out.append("██", style=Style(color=Color.from_rgb(*rgb)))
            out.append(f" {what} {n}  ")
    return out


def line_plot(x_vals: np.ndarray, curves: dict[str, np.ndarray], x_name: str, width: int, height: int,
              ylabel: str = "E − E(DFT) (meV/atom)", ylim: tuple[float, float] | None = None) -> Text:
    """plotext line plot of every source overlaid (values outside ``ylim`` drawn at its edge), a
    vertical line at the DFT point (x = 0), and a legend line under it."""
    import contextlib
    import io

    import plotext as plt

    from mliap_tui.tui.plots import PALETTE, legend_line

    finite = [y[np.isfinite(y)] for y in curves.values() if np.isfinite(y).any()]
    if not finite:
        return Text("no valid points to draw", style="dim")
    lo, hi = ylim if ylim is not None and ylim[1] > ylim[0] else (
        float(min(f.min() for f in finite)), float(max(f.max() for f in finite)))
    if hi <= lo:
        lo, hi = lo - 1.0, hi + 1.0
    fig = plt.figure
    fig.clear()
    fig.plot_size(max(30, width), max(8, height - 1))
    fig.theme("simple")
    legend = []
    for k, (name, y) in enumerate(curves.items()):
        ok = np.isfinite(y)
        if ok.any():
            fig.draw(fig.signal(x_vals[ok].tolist(), np.clip(y[ok], lo, hi).tolist()).lines())
            legend.append(("─", name, PALETTE[k % len(PALETTE)]))
    fig.draw(fig.signal([0.0, 0.0], [lo, hi]).lines())
    legend.append(("│", "DFT structure", PALETTE[len(curves) % len(PALETTE)]))
    fig.ruler("y").lim(lo, hi)
    fig.label(x_name, "x")
    fig.label(ylabel, "y")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        text = str(fig.build()).rstrip("\n")
    fig.clear()
    return Text.from_ansi(text + "\n" + legend_line(legend, width))


class SliceReady(Message):
    def __init__(self, pes_slice) -> None:
        super().__init__()
        self.pes_slice = pes_slice


class SliceFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class SliceProgress(Message):
    """Where the computation stands: ``text`` for the status line, ``done``/``total`` for the bar."""

    def __init__(self, text: str, done: int | None = None, total: int | None = None) -> None:
        super().__init__()
        self.text = text
        self.done = done
        self.total = total


def axis_choices(axis_names: Sequence[str]) -> list[tuple[str, ...]]:
    """Two-axis slices first (coordinate pairs, then with lattice), then every single axis."""
    pairs = [tuple(p) for p in itertools.combinations(axis_names, 2)]
    return pairs + [(a,) for a in axis_names]


def app_torch_threads() -> int:
    """CPU threads for models evaluated inside the app: every usable core but one, which the UI
    keeps (on 2 cores: 1 thread, ~15 % slower than 2 on an idle machine, 2-3x faster when other
    processes compete for the cores, and the screen stays responsive)."""
    from mliap_tui.core.host import usable_cores

    return max(1, usable_cores() - 1)


def progress_text(ev, model: str) -> tuple[str, int | None, int | None]:
    """(status line, done, total) for an engine event of the slice's computation."""
    from mliap_tui.engine.protocol import (
        Log,
        ModelSkipped,
        Progress,
        WorkerFinished,
        WorkerStarted,
    )

    if isinstance(ev, Progress):
        rate = f"{ev.structures_per_s:.0f}/s · " if ev.structures_per_s else ""
        return (f"{ev.model} {ev.done}/{ev.total} · {rate}ETA {format_duration(ev.eta_s, clock=True)} · x cancels",
                ev.done, ev.total)
    if isinstance(ev, WorkerStarted):
        return f"{ev.model}: evaluating {ev.total} points on {ev.device} · x cancels", 0, ev.total
    if isinstance(ev, Log):
        return f"{ev.model}: {ev.message}…", None, None
    if isinstance(ev, ModelSkipped):
        return f"{ev.model}: {ev.reason}", None, None
    if isinstance(ev, WorkerFinished):
        return f"{ev.model}: {ev.done} points in {format_duration(ev.eval_s)}", ev.done, ev.total
    return "", None, None


class PesScreen(Screen):
    """Symmetry-restricted PES slice of one material."""

    BINDINGS = [
        Binding("escape,q,backspace", "back", "Back", id="pes.back"),
        Binding("m", "next_model", "Model", id="pes.model"),
        Binding("a", "next_axes", "Axes", id="pes.axes"),
        Binding("d", "toggle_diff", "Diff", id="pes.diff"),
        Binding("plus,equals_sign", "wider", "Wider", id="pes.wider"),
        Binding("minus", "narrower", "Narrower", id="pes.narrower"),
        Binding("g", "reference", "Ref", id="pes.reference"),
        Binding("x", "cancel", "Cancel", id="pes.cancel"),
        Binding("R", "recompute", "Redo", id="pes.recompute"),
        Binding("w", "write_figure", "Write figure", show=False, id="pes.write_figure"),
    ]

    def __init__(self, cache: Cache, dataset: str, material_id: str, models: Sequence[str] | None = None,
                 axes: Sequence[str] | None = None, points: int = 21, device: str = "auto",
                 range_factor: float = 1.0) -> None:
        super().__init__()
        self.cache, self.dataset, self.material_id = cache, dataset, material_id
        self.models = list(models) if models else self._default_models()
        self.points, self.device = points, device
        self.axes = tuple(axes) if axes else None
        self.range_factor = float(range_factor)
        self.choices: list[tuple[str, ...]] = []
        self.model_index = 0
        self.diff = False
        self.pes_slice = None
        self.reference: np.ndarray | None = None
        self.reference_path: str | None = None
        self.error: str | None = None
        self.crystal = None
        self._stop: threading.Event | None = None

    def _default_models(self) -> list[str]:
        """Models with results in the dataset, or on earlier slices of this material; else CHGNet."""
        from mliap_tui.analysis.pes.slices import pes_dataset_prefix

        found: set[str] = set()
        prefix = pes_dataset_prefix(self.material_id)
        for dataset in [self.dataset] + [d for d in self.cache.datasets() if d.startswith(prefix)]:
            try:
                found |= set(self.cache.scan_predictions(dataset).select("model").unique().collect()["model"].to_list())
            except Exception:  # noqa: BLE001 - no predictions yet
                pass
        return sorted(found) or ["chgnet-0.3.0"]

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◇")
        with VerticalScroll(id="pes-body"):
            yield Static(f"preparing the PES slice of {self.material_id}…", id="pes-info")
            with Horizontal(id="pes-progress"):
                yield ProgressBar(total=None, show_eta=False, show_percentage=False, id="pes-bar")
                yield Static("", id="pes-status")
            yield Static("", id="pes-notes")
            yield Static("", id="pes-plot")
            yield Static("", id="pes-scale")
            yield Static("", id="pes-stats")
        yield Input(placeholder="reference grid CSV (axis columns + e_per_atom_ev); Enter loads, Esc closes",
                    id="pes-reference-input")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = f"{self.dataset} · {self.material_id} · PES slice"
        self.query_one("#pes-progress").display = False
        self.query_one("#pes-reference-input").display = False
        self._start(self.axes)

    def on_unmount(self) -> None:
        if self._stop is not None:
            self._stop.set()

    @property
    def computing(self) -> bool:
        return self._stop is not None

    @property
    def sources(self) -> list[str]:
        return list(self.models) + (["reference"] if self.reference is not None else [])

    @property
    def model(self) -> str:
        return self.sources[self.model_index % len(self.sources)]

    # -- computing ------------------------------------------------------------------------------
    def _start(self, axes: tuple[str, ...] | None) -> None:
        self._stop = threading.Event()
        self.query_one("#pes-progress").display = True
        self.query_one("#pes-bar", ProgressBar).update(total=None, progress=0)
        self.query_one("#pes-status", Static).update("building the grid…")
        self._compute(axes, self._stop)

    @work(thread=True, exclusive=True, group="pes")
    def _compute(self, axes: tuple[str, ...] | None, stop: threading.Event) -> None:
        import warnings

        import polars as pl

        from mliap_tui.analysis.pes import slices as pes

        def on_event(ev) -> None:
            text, done, total = progress_text(ev, getattr(ev, "model", ""))
            if text:
                self.post_message(SliceProgress(text, done, total))

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if self.crystal is None:
                    row = (self.cache.scan_materials(self.dataset).filter(pl.col("material_id") == self.material_id)
                           .collect().row(0, named=True))
                    self.crystal = pes.prepare(row)
                    self.choices = axis_choices([a.name for a in self.crystal.axes])
                if axes is None:
                    axes = self.choices[0]
                self.axes = tuple(axes)
                resolved = [self.crystal.axis(a) for a in axes]
                ranges = [a.default_range * self.range_factor for a in resolved]
                if any(a.kind == "lattice" and r >= 0.9 for a, r in zip(resolved, ranges)):
                    raise pes.PesError("a lattice strain of ±90 % or more makes no sensible cell: press - to narrow")
                s = pes.build_slice(self.cache, self.dataset, self.material_id, list(axes), ranges, self.points,
                                    crystal=self.crystal)
                pes.evaluate_slice(self.cache, s, self.models, device=self.device, on_event=on_event, stop=stop,
                                   torch_threads=app_torch_threads())
        except Exception as exc:  # noqa: BLE001 - shown on screen
            self.post_message(SliceFailed(f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(SliceReady(s))

    def _done(self) -> None:
        self._stop = None
        self.query_one("#pes-progress").display = False

    def on_slice_progress(self, message: SliceProgress) -> None:
        if not self.computing:
            return
        self.query_one("#pes-status", Static).update(message.text)
        if message.total is not None:
            self.query_one("#pes-bar", ProgressBar).update(total=max(message.total, 1), progress=message.done or 0)

    def on_slice_ready(self, message: SliceReady) -> None:
        self._done()
        if self.reference is not None and self.pes_slice is not None and \
                self.pes_slice.spec.key != message.pes_slice.spec.key:
            self.reference = None  # a reference grid belongs to one slice's grid
            self.notify("reference grid dropped: it was matched to the previous slice (g loads one again)")
        self.pes_slice = message.pes_slice
        self.model_index %= len(self.sources)
        self.error = None
        self.refresh_view()

    def on_slice_failed(self, message: SliceFailed) -> None:
        self._done()
        self.error = message.error
        self.query_one("#pes-info", Static).update(Text(f"PES slice failed: {message.error}", style="red"))

    def _busy(self) -> bool:
        if self.computing:
            self.notify("a slice is being computed: x cancels it (keeping what is done)", severity="warning")
            return True
        return False

    # -- actions --------------------------------------------------------------------------------
    def action_back(self) -> None:
        box = self.query_one("#pes-reference-input", Input)
        if box.display:  # Esc closes the path prompt first
            box.display = False
            self.set_focus(None)
            return
        if self._stop is not None:
            self._stop.set()
        self.app.pop_screen()

    def action_cancel(self) -> None:
        if self._stop is None:
            self.notify("nothing is being computed")
            return
        self._stop.set()
        self.query_one("#pes-status", Static).update("cancelling after the batch in flight (results so far are kept)…")

    def action_next_model(self) -> None:
        self.model_index = (self.model_index + 1) % len(self.sources)
        self.refresh_view()

    def action_toggle_diff(self) -> None:
        if len(self.sources) < 2:
            self.notify("difference maps need two models, or a model and a reference grid (g)")
            self.diff = False
            return
        self.diff = not self.diff
        self.refresh_view()

    def action_next_axes(self) -> None:
        if self._busy() or not self.choices:
            return
        k = self.choices.index(self.axes) + 1 if self.axes in self.choices else 0
        self._start(self.choices[k % len(self.choices)])

    def _rescale(self, factor: float) -> None:
        if self._busy():
            return
        new = self.range_factor * factor
        if not RANGE_FACTORS[0] - 1e-9 <= new <= RANGE_FACTORS[-1] + 1e-9:
            self.notify(f"range stays within ×{RANGE_FACTORS[0]:g} … ×{RANGE_FACTORS[-1]:g} of the default")
            return
        self.range_factor = new
        self._start(self.axes)

    def action_wider(self) -> None:
        self._rescale(2.0)

    def action_narrower(self) -> None:
        self._rescale(0.5)

    def action_write_figure(self) -> None:
        """Write the shown model's slice as a publication PNG (``./figures`` or ``$MLIAP_TUI_FIGURES``)."""
        from mliap_tui.tui.figure_export import pes_figure, write_current_figure

        write_current_figure(self, pes_figure)

    def action_recompute(self) -> None:
        if self._busy():
            return
        self._start(self.axes)

    def action_reference(self) -> None:
        if self.pes_slice is None:
            self.notify("wait for the slice: a reference grid is matched to its points")
            return
        box = self.query_one("#pes-reference-input", Input)
        box.display = True
        box.value = self.reference_path or ""
        box.focus()

    @on(Input.Submitted, "#pes-reference-input")
    def _reference_submitted(self, event: Input.Submitted) -> None:
        box = self.query_one("#pes-reference-input", Input)
        path = event.value.strip()
        box.display = False
        self.set_focus(None)
        if not path:
            return
        try:
            ref = pa.load_reference_csv(path, self.pes_slice)
        except (ValueError, OSError) as exc:
            self.notify(str(exc), severity="error", timeout=8)
            return
        self.reference, self.reference_path = ref, path
        n = int(np.isfinite(ref).sum())
        self.notify(f"reference grid: {n}/{ref.size} points matched; m shows it, d compares")
        self.refresh_view()

    # -- rendering ------------------------------------------------------------------------------
    def on_resize(self, event) -> None:
        self.refresh_view()

    def refresh_view(self) -> None:
        s = self.pes_slice
        if s is None:
            return
        spec = s.spec
        sources = self.sources
        shown = self.model
        other = sources[(sources.index(shown) + 1) % len(sources)] if len(sources) > 1 else shown
        diff = self.diff and other != shown
        stats = pa.analyze_slice(s, self.reference)
        by_source = {st.source: st for st in stats}
        st = by_source.get(shown)
        self.query_one("#pes-info", Static).update(self._info(s, shown, other if diff else None))
        self.query_one("#pes-notes", Static).update(self._notes(s, st))
        width = max(40, (self.size.width or 100) - 2)
        height = max(10, (self.size.height or 30))
        rel = pa.relative_mev(pa.source_energies(s, shown, self.reference), spec.center)
        masked = s.mask
        collapsed = pa.collapsed_points(rel, s.collapse_ev_per_atom)
        if diff:
            values = pa.difference_map(s, shown, other, self.reference)
            valid = pa.source_valid(s, shown, self.reference) & pa.source_valid(s, other, self.reference)
            collapsed = collapsed | pa.collapsed_points(
                pa.relative_mev(pa.source_energies(s, other, self.reference), spec.center), s.collapse_ev_per_atom)
        else:
            values = rel
            valid = pa.valid_points(rel, masked, s.collapse_ev_per_atom)
        scale = pa.colour_scale(values, valid, diverging=diff)
        unit = "meV/atom"
        if len(spec.axes) == 2:
            ax0, ax1 = s.axes
            overhead = 12  # header, info, notes, ticks, colour bar, legend, footer
            cell_w, full = heatmap_layout(spec.points, spec.points, width, height - overhead)
            marks = {tuple(int(i) for i in p): "!" for p in zip(*np.nonzero(collapsed))}
            if not diff and st is not None and math.isfinite(st.min_e_rel_mev_per_atom):
                for p in st.local_minima:
                    marks[p] = "o"
                for p in st.saddles:
                    marks[p] = "s"
                marks[st.min_index] = "×"
            marks[spec.center] = "⊕" if marks.get(spec.center) == "×" else "+"
            colours = point_colours(values, valid, masked, collapsed, scale)
            plot = heatmap_text(values, colours, ax0.physical(spec.values(0)), ax1.physical(spec.values(1)),
                                f"{ax0.physical_unit} {ax0.name} →", marks, cell_w, full)
            missing = int((~np.isfinite(values) & ~masked).sum())
            scale_text = Text.assemble(colour_bar(scale, unit), "\n",
                                       legend(int((masked & ~collapsed).sum()), int(collapsed.sum()), missing, diff))
        else:
            (ax0,) = s.axes
            x = ax0.physical(spec.values(0))
            if diff:
                curves = {f"{shown} − {other}": np.where(valid, values, np.nan)}
            else:
                curves = {}
                for src in sources:
                    r = pa.relative_mev(pa.source_energies(s, src, self.reference), spec.center)
                    curves[src] = np.where(pa.valid_points(r, masked, s.collapse_ev_per_atom), r, np.nan)
            plot = line_plot(x, curves, f"{ax0.name} ({ax0.physical_unit})", width - 2, min(18, height - 12),
                             ylabel=f"{'Δ' if diff else 'E − E(DFT)'} ({unit})",
                             ylim=None if scale.n_used == 0 else (scale.lo, scale.hi))
            scale_text = Text(f"y axis: {scale.clip_text}", style="dim")
        self.query_one("#pes-plot", Static).update(plot)
        self.query_one("#pes-scale", Static).update(scale_text)
        self.query_one("#pes-stats", Static).update(stats_renderable(s, stats))

    def _info(self, s, shown: str, other: str | None) -> Text:
        spec = s.spec
        head = Text.assemble((self.material_id, "bold"), f" · sg {s.crystal.spacegroup_number} · {s.crystal.wyckoff} · ",
                             (shown, "bold"), (f" − {other}" if other else "", "bold magenta"),
                             f" · {'Δ' if other else 'E − E(DFT)'} meV/atom")
        lines = [head]
        for k, (ax, r) in enumerate(zip(s.axes, spec.ranges)):
            name = ("x", "y")[k] if len(spec.axes) == 2 else "x"
            lines.append(Text.assemble(f"{name} ", (ax.name, "bold cyan"), f" {ax.dft_label} at DFT · "
                                       f"{ax.describe_range(r)}"))
        lines[-1].append(f" · {'×'.join(map(str, spec.shape))}")
        return Text("\n").join(lines)

    def _notes(self, s, st) -> Text:
        out = []
        if s.cancelled:
            done = ", ".join(f"{m} {s.n_done(m)}/{int(s.evaluated.sum())}" for m in self.models)
            out.append(Text(f"cancelled: {done} points evaluated · r resumes", style="yellow"))
        if st is not None and st.collapses:
            deep = st.collapses[0]
            out.append(Text(f"⚠ MODEL COLLAPSE: {st.n_collapsed} point{'s' if st.n_collapsed > 1 else ''} "
                            f"> {st.collapse_ev_per_atom:g} eV/atom below DFT, deepest "
                            f"{deep.e_rel_mev_per_atom:+.0f} meV/atom at {deep.pair} {deep.closest_ang:.2f} Å"
                            f"{' (masked)' if deep.masked else ''}: not a minimum", style="bold red"))
        for src, fails in s.failures.items():
            if fails:
                out.append(Text(f"{src}: {len(fails)} failed points, e.g. {fails[0]}", style="red"))
        return Text("\n").join(out)


def stats_renderable(s, stats) -> Group:
    from rich.table import Table

    t = Table(title="valid points only: minimum (offset from DFT), curvature at the DFT point", title_justify="left",
              box=None, padding=(0, 1))
    t.add_column("source")
    t.add_column("valid", justify="right")
    t.add_column("min ΔE meV/atom", justify="right")
    for ax in s.axes:
        u = "°" if ax.unit == "°" else "Å"
        t.add_column(f"offset {ax.name} ({u})", justify="right")
        t.add_column(f"curv {ax.name} eV/atom/{u}²", justify="right")
    t.add_column("minima/saddles", justify="right")
    t.add_column("collapse", justify="right")
    for st in stats:
        cells = [st.source, f"{st.n_valid}/{st.n_points}",
                 "—" if not math.isfinite(st.min_e_rel_mev_per_atom) else f"{st.min_e_rel_mev_per_atom:+.3f}"]
        for k in range(len(s.axes)):
            o, c = st.min_offset_ang[k], st.curvature_ev_per_atom_per_ang2[k]
            cells += ["—" if o is None or not math.isfinite(o) else f"{o:+.4f}",
                      "—" if c is None or not math.isfinite(c) else f"{c:.4f}"]
        cells.append("—" if st.n_local_minima is None else f"{st.n_local_minima}/{st.n_saddles}")
        cells.append(f"{st.n_collapsed}" if st.n_collapsed else "0")
        t.add_row(*cells)
    return Group(t)


__all__ = ["PesScreen", "app_torch_threads", "axis_choices", "colour_bar", "heatmap_layout", "heatmap_text", "legend", "line_plot",
           "point_colours", "progress_text", "stats_renderable"]
