"""Space group, Wyckoff orbits and structural degrees of freedom (DOF) of a crystal.

This is the one DOF function of the project. For a crystal it reports

* the space group (number, Hermann-Mauguin symbol) and crystal system,
* the occupied Wyckoff orbits: letter, multiplicity in the *conventional standard* cell,
  element, site-symmetry symbol and number of free coordinates,
* ``lattice_dof``: free lattice parameters of the crystal system (triclinic 6, monoclinic 4,
  orthorhombic 3, tetragonal 2, trigonal 2, hexagonal 2, cubic 1),
* ``wyckoff_dof``: free coordinates summed over the occupied crystallographic orbits (each orbit
  counted once, however many atoms it has in the cell given),
* ``total_dof = lattice_dof + wyckoff_dof``,
* ``polar_dof``: the number of floating-origin directions of a polar group, i.e. the dimension of
  the subspace fixed by every point-group rotation (3 for P1, 2 for Pm, 1 for P6_3mc, 0 for any
  group with an inversion centre or otherwise non-polar). ``total_dof`` *includes* these
  continuous origin shifts; subtract ``polar_dof`` to count only physically distinct parameters.

Conventions
-----------
Lengths (lattice, ``symprec_ang``) are in Å; fractional coordinates are in the basis of the
lattice rows given. Symmetry is found with spglib (>= 2.1) with the tolerance ``symprec_ang``
(default :data:`mliap_tui.core.vocab.DEFAULT_SYMPREC_ANG` = 0.1 Å) and an angle tolerance of 5
degrees, as pymatgen and the Materials Project do.

The free coordinates of an orbit are counted without reference to any Wyckoff table: for a
representative atom ``x`` of the orbit in spglib's conventional standard cell, the site-stabiliser
operations (R, t) of the full space group (those mapping ``x`` onto itself modulo a lattice
vector) are collected and ``n_free = 3 - rank(stack(R - I))``, the dimension of the affine
subspace of points with the same site symmetry. The rank is basis-independent and the standard
cell does not depend on the cell given, so the same crystal given as a conventional cell, a
primitive cell, a supercell, with permuted axes or in a
rhombohedral/hexagonal setting gives the same counts.

Wyckoff letters are made cell-independent too. spglib names the orbits in one of several equally
valid descriptions of a crystal (another origin or axis order turns P6_3/mmc 2c into 2d), and
which one depends on the cell it is given. The descriptions are related by the normalizer of the
space group; the letters reported are those of the smallest description (sorted (letter,
element) list) among them. The normalizer's action on the letters is computed here, per space
group, from spglib's operations (and checked in the tests against Bilbao's Wyckoff sets for all
230 groups). The tables of the 230 default settings (the ones spglib standardises to) are
shipped with the package (``wyckoff_letters.json.gz``, made by ``scripts/make_wyckoff_tables.py``);
a setting missing from it is computed on first use (0.02-0.5 s) and kept for the process's life.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import spglib

from mliap_tui.core.geometry import lattice_from_parameters
from mliap_tui.core.vocab import DEFAULT_ANGLE_TOLERANCE_DEG, DEFAULT_SYMPREC_ANG

# spglib's C library prints "spglib: ssm_get_exact_positions failed." and the like to the
# process's stderr for a few borderline cells (3 of the 22k shared MP crystals), which would
# scribble over the TUI. It reads this variable at every call; a value set by the user wins.
os.environ.setdefault("SPGLIB_WARNING", "OFF")

# DEFAULT_SYMPREC_ANG (0.1 Å) and DEFAULT_ANGLE_TOLERANCE_DEG (5 degrees) come from the
# vocabulary: 5 degrees is pymatgen's SpacegroupAnalyzer default and so the Materials Project's.
# spglib's own default (-1) ignores it, which reads a few slightly sheared MP cells one group
# lower than MP does.

#: The symmetry columns of the materials table, in cache.MATERIALS_COLUMNS order.
SYMMETRY_COLUMNS: tuple[str, ...] = (
    "symprec_ang",
    "spacegroup_number",
    "spacegroup_symbol",
    "crystal_system",
    "wyckoff",
    "lattice_dof",
    "wyckoff_dof",
    "total_dof",
    "polar_dof",
)

#: spglib's Wyckoff letters in order (group 47, Pmmm, has 27 positions: a..z then A).
_LETTER_ORDER = "abcdefghijklmnopqrstuvwxyzA"

#: Highest space-group number of each crystal system.
_SYSTEM_UPPER_BOUNDS = (
    (2, "triclinic"),
    (15, "monoclinic"),
    (74, "orthorhombic"),
    (142, "tetragonal"),
    (167, "trigonal"),
    (194, "hexagonal"),
    (230, "cubic"),
)

_LATTICE_DOF = {
    "triclinic": 6,
    "monoclinic": 4,
    "orthorhombic": 3,
    "tetragonal": 2,
    "trigonal": 2,  # a, c in hexagonal axes (equivalently a, alpha in rhombohedral axes)
    "hexagonal": 2,
    "cubic": 1,
}


class SymmetryError(ValueError):
    """spglib could not analyse a cell (overlapping atoms, degenerate lattice, ...)."""


@dataclass(frozen=True)
class WyckoffOrbit:
    """One occupied crystallographic orbit.

    ``multiplicity`` is the orbit's number of sites in the conventional standard cell (so it is
    the number printed in the International Tables, e.g. 4 for the O of rutile at 4f);
    ``n_free`` the free fractional coordinates of the Wyckoff position (0..3);
    ``site_indices`` the indices of the orbit's atoms in the cell that was analysed.
    """

    letter: str
    multiplicity: int
    element: str
    n_free: int
    site_symmetry: str
    site_indices: tuple[int, ...]

    @property
    def label(self) -> str:
        """'4f:O' style label (multiplicity + letter : element)."""
        return f"{self.multiplicity}{self.letter}:{self.element}"


def _orbit_sort_key(orbit: WyckoffOrbit) -> tuple:
    letter_rank = _LETTER_ORDER.find(orbit.letter)
    return (letter_rank if letter_rank >= 0 else len(_LETTER_ORDER), orbit.letter, orbit.element,
            orbit.site_indices)


@dataclass(frozen=True)
class SymmetryInfo:
    """Symmetry of one crystal at tolerance ``symprec_ang`` (Å). See the module docstring."""

    symprec_ang: float
    spacegroup_number: int
    spacegroup_symbol: str
    crystal_system: str
    orbits: tuple[WyckoffOrbit, ...]
    lattice_dof: int
    wyckoff_dof: int
    total_dof: int
    polar_dof: int

    def wyckoff_string(self) -> str:
        """Occupied orbits as 'mult+letter:element' joined by spaces, sorted by letter then
        element, e.g. '2a:Ti 4f:O'. An orbit occupied twice (two O at 4e) appears twice."""
        return " ".join(o.label for o in sorted(self.orbits, key=_orbit_sort_key))

    def columns(self) -> dict[str, Any]:
        """The symmetry columns of the materials table (cache.MATERIALS_COLUMNS), exactly."""
        return {
            "symprec_ang": float(self.symprec_ang),
            "spacegroup_number": int(self.spacegroup_number),
            "spacegroup_symbol": self.spacegroup_symbol,
            "crystal_system": self.crystal_system,
            "wyckoff": self.wyckoff_string(),
            "lattice_dof": int(self.lattice_dof),
            "wyckoff_dof": int(self.wyckoff_dof),
            "total_dof": int(self.total_dof),
            "polar_dof": int(self.polar_dof),
        }


def crystal_system(spacegroup_number: int) -> str:
    """Crystal system ('triclinic' ... 'cubic') of an international space-group number 1-230."""
    number = int(spacegroup_number)
    if not 1 <= number <= 230:
        raise ValueError(f"space-group number must be 1-230, got {spacegroup_number!r}")
    for upper, name in _SYSTEM_UPPER_BOUNDS:
        if number <= upper:
            return name
    raise AssertionError("unreachable")  # pragma: no cover


def lattice_dof(crystal_system: str) -> int:
    """Free lattice parameters of a crystal system (triclinic 6 ... cubic 1)."""
    try:
        return _LATTICE_DOF[crystal_system]
    except KeyError:
        raise ValueError(
            f"unknown crystal system {crystal_system!r}; expected one of {', '.join(_LATTICE_DOF)}"
        ) from None


def fixed_subspace_dim(rotations: np.ndarray) -> int:
    """Dimension of the subspace left invariant by every 3x3 matrix in ``rotations``
    (3 - rank of the stacked ``R - I``). Integer matrices in any basis; the result is basis-free."""
    rot = np.asarray(rotations, dtype=float).reshape(-1, 3, 3)
    if rot.shape[0] == 0:
        return 3
    stacked = (rot - np.eye(3)).reshape(-1, 3)
    return 3 - int(np.linalg.matrix_rank(stacked, tol=1e-6))


def site_stabiliser_mask(
    lattice_ang: np.ndarray,
    frac_coords: np.ndarray,
    site: int,
    orbit_sites: Sequence[int],
    rotations: np.ndarray,
    translations: np.ndarray,
) -> np.ndarray:
    """Boolean mask over the operations (R, t) (fractional, basis of ``lattice_ang``) that map atom ``site``
    onto itself modulo a lattice vector.

    An operation belongs to the stabiliser when the image ``R x + t`` of the site is nearer (in Å,
    after wrapping the fractional difference into [-0.5, 0.5)) to the site itself than to any other
    atom of its orbit. No distance threshold is needed, so it works for structures that are only
    symmetric within a tolerance and for any cell shape.
    """
    x = np.asarray(frac_coords[site], dtype=float)
    images = np.einsum("kij,j->ki", rotations, x) + translations  # (n_ops, 3)
    others = np.asarray(frac_coords, dtype=float)[list(orbit_sites)]  # (m, 3)
    diff = images[:, None, :] - others[None, :, :]
    diff -= np.round(diff)
    dist = np.linalg.norm(diff @ np.asarray(lattice_ang, dtype=float), axis=-1)  # (n_ops, m)
    self_col = list(orbit_sites).index(site)
    return np.argmin(dist, axis=1) == self_col


def spglib_dataset(
    lattice: np.ndarray,
    frac: np.ndarray,
    numbers: np.ndarray,
    symprec_ang: float,
    angle_tolerance_deg: float = -1.0,
):
    """spglib dataset or SymmetryError carrying spglib's own message."""
    cell = (lattice, frac, numbers)
    kw = {"symprec": symprec_ang, "angle_tolerance": angle_tolerance_deg}
    try:
        dataset = spglib.get_symmetry_dataset(cell, **kw, _throw=True)
    except TypeError as exc:  # spglib without the private _throw keyword (< 2.5): old error API
        if "_throw" not in str(exc):
            raise
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            dataset = spglib.get_symmetry_dataset(cell, **kw)
            message = spglib.get_error_message() if dataset is None else ""
        if dataset is None:
            raise SymmetryError(f"spglib failed: {message or 'no symmetry dataset'}") from None
    except Exception as exc:  # SpglibError / SpglibCppError
        raise SymmetryError(f"spglib failed: {exc}") from None
    if dataset is None:  # pragma: no cover - defensive
        raise SymmetryError("spglib failed: no symmetry dataset")
    return dataset


# ---- Wyckoff letters up to the normalizer ------------------------------------------------------
#
# spglib names the Wyckoff positions in *one* of the equally valid descriptions of a crystal: a
# different origin or axis order of the same crystal gives other letters (P6_3/mmc 2c <-> 2d,
# Pmmm 1b/1c/1e under axis permutations, ...), and which one spglib picks depends on the cell it
# is given. The descriptions are related by the normalizer of the space group, which permutes the
# Wyckoff positions. We compute that permutation group once per space group (spglib's default
# setting) and report the lexicographically smallest description, so the letters are the same
# whatever cell of the crystal is given.
#
# Everything is exact on a fractional grid (1/D)^3 with D = 16 (every database translation is a
# multiple of 1/4, special coordinates a multiple of 1/8) or D = 12 for hexagonal axes (1/3, 1/6):
#   1. Wyckoff positions = classes of grid points: two points are in one position when one is an
#      image of the other under G, or when both have the same stabiliser (modulo lattice
#      translations) and lie on one lattice translate of its fixed subspace;
#   2. letters: spglib reads a probe crystal with one orbit per class (a distinct element each);
#   3. normalizer elements (P, p): P an isometry of the holohedral lattice of the crystal family
#      (triclinic -1, monoclinic 2/m, orthorhombic to cubic the 48 signed axis permutations,
#      hexagonal axes 6/mmm) with P G P^-1 = G for a grid translation p; each maps the class of
#      q to the class of P q + p. (This is the Euclidean normalizer for the general metric of
#      ITA Table 3.5.2, plus axis permutations for the orthorhombic groups.)


def _grid_size(crystal_system: str) -> int:
    """Denominator D of the exact fractional grid used for a crystal system."""
    return 12 if crystal_system in ("trigonal", "hexagonal") else 16


@lru_cache(maxsize=None)
def hall_operations(hall_number: int) -> tuple[np.ndarray, np.ndarray]:
    """(rotations (n,3,3), fractional translations (n,3)) of spglib's database operations of a
    Hall number: conventional cell, centring translations included. Cached; read-only arrays."""
    with warnings.catch_warnings():  # spglib >= 2.7 warns about its old error API on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        ops = spglib.get_symmetry_from_database(int(hall_number))
    if ops is None:  # pragma: no cover - every Hall number 1-530 is in spglib's database
        raise SymmetryError(f"spglib has no operations for Hall number {hall_number}")
    rot = np.array(ops["rotations"], dtype=float)
    trans = np.array(ops["translations"], dtype=float)
    rot.flags.writeable = trans.flags.writeable = False
    return rot, trans


def _hall_ops_grid(hall_number: int, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """(rotations int (n,3,3), translations in 1/grid units int (n,3)) of spglib's database
    operations for ``hall_number`` (conventional cell, centring translations included)."""
    rot_float, trans = hall_operations(hall_number)
    rot = np.rint(rot_float).astype(np.int64)
    t = trans * grid
    t_grid = np.rint(t).astype(np.int64)
    if not np.allclose(t, t_grid, atol=1e-6):  # pragma: no cover - checked for all Hall numbers
        raise SymmetryError(f"translations of Hall number {hall_number} are not on the 1/{grid} grid")
    return rot, t_grid % grid


def _op_codes(rot: np.ndarray, t_grid: np.ndarray, grid: int) -> np.ndarray:
    """One int64 per operation (rotation entries -4..4, translation on the 1/grid lattice mod 1);
    -1 when a rotation entry is out of range (no crystallographic operation has one)."""
    rot = np.asarray(rot, dtype=np.int64).reshape(-1, 9)
    t = np.asarray(t_grid, dtype=np.int64).reshape(-1, 3) % grid
    ok = (np.abs(rot) <= 4).all(axis=1)
    r_code = ((rot + 4) * (9 ** np.arange(9))).sum(axis=1)
    t_code = (t * (grid ** np.arange(3))).sum(axis=1)
    return np.where(ok, r_code * grid**3 + t_code, -1)


def _grid_index(points_grid: np.ndarray, grid: int) -> np.ndarray:
    """Index into the flattened (1/grid)^3 grid of integer grid coordinates (reduced mod grid)."""
    p = np.asarray(points_grid, dtype=np.int64)
    return (p[..., 0] * grid + p[..., 1]) * grid + p[..., 2]


def _fixed_lattice_basis(rotations: np.ndarray) -> np.ndarray:
    """Basis (rows) of the integer lattice of vectors fixed by every rotation given, i.e. the
    directions of the free coordinates of a site with that site symmetry: successive shortest
    vectors with entries in -2..2, enough for crystallographic rotations."""
    a = (np.asarray(rotations, dtype=np.int64) - np.eye(3, dtype=np.int64)).reshape(-1, 3)
    dim = 3 - int(np.linalg.matrix_rank(a.astype(float)))
    if dim in (0, 3):
        return np.eye(3, dtype=np.int64)[:dim]
    r = np.arange(-2, 3)
    cand = np.stack(np.meshgrid(r, r, r, indexing="ij"), axis=-1).reshape(-1, 3)
    cand = cand[(cand != 0).any(axis=1) & (cand @ a.T == 0).all(axis=1)]
    cand = cand[np.argsort((cand**2).sum(axis=1), kind="stable")]
    basis: list[np.ndarray] = []
    for v in cand:
        if np.linalg.matrix_rank(np.array(basis + [v], dtype=float)) == len(basis) + 1:
            basis.append(v)
            if len(basis) == dim:
                break
    return np.array(basis, dtype=np.int64)


def _connected_labels(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest node of the connected component of each node 0..n-1 of the graph with edges
    (a[k], b[k])."""
    parent = np.arange(n)
    while True:
        pa, pb = parent[a], parent[b]
        lo, hi = np.minimum(pa, pb), np.maximum(pa, pb)
        diff = lo != hi
        if not diff.any():
            return parent
        np.minimum.at(parent, hi[diff], lo[diff])
        while True:
            jumped = parent[parent]
            if (jumped == parent).all():
                break
            parent = jumped


@lru_cache(maxsize=None)
def _holohedry_candidates(crystal_system: str) -> np.ndarray:
    """Integer matrices P (entries -1..1) allowed as linear parts of normalizer elements: -1 for
    triclinic, 2/m (b unique) for monoclinic, the 48 signed axis permutations for orthorhombic to
    cubic, 6/mmm in hexagonal axes for trigonal and hexagonal."""
    if crystal_system == "triclinic":
        return np.array([np.eye(3), -np.eye(3)], dtype=np.int64)
    if crystal_system == "monoclinic":
        signs = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1], indexing="ij")).reshape(3, -1).T
        return np.array([np.diag(s) for s in signs], dtype=np.int64)
    hexagonal = crystal_system in ("trigonal", "hexagonal")
    metric = np.array([[1.0, -0.5, 0.0], [-0.5, 1.0, 0.0], [0.0, 0.0, 1.0]]) if hexagonal else np.eye(3)
    vals = np.array(np.meshgrid(*[[-1, 0, 1]] * 9, indexing="ij")).reshape(9, -1).T.reshape(-1, 3, 3)
    keep = np.abs(np.einsum("nji,jk,nkl->nil", vals, metric, vals) - metric).max(axis=(1, 2)) < 1e-9
    return vals[keep].astype(np.int64)


_PROBE_LATTICES = {
    # generic metrics (lengths Å, angles degrees) in spglib's default settings (monoclinic: b unique)
    "triclinic": (5.1, 6.2, 7.3, 81.0, 76.0, 68.0),
    "monoclinic": (5.1, 6.2, 7.3, 90.0, 103.0, 90.0),
    "orthorhombic": (5.1, 6.2, 7.3, 90.0, 90.0, 90.0),
    "tetragonal": (5.1, 5.1, 7.3, 90.0, 90.0, 90.0),
    "trigonal": (5.1, 5.1, 7.3, 90.0, 90.0, 120.0),
    "hexagonal": (5.1, 5.1, 7.3, 90.0, 90.0, 120.0),
    "cubic": (6.1, 6.1, 6.1, 90.0, 90.0, 90.0),
}


@dataclass(frozen=True)
class _LetterSymmetry:
    """Per space group: the permutations of its Wyckoff letters induced by the normalizer (dicts,
    identity first, closed under composition) and the site-symmetry symbol of each letter."""

    permutations: tuple[dict[str, str], ...]
    site_symmetry: dict[str, str]


def _wyckoff_classes(rot: np.ndarray, t_grid: np.ndarray, grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grid points (m,3) int, class label of each point 0..k-1, stabiliser order of each point)."""
    g = np.arange(grid, dtype=np.int64)
    points = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    n_points = len(points)
    moved = np.rint(rot.reshape(-1, 3).astype(float) @ points.T.astype(float)).astype(np.int64)
    moved = moved.reshape(len(rot), 3, n_points).transpose(0, 2, 1) + t_grid[:, None, :]
    images = _grid_index(moved % grid, grid)  # (n_ops, n_points): index of g(point)
    del moved
    stab = images == np.arange(n_points)[None, :]  # (n_ops, n_points)
    orbit_min = images.min(axis=0)  # the G-orbit of a point, named by its smallest index
    sigs, sig_of_point = np.unique(np.ascontiguousarray(np.packbits(stab, axis=0).T), axis=0, return_inverse=True)
    sig_of_point = sig_of_point.ravel()
    members = np.unpackbits(sigs, axis=1)[:, : len(rot)].astype(bool)
    edges_a, edges_b = [], []
    for u in range(len(sigs)):
        basis = _fixed_lattice_basis(rot[members[u]])
        if len(basis) in (0, 3):  # isolated points: the orbit says it all; general: one class
            continue
        on = np.flatnonzero(sig_of_point == u)
        steps = np.stack(np.meshgrid(*[g] * len(basis), indexing="ij"), axis=-1).reshape(-1, len(basis))
        reach = _grid_index((points[on][:, None, :] + (steps @ basis)[None]) % grid, grid)
        reach = np.where(sig_of_point[reach] == u, orbit_min[reach], n_points).min(axis=1)
        edges_a.append(orbit_min[on])
        edges_b.append(reach)
    general = np.flatnonzero(stab.sum(axis=0) == 1)
    if len(general):
        edges_a.append(orbit_min[general])
        edges_b.append(np.full(len(general), orbit_min[general[0]]))
    a = np.concatenate(edges_a) if edges_a else np.zeros(0, np.int64)
    b = np.concatenate(edges_b) if edges_b else np.zeros(0, np.int64)
    labels = _connected_labels(n_points, a, b)[orbit_min]
    _, classes = np.unique(labels, return_inverse=True)
    return points, classes.ravel(), stab.sum(axis=0)


#: Hall number -> its letter table, filled on demand (and by symmetry_columns from its workers).
_LETTER_TABLES: dict[int, _LetterSymmetry] = {}
#: The precomputed tables shipped with the package (scripts/make_wyckoff_tables.py).
LETTER_TABLES_FILE = "wyckoff_letters.json.gz"


@lru_cache(maxsize=1)
def shipped_letter_tables() -> dict[int, _LetterSymmetry]:
    """Hall number -> letter table, read once from the package's ``wyckoff_letters.json.gz``
    ({} when the file is missing: every table is then computed on first use)."""
    import gzip
    import json
    from importlib import resources

    ref = resources.files("mliap_tui.symmetry").joinpath(LETTER_TABLES_FILE)
    if not ref.is_file():
        return {}
    with ref.open("rb") as fh, gzip.open(fh, "rt") as text:
        raw = json.load(text)
    return {int(h): letter_table_from_dict(d) for h, d in raw["tables"].items()}


def letter_table_to_dict(table: _LetterSymmetry) -> dict[str, Any]:
    return {"permutations": [dict(p) for p in table.permutations], "site_symmetry": dict(table.site_symmetry)}


def letter_table_from_dict(d: Mapping[str, Any]) -> _LetterSymmetry:
    return _LetterSymmetry(permutations=tuple(dict(p) for p in d["permutations"]), site_symmetry=dict(d["site_symmetry"]))


def _letter_symmetry(hall_number: int) -> _LetterSymmetry:
    """The letter table of a Hall number: shipped, or computed once per process (0.02-0.5 s)."""
    hall_number = int(hall_number)
    table = _LETTER_TABLES.get(hall_number)
    if table is None:
        table = shipped_letter_tables().get(hall_number) or _compute_letter_symmetry(hall_number)
        _LETTER_TABLES[hall_number] = table
    return table


def _compute_letter_symmetry(hall_number: int) -> _LetterSymmetry:
    """Normalizer-induced permutations of the Wyckoff letters of spglib's ``hall_number`` setting
    (see the block comment above). Raises SymmetryError if the probe crystal is misread."""
    number = _spacegroup_number_of_hall(hall_number)
    system = crystal_system(number)
    grid = _grid_size(system)
    rot, t_grid = _hall_ops_grid(hall_number, grid)
    points, classes, stab_order = _wyckoff_classes(rot, t_grid, grid)
    n_cls = int(classes.max()) + 1
    rep = np.array([np.flatnonzero(classes == k)[0] for k in range(n_cls)])

    # 2. letters: a probe crystal with one orbit per class, plus a second general orbit (one
    #    general orbit alone can have extra symmetry: a single atom in P1 is P-1)
    rng = np.random.default_rng(hall_number)
    frac, numbers, first_atom = [], [], []
    for k in list(range(n_cls)) + [-1]:
        if k == -1 or stab_order[rep[k]] == 1:  # off-grid generic point: no accidental symmetry
            if k == -1 and not any(stab_order[rep[j]] == 1 for j in range(n_cls)):
                continue
            orbit = (np.einsum("nij,j->ni", rot, rng.uniform(0.0, 1.0, 3)) + t_grid / grid) % 1.0
            orbit = np.unique(np.round(orbit, 9) % 1.0, axis=0)
        else:
            orbit = np.unique((np.einsum("nij,j->ni", rot, points[rep[k]]) + t_grid) % grid, axis=0) / grid
        if k >= 0:
            first_atom.append(len(frac))
        frac.extend(orbit.tolist())
        numbers.extend([k % (n_cls + 1) + 1] * len(orbit))
    lattice = lattice_from_parameters(*_PROBE_LATTICES[system])
    ds = spglib_dataset(lattice, np.array(frac), np.array(numbers, dtype=np.intc), 1e-4)
    names = [str(ds.wyckoffs[i]) for i in first_atom]
    if int(ds.number) != number or len(set(names)) != n_cls:  # pragma: no cover - tested for all 230
        raise SymmetryError(f"Wyckoff probe of space group {number} read as {ds.number} with letters {names}")
    site_symmetry = {names[k]: str(ds.site_symmetry_symbols[i]) for k, i in enumerate(first_atom)}

    # 3. normalizer elements (P, p) and the class permutations they induce
    codes = _op_codes(rot, t_grid, grid)
    code_set = np.sort(codes)
    rot_codes = set((codes // grid**3).tolist())
    eye = np.eye(3, dtype=np.int64)
    reps = points[rep]
    # one operation per rotation plus the centring translations generate G with the lattice
    _, first_of_rot = np.unique(codes // grid**3, return_index=True)
    pure = np.flatnonzero((rot == eye).all(axis=(1, 2)))
    check = np.union1d(first_of_rot, pure)
    perms = set()
    for P in _holohedry_candidates(system):
        p_inv = np.rint(np.linalg.inv(P)).astype(np.int64)
        r_new = np.einsum("ij,njk,kl->nil", P, rot[check], p_inv)
        if not set((_op_codes(r_new, np.zeros((len(check), 3), np.int64), grid) // grid**3).tolist()) <= rot_codes:
            continue
        t_moved = t_grid[check] @ P.T
        p_ok = points
        for chunk in (slice(0, 2), slice(2, 6), slice(6, None)):  # P g P^-1 + (I - R') p in G
            r_c, t_c = r_new[chunk], t_moved[chunk]
            if not len(r_c) or not len(p_ok):
                continue
            shift = (eye - r_c).reshape(-1, 3).astype(float) @ p_ok.T.astype(float)
            t_new = t_c[:, None, :] + np.rint(shift).astype(np.int64).reshape(len(r_c), 3, -1).transpose(0, 2, 1)
            r_code = _op_codes(r_c, np.zeros((len(r_c), 3), np.int64), grid)  # translation 0
            c = r_code[:, None] + ((t_new % grid) * grid ** np.arange(3)).sum(axis=-1)
            pos = np.clip(np.searchsorted(code_set, c), 0, len(code_set) - 1)
            p_ok = p_ok[(code_set[pos] == c).all(axis=0)]
        if len(p_ok):
            moved = ((reps @ P.T)[None, :, :] + p_ok[:, None, :]) % grid
            for row in np.unique(classes[_grid_index(moved, grid)], axis=0):
                perms.add(tuple(row.tolist()))
    group = set(perms) | {tuple(range(n_cls))}
    frontier = list(group)
    while frontier:  # closure under composition (a guard; the set found is a group already)
        new = []
        for a in frontier:
            for b in perms:
                ab = tuple(a[b[k]] for k in range(n_cls))
                if ab not in group:
                    group.add(ab)
                    new.append(ab)
        frontier = new
    ordered = sorted(group, key=lambda t: (t != tuple(range(n_cls)), t))
    permutations = tuple({names[k]: names[perm[k]] for k in range(n_cls)} for perm in ordered)
    return _LetterSymmetry(permutations=permutations, site_symmetry=site_symmetry)


@lru_cache(maxsize=None)
def _spacegroup_number_of_hall(hall_number: int) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return int(spglib.get_spacegroup_type(int(hall_number)).number)


@lru_cache(maxsize=None)
def _default_hall_number(spacegroup_number: int) -> int:
    """spglib's default Hall number (setting) of a space-group number: its first one."""
    number = int(spacegroup_number)
    crystal_system(number)  # range check
    return next(h for h in range(1, 531) if _spacegroup_number_of_hall(h) == number)


def wyckoff_letter_permutations(spacegroup_number: int) -> tuple[dict[str, str], ...]:
    """Permutations of the Wyckoff letters of a space group induced by its normalizer (identity
    first): renaming the letters of a crystal by any of them describes the same crystal. Computed
    from spglib's default setting; cached per process."""
    return _letter_symmetry(_default_hall_number(spacegroup_number)).permutations


def _with_canonical_letters(info: SymmetryInfo, table: _LetterSymmetry) -> SymmetryInfo:
    """``info`` with its orbits renamed by the normalizer permutation giving the smallest
    description (sorted (letter, element) list) and the site-symmetry symbols of the new letters."""
    orbits = list(info.orbits)
    if len(table.permutations) > 1:

        def key(perm: dict[str, str]) -> list:
            return sorted((_LETTER_ORDER.find(perm[o.letter]), o.element) for o in orbits)

        best = min(table.permutations, key=key)
        orbits = [
            replace(o, letter=new, site_symmetry=table.site_symmetry.get(new, o.site_symmetry))
            for o, new in ((o, best[o.letter]) for o in orbits)
        ]
    return replace(info, orbits=tuple(sorted(orbits, key=_orbit_sort_key)))


def analyze_cell(
    lattice_ang: np.ndarray,
    species: Sequence[str],
    frac_coords: np.ndarray,
    symprec_ang: float = DEFAULT_SYMPREC_ANG,
    *,
    angle_tolerance_deg: float = DEFAULT_ANGLE_TOLERANCE_DEG,
) -> SymmetryInfo:
    """Symmetry and DOF of a periodic cell.

    ``lattice_ang``: 3x3 lattice, row vectors (Å) (or 9 floats); ``species``: element symbol per
    site; ``frac_coords``: n x 3 fractional coordinates (or 3n floats); ``symprec_ang``: spglib
    distance tolerance (Å); ``angle_tolerance_deg``: spglib angle tolerance (degrees, -1 = spglib's
    own rule). Raises SymmetryError when spglib cannot analyse the cell.
    """
    info, hall_number = _analyze_raw(lattice_ang, species, frac_coords, symprec_ang, angle_tolerance_deg)
    return _with_canonical_letters(info, _letter_symmetry(hall_number))


def _cell_arrays(lattice_ang, species, frac_coords) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """(3x3 lattice, n x 3 fractional coordinates, species, spglib type numbers) of a cell, checked
    (SymmetryError: species and sites disagree, no site, non-finite values)."""
    lattice = np.asarray(lattice_ang, dtype=float).reshape(3, 3)
    frac = np.asarray(frac_coords, dtype=float).reshape(-1, 3)
    species = [str(s) for s in species]
    if len(species) != len(frac):
        raise SymmetryError(f"{len(species)} species for {len(frac)} sites")
    if len(species) == 0:
        raise SymmetryError("cell has no sites")
    if not (np.isfinite(lattice).all() and np.isfinite(frac).all()):
        raise SymmetryError("non-finite lattice or coordinates")
    kinds = {s: i + 1 for i, s in enumerate(dict.fromkeys(species))}
    return lattice, frac, species, np.array([kinds[s] for s in species], dtype=np.intc)


def _analyze_raw(
    lattice_ang, species, frac_coords, symprec_ang: float, angle_tolerance_deg: float
) -> tuple[SymmetryInfo, int]:
    """:func:`analyze_cell` with spglib's own letters (not yet canonical) and the Hall number."""
    lattice, frac, species, numbers = _cell_arrays(lattice_ang, species, frac_coords)
    if not symprec_ang > 0:
        raise ValueError(f"symprec_ang must be > 0 Å, got {symprec_ang!r}")
    ds = spglib_dataset(lattice, frac, numbers, float(symprec_ang), float(angle_tolerance_deg))

    number = int(ds.number)
    system = crystal_system(number)
    # Count in the conventional standard cell with the space group's operations from spglib's
    # database (setting ds.hall_number, centring translations included). The input cell's own
    # operations are not enough: a supercell such as 2x1x3 of a tetragonal crystal keeps only the
    # operations whose rotation is integral in its basis (8 of 16 for rutile).
    hall_number = int(ds.hall_number)
    rotations, translations = hall_operations(hall_number)
    std_lattice = np.asarray(ds.std_lattice, dtype=float)
    std_positions = np.asarray(ds.std_positions, dtype=float)
    std_of_prim: dict[int, list[int]] = {}
    for j, p in enumerate(np.asarray(ds.std_mapping_to_primitive).tolist()):
        std_of_prim.setdefault(p, []).append(j)
    input_to_prim = np.asarray(ds.mapping_to_primitive).tolist()

    sites_of_orbit: dict[int, list[int]] = {}
    for i, rep in enumerate(np.asarray(ds.crystallographic_orbits).tolist()):
        sites_of_orbit.setdefault(rep, []).append(i)
    orbits = []
    for rep, sites in sorted(sites_of_orbit.items()):
        std_sites = sorted({j for i in sites for j in std_of_prim.get(input_to_prim[i], ())})
        if not std_sites:  # pragma: no cover - spglib maps every atom into the standard cell
            raise SymmetryError(f"site {rep} has no image in spglib's standard cell")
        mask = site_stabiliser_mask(std_lattice, std_positions, std_sites[0], std_sites, rotations, translations)
        orbits.append(
            WyckoffOrbit(
                letter=str(ds.wyckoffs[rep]),
                multiplicity=len(std_sites),
                element=species[rep],
                n_free=_fixed_dim_cached(hall_number, mask.tobytes(), rotations),
                site_symmetry=str(ds.site_symmetry_symbols[rep]),
                site_indices=tuple(sites),
            )
        )
    lat_dof = lattice_dof(system)
    wyk_dof = sum(o.n_free for o in orbits)
    info = SymmetryInfo(
        symprec_ang=float(symprec_ang),
        spacegroup_number=number,
        spacegroup_symbol=str(ds.international),
        crystal_system=system,
        orbits=tuple(orbits),
        lattice_dof=lat_dof,
        wyckoff_dof=wyk_dof,
        total_dof=lat_dof + wyk_dof,
        polar_dof=_fixed_dim_cached(hall_number, b"all", rotations),
    )
    return info, hall_number


_FIXED_DIMS: dict[tuple[int, bytes], int] = {}


def _fixed_dim_cached(hall_number: int, mask_bytes: bytes, rotations: np.ndarray) -> int:
    """fixed_subspace_dim of the rotations selected by a stabiliser mask (b"all": every one),
    memoised per (Hall number, mask): the same few site symmetries recur in every crystal."""
    key = (hall_number, mask_bytes)
    dim = _FIXED_DIMS.get(key)
    if dim is None:
        chosen = rotations if mask_bytes == b"all" else rotations[np.frombuffer(mask_bytes, dtype=bool)]
        dim = _FIXED_DIMS[key] = fixed_subspace_dim(chosen)
    return dim


def analyze_structure(
    structure,
    symprec_ang: float = DEFAULT_SYMPREC_ANG,
    *,
    angle_tolerance_deg: float = DEFAULT_ANGLE_TOLERANCE_DEG,
) -> SymmetryInfo:
    """:func:`analyze_cell` of an ordered pymatgen ``Structure`` (species are element symbols;
    oxidation states are ignored). Raises SymmetryError for a disordered structure."""
    species = []
    for i, site in enumerate(structure):
        if not site.is_ordered:
            raise SymmetryError(f"site {i} ({site.species_string}) is disordered: need an ordered structure")
        sp = site.specie
        el = getattr(sp, "element", sp)
        species.append(getattr(el, "symbol", str(el)))
    return analyze_cell(
        structure.lattice.matrix,
        species,
        structure.frac_coords,
        symprec_ang,
        angle_tolerance_deg=angle_tolerance_deg,
    )


# ---- symmetry before and after a relaxation ------------------------------------------------------


@lru_cache(maxsize=None)
def point_group_order(hall_number: int) -> int:
    """Number of point-group operations (distinct rotations) of a Hall setting's space group."""
    rotations, _ = hall_operations(hall_number)
    return len({r.astype(np.int8).tobytes() for r in rotations})


def operations_per_cell(
    lattice_ang: np.ndarray,
    species: Sequence[str],
    frac_coords: np.ndarray,
    symprec_ang: float = DEFAULT_SYMPREC_ANG,
    *,
    angle_tolerance_deg: float = DEFAULT_ANGLE_TOLERANCE_DEG,
) -> tuple[int, int]:
    """(space-group number, operations of the space group per cell) of a periodic cell.

    The count is the order of the space group modulo the translations of the cell as given:
    point-group order x (sites in the cell / sites in the primitive cell). Two cells with the same
    atoms (a crystal before and after a relaxation, which keeps the cell's atoms) compare by it:
    a proper subgroup has strictly fewer operations per cell, a proper supergroup strictly more.
    Unlike ``len(spglib rotations)`` it counts operations that are not integral in the cell's
    basis too (a 2x1x3 supercell of rutile sees only 8 of its 16). Raises SymmetryError when
    spglib cannot analyse the cell.
    """
    lattice, frac, species, numbers = _cell_arrays(lattice_ang, species, frac_coords)
    ds = spglib_dataset(lattice, frac, numbers, float(symprec_ang), float(angle_tolerance_deg))
    n_primitive = len(set(np.asarray(ds.mapping_to_primitive).tolist()))
    return int(ds.number), point_group_order(int(ds.hall_number)) * len(species) // max(n_primitive, 1)


def symmetry_change(number_before: int | None, ops_before: int | None, number_after: int | None,
                    ops_after: int | None) -> str:
    """How a relaxation changed the space group (a :class:`~mliap_tui.core.vocab.SymmetryChange`
    value), from the numbers and :func:`operations_per_cell` of the cell before and after: fewer
    operations is 'lowered', more is 'raised', the same group 'kept', another group with as many
    operations 'changed'; 'unknown' when a value is missing."""
    from mliap_tui.core.vocab import SymmetryChange

    if None in (number_before, ops_before, number_after, ops_after):
        return SymmetryChange.UNKNOWN.value
    if ops_after < ops_before:
        return SymmetryChange.LOWERED.value
    if ops_after > ops_before:
        return SymmetryChange.RAISED.value
    return (SymmetryChange.KEPT if number_after == number_before else SymmetryChange.CHANGED).value


# ---- many rows -----------------------------------------------------------------------------


def error_columns(message: str, symprec_ang: float) -> dict[str, Any]:
    """The result dict of a row that could not be analysed: every symmetry column None (except
    ``symprec_ang``) plus an ``error`` key holding the one-line reason."""
    out: dict[str, Any] = {name: None for name in SYMMETRY_COLUMNS}
    out["symprec_ang"] = float(symprec_ang)
    out["error"] = message
    return out


def _raw_of_chunk(chunk: list[tuple]) -> list[tuple[SymmetryInfo, int] | str]:
    """Worker task: (info with spglib's letters, Hall number) per row, or the error message."""
    out: list[tuple[SymmetryInfo, int] | str] = []
    for lattice, species, frac, symprec_ang, angle_tolerance_deg in chunk:
        try:
            out.append(_analyze_raw(lattice, species, frac, symprec_ang, angle_tolerance_deg))
        except (SymmetryError, ValueError) as exc:
            out.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return out


def _row_args(row: Mapping[str, Any], symprec_ang: float, angle_tolerance_deg: float) -> tuple:
    """Compact picklable (lattice 9 floats, species, frac 3n floats, tolerances) of a row."""
    lattice = np.asarray(row["lattice_ang"], dtype=float).ravel()
    frac = np.asarray(row["frac_coords"], dtype=float).ravel()
    return (lattice, list(row["species"]), frac, float(symprec_ang), float(angle_tolerance_deg))


#: Below this many rows a process pool costs more than it saves.
_MIN_ROWS_FOR_POOL = 64


def symmetry_columns(
    rows: Iterable[Mapping[str, Any]],
    symprec_ang: float = DEFAULT_SYMPREC_ANG,
    n_jobs: int | None = None,
    chunk_size: int = 256,
    *,
    angle_tolerance_deg: float = DEFAULT_ANGLE_TOLERANCE_DEG,
) -> list[dict[str, Any]]:
    """Symmetry columns (:meth:`SymmetryInfo.columns`) of materials-table rows, in row order.

    Each row needs ``lattice_ang`` (9 floats, Å), ``species`` and ``frac_coords`` (3n floats).
    ``n_jobs``: worker processes (None = ``os.cpu_count()``, 1 = in this process); rows go to the
    workers in chunks of ``chunk_size``, then the letter table of every space group met that this
    process does not know yet is built once, in parallel, and kept here for later calls. A row
    that cannot be analysed yields :func:`error_columns` (the symmetry columns as None plus an
    ``error`` key) instead of raising. Workers are spawned (safe with threads in the caller), so a
    script calling this with ``n_jobs != 1`` needs the usual ``if __name__ == "__main__":`` guard.
    """
    if not symprec_ang > 0:
        raise ValueError(f"symprec_ang must be > 0 Å, got {symprec_ang!r}")
    args: list[tuple] = []
    for row in rows:
        try:
            args.append(_row_args(row, symprec_ang, angle_tolerance_deg))
        except (KeyError, TypeError, ValueError) as exc:
            args.append(("bad-row", f"unusable row: {type(exc).__name__}: {exc}"))
    jobs = (os.cpu_count() or 1) if n_jobs is None else max(1, int(n_jobs))
    todo = [a for a in args if not isinstance(a[0], str)]
    if jobs == 1 or len(todo) < _MIN_ROWS_FOR_POOL:
        raw = _raw_of_chunk(todo)
    else:
        chunk_size = max(1, min(int(chunk_size), -(-len(todo) // jobs)))
        chunks = [todo[i : i + chunk_size] for i in range(0, len(todo), chunk_size)]
        # spawn, not fork: the caller may hold threads (polars, torch) that fork would copy locked
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(jobs, len(chunks)), mp_context=ctx) as pool:
            raw = [r for part in pool.map(_raw_of_chunk, chunks) for r in part]
            known = set(_LETTER_TABLES) | set(shipped_letter_tables())
            missing = sorted({r[1] for r in raw if not isinstance(r, str)} - known)
            for hall_number, table in zip(missing, pool.map(_compute_letter_symmetry, missing)):
                _LETTER_TABLES[hall_number] = table
    done = iter(
        error_columns(r, symprec_ang)
        if isinstance(r, str)
        else _with_canonical_letters(r[0], _letter_symmetry(r[1])).columns()
        for r in raw
    )
    return [error_columns(a[1], symprec_ang) if isinstance(a[0], str) else next(done) for a in args]
