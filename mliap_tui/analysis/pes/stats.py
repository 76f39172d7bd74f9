"""Analysis of a symmetry-restricted PES slice (:mod:`mliap_tui.analysis.pes.slices`).

Per model (and per user reference, see :func:`load_reference_csv`):

* ``e_rel_mev_per_atom``: energy relative to the DFT structure's point (the grid centre), meV/atom;
* **valid points**: evaluated, not masked (two atoms closer than the closest-approach rule, see
  :mod:`.slices`) and not a model collapse. Only valid points are minima, saddles or colour-scale
  points;
* **model collapse**: a point more than ``collapse_ev_per_atom`` (default 1 eV/atom) *below* the
  DFT point, masked or not. No real crystal gains 1 eV/atom by moving a few atoms along a free
  Wyckoff coordinate from its DFT-relaxed position; such a point is a model pathology (typically a
  spurious deep well at short interatomic distance) and is reported separately, with the shortest
  interatomic distance there, never as "the minimum";
* the grid minimum over valid points, refined by a parabola through the minimum and its neighbours
  along each axis when they are valid, and its **offset** from the DFT point in axis units
  (fractional coordinate or strain) and in Å (``SliceAxis.ang_per_unit``: the distance each atom
  of the orbit moves, or the change of the lattice length; degrees for angle axes);
* the **curvature** at the DFT point along each axis: central second difference of the grid,
  ``d2E/dt2`` in eV/atom per unit², and ``/ ang_per_unit**2`` in eV/atom/Å² (a softening measure:
  a model flatter than the reference has the smaller value);
* on a 2D grid, the interior **local minima** (lower than all 8 neighbours) and **saddle points**
  (the signs of ``E_neighbour - E_centre`` around the 8-ring change 4 or more times; adjacent
  flagged points, one saddle between grid points, count once, at the cluster's point whose ring
  is most balanced), with their grid positions;
* difference maps model minus model (or minus the reference), meV/atom;
* a **colour scale** (:func:`colour_scale`) set by the valid points only, clipped at percentiles
  (default 1st-95th), with the clip and how many points lie beyond it stated.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import polars as pl

from mliap_tui.core.units import MEV_PER_EV

DEFAULT_COLLAPSE_EV_PER_ATOM = 1.0
#: colour-scale clip: percentiles of the valid points' relative energies
CLIP_PERCENTILES = (1.0, 95.0)
#: difference maps: symmetric scale at this percentile of |difference|
DIVERGING_PERCENTILE = 95.0


@dataclass(frozen=True)
class Collapse:
    """A grid point where a model predicts an energy far below the DFT point."""

    index: tuple[int, ...]
    e_rel_mev_per_atom: float
    pair: str  # the two closest atoms there, e.g. "S–S"
    closest_ang: float  # their distance, Å
    masked: bool  # also physically impossible (closest-approach rule)


@dataclass(frozen=True)
class SliceStats:
    source: str  # model id or 'reference'
    n_points: int
    n_finite: int  # points with an energy
    n_valid: int  # with an energy, not masked, not a collapse
    n_masked: int  # masked grid points (impossible geometry), evaluated or not
    min_index: tuple[int, ...]
    min_e_rel_mev_per_atom: float
    min_offset: tuple[float, ...]  # axis units (frac / strain)
    min_offset_ang: tuple[float | None, ...]  # Å (degrees for angle axes)
    curvature_ev_per_atom_per_unit2: tuple[float, ...]
    curvature_ev_per_atom_per_ang2: tuple[float | None, ...]
    n_local_minima: int | None
    n_saddles: int | None
    min_at_dft: bool  # the minimum over valid points is the DFT (centre) point
    local_minima: tuple[tuple[int, ...], ...] = ()
    saddles: tuple[tuple[int, ...], ...] = ()
    collapses: tuple[Collapse, ...] = ()  # deepest first
    collapse_ev_per_atom: float = DEFAULT_COLLAPSE_EV_PER_ATOM

    @property
    def n_collapsed(self) -> int:
        return len(self.collapses)

    def as_row(self, axes: Sequence[str]) -> dict:
        deepest = self.collapses[0] if self.collapses else None
        row = {"source": self.source, "points_ok": f"{self.n_finite}/{self.n_points}", "n_valid": self.n_valid,
               "n_masked": self.n_masked, "n_collapsed": self.n_collapsed,
               "min_e_rel_mev_per_atom": self.min_e_rel_mev_per_atom, "min_at_dft": self.min_at_dft}
        for k, a in enumerate(axes):
            row[f"min_offset[{a}]"] = self.min_offset[k]
            row[f"min_offset_ang[{a}]"] = self.min_offset_ang[k]
            row[f"curv_ev_per_atom_per_unit2[{a}]"] = self.curvature_ev_per_atom_per_unit2[k]
            row[f"curv_ev_per_atom_per_ang2[{a}]"] = self.curvature_ev_per_atom_per_ang2[k]
        row["n_local_minima"] = self.n_local_minima
        row["n_saddles"] = self.n_saddles
        row["collapse_min_e_rel_mev_per_atom"] = None if deepest is None else deepest.e_rel_mev_per_atom
        row["collapse_closest_ang"] = None if deepest is None else deepest.closest_ang
        return row


def relative_mev(energies: np.ndarray, center: tuple[int, ...]) -> np.ndarray:
    """Energy relative to the centre point, meV/atom (NaN stays NaN)."""
    return (np.asarray(energies, float) - energies[center]) * MEV_PER_EV


def collapsed_points(e_rel_mev: np.ndarray, collapse_ev_per_atom: float = DEFAULT_COLLAPSE_EV_PER_ATOM) -> np.ndarray:
    """Points more than ``collapse_ev_per_atom`` below the DFT point (bool array)."""
    e = np.asarray(e_rel_mev, float)
    return np.isfinite(e) & (e < -collapse_ev_per_atom * MEV_PER_EV)


def valid_points(e_rel_mev: np.ndarray, mask: np.ndarray | None = None,
                 collapse_ev_per_atom: float = DEFAULT_COLLAPSE_EV_PER_ATOM) -> np.ndarray:
    """Points that count: an energy, not masked, not a collapse (bool array)."""
    e = np.asarray(e_rel_mev, float)
    ok = np.isfinite(e) & ~collapsed_points(e, collapse_ev_per_atom)
    if mask is not None:
        ok &= ~np.asarray(mask, bool)
    return ok


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


_RING = [(-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1)]


def critical_points(e: np.ndarray) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(local minima, saddle points) among interior points of a 2D grid whose 3x3 block is finite.

    A saddle between grid points flags its neighbours too: 8-connected clusters of flagged points
    count once, at the point whose ring has the most balanced signs (then the lowest energy).
    """
    minima: list[tuple[int, int]] = []
    saddles: dict[tuple[int, int], float] = {}
    for i in range(1, e.shape[0] - 1):
        for j in range(1, e.shape[1] - 1):
            block = e[i - 1:i + 2, j - 1:j + 2]
            if not np.isfinite(block).all():
                continue
            d = np.array([e[i + di, j + dj] - e[i, j] for di, dj in _RING])
            if (d > 0).all():
                minima.append((i, j))
                continue
            if (d < 0).all():
                continue
            s = np.sign(d)
            s = s[s != 0]
            if len(s) and int((s != np.roll(s, 1)).sum()) >= 4:
                saddles[(i, j)] = abs(float((d > 0).sum() - (d < 0).sum()))
    out, todo = [], set(saddles)
    while todo:
        cluster, stack = [], [todo.pop()]
        while stack:
            i, j = stack.pop()
            cluster.append((i, j))
            for di, dj in _RING:
                if (i + di, j + dj) in todo:
                    todo.remove((i + di, j + dj))
                    stack.append((i + di, j + dj))
        out.append(min(cluster, key=lambda p: (saddles[p], e[p], p)))
    return sorted(minima), sorted(out)


def count_critical_points(e: np.ndarray) -> tuple[int, int]:
    """(local minima, saddle points) of a 2D grid (:func:`critical_points`)."""
    minima, saddles = critical_points(e)
    return len(minima), len(saddles)


def analyze_energies(source: str, energies: np.ndarray, steps: Sequence[float], center: tuple[int, ...],
                     ang_per_unit: Sequence[float | None], mask: np.ndarray | None = None,
                     collapse_ev_per_atom: float = DEFAULT_COLLAPSE_EV_PER_ATOM,
                     closest_pair: Callable[[tuple[int, ...]], tuple[str, float]] | None = None) -> SliceStats:
    """Statistics of one energy grid (eV/atom). ``mask``: impossible points; ``closest_pair(idx)``
    gives ('S–S', Å) of a point, for the collapse report."""
    e = np.asarray(energies, float)
    finite = np.isfinite(e)
    m = np.zeros(e.shape, bool) if mask is None else np.asarray(mask, bool)
    n_masked = int(m.sum())
    nan = tuple(float("nan") for _ in steps)
    if not finite.any() or not np.isfinite(e[center]):
        return SliceStats(source, e.size, int(finite.sum()), 0, n_masked, center, float("nan"), nan, nan, nan, nan,
                          None, None, False, collapse_ev_per_atom=collapse_ev_per_atom)
    rel = relative_mev(e, center)
    collapsed = collapsed_points(rel, collapse_ev_per_atom)
    collapses = []
    for idx in sorted(zip(*np.nonzero(collapsed)), key=lambda ix: rel[tuple(ix)]):
        idx = tuple(int(i) for i in idx)
        pair, dist = closest_pair(idx) if closest_pair is not None else ("", float("nan"))
        collapses.append(Collapse(idx, float(rel[idx]), pair, float(dist), bool(m[idx])))
    valid = valid_points(rel, m, collapse_ev_per_atom)
    ev = np.where(valid, e, np.nan)  # the landscape that counts
    idx = np.unravel_index(int(np.argmin(np.where(valid, e, np.inf))), e.shape)
    offset = []
    for k, step in enumerate(steps):
        frac_step = 0.0
        lo, hi = list(idx), list(idx)
        lo[k] -= 1
        hi[k] += 1
        if lo[k] >= 0 and hi[k] < e.shape[k]:
            frac_step = _parabola_offset(ev[tuple(lo)], ev[idx], ev[tuple(hi)])
        offset.append((idx[k] - center[k] + frac_step) * step)
    curv = tuple(curvature_at(ev, center, k, s) for k, s in enumerate(steps))
    minima: list = []
    saddles: list = []
    n_min = n_saddle = None
    if e.ndim == 2:
        minima, saddles = critical_points(ev)
        n_min, n_saddle = len(minima), len(saddles)
    return SliceStats(
        source=source, n_points=e.size, n_finite=int(finite.sum()), n_valid=int(valid.sum()), n_masked=n_masked,
        min_index=tuple(int(i) for i in idx),
        min_e_rel_mev_per_atom=float(rel[idx]),
        min_offset=tuple(offset),
        min_offset_ang=tuple(None if u is None else o * u for o, u in zip(offset, ang_per_unit)),
        curvature_ev_per_atom_per_unit2=curv,
        curvature_ev_per_atom_per_ang2=tuple(None if u is None else c / u**2 for c, u in zip(curv, ang_per_unit)),
        n_local_minima=n_min, n_saddles=n_saddle, min_at_dft=tuple(idx) == tuple(center),
        local_minima=tuple(minima), saddles=tuple(saddles), collapses=tuple(collapses),
        collapse_ev_per_atom=collapse_ev_per_atom,
    )


def _steps(s) -> list[float]:
    return [float(s.spec.values(k)[1] - s.spec.values(k)[0]) for k in range(len(s.spec.axes))]


def analyze_slice(s, reference: np.ndarray | None = None) -> list[SliceStats]:
    """Stats of every model of a :class:`mliap_tui.analysis.pes.slices.PesSlice` (and of ``reference``)."""
    units = [a.ang_per_unit for a in s.axes]
    sources = dict(s.energies)
    if reference is not None:
        sources["reference"] = reference
    return [analyze_energies(m, e, _steps(s), s.spec.center, units, mask=s.mask,
                             collapse_ev_per_atom=s.collapse_ev_per_atom, closest_pair=s.closest_pair_at)
            for m, e in sources.items()]


def stats_frame(s, stats: Sequence[SliceStats]) -> pl.DataFrame:
    return pl.DataFrame([st.as_row(s.spec.axes) for st in stats])


def source_energies(s, source: str, reference: np.ndarray | None = None) -> np.ndarray:
    """Energies (eV/atom) of a model of the slice, or of ``'reference'``."""
    if source == "reference":
        if reference is None:
            raise KeyError("no reference grid loaded")
        return reference
    return s.energies[source]


def source_valid(s, source: str, reference: np.ndarray | None = None) -> np.ndarray:
    """Valid points (:func:`valid_points`) of one source of a slice."""
    rel = relative_mev(source_energies(s, source, reference), s.spec.center)
    return valid_points(rel, s.mask, s.collapse_ev_per_atom)


def difference_map(s, model_a: str, model_b: str, reference: np.ndarray | None = None) -> np.ndarray:
    """(E_a - E_a(DFT)) - (E_b - E_b(DFT)) in meV/atom; ``'reference'`` names the user reference."""
    def rel(m):
        return relative_mev(source_energies(s, m, reference), s.spec.center)

    return rel(model_a) - rel(model_b)


@dataclass(frozen=True)
class ColourScale:
    """The range a map's colours span, set by the valid points, clipped at percentiles."""

    lo: float
    hi: float
    percentiles: tuple[float, float]  # (lo, hi) percentiles of the valid values
    n_used: int  # valid points the scale is set by
    n_below: int  # valid points below lo (drawn in the lowest colour)
    n_above: int  # valid points above hi (drawn in the highest colour)
    diverging: bool = False

    def fraction(self, value: float) -> float:
        """Position of ``value`` on the scale, clipped to [0, 1] (NaN stays NaN)."""
        if not np.isfinite(value):
            return float("nan")
        if self.hi <= self.lo:
            return 0.5
        return float(min(max((value - self.lo) / (self.hi - self.lo), 0.0), 1.0))

    @property
    def clip_text(self) -> str:
        """``'1st–95th percentile of 431 valid points (4 below, 22 above clipped)'``."""
        if self.n_used == 0:
            return "no valid points"
        if self.diverging:
            what = f"±{_ordinal(self.percentiles[1])} percentile of |Δ| over {self.n_used} valid points"
        else:
            what = (f"{_ordinal(self.percentiles[0])}–{_ordinal(self.percentiles[1])} percentile of "
                    f"{self.n_used} valid points")
        clipped = []
        if self.n_below:
            clipped.append(f"{self.n_below} below")
        if self.n_above:
            clipped.append(f"{self.n_above} above")
        return what + (f" ({', '.join(clipped)} clipped)" if clipped else " (none clipped)")


def _ordinal(p: float) -> str:
    n = int(round(p))
    if abs(p - n) > 1e-9:
        return f"{p:g}th"
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def colour_scale(values: np.ndarray, valid: np.ndarray, percentiles: tuple[float, float] = CLIP_PERCENTILES,
                 diverging: bool = False) -> ColourScale:
    """The colour range of a map from its valid points only. Energies: [p_lo, p_hi] percentiles;
    difference maps (``diverging``): symmetric ±(p_hi percentile of |value|)."""
    v = np.asarray(values, float)
    ok = np.asarray(valid, bool) & np.isfinite(v)
    used = v[ok]
    if not used.size:
        return ColourScale(-1.0, 1.0, percentiles, 0, 0, 0, diverging)
    if diverging:
        m = float(np.percentile(np.abs(used), DIVERGING_PERCENTILE))
        m = m if m > 0 else float(np.abs(used).max()) or 1.0
        lo, hi, pct = -m, m, (100 - DIVERGING_PERCENTILE, DIVERGING_PERCENTILE)
    else:
        lo, hi = (float(x) for x in np.percentile(used, percentiles))
        pct = percentiles
    return ColourScale(lo, hi, pct, int(used.size), int((used < lo).sum()), int((used > hi).sum()), diverging)


def load_reference_csv(path: str | Path, s) -> np.ndarray:
    """Reference energies on the slice grid from a CSV with one column per axis (named like the
    axes, or ``t0``/``t1``; values in the axis's own unit: fractional coordinate or strain) and
    ``e_per_atom_ev`` (or ``energy_ev_per_atom``, ``energy``) in eV/atom. Rows are matched to the
    nearest grid point (within half a step); unmatched grid points stay NaN. Raises ValueError
    naming the missing columns, or when no row matches the grid."""
    try:
        df = pl.read_csv(path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ValueError(f"cannot read reference CSV {path}: {exc}") from None
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
            if r[col] is None or r[ecol] is None:
                break
            i = int(np.argmin(np.abs(vals - float(r[col]))))
            if abs(vals[i] - float(r[col])) > step / 2 + 1e-12:
                break
            idx.append(i)
        else:
            out[tuple(idx)] = float(r[ecol])
    if not np.isfinite(out).any():
        raise ValueError(f"no row of {path} falls on the slice's grid ({' × '.join(s.spec.axes)}, "
                         f"±{', ±'.join(f'{r:.4g}' for r in s.spec.ranges)} in axis units)")
    return out


def grid_points(shape: tuple[int, ...]):
    return itertools.product(*(range(n) for n in shape))


__all__ = ["CLIP_PERCENTILES", "Collapse", "ColourScale", "SliceStats", "analyze_energies", "analyze_slice",
           "collapsed_points", "colour_scale", "count_critical_points", "critical_points", "curvature_at",
           "difference_map", "load_reference_csv", "relative_mev", "source_energies", "source_valid", "stats_frame",
           "valid_points"]
