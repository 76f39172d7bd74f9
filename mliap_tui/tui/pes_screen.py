"""PES slice screen: a symmetry-restricted slice (mliap_tui.analysis.pes.slices) of one material.

2D slices are drawn as a heatmap of coloured half blocks (``▀``: foreground = upper grid row,
background = lower grid row, so two grid rows per text row; each grid column is two cells wide),
with axis labels, a colour bar in meV/atom (relative to the DFT structure), the DFT point marked
``+`` and the model's minimum ``×`` (``⊕`` when they coincide). 1D scans are a plotext line plot
with every model overlaid. Keys: ``m`` next model, ``a`` next axes (every single axis, then every
pair), ``d`` difference mode (shown model minus the next model), ``R`` recompute. Computing a slice
(``mliap_tui.analysis.pes.slices.compute_slice``: the engine's cached, resumable path) runs in a thread worker.
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np
from rich.color import Color
from rich.console import Group
from rich.style import Style
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from mliap_tui.analysis.pes import stats as pa
from mliap_tui.cache import Cache

HALF = "▀"
#: viridis, 9 anchors (low energy = dark blue, high = yellow)
VIRIDIS = [(68, 1, 84), (72, 40, 120), (62, 73, 137), (49, 104, 142), (38, 130, 142), (31, 158, 137),
           (53, 183, 121), (109, 205, 89), (253, 231, 37)]
DIVERGING = [(33, 102, 172), (103, 169, 207), (209, 229, 240), (247, 247, 247), (253, 219, 199), (239, 138, 98),
             (178, 24, 43)]
NAN_RGB = (40, 40, 40)


def _interp(cmap: Sequence[tuple[int, int, int]], u: float) -> tuple[int, int, int]:
    if not math.isfinite(u):
        return NAN_RGB
    u = min(max(u, 0.0), 1.0) * (len(cmap) - 1)
    i = min(int(u), len(cmap) - 2)
    f = u - i
    a, b = cmap[i], cmap[i + 1]
    return tuple(int(round(a[k] + f * (b[k] - a[k]))) for k in range(3))  # type: ignore[return-value]


def _color(cmap, value: float, lo: float, hi: float) -> Color:
    u = (value - lo) / (hi - lo) if hi > lo else 0.5
    return Color.from_rgb(*_interp(cmap, u))


def heatmap_text(values: np.ndarray, x_vals: np.ndarray, y_vals: np.ndarray, x_name: str, y_name: str,
                 dft_idx: tuple[int, int], min_idx: tuple[int, int] | None, diverging: bool = False,
                 unit: str = "meV/atom", title: str = "") -> Text:
    """Half-block heatmap of ``values[i, j]`` (i along x, j along y; y grows upwards)."""
    v = np.asarray(values, float)
    finite = v[np.isfinite(v)]
    if diverging:
        m = float(np.abs(finite).max()) if finite.size else 1.0
        lo, hi, cmap = -m, m, DIVERGING
    else:
        lo = float(finite.min()) if finite.size else 0.0
        hi = float(finite.max()) if finite.size else 1.0
        cmap = VIRIDIS
    nx, ny = v.shape
    margin = 9
    out = Text()
    if title:
        out.append(title + "\n", style="bold")
    out.append(f"{y_name} ↑\n", style="bold")
    # text rows from the top: grid rows (ny-1, ny-2), (ny-3, ny-4), ...
    rows = list(range(ny - 1, -1, -1))
    pairs = [(rows[k], rows[k + 1] if k + 1 < len(rows) else None) for k in range(0, len(rows), 2)]
    for r, (top, bottom) in enumerate(pairs):
        if r == 0:
            label = f"{y_vals[top]:+.3f}"
        elif r == len(pairs) - 1:
            label = f"{y_vals[bottom if bottom is not None else top]:+.3f}"
        elif top is not None and (top == dft_idx[1] or bottom == dft_idx[1]):
            label = f"{y_vals[dft_idx[1]]:+.3f}"
        else:
            label = ""
        out.append(f"{label:>{margin - 1}} ")
        for i in range(nx):
            fg = _color(cmap, v[i, top], lo, hi)
            bg = _color(cmap, v[i, bottom], lo, hi) if bottom is not None else Color.default()
            marks = []
            for j in (top, bottom):
                if j is None:
                    continue
                if (i, j) == tuple(dft_idx):
                    marks.append("dft")
                if min_idx is not None and (i, j) == tuple(min_idx):
                    marks.append("min")
            if marks:
                glyph = "⊕" if {"dft", "min"} <= set(marks) else ("+" if "dft" in marks else "×")
                base = fg if (top == dft_idx[1] and "dft" in marks) or (min_idx is not None and top == min_idx[1]) else bg
                out.append(glyph + " ", style=Style(color="white", bgcolor=base, bold=True))
            else:
                out.append(HALF * 2, style=Style(color=fg, bgcolor=bg))
        out.append("\n")
    # x axis
    width = 2 * nx
    left, mid, right = f"{x_vals[0]:+.3f}", f"{x_vals[dft_idx[0]]:+.3f}", f"{x_vals[-1]:+.3f}"
    axis = [" "] * width
    for pos, s in ((0, left), (max(0, 2 * dft_idx[0] - len(mid) // 2), mid), (width - len(right), right)):
        for k, ch in enumerate(s):
            if 0 <= pos + k < width:
                axis[pos + k] = ch
    out.append(" " * margin + "".join(axis) + "\n")
    out.append(" " * margin + f"{x_name} →\n", style="bold")
    # colour bar
    out.append(f"{lo:+.2f} ", style="bold")
    for k in range(24):
        out.append("█", style=Style(color=Color.from_rgb(*_interp(cmap, k / 23))))
    out.append(f" {hi:+.2f} {unit}", style="bold")
    out.append("   + DFT structure   × model minimum", style="dim")
    return out


def line_plot(x_vals: np.ndarray, curves: dict[str, np.ndarray], x_name: str, width: int, height: int,
              ylabel: str = "E − E(DFT) (meV/atom)") -> Text:
    """plotext line plot, every model overlaid; the DFT point is x = 0."""
    import plotext as plt

    fig = plt.figure
    fig.clear()
    fig.plot_size(max(30, width), max(8, height))
    plt.theme("clear")
    for name, y in curves.items():
        ok = np.isfinite(y)
        if ok.any():
            plt.plot(x_vals[ok].tolist(), y[ok].tolist(), label=name, marker="braille")
    plt.vline(0.0)
    plt.xlabel(x_name)
    plt.ylabel(ylabel)
    text = plt.build()
    fig.clear()
    return Text.from_ansi(text)


class SliceReady(Message):
    def __init__(self, pes_slice) -> None:
        super().__init__()
        self.pes_slice = pes_slice


class SliceFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


def axis_choices(axis_names: Sequence[str]) -> list[tuple[str, ...]]:
    """Two-axis slices first (coordinate pairs, then with lattice), then every single axis."""
    pairs = [tuple(p) for p in itertools.combinations(axis_names, 2)]
    return pairs + [(a,) for a in axis_names]


class PesScreen(Screen):
    """Symmetry-restricted PES slice of one material."""

    BINDINGS = [
        Binding("escape,q,backspace", "app.pop_screen", "Back", id="pes.back"),
        Binding("m", "next_model", "Model", id="pes.model"),
        Binding("a", "next_axes", "Axes", id="pes.axes"),
        Binding("d", "toggle_diff", "Difference", id="pes.diff"),
        Binding("R", "recompute", "Recompute", id="pes.recompute"),
    ]

    def __init__(self, cache: Cache, dataset: str, material_id: str, models: Sequence[str] | None = None,
                 axes: Sequence[str] | None = None, points: int = 21, device: str = "auto") -> None:
        super().__init__()
        self.cache, self.dataset, self.material_id = cache, dataset, material_id
        self.models = list(models) if models else self._default_models()
        self.points, self.device = points, device
        self.axes = tuple(axes) if axes else None
        self.choices: list[tuple[str, ...]] = []
        self.model_index = 0
        self.diff = False
        self.pes_slice = None
        self.error: str | None = None

    def _default_models(self) -> list[str]:
        try:
            found = (self.cache.scan_predictions(self.dataset).select("model").unique().collect()["model"].to_list())
        except Exception:  # noqa: BLE001 - no predictions yet
            found = []
        return sorted(found) or ["chgnet-0.3.0"]

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◇")
        with VerticalScroll(id="pes-body"):
            yield Static(f"preparing the PES slice of {self.material_id}…", id="pes-info")
            yield Static("", id="pes-plot")
            yield Static("", id="pes-stats")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = f"{self.dataset} · {self.material_id} · PES slice"
        self._compute(self.axes)

    @property
    def model(self) -> str:
        return self.models[self.model_index % len(self.models)]

    @work(thread=True, exclusive=True, group="pes")
    def _compute(self, axes: tuple[str, ...] | None) -> None:
        import warnings

        import polars as pl

        from mliap_tui.analysis.pes import slices as pes

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row = (self.cache.scan_materials(self.dataset).filter(pl.col("material_id") == self.material_id)
                       .collect().row(0, named=True))
                crystal = pes.prepare(row)
                names = [a.name for a in crystal.axes]
                self.choices = axis_choices(names)
                if axes is None:
                    axes = self.choices[0] if self.choices else (names[0],)
                self.axes = tuple(axes)
                s = pes.compute_slice(self.cache, self.dataset, self.material_id, list(axes), self.models,
                                      points=self.points, device=self.device)
        except Exception as exc:  # noqa: BLE001 - shown on screen
            self.post_message(SliceFailed(f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(SliceReady(s))

    def on_slice_ready(self, message: SliceReady) -> None:
        self.pes_slice = message.pes_slice
        self.error = None
        self.refresh_view()

    def on_slice_failed(self, message: SliceFailed) -> None:
        self.error = message.error
        self.query_one("#pes-info", Static).update(Text(f"PES slice failed: {message.error}", style="red"))

    # -- actions --------------------------------------------------------------------------------
    def action_next_model(self) -> None:
        self.model_index = (self.model_index + 1) % len(self.models)
        self.refresh_view()

    def action_toggle_diff(self) -> None:
        self.diff = not self.diff and len(self.models) > 1
        self.refresh_view()

    def action_next_axes(self) -> None:
        if not self.choices:
            return
        k = self.choices.index(self.axes) + 1 if self.axes in self.choices else 0
        self.axes = self.choices[k % len(self.choices)]
        self.query_one("#pes-info", Static).update(f"computing {' × '.join(self.axes)}…")
        self._compute(self.axes)

    def action_recompute(self) -> None:
        self._compute(self.axes)

    # -- rendering ------------------------------------------------------------------------------
    def refresh_view(self) -> None:
        s = self.pes_slice
        if s is None:
            return
        spec = s.spec
        other = self.models[(self.model_index + 1) % len(self.models)]
        stats = pa.analyze_slice(s)
        info = Text.assemble(
            (f"{self.material_id}", "bold"), f"  space group {s.crystal.spacegroup_number} · {s.crystal.wyckoff} · ",
            (" × ".join(spec.axes), "bold cyan"),
            f"  ±{', ±'.join(f'{r:.3g}' for r in spec.ranges)} · {'x'.join(map(str, spec.shape))} points · model ",
            (self.model, "bold"), (f" − {other}" if self.diff else "", "bold magenta"),
        )
        self.query_one("#pes-info", Static).update(info)
        width = max(40, (self.size.width or 100) - 4)
        if len(spec.axes) == 2:
            if self.diff:
                values = pa.difference_map(s, self.model, other)
                title = f"{self.model} − {other} (meV/atom)"
            else:
                values = pa.relative_mev(s.energies[self.model], spec.center)
                title = f"{self.model}: E − E(DFT) (meV/atom)"
            st = next(x for x in stats if x.source == self.model)
            plot = heatmap_text(values, spec.values(0), spec.values(1), spec.axes[0], spec.axes[1],
                                spec.center, None if self.diff else st.min_index, diverging=self.diff, title=title)
        else:
            if self.diff:
                curves = {f"{self.model} − {other}": pa.difference_map(s, self.model, other)}
            else:
                curves = {m: pa.relative_mev(e, spec.center) for m, e in s.energies.items()}
            plot = line_plot(spec.values(0), curves, spec.axes[0], width, 18)
        self.query_one("#pes-plot", Static).update(plot)
        self.query_one("#pes-stats", Static).update(stats_renderable(s, stats))


def stats_renderable(s, stats) -> Group:
    from rich.table import Table

    t = Table(title="per model: minimum (offset from DFT) and curvature at the DFT point", title_justify="left",
              box=None, padding=(0, 1))
    t.add_column("model")
    t.add_column("min ΔE meV/atom", justify="right")
    for ax in s.axes:
        u = "°" if ax.unit == "°" else "Å"
        t.add_column(f"offset {ax.name} ({u})", justify="right")
        t.add_column(f"curv {ax.name} eV/atom/{u}²", justify="right")
    t.add_column("minima/saddles", justify="right")
    for st in stats:
        cells = [st.source, f"{st.min_e_rel_mev_per_atom:+.3f}"]
        for k in range(len(s.axes)):
            o, c = st.min_offset_ang[k], st.curvature_ev_per_atom_per_ang2[k]
            cells += ["—" if o is None else f"{o:+.4f}", "—" if c is None or not math.isfinite(c) else f"{c:.4f}"]
        cells.append("—" if st.n_local_minima is None else f"{st.n_local_minima}/{st.n_saddles}")
        t.add_row(*cells)
    return Group(t)


__all__ = ["PesScreen", "axis_choices", "heatmap_text", "line_plot", "stats_renderable"]
