"""Symmetry-restricted PES slices (after Parackal, Armiento and Trybel): move atoms along the free
coordinates of their Wyckoff positions, with the space group held fixed, and map each model's energy.

Slice axes
----------
For a crystal, :func:`slice_axes` lists

* one **coordinate axis** per free coordinate of each occupied Wyckoff orbit, named
  ``<element>:<mult><letter>[.<k>]:<coord>`` (``O:4f:x`` in rutile, ``Zn:2b:z`` in wurtzite;
  ``.k`` numbers orbits sharing element and letter, e.g. ``O:4e.2:x``). The letters are the
  canonical ones of :mod:`mliap_tui.symmetry` (the materials table's ``wyckoff`` column). The axis
  value ``t`` is a displacement of the orbit's representative atom along a free direction ``d``
  in *fractional* coordinates of spglib's conventional standard cell; ``<coord>`` names the pivot
  coordinate of ``d`` (``d`` = (1, 1, 0) for the ``x`` of rutile 4f (x, x, 0));
* the **lattice axes** of the crystal system, each a relative strain ``s`` (0.05 = +5 %):
  ``lattice:a`` scales the whole cell (shape kept), ``lattice:b/a`` and ``lattice:c/a`` scale b
  or c alone (where the system lets them differ from a), ``lattice:alpha|beta|gamma`` scale a free
  angle (monoclinic beta, triclinic all three).

Building a point
----------------
The crystal is standardised with spglib (conventional standard cell, idealised positions,
at ``symprec_ang``), with the space group's operations (R, t) of that setting from spglib's
database. For an orbit with representative ``x0`` the free directions are the null space of the
stacked ``R - I`` over the site-stabiliser operations (as :mod:`mliap_tui.symmetry` counts them),
row-reduced so each has a 1 at its pivot coordinate. Each atom ``k`` of the orbit is recorded once
as ``R_k x0 + t_k + n_k`` (the operation that generates it, and a lattice shift); a point of the
slice moves ``x0`` to ``x0 + sum t_j d_j`` and every atom to ``R_k x + t_k + n_k``, so the orbit
moves together, the atom order never changes, the velocity of atom k is ``R_k d`` and the space
group is preserved exactly (checked with spglib in the tests at every grid point).

Grids and the cache
-------------------
A slice is 1D (one axis) or 2D (two axes), ``points`` values per axis (odd, default 21; the
DFT structure at the centre), over ``±range`` (default 0.1 fractional for coordinate axes, 0.05
for lattice axes). Each range is clipped, symmetrically, to where no two atoms come closer than
``min_distance_ang`` (0.7 Å) along that axis; 2D points that still violate it are left out
(NaN). Energies go through the engine's batched, resumable path: the grid structures are stored
as a derived dataset

    dataset      ``pes-<material>-<hash>``   (hash of parent dataset + axes)
    material_id  ``<mid>|<axes>|<ranges>|<points>|i,j``  e.g. ``mp-390|O:8e:z,lattice:a|0.1,0.05|21x21|3,7``

(materials rows from :func:`mliap_tui.data.structures.structure_columns` with the parent's DFT,
correction and symmetry columns copied, merged into the dataset's table so earlier slices stay)
and evaluated with :func:`mliap_tui.engine.runner.run_evaluation` restricted to those ids. The
predictions are therefore cached in parquet per (material, axes, range, resolution, model): a
slice asked again is read back, a cancelled one resumes where it stopped. Energies of a slice
are the models' native energies (eV/atom); relative energies do not depend on the convention.

Imports no torch, no textual.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import polars as pl

from mliap_tui import symmetry as sym
from mliap_tui.cache import Cache
from mliap_tui.core.geometry import (
    lattice_angles_deg,
    lattice_from_parameters,
    min_distance_ang,
)
from mliap_tui.core.units import MEV_PER_EV
from mliap_tui.core.vocab import DEFAULT_ANGLE_TOLERANCE_DEG, DEFAULT_SYMPREC_ANG
from mliap_tui.data.structures import row_arrays

DEFAULT_COORD_RANGE = 0.1  # fractional
DEFAULT_LATTICE_RANGE = 0.05  # relative strain
DEFAULT_POINTS = 21
DEFAULT_MIN_DISTANCE_ANG = 0.7
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


class PesError(ValueError):
    """A slice that cannot be built (unknown axis, symmetry failure, bad grid)."""


@dataclass(frozen=True)
class SliceAxis:
    """One axis of a slice. ``kind`` 'coord' or 'lattice'.

    coord: ``orbit`` index into :attr:`PesCrystal.orbits`, ``direction_frac`` the free direction
    of the representative (fractional, conventional cell), ``ang_per_unit`` the Å each atom of the
    orbit moves per unit of the axis value. lattice: ``param`` ('a', 'b/a', 'c/a', 'alpha'...),
    ``ang_per_unit`` the Å (or degrees for angles) the parameter changes per unit strain.
    """

    name: str
    kind: str
    default_range: float
    ang_per_unit: float
    orbit: int = -1
    direction_frac: tuple[float, float, float] = (0.0, 0.0, 0.0)
    param: str = ""
    unit: str = "Å"

    @property
    def label(self) -> str:
        return f"{self.name} ({'frac' if self.kind == 'coord' else 'strain'})"


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
        rep = std_sites[0]
        x0 = std_pos[rep]
        mask = sym.site_stabiliser_mask(std_lattice, std_pos, rep, std_sites, rotations, translations)
        directions, pivots = _rref_null_space(rotations[mask])
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
            axes.append(SliceAxis(f"{orbit.label}:{_COORD_NAMES[pivot]}", "coord", DEFAULT_COORD_RANGE, step,
                                  orbit=k, direction_frac=tuple(float(v) for v in d)))
    lengths = np.linalg.norm(std_lattice, axis=1)
    angles = lattice_angles_deg(std_lattice)
    for p in _LATTICE_AXES_OF_SYSTEM[info.crystal_system]:
        per = {"a": lengths[0], "b/a": lengths[1], "c/a": lengths[2],
               "alpha": angles[0], "beta": angles[1], "gamma": angles[2]}[p]
        axes.append(SliceAxis(f"lattice:{p}", "lattice", DEFAULT_LATTICE_RANGE, float(per), param=p,
                              unit="°" if p in _ANGLE_AXES else "Å"))
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


def clip_range(crystal: PesCrystal, axis: SliceAxis, requested: float, min_dist_ang: float,
               n_probe: int = 41) -> float:
    """Largest r <= requested such that the 1D scan over [-r, r] keeps atoms >= min_dist_ang apart."""
    r = float(requested)
    ts = np.linspace(0.0, r, n_probe)
    ok = r
    for sign in (1.0, -1.0):
        for t in ts[1:]:
            if not _point_ok(crystal, {axis.name: sign * t}, min_dist_ang)[3]:
                ok = min(ok, t - (ts[1] - ts[0]))
                break
    return max(ok, 0.0)


@dataclass
class SliceSpec:
    """A resolved slice: axes, clipped ranges, points per axis."""

    material_id: str
    axes: tuple[str, ...]
    ranges: tuple[float, ...]
    points: int
    requested_ranges: tuple[float, ...] = ()

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.points for _ in self.axes)

    def values(self, k: int) -> np.ndarray:
        return np.linspace(-self.ranges[k], self.ranges[k], self.points)

    @property
    def key(self) -> str:
        rng = ",".join(f"{r:.4g}" for r in self.ranges)
        return f"{self.material_id}|{','.join(self.axes)}|{rng}|{'x'.join(str(p) for p in self.shape)}"

    def point_id(self, idx: tuple[int, ...]) -> str:
        return f"{self.key}|{','.join(str(i) for i in idx)}"

    @property
    def center(self) -> tuple[int, ...]:
        return tuple(self.points // 2 for _ in self.axes)


def make_spec(crystal: PesCrystal, axes: Sequence[str], range_: float | Sequence[float] | None = None,
              points: int = DEFAULT_POINTS, min_dist_ang: float = DEFAULT_MIN_DISTANCE_ANG) -> SliceSpec:
    """Resolve axis names, default and clip ranges, make ``points`` odd."""
    if not 1 <= len(axes) <= 2:
        raise PesError(f"a slice has 1 or 2 axes, got {len(axes)}")
    resolved = [resolve_axis(crystal, a) for a in axes]
    if len({a.name for a in resolved}) != len(resolved):
        raise PesError("the two axes of a slice must differ")
    if points < 3:
        raise PesError(f"need at least 3 points per axis, got {points}")
    points = int(points) | 1  # odd: the DFT structure is the centre point
    if range_ is None or isinstance(range_, (int, float)):
        req = [a.default_range if range_ is None else float(range_) for a in resolved]
    else:
        req = [float(r) for r in range_]
    ranges = tuple(clip_range(crystal, a, r, min_dist_ang) for a, r in zip(resolved, req))
    if any(r <= 0 for r in ranges):
        raise PesError(f"no room to move along {axes}: atoms closer than {min_dist_ang} Å at once")
    return SliceSpec(crystal.material_id, tuple(a.name for a in resolved), ranges, points, tuple(req))


def grid_structures(crystal: PesCrystal, spec: SliceSpec, min_dist_ang: float = DEFAULT_MIN_DISTANCE_ANG):
    """Yield (index tuple, axis values dict, lattice, species, frac, ok) over the grid."""
    for idx in itertools.product(*(range(n) for n in spec.shape)):
        values = {name: float(spec.values(k)[i]) for k, (name, i) in enumerate(zip(spec.axes, idx))}
        lat, species, frac, ok = _point_ok(crystal, values, min_dist_ang)
        yield idx, values, lat, species, frac, ok


def _point_ok(crystal: "PesCrystal", values: Mapping[str, float], min_dist_ang: float):
    """(lattice, species, frac, ok) of a grid point; not ok when atoms come closer than ``min_dist_ang``
    or the strained angles make no cell (then the unstrained lattice is returned)."""
    try:
        lat, species, frac = crystal.structure_at(values)
    except ValueError:
        lat, species, frac = crystal.structure_at({})
        return lat, species, frac, False
    return lat, species, frac, bool(min_distance_ang(lat, frac, min_dist_ang) >= min_dist_ang)


def pes_dataset_name(parent_dataset: str, material_id: str, axes: Sequence[str]) -> str:
    h = hashlib.sha1(f"{parent_dataset}|{material_id}|{','.join(axes)}".encode()).hexdigest()[:10]
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", material_id).lstrip("._+-") or "m"
    return f"pes-{safe}-{h}"


_COPY_FROM_PARENT = ("e_form_per_atom_dft_mp2020", "e_above_hull_dft_mp2020", "e_per_atom_dft_mp2020",
                     "e_per_atom_dft_raw", "e_per_atom_dft_origin", "mp2020_correction_per_atom",
                     "mp2020_run_type", *sym.SYMMETRY_COLUMNS)


def write_grid_dataset(cache: Cache, parent_row: Mapping[str, Any], crystal: PesCrystal, spec: SliceSpec,
                       dataset: str, min_dist_ang: float = DEFAULT_MIN_DISTANCE_ANG) -> tuple[list[str], pl.DataFrame]:
    """Write (merge) the grid into the derived dataset; (ids to evaluate, grid table)."""
    from pymatgen.core import Lattice, Structure

    from mliap_tui.data.structures import structure_columns

    rows, grid = [], []
    for idx, values, lat, species, frac, ok in grid_structures(crystal, spec, min_dist_ang):
        mid = spec.point_id(idx)
        grid.append({"material_id": mid, "idx": list(idx), **{f"v{k}": values[a] for k, a in enumerate(spec.axes)},
                     "ok": ok})
        if not ok:
            continue
        cols = structure_columns(Structure(Lattice(lat), species, frac))
        # keep the exact coordinates (Structure wraps nothing, but be explicit)
        cols["frac_coords"] = np.asarray(frac, float).ravel().tolist()
        row = {"material_id": mid, "dataset": dataset, "source": f"pes:{parent_row.get('dataset')}:{crystal.material_id}",
               **cols}
        for c in _COPY_FROM_PARENT:
            row[c] = parent_row.get(c)
        rows.append(row)
    new = pl.DataFrame(rows, infer_schema_length=None)
    from mliap_tui.cache import MATERIALS_SCHEMA, conform

    new = conform(new, MATERIALS_SCHEMA)
    if cache.has_materials(dataset):
        old = cache.scan_materials(dataset).collect()
        old = old.filter(~pl.col("material_id").is_in(new["material_id"].implode()))
        new = pl.concat([conform(old, MATERIALS_SCHEMA), new], how="vertical")
    cache.write_materials(dataset, new)
    return [r["material_id"] for r in rows], pl.DataFrame(grid)


@dataclass
class PesSlice:
    """Energies of a slice: ``energies[model]`` an array of ``spec.shape`` (eV/atom, NaN where not
    evaluated), ``forces[model]`` per point (n x 3 eV/Å) when asked for."""

    crystal: PesCrystal
    spec: SliceSpec
    dataset: str
    energies: dict[str, np.ndarray] = field(default_factory=dict)
    forces: dict[str, dict[tuple[int, ...], np.ndarray]] = field(default_factory=dict)
    failures: dict[str, list[str]] = field(default_factory=dict)
    run_summary: Any = None

    @property
    def axes(self) -> list[SliceAxis]:
        return [self.crystal.axis(a) for a in self.spec.axes]

    def grid_values(self, k: int) -> np.ndarray:
        return self.spec.values(k)


def compute_slice(
    cache: Cache,
    parent_dataset: str,
    material_id: str,
    axes: Sequence[str],
    models: Sequence[str],
    range_: float | Sequence[float] | None = None,
    points: int = DEFAULT_POINTS,
    min_dist_ang: float = DEFAULT_MIN_DISTANCE_ANG,
    forces: bool = False,
    device: str = "auto",
    dtype: str = "float32",
    on_event: Callable | None = None,
    symprec_ang: float | None = None,
    **run_options: Any,
) -> PesSlice:
    """Build, evaluate (only what is not cached) and read back a slice. Blocking."""
    from mliap_tui.engine.runner import run_evaluation

    rows = cache.scan_materials(parent_dataset).filter(pl.col("material_id") == material_id).collect()
    if rows.is_empty():
        raise PesError(f"{material_id} is not in dataset {parent_dataset!r}")
    parent = rows.row(0, named=True)
    crystal = prepare(parent, symprec_ang)
    spec = make_spec(crystal, axes, range_, points, min_dist_ang)
    dataset = pes_dataset_name(parent_dataset, material_id, spec.axes)
    ids, _ = write_grid_dataset(cache, parent, crystal, spec, dataset, min_dist_ang)
    summary = None
    if models:
        summary = run_evaluation(cache, dataset, list(models), device=device, dtype=dtype, forces=forces,
                                 material_ids=ids, on_event=on_event, **run_options)
    out = PesSlice(crystal, spec, dataset, run_summary=summary)
    read_slice_predictions(cache, out, models, ids)
    return out


def read_slice_predictions(cache: Cache, out: PesSlice, models: Sequence[str], ids: Sequence[str]) -> PesSlice:
    spec = out.spec
    prefix = spec.key + "|"
    for model in models:
        preds = (cache.scan_predictions(out.dataset, [model], "static")
                 .filter(pl.col("material_id").str.starts_with(prefix))
                 # weights changed since an earlier slice: the newest rows are the current weights'
                 .sort("created_unix_s").unique("material_id", keep="last").collect())
        e = np.full(spec.shape, np.nan)
        fmap: dict[tuple[int, ...], np.ndarray] = {}
        fails = []
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


def slice_to_frame(s: PesSlice, reference: np.ndarray | None = None) -> pl.DataFrame:
    """Tidy grid table: index, axis values, then per model E (eV/atom) and E - E(DFT point) (meV/atom)."""
    cols: dict[str, list] = {}
    idxs = list(itertools.product(*(range(n) for n in s.spec.shape)))
    for k, a in enumerate(s.spec.axes):
        cols[f"i{k}"] = [i[k] for i in idxs]
    for k, a in enumerate(s.spec.axes):
        vals = s.spec.values(k)
        cols[a] = [float(vals[i[k]]) for i in idxs]
    c = s.spec.center
    sources = dict(s.energies)
    if reference is not None:
        sources["reference"] = reference
    for model, e in sources.items():
        cols[f"e_per_atom_ev[{model}]"] = [None if np.isnan(e[i]) else float(e[i]) for i in idxs]
        cols[f"e_rel_mev_per_atom[{model}]"] = [None if np.isnan(e[i]) else float((e[i] - e[c]) * MEV_PER_EV) for i in idxs]
    return pl.DataFrame(cols)


__all__ = ["PesCrystal", "PesError", "PesSlice", "SliceAxis", "SliceSpec", "compute_slice", "make_spec", "prepare",
           "pes_dataset_name", "resolve_axis", "slice_axes", "slice_to_frame", "write_grid_dataset"]
