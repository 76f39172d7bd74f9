"""Cell geometry shared by import checks, the engine, symmetry and PES slices.

Lattices are 3x3 arrays of row vectors in Å; fractional coordinates are n x 3 in that basis.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def lattice_from_parameters(
    a_ang: float, b_ang: float, c_ang: float, alpha_deg: float, beta_deg: float, gamma_deg: float
) -> np.ndarray:
    """Row-vector lattice (Å) with ``a`` along x and ``b`` in the xy plane (pymatgen's convention).

    Raises ValueError when the angles do not make a cell (no positive volume).
    """
    al, be, ga = np.radians([alpha_deg, beta_deg, gamma_deg])
    cx = c_ang * np.cos(be)
    cy = c_ang * (np.cos(al) - np.cos(be) * np.cos(ga)) / np.sin(ga)
    cz2 = c_ang * c_ang - cx * cx - cy * cy
    if not cz2 > 0:
        raise ValueError(
            f"lattice angles {alpha_deg:g}, {beta_deg:g}, {gamma_deg:g} degrees do not make a cell with a positive volume"
        )
    return np.array([[a_ang, 0.0, 0.0], [b_ang * np.cos(ga), b_ang * np.sin(ga), 0.0], [cx, cy, math.sqrt(cz2)]])


def lattice_angles_deg(lattice_ang: np.ndarray) -> tuple[float, float, float]:
    """(alpha, beta, gamma) in degrees of a row-vector lattice."""
    a, b, c = np.asarray(lattice_ang, dtype=float).reshape(3, 3)

    def ang(u: np.ndarray, v: np.ndarray) -> float:
        return float(np.degrees(np.arccos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v), -1.0, 1.0))))

    return ang(b, c), ang(a, c), ang(a, b)


def cell_heights_ang(lattice_ang: np.ndarray) -> np.ndarray:
    """Distances between opposite faces of the cell (Å), one per lattice direction."""
    return 1.0 / np.linalg.norm(np.linalg.inv(np.asarray(lattice_ang, dtype=float).reshape(3, 3)), axis=0)


def shortest_lattice_vector_ang(lattice_ang: np.ndarray) -> float:
    """Length of the shortest non-zero combination n1 a + n2 b + n3 c with n_i in {-1, 0, 1} (Å).

    This is the distance from an atom to its own nearest periodic image for any cell that is not
    extremely skewed (a Niggli-reduced cell needs no more than these combinations).
    """
    lat = np.asarray(lattice_ang, dtype=float).reshape(3, 3)
    vecs = np.array([n for n in itertools.product((-1, 0, 1), repeat=3) if any(n)], dtype=float) @ lat
    return float(np.linalg.norm(vecs, axis=1).min())


def closest_pair(
    lattice_ang: np.ndarray, frac_coords: np.ndarray, cutoff_ang: float | None = None
) -> tuple[int, int, float]:
    """(i, j, distance in Å) of the closest two atoms, periodic images included (an atom and its
    own image count too: then ``i == j``).

    With ``cutoff_ang`` the answer is exact when some pair is closer than the cutoff, and
    ``(-1, -1, inf)`` otherwise (faster: only pairs within the cutoff are searched).
    """
    lattice = np.asarray(lattice_ang, dtype=float).reshape(3, 3)
    frac = np.asarray(frac_coords, dtype=float).reshape(-1, 3)
    n = len(frac)
    self_image = shortest_lattice_vector_ang(lattice)
    limit = self_image if cutoff_ang is None else min(float(cutoff_ang), self_image)
    best = (-1, -1, math.inf) if cutoff_ang is not None and self_image >= cutoff_ang else (0, 0, self_image)
    if n < 2:
        return best
    if cell_heights_ang(lattice).min() > 2 * limit and n <= 300:
        # only the minimum image can be within the limit: an n x n array is exact
        d = frac[:, None, :] - frac[None, :, :]
        d -= np.round(d)
        cart = d @ lattice
        r2 = np.einsum("ijk,ijk->ij", cart, cart)
        np.fill_diagonal(r2, np.inf)
        k = int(np.argmin(r2))
        i, j = divmod(k, n)
        dist = float(np.sqrt(r2[i, j]))
    else:
        from ase import Atoms
        from ase.neighborlist import neighbor_list

        atoms = Atoms(numbers=np.ones(n, dtype=int), scaled_positions=frac, cell=lattice, pbc=True)
        ii, jj, dd = neighbor_list("ijd", atoms, limit)
        if not len(dd):
            return best
        k = int(np.argmin(dd))
        i, j, dist = int(ii[k]), int(jj[k]), float(dd[k])
    if dist < best[2] and (cutoff_ang is None or dist < cutoff_ang):
        return (min(i, j), max(i, j), dist)
    return best


def min_distance_ang(lattice_ang: np.ndarray, frac_coords: np.ndarray, cutoff_ang: float | None = None) -> float:
    """Shortest interatomic distance (Å), periodic images included.

    With ``cutoff_ang``: exact below the cutoff, ``inf`` when no pair is closer (faster).
    """
    return closest_pair(lattice_ang, frac_coords, cutoff_ang)[2]


__all__ = [
    "cell_heights_ang",
    "closest_pair",
    "lattice_angles_deg",
    "lattice_from_parameters",
    "min_distance_ang",
    "shortest_lattice_vector_ang",
]
