"""Symmetry-restricted PES slices (after Parackal, Armiento and Trybel): move atoms along the free
coordinates of their Wyckoff positions, with the space group held fixed, and map each model's energy.

Slice axes
----------
For a crystal, :func:`slice_axes` lists

* one **coordinate axis** per free coordinate of each occupied Wyckoff orbit, named
  ``<element>:<mult><letter>[.<k>]:<coord>`` (``O:4f:x`` in rutile, ``Zn:2b:z`` in wurtzite;
  ``.k`` numbers orbits sharing element and letter, e.g. ``S:3a.2:z``). The letters are the
  canonical ones of :mod:`mliap_tui.symmetry` (the materials table's ``wyckoff`` column). The axis
  value ``t`` is a displacement of the orbit's representative atom along a free direction ``d``
  in *fractional* coordinates of spglib's conventional standard cell; ``<coord>`` names the pivot
  coordinate of ``d`` (``d`` = (1, 1, 0) for the ``x`` of rutile 4f (x, x, 0)). Every atom of the
  orbit moves ``t * ang_per_unit`` Å. ``value_at_dft`` is the coordinate at the DFT structure, on
  the orbit's conventional representative (below);
* the **lattice axes** of the crystal system, each a relative strain ``s`` (0.05 = +5 %):
  ``lattice:a`` scales the whole cell (shape kept), ``lattice:b/a`` and ``lattice:c/a`` scale b
  or c alone (where the system lets them differ from a), ``lattice:alpha|beta|gamma`` scale a free
  angle (monoclinic beta, triclinic all three).

Ranges are physical by default: ±0.3 Å of displacement along each coordinate axis (converted
per axis: ``0.3 / ang_per_unit`` fractional) and ±5 % strain along each lattice axis. A range
may be given as ``0.3A`` (Å: the displacement of the orbit's atoms, or the change of the lattice
length), ``5%`` (strain, lattice axes), ``2deg`` (angle axes) or a bare number in the axis's own
unit (fractional coordinate, or strain); :func:`parse_range`.

Building a point
----------------
The crystal is standardised with spglib (conventional standard cell, idealised positions,
at ``symprec_ang``), with the space group's operations (R, t) of that setting from spglib's
database. For an orbit the free directions of a site are the null space of the stacked
``R - I`` over the site-stabiliser operations (as :mod:`mliap_tui.symmetry` counts them),
row-reduced so each has a 1 at its pivot coordinate. The **representative** ``x0`` is the
orbit's conventional one: the atom whose free directions have the fewest negative components,
then whose fixed part (the position with the free coordinates set to 0) is smallest, then whose
free coordinates in [0, 1) are smallest: rutile O 4f is (x, x, 0) with x = 0.2993, not its image
x = 0.7007; R3m 3a is (0, 0, z), not the centring images (1/3, 2/3, z + 2/3). Each atom ``k``
of the orbit is recorded once as ``R_k x0 + t_k + n_k`` (the operation that generates it, and a
lattice shift); a point of the slice moves ``x0`` to ``x0 + sum t_j d_j`` and every atom to
``R_k x + t_k + n_k``, so the orbit moves together, the atom order never changes, the velocity
of atom k is ``R_k d`` and the space group is preserved exactly (checked with spglib in the tests
at every grid point).

Physically impossible points
----------------------------
A point where two atoms i, j come closer than ``closest_approach * (r_i + r_j)`` (``r`` the
covalent radii of :data:`ase.data.covalent_radii`, Cordero et al. 2008; default fraction 0.5,
e.g. S–S 1.05 Å, Ta–S 1.375 Å, O–H 0.485 Å) is **masked**: never a minimum, a saddle or a
colour-scale point; the shortest real bonds are ~0.75 of the covalent sum (triple bonds), so
half of it is far beyond any physical compression. Masked points are still evaluated (a model
that collapses there is reported, see :mod:`.stats`) unless two atoms are closer than the
engine's sanity floor (:data:`mliap_tui.core.vocab.DEFAULT_MIN_DISTANCE_ANG`, 0.5 Å) or the
strained angles make no cell: those are not evaluated at all. Ranges are not clipped: the map
shows where the impossible region begins.

Grids and the cache
-------------------
A slice is 1D (one axis) or 2D (two axes), ``points`` values per axis (odd, default 21; the
DFT structure at the centre). Energies go through the engine's batched, resumable path, in this
process (:mod:`.evaluate`: a model is loaded once per process). The grid structures are stored
as a derived dataset

    dataset      ``pes-<material>-<hash>``   (hash of parent dataset + axes)
    material_id  ``<mid>|<axes>|<ranges>|<points>|i,j``  e.g. ``mp-390|O:8e:z,lattice:a|0.01,0.05|21x21|3,7``

(ranges are rounded to 4 significant digits so the id names the exact structure; materials rows
from :func:`mliap_tui.data.structures.structure_columns` with the parent's DFT, correction and
symmetry columns copied, merged into the dataset's table so earlier slices stay). The
predictions are therefore cached in parquet per (material, axes, range, resolution, model): a
slice asked again is read back, a cancelled one resumes where it stopped. Energies of a slice
are the models' native energies (eV/atom); relative energies do not depend on the convention.

Imports no torch, no textual.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import polars as pl

from mliap_tui import symmetry as sym
from mliap_tui.analysis.pes.stats import DEFAULT_COLLAPSE_EV_PER_ATOM
from mliap_tui.cache import Cache
from mliap_tui.core.geometry import (
    cell_heights_ang,
    closest_pair,
    lattice_angles_deg,
    lattice_from_parameters,
)
from mliap_tui.core.units import MEV_PER_EV
from mliap_tui.core.vocab import (
    DEFAULT_ANGLE_TOLERANCE_DEG,
    DEFAULT_MIN_DISTANCE_ANG,
    DEFAULT_SYMPREC_ANG,
)
from mliap_tui.data.structures import row_arrays

DEFAULT_COORD_RANGE_ANG = 0.3  # displacement of the orbit's atoms, Å
DEFAULT_LATTICE_STRAIN = 0.05  # relative strain
DEFAULT_POINTS = 21
#: closest approach allowed, as a fraction of the sum of the two atoms' covalent radii
DEFAULT_CLOSEST_APPROACH = 0.5
#: points with two atoms closer than this (Å) are not evaluated at all (the engine's sanity floor)
EVALUATION_FLOOR_ANG = DEFAULT_MIN_DISTANCE_ANG
_COORD_NAMES = "xyz"
_ANGLE_AXES = ("alpha", "beta", "gamma")
_LATTICE_AXES_OF_SYSTEM = {
    "cubic": ("a",),
    "tetragonal": ("a", "c/a"),
    "hexagonal": ("a", "c/a"),
    "trigonal": ("a", "c/a"),
    "orthorhombic": ("a", "b/a", "c/a"),
    "monoclinic": ("a", "b/a", "c/a", "beta"),
    "triclinic": ("a", "b/a", "c/a", "alpha", "beta", "gamma"),
}
_LENGTH_OF = {"a": "a", "b/a": "b", "c/a": "c"}


class PesError(ValueError):
    """A slice that cannot be built (unknown axis, symmetry failure, bad grid or range)."""


@dataclass(frozen=True)
class SliceAxis:
    """One axis of a slice. ``kind`` 'coord' or 'lattice'.

    coord: ``orbit`` index into :attr:`PesCrystal.orbits`, ``direction_frac`` the free direction
    of the representative (fractional, conventional cell), ``ang_per_unit`` the Å each atom of the
    orbit moves per unit of the axis value, ``value_at_dft`` the pivot coordinate of the
    representative at the DFT structure. lattice: ``param`` ('a', 'b/a', 'c/a', 'alpha'...),
    ``ang_per_unit`` the Å (or degrees for angles) the parameter's length or angle changes per
    unit strain, ``value_at_dft`` the parameter at the DFT structure (Å, ratio or degrees).
    ``default_range`` is in the axis's own unit (fractional / strain).
    """

    name: str
    kind: str
    default_range: float
    ang_per_unit: float
    orbit: int = -1
    direction_frac: tuple[float, float, float] = (0.0, 0.0, 0.0)
    param: str = ""
    unit: str = "Å"
    value_at_dft: float = float("nan")

    @property
    def native_unit(self) -> str:
        """The unit of axis values: 'frac' (fractional coordinate) or 'strain'."""
        return "frac" if self.kind == "coord" else "strain"

    @property
    def physical_unit(self) -> str:
        """The unit axis values are shown in: Å of displacement, or % of strain."""
        return "Å" if self.kind == "coord" else "%"

    def physical(self, value: float | np.ndarray) -> float | np.ndarray:
        """An axis value in :attr:`physical_unit` (Å displacement, or % strain)."""
        return value * self.ang_per_unit if self.kind == "coord" else value * 100.0

    def format_value(self, value: float, digits: int = 3) -> str:
        """``'+0.150 Å'`` / ``'+2.5 %'``."""
        if self.kind == "coord":
            return f"{self.physical(value):+.{digits}f} Å"
        return f"{self.physical(value):+.{max(1, digits - 2)}f} %"

    def describe_range(self, half_range: float) -> str:
        """``'±0.300 Å (±0.01466 frac)'`` / ``'±5.0 % (±0.167 Å)'``."""
        if self.kind == "coord":
            return f"±{half_range * self.ang_per_unit:.3f} Å (±{half_range:.4g} frac)"
        return f"±{half_range * 100:.1f} % (±{half_range * self.ang_per_unit:.3g} {self.unit})"

    @property
    def dft_label(self) -> str:
        """The coordinate's value at the DFT point: ``'z = 0.4235'``, ``'a = 3.344 Å'``, ``'c/a = 6.120'``."""
        if self.kind == "coord":
            return f"{self.name.rsplit(':', 1)[1]} = {self.value_at_dft:.4f}"
        if self.param in _ANGLE_AXES:
            return f"{self.param} = {self.value_at_dft:.2f}°"
        if self.param == "a":
            return f"a = {self.value_at_dft:.4f} Å"
        return f"{self.param} = {self.value_at_dft:.4f} ({_LENGTH_OF[self.param]} = {self.ang_per_unit:.4f} Å)"

    @property
    def label(self) -> str:
        return f"{self.name} ({self.physical_unit})"


_RANGE_RE = re.compile(r"^\s*±?\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(a|å|ang|angstrom|%|deg|°)?\s*$",
                       re.IGNORECASE)


def parse_range(text: str | float, axis: SliceAxis) -> float:
    """A half-range in the axis's own unit (fractional / strain) from ``'0.3A'``, ``'5%'``,
    ``'2deg'`` or a bare number (already in the axis's unit). Raises PesError."""
    if isinstance(text, (int, float)):
        value, unit = float(text), ""
    else:
        m = _RANGE_RE.match(str(text))
        if not m:
            raise PesError(f"range {text!r} for {axis.name}: use e.g. 0.3A (Å), 5% (strain), 2deg, or a bare "
                           f"number in {axis.native_unit} units")
        value, unit = float(m.group(1)), (m.group(2) or "").lower()
    if not np.isfinite(value) or value <= 0:
        raise PesError(f"range for {axis.name} must be positive, got {text!r}")
    if unit in ("a", "å", "ang", "angstrom"):
        if axis.kind == "lattice" and axis.param in _ANGLE_AXES:
            raise PesError(f"{axis.name} is an angle: give its range in deg or %, not Å")
        return value / axis.ang_per_unit
    if unit == "%":
        if axis.kind == "coord":
            raise PesError(f"{axis.name} is a coordinate: give its range in Å (e.g. 0.3A) or fractional units, "
                           "not % (a strain)")
        return value / 100.0
    if unit in ("deg", "°"):
        if not (axis.kind == "lattice" and axis.param in _ANGLE_AXES):
            raise PesError(f"{axis.name} is not an angle: deg only applies to lattice:alpha|beta|gamma")
        return value / axis.ang_per_unit
    return value


def parse_ranges(text: str | None, axes: Sequence[SliceAxis]) -> list[float] | None:
    """``--range`` text: one value for every axis or one per axis, comma-separated (None: defaults)."""
    if text is None or not str(text).strip():
        return None
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if len(parts) == 1:
        parts = parts * len(axes)
    if len(parts) != len(axes):
        raise PesError(f"--range has {len(parts)} values for {len(axes)} axes: give one, or one per axis")
    return [parse_range(p, a) for p, a in zip(parts, axes)]


@dataclass(frozen=True)
class Contact:
    """The worst close contact of a point: the pair, its distance and the closest approach allowed."""

    pair: str  # "S–S"
    distance_ang: float
    limit_ang: float

    @property
    def text(self) -> str:
        if not np.isfinite(self.distance_ang):
            return "the strained angles make no cell"
        return f"{self.pair} {self.distance_ang:.3f} Å < {self.limit_ang:.3f} Å"


def covalent_radius_ang(element: str) -> float:
    """Covalent radius (Å) of ``element`` from ASE's table (Cordero et al. 2008)."""
    from ase.data import atomic_numbers, covalent_radii

    return float(covalent_radii[atomic_numbers[element]])


def contacts(lattice_ang: np.ndarray, species: Sequence[str], frac: np.ndarray,
             closest_approach: float = DEFAULT_CLOSEST_APPROACH,
             floor_ang: float = EVALUATION_FLOOR_ANG) -> tuple[Contact | None, float]:
    """(worst contact, shortest distance in Å) of a structure, periodic images included.

    The contact is the pair closest relative to ``closest_approach * (r_i + r_j)`` when it is
    closer than that (None: no impossible contact). The shortest distance is exact when below
    ``max(floor_ang, closest_approach * 2 * max r)``, else ``inf``. Vectorised over pairs and
    lattice shifts (a grid has hundreds of points; this is ~50x faster than a neighbour list).
    """
    lat = np.asarray(lattice_ang, float).reshape(3, 3)
    frac = np.asarray(frac, float).reshape(-1, 3)
    radii = np.array([covalent_radius_ang(s) for s in species])
    n = len(frac)
    cutoff = max(float(floor_ang), closest_approach * 2 * float(radii.max()))
    reach = np.ceil(cutoff / cell_heights_ang(lat) + 0.5).astype(int)
    shifts = np.array(list(itertools.product(*(range(-k, k + 1) for k in reach))), float)  # (S, 3)
    zero = np.flatnonzero(~shifts.any(axis=1))
    best: tuple[float, int, int, float] = (np.inf, -1, -1, np.inf)  # (ratio, i, j, d)
    shortest = np.inf
    for lo in range(0, n, 64):  # bounded memory on large cells
        rows = np.arange(lo, min(n, lo + 64))
        d = frac[None, :, :] - frac[rows, None, :]  # (r, n, 3): j - i
        d -= np.round(d)
        dist = np.linalg.norm((d[:, :, None, :] + shifts[None, None, :, :]) @ lat, axis=-1)  # (r, n, S)
        dist[np.arange(len(rows)), rows, zero[0]] = np.inf  # an atom and itself
        shortest = min(shortest, float(dist.min()))
        limit = closest_approach * (radii[rows, None] + radii[None, :])  # (r, n)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = dist.min(axis=2) / limit
        k = int(np.nanargmin(np.where(np.isfinite(ratio), ratio, np.inf)))
        i, j = divmod(k, n)
        if ratio[i, j] < best[0]:
            best = (float(ratio[i, j]), int(rows[i]), int(j), float(dist[i, j].min()))
    contact = None
    if best[0] < 1.0:
        _, i, j, d = best
        contact = Contact(f"{species[i]}–{species[j]}", d, closest_approach * float(radii[i] + radii[j]))
    return contact, shortest if shortest < cutoff else np.inf


@dataclass
class _Orbit:
    element: str
    letter: str
    multiplicity: int
    x0: np.ndarray  # representative, fractional
    rotations: np.ndarray  # (m, 3, 3) op generating each atom
    offsets: np.ndarray  # (m, 3) t_k + n_k
    directions: np.ndarray  # (n_free, 3)
    pivots: list[int]
    label: str = ""


@dataclass
class PesCrystal:
    """A crystal ready for slicing: conventional standard cell and its orbits."""

    material_id: str
    lattice_ang: np.ndarray
    spacegroup_number: int
    crystal_system: str
    wyckoff: str
    orbits: list[_Orbit]
    axes: list[SliceAxis]
    symprec_ang: float

    @property
    def species(self) -> list[str]:
        return [o.element for o in self.orbits for _ in range(len(o.rotations))]

    @property
    def n_sites(self) -> int:
        return sum(len(o.rotations) for o in self.orbits)

    def axis(self, name: str) -> SliceAxis:
        return resolve_axis(self, name)

    def structure_at(self, values: Mapping[str, float]) -> tuple[np.ndarray, list[str], np.ndarray]:
        """(lattice 3x3 Å, species, frac n x 3) at axis values {axis name: value}."""
        axes = [(self.axis(n), float(v)) for n, v in values.items()]
        lattice = self._lattice([(a, v) for a, v in axes if a.kind == "lattice"])
        frac = []
        for k, orbit in enumerate(self.orbits):
            x = orbit.x0.copy()
            for a, v in axes:
                if a.kind == "coord" and a.orbit == k:
                    x = x + v * np.asarray(a.direction_frac)
            frac.append(np.einsum("kij,j->ki", orbit.rotations, x) + orbit.offsets)
        return lattice, self.species, np.concatenate(frac)

    def closest_pair_at(self, values: Mapping[str, float]) -> tuple[str, float]:
        """('S–S', distance in Å) of the two closest atoms at axis values (periodic images included)."""
        try:
            lat, species, frac = self.structure_at(values)
        except ValueError:
            return "no cell", float("nan")
        i, j, d = closest_pair(lat, frac)
        return f"{species[i]}–{species[j]}", float(d)

    def velocities_ang(self, axis_name: str, lattice_ang: np.ndarray | None = None) -> np.ndarray:
        """Cartesian displacement (Å) of every atom per unit of a coordinate axis (n x 3)."""
        a = self.axis(axis_name)
        if a.kind != "coord":
            raise PesError(f"{axis_name} is not a coordinate axis")
        lat = self.lattice_ang if lattice_ang is None else lattice_ang
        out = []
        for k, orbit in enumerate(self.orbits):
            d = np.asarray(a.direction_frac) if k == a.orbit else np.zeros(3)
            out.append(np.einsum("kij,j->ki", orbit.rotations, d) @ lat)
        return np.concatenate(out)

    def _lattice(self, strains: list[tuple[SliceAxis, float]]) -> np.ndarray:
        if not strains:
            return self.lattice_ang.copy()
        scale = {p: 1.0 for p in ("a", "b/a", "c/a", *_ANGLE_AXES)}
        for a, v in strains:
            scale[a.param] *= 1.0 + v
        rows = self.lattice_ang * scale["a"]
        rows = rows * np.array([1.0, scale["b/a"], scale["c/a"]])[:, None]
        if all(scale[p] == 1.0 for p in _ANGLE_AXES):
            # tetragonal/hexagonal: a and b tied, only c/a changes c
            return rows
        lengths = np.linalg.norm(rows, axis=1)
        angles = np.array(lattice_angles_deg(self.lattice_ang)) * np.array([scale[p] for p in _ANGLE_AXES])
        return lattice_from_parameters(*lengths, *angles)


def _rref_null_space(rotations: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Basis of the common fixed subspace of ``rotations`` (rows, 1 at the pivot coordinate)."""
    stacked = (np.asarray(rotations, float) - np.eye(3)).reshape(-1, 3)
    _, s, vt = np.linalg.svd(stacked)
    rank = int((s > 1e-6).sum())
    basis = vt[rank:]  # (n_free, 3)
    if not len(basis):
        return np.zeros((0, 3)), []
    m = basis.copy()
    pivots = []
    row = 0
    for col in range(3):
        if row >= len(m):
            break
        p = row + int(np.argmax(np.abs(m[row:, col])))
        if abs(m[p, col]) < 1e-8:
            continue
        m[[row, p]] = m[[p, row]]
        m[row] /= m[row, col]
        for r in range(len(m)):
            if r != row:
                m[r] -= m[r, col] * m[row]
        pivots.append(col)
        row += 1
    m[np.abs(m) < 1e-10] = 0.0
    return np.round(m, 10), pivots




def _free_form(std_lattice, std_pos, site, std_sites, rotations, translations):
    """(directions, pivots, key) of one site of an orbit; ``key`` orders candidate representatives:
    fewest negative direction components, smallest fixed part, smallest free coordinates in [0, 1)."""
    mask = sym.site_stabiliser_mask(std_lattice, std_pos, site, std_sites, rotations, translations)
    directions, pivots = _rref_null_space(rotations[mask])
    x = np.asarray(std_pos[site], float) % 1.0
    fixed = x - sum((x[p] * d for d, p in zip(directions, pivots)), np.zeros(3))
    fixed = np.round(fixed % 1.0, 6) % 1.0
    free = tuple(round(float(x[p]), 6) for p in pivots)
    key = (int((directions < -1e-9).sum()), tuple(float(v) for v in fixed), free)
    return directions, pivots, key


def prepare(row: Mapping[str, Any], symprec_ang: float | None = None) -> PesCrystal:
    """Standardise a materials row and enumerate its slice axes."""
    lattice, species, frac = row_arrays(row)
    symprec = float(symprec_ang or row.get("symprec_ang") or DEFAULT_SYMPREC_ANG)
    info = sym.analyze_cell(lattice, species, frac, symprec)
    kinds = {s: i + 1 for i, s in enumerate(dict.fromkeys(species))}
    numbers = np.array([kinds[s] for s in species], dtype=np.intc)
    ds = sym.spglib_dataset(lattice, frac, numbers, symprec, DEFAULT_ANGLE_TOLERANCE_DEG)
    rotations, translations = sym.hall_operations(int(ds.hall_number))
    std_lattice = np.asarray(ds.std_lattice, float)
    std_pos = np.asarray(ds.std_positions, float)
    std_of_prim: dict[int, list[int]] = {}
    for j, p in enumerate(np.asarray(ds.std_mapping_to_primitive).tolist()):
        std_of_prim.setdefault(p, []).append(j)
    to_prim = np.asarray(ds.mapping_to_primitive).tolist()

    orbits: list[_Orbit] = []
    seen: dict[tuple[str, str], int] = {}
    for o in info.orbits:
        std_sites = sorted({j for i in o.site_indices for j in std_of_prim.get(to_prim[i], ())})
        forms = {j: _free_form(std_lattice, std_pos, j, std_sites, rotations, translations) for j in std_sites}
        rep = min(std_sites, key=lambda j: forms[j][2])
        directions, pivots, _ = forms[rep]
        x0 = std_pos[rep] % 1.0
        if len(directions) != o.n_free:  # pragma: no cover - same computation as symmetry.py
            raise PesError(f"{o.label}: {len(directions)} free directions, symmetry.py counts {o.n_free}")
        images = np.einsum("kij,j->ki", rotations, x0) + translations
        keep_r, keep_off, found = [], [], []
        for k, y in enumerate(images):
            w = y - np.floor(y + 1e-9)
            if any(np.abs(((w - f) + 0.5) % 1.0 - 0.5).max() < 1e-5 for f in found):
                continue
            found.append(w)
            keep_r.append(rotations[k])
            keep_off.append(translations[k] + (w - y))
        if len(found) != o.multiplicity:
            raise PesError(f"{o.label}: orbit regenerates {len(found)} atoms, expected {o.multiplicity}")
        key = (o.element, o.letter)
        seen[key] = seen.get(key, 0) + 1
        orbits.append(_Orbit(o.element, o.letter, o.multiplicity, x0.copy(), np.array(keep_r, float),
                             np.array(keep_off, float), directions, pivots))
    counts = {k: v for k, v in seen.items()}
    index: dict[tuple[str, str], int] = {}
    for orbit in orbits:
        key = (orbit.element, orbit.letter)
        index[key] = index.get(key, 0) + 1
        suffix = f".{index[key]}" if counts[key] > 1 else ""
        orbit.label = f"{orbit.element}:{orbit.multiplicity}{orbit.letter}{suffix}"

    crystal = PesCrystal(str(row.get("material_id") or "?"), std_lattice, info.spacegroup_number,
                         info.crystal_system, info.wyckoff_string(), orbits, [], symprec)
    axes = []
    for k, orbit in enumerate(orbits):
        for d, pivot in zip(orbit.directions, orbit.pivots):
            step = float(np.linalg.norm(d @ std_lattice))
            axes.append(SliceAxis(f"{orbit.label}:{_COORD_NAMES[pivot]}", "coord", DEFAULT_COORD_RANGE_ANG / step, step,
                                  orbit=k, direction_frac=tuple(float(v) for v in d), value_at_dft=float(orbit.x0[pivot])))
    lengths = np.linalg.norm(std_lattice, axis=1)
    angles = lattice_angles_deg(std_lattice)
    for p in _LATTICE_AXES_OF_SYSTEM[info.crystal_system]:
        per = {"a": lengths[0], "b/a": lengths[1], "c/a": lengths[2],
               "alpha": angles[0], "beta": angles[1], "gamma": angles[2]}[p]
        value = {"a": lengths[0], "b/a": lengths[1] / lengths[0], "c/a": lengths[2] / lengths[0]}.get(p, per)
        axes.append(SliceAxis(f"lattice:{p}", "lattice", DEFAULT_LATTICE_STRAIN, float(per), param=p,
                              unit="°" if p in _ANGLE_AXES else "Å", value_at_dft=float(value)))
    crystal.axes = axes
    return crystal


def slice_axes(row: Mapping[str, Any], symprec_ang: float | None = None) -> list[SliceAxis]:
    """The slice axes of a materials row (coordinate axes first, then lattice axes)."""
    return prepare(row, symprec_ang).axes


def resolve_axis(crystal: PesCrystal, name: str) -> SliceAxis:
    """Axis by name; the multiplicity may be left out (``O:f:x``) and case is ignored."""
    by = {a.name: a for a in crystal.axes}
    if name in by:
        return by[name]
    norm = name.strip().lower()
    for a in crystal.axes:
        if a.name.lower() == norm or re.sub(r":\d+([a-zA-Z])", r":\1", a.name).lower() == norm:
            return a
    raise PesError(f"unknown axis {name!r} for {crystal.material_id}; axes: {', '.join(by)}")


@dataclass
class SliceSpec:
    """A resolved slice: axes, half-ranges (axis units: fractional / strain), points per axis."""

    material_id: str
    axes: tuple[str, ...]
    ranges: tuple[float, ...]
    points: int

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.points for _ in self.axes)

    def values(self, k: int) -> np.ndarray:
        return np.linspace(-self.ranges[k], self.ranges[k], self.points)

    def step(self, k: int) -> float:
        return 2 * self.ranges[k] / (self.points - 1)

    @property
    def key(self) -> str:
        rng = ",".join(f"{r:.4g}" for r in self.ranges)
        return f"{self.material_id}|{','.join(self.axes)}|{rng}|{'x'.join(str(p) for p in self.shape)}"

    def point_id(self, idx: tuple[int, ...]) -> str:
        return f"{self.key}|{','.join(str(i) for i in idx)}"

    def point_values(self, idx: tuple[int, ...]) -> dict[str, float]:
        return {name: float(self.values(k)[i]) for k, (name, i) in enumerate(zip(self.axes, idx))}

    @property
    def center(self) -> tuple[int, ...]:
        return tuple(self.points // 2 for _ in self.axes)


def make_spec(crystal: PesCrystal, axes: Sequence[str], range_: float | str | Sequence[float | str] | None = None,
              points: int = DEFAULT_POINTS) -> SliceSpec:
    """Resolve axis names and ranges (default: ±0.3 Å / ±5 %; see :func:`parse_range` for the
    forms a range may take), make ``points`` odd. Ranges are rounded to 4 significant digits."""
    if not 1 <= len(axes) <= 2:
        raise PesError(f"a slice has 1 or 2 axes, got {len(axes)}")
    resolved = [resolve_axis(crystal, a) for a in axes]
    if len({a.name for a in resolved}) != len(resolved):
        raise PesError("the two axes of a slice must differ")
    if points < 3:
        raise PesError(f"need at least 3 points per axis, got {points}")
    points = int(points) | 1  # odd: the DFT structure is the centre point
    if range_ is None:
        req = [a.default_range for a in resolved]
    elif isinstance(range_, (int, float, str)):
        req = [parse_range(range_, a) for a in resolved]
    else:
        if len(range_) != len(resolved):
            raise PesError(f"{len(range_)} ranges for {len(resolved)} axes")
        req = [a.default_range if r is None else parse_range(r, a) for r, a in zip(range_, resolved)]
    ranges = tuple(float(f"{r:.4g}") for r in req)
    for a, r in zip(resolved, ranges):
        if a.kind == "lattice" and r >= 1.0:
            raise PesError(f"range of {a.name} is {r * 100:.0f} %: a strain of -100 % or less makes no cell")
    return SliceSpec(crystal.material_id, tuple(a.name for a in resolved), ranges, points)


@dataclass
class GridPoint:
    """One point of a slice: its structure, its worst close contact (None: physically fine) and
    whether it is evaluated (atoms no closer than the engine's floor, a valid cell)."""

    idx: tuple[int, ...]
    values: dict[str, float]
    lattice_ang: np.ndarray
    species: list[str]
    frac: np.ndarray
    contact: Contact | None
    evaluate: bool

    @property
    def masked(self) -> bool:
        return self.contact is not None or not self.evaluate


def grid_points(crystal: PesCrystal, spec: SliceSpec, closest_approach: float = DEFAULT_CLOSEST_APPROACH,
                floor_ang: float = EVALUATION_FLOOR_ANG) -> list[GridPoint]:
    """Every point of the grid, in index order, with its close-contact check."""
    out = []
    for idx in itertools.product(*(range(n) for n in spec.shape)):
        values = spec.point_values(idx)
        try:
            lat, species, frac = crystal.structure_at(values)
        except ValueError:  # strained angles make no cell
            lat, species, frac = crystal.structure_at({})
            out.append(GridPoint(idx, values, lat, species, frac, Contact("no cell", float("nan"), float("nan")), False))
            continue
        contact, shortest = contacts(lat, species, frac, closest_approach, floor_ang)
        evaluate = shortest >= floor_ang
        if not evaluate and contact is None:
            pair, d = crystal.closest_pair_at(values)
            contact = Contact(pair, d, floor_ang)
        out.append(GridPoint(idx, values, lat, species, frac, contact, bool(evaluate)))
    return out


#: bumped when the structure an id names changes (v2: conventional orbit representatives, so an
#: axis may point the other way than in v1 slices); old derived datasets are then not reused
GRID_VERSION = 2


def pes_dataset_prefix(material_id: str) -> str:
    """The start of the name of every derived slice dataset of ``material_id``."""
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", material_id).lstrip("._+-") or "m"
    return f"pes-{safe}-"


def pes_dataset_name(parent_dataset: str, material_id: str, axes: Sequence[str]) -> str:
    h = hashlib.sha1(f"v{GRID_VERSION}|{parent_dataset}|{material_id}|{','.join(axes)}".encode()).hexdigest()[:10]
    return pes_dataset_prefix(material_id) + h


_COPY_FROM_PARENT = ("e_form_per_atom_dft_mp2020", "e_above_hull_dft_mp2020", "e_per_atom_dft_mp2020",
                     "e_per_atom_dft_raw", "e_per_atom_dft_origin", "mp2020_correction_per_atom",
                     "mp2020_run_type", *sym.SYMMETRY_COLUMNS)


def write_grid_dataset(cache: Cache, parent_row: Mapping[str, Any], crystal: PesCrystal, spec: SliceSpec,
                       dataset: str, points: Sequence[GridPoint]) -> list[str]:
    """Write (merge) the evaluated points of the grid into the derived dataset; their ids."""
    from pymatgen.core import Lattice, Structure

    from mliap_tui.cache import MATERIALS_SCHEMA, conform
    from mliap_tui.data.structures import structure_columns

    rows = []
    for p in points:
        if not p.evaluate:
            continue
        cols = structure_columns(Structure(Lattice(p.lattice_ang), p.species, p.frac))
        cols["frac_coords"] = np.asarray(p.frac, float).ravel().tolist()  # the exact coordinates, unwrapped
        row = {"material_id": spec.point_id(p.idx), "dataset": dataset,
               "source": f"pes:{parent_row.get('dataset')}:{crystal.material_id}", **cols}
        for c in _COPY_FROM_PARENT:
            row[c] = parent_row.get(c)
        rows.append(row)
    ids = [r["material_id"] for r in rows]
    if cache.has_materials(dataset):
        old = cache.scan_materials(dataset).collect()
        known = set(old["material_id"].to_list())
        rows = [r for r in rows if r["material_id"] not in known]  # same id = same structure: keep it
        if not rows:
            return ids
        new = pl.concat([conform(old, MATERIALS_SCHEMA),
                         conform(pl.DataFrame(rows, infer_schema_length=None), MATERIALS_SCHEMA)], how="vertical")
    else:
        new = conform(pl.DataFrame(rows, infer_schema_length=None), MATERIALS_SCHEMA)
    cache.write_materials(dataset, new)
    return ids


@dataclass
class PesSlice:
    """A slice and its energies: ``energies[model]`` an array of ``spec.shape`` (eV/atom, NaN where
    not evaluated), ``forces[model]`` per point (n x 3 eV/Å) when asked for. ``mask`` marks the
    physically impossible points (``contacts`` says why), ``evaluated`` the points sent to models."""

    crystal: PesCrystal
    spec: SliceSpec
    dataset: str
    mask: np.ndarray
    evaluated: np.ndarray
    contacts: dict[tuple[int, ...], Contact] = field(default_factory=dict)
    closest_approach: float = DEFAULT_CLOSEST_APPROACH
    collapse_ev_per_atom: float = DEFAULT_COLLAPSE_EV_PER_ATOM
    energies: dict[str, np.ndarray] = field(default_factory=dict)
    forces: dict[str, dict[tuple[int, ...], np.ndarray]] = field(default_factory=dict)
    failures: dict[str, list[str]] = field(default_factory=dict)
    run_summary: Any = None
    ids: list[str] = field(default_factory=list)
    parent_dataset: str = ""

    @property
    def axes(self) -> list[SliceAxis]:
        return [self.crystal.axis(a) for a in self.spec.axes]

    def grid_values(self, k: int) -> np.ndarray:
        return self.spec.values(k)

    @property
    def cancelled(self) -> bool:
        return bool(self.run_summary is not None and self.run_summary.cancelled)

    def n_done(self, model: str) -> int:
        """Grid points with an energy (ok) for ``model``."""
        e = self.energies.get(model)
        return 0 if e is None else int(np.isfinite(e).sum())

    def closest_pair_at(self, idx: tuple[int, ...]) -> tuple[str, float]:
        return self.crystal.closest_pair_at(self.spec.point_values(idx))


def build_slice(cache: Cache, parent_dataset: str, material_id: str, axes: Sequence[str],
                range_: float | str | Sequence[float | str] | None = None, points: int = DEFAULT_POINTS,
                closest_approach: float = DEFAULT_CLOSEST_APPROACH,
                collapse_ev_per_atom: float = DEFAULT_COLLAPSE_EV_PER_ATOM,
                symprec_ang: float | None = None, crystal: PesCrystal | None = None) -> PesSlice:
    """Build the grid and store its evaluable points in the derived dataset (no model runs)."""
    if not closest_approach >= 0:
        raise PesError(f"closest approach must be a fraction >= 0 of the covalent radii sum, got {closest_approach}")
    rows = cache.scan_materials(parent_dataset).filter(pl.col("material_id") == material_id).collect()
    if rows.is_empty():
        raise PesError(f"{material_id} is not in dataset {parent_dataset!r}")
    parent = rows.row(0, named=True)
    crystal = crystal or prepare(parent, symprec_ang)
    spec = make_spec(crystal, axes, range_, points)
    pts = grid_points(crystal, spec, closest_approach)
    centre = pts[int(np.ravel_multi_index(spec.center, spec.shape))]
    if centre.masked:
        raise PesError(f"{material_id}: the DFT structure itself has {centre.contact.text if centre.contact else 'no cell'}"
                       f" (closest approach {closest_approach:g} × covalent radii): lower the closest approach")
    dataset = pes_dataset_name(parent_dataset, material_id, spec.axes)
    ids = write_grid_dataset(cache, parent, crystal, spec, dataset, pts)
    mask = np.zeros(spec.shape, bool)
    evaluated = np.zeros(spec.shape, bool)
    contacts = {}
    for p in pts:
        mask[p.idx] = p.masked
        evaluated[p.idx] = p.evaluate
        if p.contact is not None:
            contacts[p.idx] = p.contact
    return PesSlice(crystal, spec, dataset, mask, evaluated, contacts, closest_approach, collapse_ev_per_atom,
                    ids=ids, parent_dataset=parent_dataset)


def evaluate_slice(cache: Cache, s: PesSlice, models: Sequence[str], *, forces: bool = False, device: str = "auto",
                   dtype: str = "float32", on_event: Callable | None = None, stop: threading.Event | None = None,
                   batch_atoms: int | None = None, torch_threads: int | None = None) -> PesSlice:
    """Evaluate what is not cached of the slice (in this process, :mod:`.evaluate`), then read it
    back; blocking. ``stop`` ends it after the batch in flight, keeping what is done."""
    from mliap_tui.analysis.pes.evaluate import evaluate_points

    if models:
        s.run_summary = evaluate_points(cache, s.dataset, s.ids, models, device=device, dtype=dtype, forces=forces,
                                        batch_atoms=batch_atoms, torch_threads=torch_threads, on_event=on_event,
                                        stop=stop, min_distance_ang=EVALUATION_FLOOR_ANG)
    return read_slice_predictions(cache, s, models)


def compute_slice(
    cache: Cache,
    parent_dataset: str,
    material_id: str,
    axes: Sequence[str],
    models: Sequence[str],
    range_: float | str | Sequence[float | str] | None = None,
    points: int = DEFAULT_POINTS,
    closest_approach: float = DEFAULT_CLOSEST_APPROACH,
    collapse_ev_per_atom: float = DEFAULT_COLLAPSE_EV_PER_ATOM,
    forces: bool = False,
    device: str = "auto",
    dtype: str = "float32",
    on_event: Callable | None = None,
    stop: threading.Event | None = None,
    symprec_ang: float | None = None,
    batch_atoms: int | None = None,
    torch_threads: int | None = None,
) -> PesSlice:
    """Build, evaluate (only what is not cached) and read back a slice. Blocking."""
    s = build_slice(cache, parent_dataset, material_id, axes, range_, points, closest_approach, collapse_ev_per_atom,
                    symprec_ang)
    return evaluate_slice(cache, s, models, forces=forces, device=device, dtype=dtype, on_event=on_event, stop=stop,
                          batch_atoms=batch_atoms, torch_threads=torch_threads)


def read_slice_predictions(cache: Cache, out: PesSlice, models: Sequence[str]) -> PesSlice:
    spec = out.spec
    prefix = spec.key + "|"
    for model in models:
        e = np.full(spec.shape, np.nan)
        fmap: dict[tuple[int, ...], np.ndarray] = {}
        fails = []
        if cache.prediction_files(out.dataset, model, "static"):
            preds = (cache.scan_predictions(out.dataset, [model], "static")
                     .filter(pl.col("material_id").str.starts_with(prefix))
                     # weights changed since an earlier slice: the newest rows are the current weights'
                     .sort("created_unix_s").unique("material_id", keep="last").collect())
            for p in preds.iter_rows(named=True):
                idx = tuple(int(i) for i in p["material_id"].rsplit("|", 1)[1].split(","))
                if p["status"] != "ok" or p["e_per_atom_pred_native"] is None:
                    fails.append(f"{p['material_id']}: {p['error']}")
                    continue
                e[idx] = p["e_per_atom_pred_native"]
                if p["forces_pred_ev_per_ang"] is not None:
                    fmap[idx] = np.asarray(p["forces_pred_ev_per_ang"], float).reshape(-1, 3)
        out.energies[model] = e
        out.forces[model] = fmap
        out.failures[model] = fails
    return out


@dataclass(frozen=True)
class CachedSlice:
    """A slice with predictions in the cache, named by its spec key (material, axes, ranges, shape)."""

    dataset: str  # the derived grid dataset
    material_id: str
    axes: tuple[str, ...]
    ranges: tuple[float, ...]  # half-ranges, axis units (fractional / strain)
    points: int
    models: tuple[str, ...]


def cached_slices(cache: Cache, parent_dataset: str) -> list[CachedSlice]:
    """Every slice of ``parent_dataset``'s materials that some model evaluated (no model runs)."""
    out = []
    for name in cache.datasets():
        if not name.startswith("pes-") or not cache.has_materials(name):
            continue
        source = cache.scan_materials(name).select("source").head(1).collect()
        if source.is_empty() or not str(source["source"][0]).startswith(f"pes:{parent_dataset}:"):
            continue
        keys = (cache.scan_predictions(name).filter(pl.col("status") == "ok")
                .select(pl.col("material_id").str.replace(r"\|[^|]*$", "").alias("key"), "model")
                .unique().collect())
        for key, grp in keys.group_by("key", maintain_order=True):
            material_id, axes, ranges, shape = str(key[0]).split("|")
            out.append(CachedSlice(name, material_id, tuple(axes.split(",")), tuple(float(r) for r in ranges.split(",")),
                                   int(shape.split("x")[0]), tuple(sorted(grp["model"].unique().to_list()))))
    return sorted(out, key=lambda c: (c.material_id, c.axes, c.ranges))


def load_cached_slice(cache: Cache, parent_dataset: str, cached: CachedSlice) -> PesSlice:
    """The :class:`PesSlice` of a :func:`cached_slices` entry, read back with its models' energies."""
    s = build_slice(cache, parent_dataset, cached.material_id, cached.axes, list(cached.ranges), cached.points)
    return read_slice_predictions(cache, s, cached.models)


def slice_to_frame(s: PesSlice, reference: np.ndarray | None = None) -> pl.DataFrame:
    """Tidy grid table: index, axis values (own units, and Å / %), whether the point is masked and
    why, then per model E (eV/atom) and E - E(DFT point) (meV/atom)."""
    cols: dict[str, list] = {}
    idxs = list(itertools.product(*(range(n) for n in s.spec.shape)))
    for k, a in enumerate(s.spec.axes):
        cols[f"i{k}"] = [i[k] for i in idxs]
    for k, (name, ax) in enumerate(zip(s.spec.axes, s.axes)):
        vals = s.spec.values(k)
        cols[name] = [float(vals[i[k]]) for i in idxs]
        cols[f"{name} [{ax.physical_unit}]"] = [float(ax.physical(vals[i[k]])) for i in idxs]
    cols["masked"] = [bool(s.mask[i]) for i in idxs]
    cols["contact"] = [s.contacts[i].text if i in s.contacts else None for i in idxs]
    c = s.spec.center
    sources = dict(s.energies)
    if reference is not None:
        sources["reference"] = reference
    for model, e in sources.items():
        cols[f"e_per_atom_ev[{model}]"] = [None if np.isnan(e[i]) else float(e[i]) for i in idxs]
        cols[f"e_rel_mev_per_atom[{model}]"] = [None if np.isnan(e[i]) else float((e[i] - e[c]) * MEV_PER_EV) for i in idxs]
    return pl.DataFrame(cols)


__all__ = ["CachedSlice", "Contact", "GridPoint", "PesCrystal", "PesError", "PesSlice", "SliceAxis", "SliceSpec", "build_slice",
           "cached_slices", "contacts", "load_cached_slice", "compute_slice", "covalent_radius_ang", "evaluate_slice", "grid_points", "make_spec",
           "parse_range", "parse_ranges", "pes_dataset_name", "pes_dataset_prefix", "prepare", "read_slice_predictions", "resolve_axis",
           "slice_axes", "slice_to_frame", "write_grid_dataset", "DEFAULT_CLOSEST_APPROACH",
           "DEFAULT_COLLAPSE_EV_PER_ATOM", "DEFAULT_COORD_RANGE_ANG", "DEFAULT_LATTICE_STRAIN", "DEFAULT_POINTS",
           "EVALUATION_FLOOR_ANG"]
