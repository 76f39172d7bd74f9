"""Analysis of a symmetry-restricted PES slice (:mod:`mliap_tui.analysis.pes.slices`).

Per model (and per user reference, see :func:`load_reference_csv`):

* ``e_rel_mev_per_atom``: energy relative to the DFT structure's point (the grid centre), meV/atom;
* the grid minimum, refined by a parabola through the minimum and its neighbours along each axis
  when it is interior, and its **offset** from the DFT point in axis units (fractional
  coordinate or strain) and in Å (``SliceAxis.ang_per_unit``: the distance each atom of the orbit
  moves, or the change of the lattice length; degrees for angle axes);
* the **curvature** at the DFT point along each axis: central second difference of the grid,
  ``d2E/dt2`` in eV/atom per unit², and ``/ ang_per_unit**2`` in eV/atom/Å² (a softening measure:
  a model flatter than the reference has the smaller value);
* on a 2D grid, the number of interior **local minima** (lower than all 8 neighbours) and
  **saddle points** (the signs of ``E_neighbour - E_centre`` around the 8-ring change 4 or more times;
  adjacent flagged points, one saddle between grid points, count once);
* difference maps model minus model (or minus the reference), meV/atom.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import polars as pl

from mliap_tui.core.units import MEV_PER_EV


@dataclass(frozen=True)
class SliceStats:
    source: str  # model id or 'reference'
    n_points: int
    n_finite: int
    min_index: tuple[int, ...]
    min_e_rel_mev_per_atom: float
    min_offset: tuple[float, ...]  # axis units (frac / strain)
    min_offset_ang: tuple[float | None, ...]  # Å (degrees for angle axes)
    curvature_ev_per_atom_per_unit2: tuple[float, ...]
    curvature_ev_per_atom_per_ang2: tuple[float | None, ...]
    n_local_minima: int | None
    n_saddles: int | None
    min_at_dft: bool  # the grid minimum is the DFT (centre) point

    def as_row(self, axes: Sequence[str]) -> dict:
        row = {"source": self.source, "points_ok": f"{self.n_finite}/{self.n_points}",
               "min_e_rel_mev_per_atom": self.min_e_rel_mev_per_atom, "min_at_dft": self.min_at_dft}
        for k, a in enumerate(axes):
            row[f"min_offset[{a}]"] = self.min_offset[k]
            row[f"min_offset_ang[{a}]"] = self.min_offset_ang[k]
            row[f"curv_ev_per_atom_per_unit2[{a}]"] = self.curvature_ev_per_atom_per_unit2[k]
            row[f"curv_ev_per_atom_per_ang2[{a}]"] = self.curvature_ev_per_atom_per_ang2[k]
        row["n_local_minima"] = self.n_local_minima
        row["n_saddles"] = self.n_saddles
        return row


def relative_mev(energies: np.ndarray, center: tuple[int, ...]) -> np.ndarray:
    """Energy relative to the centre point, meV/atom (NaN stays NaN)."""
    return (np.asarray(energies, float) - energies[center]) * MEV_PER_EV


def _parabola_offset(em: float, e0: float, ep: float) -> float:
    """Vertex offset (in steps) of the parabola through (-1, em), (0, e0), (1, ep)."""
    den = em - 2 * e0 + ep
    if not np.isfinite(den) or den <= 0:
        return 0.0
    return float(np.clip(0.5 * (em - ep) / den, -0.5, 0.5))


def curvature_at(energies: np.ndarray, center: tuple[int, ...], k: int, step: float) -> float:
    """Central second difference along axis k at ``center`` (eV/atom per unit²)."""
    c = list(center)
    lo, hi = list(c), list(c)
    lo[k] -= 1
    hi[k] += 1
    if lo[k] < 0 or hi[k] >= energies.shape[k]:
        return float("nan")
    return float((energies[tuple(lo)] - 2 * energies[tuple(c)] + energies[tuple(hi)]) / step**2)


def count_critical_points(e: np.ndarray) -> tuple[int, int]:
    """(local minima, saddle points) among interior points of a 2D grid with finite neighbours."""
    ring = [(-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1)]
    n_min = 0
    saddles: set[tuple[int, int]] = set()
    for i in range(1, e.shape[0] - 1):
        for j in range(1, e.shape[1] - 1):
            block = e[i - 1:i + 2, j - 1:j + 2]
            if not np.isfinite(block).all():
                continue
            d = np.array([e[i + di, j + dj] - e[i, j] for di, dj in ring])
            if (d > 0).all():
                n_min += 1
                continue
            if (d < 0).all():
                continue
            s = np.sign(d)
            s = s[s != 0]
            if len(s) and int((s != np.roll(s, 1)).sum()) >= 4:
                saddles.add((i, j))
    # a saddle between grid points flags its neighbours too: count 8-connected clusters once
    n_saddle, todo = 0, set(saddles)
    while todo:
        n_saddle += 1
        stack = [todo.pop()]
        while stack:
            i, j = stack.pop()
            for di, dj in ring:
                if (i + di, j + dj) in todo:
                    todo.remove((i + di, j + dj))
                    stack.append((i + di, j + dj))
    return n_min, n_saddle


def analyze_energies(source: str, energies: np.ndarray, steps: Sequence[float], center: tuple[int, ...],
                     ang_per_unit: Sequence[float | None]) -> SliceStats:
    e = np.asarray(energies, float)
    finite = np.isfinite(e)
    if not finite.any() or not np.isfinite(e[center]):
        nan = tuple(float("nan") for _ in steps)
        return SliceStats(source, e.size, int(finite.sum()), center, float("nan"), nan, nan, nan, nan,
                          None, None, False)
    idx = np.unravel_index(int(np.nanargmin(np.where(finite, e, np.inf))), e.shape)
    offset = []
    for k, step in enumerate(steps):
        frac_step = 0.0
        lo, hi = list(idx), list(idx)
        lo[k] -= 1
        hi[k] += 1
        if lo[k] >= 0 and hi[k] < e.shape[k]:
            frac_step = _parabola_offset(e[tuple(lo)], e[idx], e[tuple(hi)])
        offset.append((idx[k] - center[k] + frac_step) * step)
    curv = tuple(curvature_at(e, center, k, s) for k, s in enumerate(steps))
    n_min = n_saddle = None
    if e.ndim == 2:
        n_min, n_saddle = count_critical_points(e)
    return SliceStats(
        source=source, n_points=e.size, n_finite=int(finite.sum()), min_index=tuple(int(i) for i in idx),
        min_e_rel_mev_per_atom=float((e[idx] - e[center]) * MEV_PER_EV),
        min_offset=tuple(offset),
        min_offset_ang=tuple(None if u is None else o * u for o, u in zip(offset, ang_per_unit)),
        curvature_ev_per_atom_per_unit2=curv,
        curvature_ev_per_atom_per_ang2=tuple(None if u is None else c / u**2 for c, u in zip(curv, ang_per_unit)),
        n_local_minima=n_min, n_saddles=n_saddle, min_at_dft=tuple(idx) == tuple(center),
    )


def analyze_slice(s, reference: np.ndarray | None = None) -> list[SliceStats]:
    """Stats of every model of a :class:`mliap_tui.analysis.pes.slices.PesSlice` (and of ``reference``)."""
    steps = [float(s.spec.values(k)[1] - s.spec.values(k)[0]) for k in range(len(s.spec.axes))]
    units = [a.ang_per_unit for a in s.axes]
    sources = dict(s.energies)
    if reference is not None:
        sources["reference"] = reference
    return [analyze_energies(m, e, steps, s.spec.center, units) for m, e in sources.items()]


def stats_frame(s, stats: Sequence[SliceStats]) -> pl.DataFrame:
    return pl.DataFrame([st.as_row(s.spec.axes) for st in stats])


def difference_map(s, model_a: str, model_b: str, reference: np.ndarray | None = None) -> np.ndarray:
    """(E_a - E_a(DFT)) - (E_b - E_b(DFT)) in meV/atom; ``'reference'`` names the user reference."""
    def rel(m):
        e = reference if m == "reference" else s.energies[m]
        return relative_mev(e, s.spec.center)

    return rel(model_a) - rel(model_b)


def load_reference_csv(path: str | Path, s) -> np.ndarray:
    """Reference energies on the slice grid from a CSV with one column per axis (named like the
    axes, or ``t0``/``t1``) and ``e_per_atom_ev`` (or ``energy_ev_per_atom``, ``energy``) in
    eV/atom. Rows are matched to the nearest grid point (within half a step); unmatched grid
    points stay NaN. Raises ValueError naming the missing columns."""
    df = pl.read_csv(path)
    ecol = next((c for c in ("e_per_atom_ev", "energy_ev_per_atom", "energy") if c in df.columns), None)
    axcols = []
    for k, a in enumerate(s.spec.axes):
        col = a if a in df.columns else (f"t{k}" if f"t{k}" in df.columns else None)
        axcols.append(col)
    if ecol is None or None in axcols:
        raise ValueError(f"reference CSV needs columns {list(s.spec.axes)} (or t0, t1) and e_per_atom_ev; "
                         f"has {df.columns}")
    out = np.full(s.spec.shape, np.nan)
    for r in df.iter_rows(named=True):
        idx = []
        for k, col in enumerate(axcols):
            vals = s.spec.values(k)
            step = vals[1] - vals[0]
            i = int(np.argmin(np.abs(vals - float(r[col]))))
            if abs(vals[i] - float(r[col])) > step / 2 + 1e-12:
                break
            idx.append(i)
        else:
            out[tuple(idx)] = float(r[ecol])
    return out


def grid_points(shape: tuple[int, ...]):
    return itertools.product(*(range(n) for n in shape))


__all__ = ["SliceStats", "analyze_energies", "analyze_slice", "count_critical_points", "curvature_at",
           "difference_map", "load_reference_csv", "relative_mev", "stats_frame"]
