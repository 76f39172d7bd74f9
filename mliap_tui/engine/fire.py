"""FIRE on a Fréchet cell filter, batched over structures: the pure maths of relax mode.

What it reproduces, step for step: ``ase.optimize.FIRE(ase.filters.FrechetCellFilter(atoms))``
with ASE's defaults (dt 0.1, maxstep 0.2 Å, dtmax 1.0, Nmin 5, finc 1.1, fdec 0.5, astart 0.1,
fa 0.99; ``exp_cell_factor`` = number of atoms, no pressure, no mask, no downhill check), for
many structures at once. The in-flight batch that drives it is :mod:`mliap_tui.engine.relax`.

The optimisation variables of one structure are ASE's ``(n + 3, 3)`` filter vector, held here as
struct-of-arrays over a batch: atom rows ``(ΣN, 3)`` with ``atom_structure`` (ΣN,) saying which
structure each row belongs to, and cell rows ``(B, 3, 3)``.

* Atom rows are positions pulled back to the reference cell, ``u = r F^-T`` (Å), where
  ``F = (orig_cell^-1 cell)^T`` is the deformation gradient.
* Cell rows are ``exp_cell_factor * logm(F)``. ASE stores ``exp_cell_factor * logm(n F)``; the
  extra ``exp_cell_factor * ln(n) * I`` is a constant that cancels in every FIRE update.
* Geometry (ASE ``set_positions``): ``F = expm(X / n)``, ``cell = orig_cell F^T``, ``r = u F^T``.
* Filter forces (ASE ``get_forces``): atom rows ``f F``; cell rows ``L_exp(log F)^*[virial F^-T] /
  exp_cell_factor`` with ``virial = -V stress``. ASE evaluates the 9 directional Fréchet
  derivatives with ``scipy.linalg.expm_frechet``; the adjoint identity ``<L_exp(X, E), G> =
  <E, L_exp(X^T, G)>`` gives all 9 at once, as the upper-right block of ``expm([[X^T, G], [0,
  X^T]])``, for the whole batch.
* Convergence (ASE ``Optimizable.converged``): the largest row norm over the ``n + 3`` rows, atom
  rows *and* cell rows, below ``fmax``.
* FIRE's global quantities (power ``P = F.v``, ``|F|``, ``|v|``, the ``maxstep`` cap on ``|dr|``)
  are per structure: segment sums over its atom rows plus its 3 cell rows.

Everything is float64 numpy whatever the model's precision, as in ASE. The matrix exponential is
written out (Padé 13 with scaling and squaring, Higham 2005) because scipy's calls LAPACK per
matrix, and with OpenBLAS's default thread pool on a busy machine that costs 1-5 ms a call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FireParams:
    """ASE FIRE's defaults (``ase/optimize/fire.py``); lengths in Å, times in ASE's FIRE units."""

    dt: float = 0.1
    maxstep_ang: float = 0.2
    dtmax: float = 1.0
    n_min: int = 5
    finc: float = 1.1
    fdec: float = 0.5
    astart: float = 0.1
    fa: float = 0.99
    a: float = 0.1


_PADE13 = np.array([
    64764752532480000.0, 32382376266240000.0, 7771770303897600.0, 1187353796428800.0, 129060195264000.0,
    10559470521600.0, 670442572800.0, 33522128640.0, 1323241920.0, 40840800.0, 960960.0, 16380.0, 182.0, 1.0,
])
_THETA13 = 5.371920351148152


def expm(a: np.ndarray) -> np.ndarray:
    """Matrix exponential of a stack of square matrices ``(..., m, m)``.

    Agrees with ``scipy.linalg.expm`` to ~1e-15 relative on the matrices met here; a matrix with a
    non-finite entry gives NaN (the caller flags that structure as diverged).
    """
    a = np.asarray(a, dtype=float)
    shape = a.shape
    a = a.reshape(-1, shape[-1], shape[-1])
    out = np.full_like(a, np.nan)
    finite = np.isfinite(a).all(axis=(1, 2))
    if finite.any():
        x = a[finite]
        norm1 = np.abs(x).sum(axis=1).max(axis=1)
        s = np.maximum(0, np.ceil(np.log2(np.maximum(norm1, 1e-300) / _THETA13))).astype(int)
        x = x / (2.0**s)[:, None, None]
        b = _PADE13
        ident = np.broadcast_to(np.eye(x.shape[-1]), x.shape)
        x2 = x @ x
        x4 = x2 @ x2
        x6 = x4 @ x2
        u = x @ (x6 @ (b[13] * x6 + b[11] * x4 + b[9] * x2) + b[7] * x6 + b[5] * x4 + b[3] * x2 + b[1] * ident)
        v = x6 @ (b[12] * x6 + b[10] * x4 + b[8] * x2) + b[6] * x6 + b[4] * x4 + b[2] * x2 + b[0] * ident
        r = np.linalg.solve(v - u, v + u)
        for k in range(int(s.max(initial=0))):
            r = np.where((k < s)[:, None, None], r @ r, r)
        out[finite] = r
    return out.reshape(shape)


def deformation_gradient(orig_cell_ang: np.ndarray, cell_ang: np.ndarray) -> np.ndarray:
    """``(B, 3, 3)`` deformation gradients F with ``cell = orig_cell F^T`` (ASE: ``solve(orig, cell).T``)."""
    return np.swapaxes(np.linalg.solve(orig_cell_ang, cell_ang), -1, -2)


def expm_frechet_adjoint(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``(B, 3, 3)`` M with ``M[m, n] = <L_exp(x, E_mn), g>``: the Fréchet derivative of expm at
    ``x^T`` in direction ``g``, the upper-right block of ``expm([[x^T, g], [0, x^T]])``."""
    block = np.zeros((x.shape[0], 6, 6))
    xt = np.swapaxes(x, -1, -2)
    block[:, :3, :3] = xt
    block[:, 3:, 3:] = xt
    block[:, :3, 3:] = g
    return expm(block)[:, :3, 3:]


def filter_forces(
    forces_ev_per_ang: np.ndarray,
    atom_structure: np.ndarray,
    stress_3x3_ev_per_ang3: np.ndarray,
    cell_ang: np.ndarray,
    deform: np.ndarray,
    log_deform: np.ndarray,
    exp_cell_factor: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``FrechetCellFilter.get_forces`` for a batch: (atom rows ``(ΣN, 3)``, cell rows ``(B, 3, 3)``), eV/Å.

    ``forces_ev_per_ang`` stacked over structures, ``atom_structure`` the structure of each atom
    row, ``stress_3x3_ev_per_ang3`` ``(B, 3, 3)`` in ASE sign (positive = tensile), ``deform`` F
    and ``log_deform`` logm(F) ``(B, 3, 3)``, ``exp_cell_factor`` ``(B,)``.
    """
    volume_ang3 = np.abs(np.linalg.det(cell_ang))
    virial_ev = -volume_ang3[:, None, None] * stress_3x3_ev_per_ang3
    cell_gradient = virial_ev @ np.linalg.inv(np.swapaxes(deform, -1, -2))
    cell_rows = expm_frechet_adjoint(log_deform, cell_gradient) / exp_cell_factor[:, None, None]
    atom_rows = np.einsum("ni,nij->nj", forces_ev_per_ang, deform[atom_structure])
    return atom_rows, cell_rows


def segment_sum(values: np.ndarray, segment: np.ndarray, n_segments: int) -> np.ndarray:
    """Sum of ``values`` (N,) per segment id (N,) -> (n_segments,)."""
    return np.bincount(segment, weights=values, minlength=n_segments)


def max_row_norm(atom_rows: np.ndarray, cell_rows: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per structure, the largest row norm over its atom rows and its 3 cell rows (ASE's fmax measure).

    ``starts`` (B,): index of each structure's first atom row; every structure has at least one atom.
    """
    if len(starts) == 0:
        return np.zeros(0)
    atom_max = np.maximum.reduceat(np.sqrt((atom_rows**2).sum(1)), starts)
    return np.maximum(atom_max, np.sqrt((cell_rows**2).sum(2)).max(1))


def fire_step(
    x_atoms: np.ndarray,
    x_cell: np.ndarray,
    v_atoms: np.ndarray,
    v_cell: np.ndarray,
    f_atoms: np.ndarray,
    f_cell: np.ndarray,
    atom_structure: np.ndarray,
    first: np.ndarray,
    dt: np.ndarray,
    a: np.ndarray,
    n_pos: np.ndarray,
    p: FireParams = FireParams(),
) -> None:
    """One ASE ``FIRE.step`` for every structure of the batch, in place.

    x/v/f: atom rows ``(ΣN, 3)`` and cell rows ``(B, 3, 3)``; ``first`` (B,) True on a structure's
    first step (ASE: ``self.vel is None``: no mixing, no dt change); ``dt``, ``a`` (B,) float;
    ``n_pos`` (B,) int, ASE's ``Nsteps`` (downhill steps since the last uphill one).
    """
    b = len(dt)

    def vdot(ua: np.ndarray, uc: np.ndarray, wa: np.ndarray, wc: np.ndarray) -> np.ndarray:
        return segment_sum((ua * wa).sum(1), atom_structure, b) + (uc * wc).sum((1, 2))

    vf = vdot(f_atoms, f_cell, v_atoms, v_cell)
    grad2 = vdot(f_atoms, f_cell, f_atoms, f_cell)
    vel2 = vdot(v_atoms, v_cell, v_atoms, v_cell)
    downhill = ~first & (vf > 0.0)
    uphill = ~first & ~(vf > 0.0)  # ASE: `if vf > 0.0: ... else:` (a NaN power goes uphill)

    # downhill: mix with the *current* a, then (after Nmin downhill steps) grow dt and shrink a
    with np.errstate(invalid="ignore", divide="ignore"):
        mix = np.where(downhill, a * np.sqrt(vel2) / np.sqrt(grad2), 0.0)
    keep = np.where(uphill, 0.0, np.where(downhill, 1.0 - a, 1.0))  # uphill: vel[:] *= 0.0
    v_atoms *= keep[atom_structure, None]
    v_atoms += mix[atom_structure, None] * f_atoms
    v_cell *= keep[:, None, None]
    v_cell += mix[:, None, None] * f_cell
    grow = downhill & (n_pos > p.n_min)
    dt[grow] = np.minimum(dt[grow] * p.finc, p.dtmax)
    a[grow] *= p.fa
    n_pos[downhill] += 1
    a[uphill] = p.astart
    dt[uphill] *= p.fdec
    n_pos[uphill] = 0

    # Euler step, capped at maxstep on the norm of the structure's whole (n + 3, 3) step
    v_atoms += dt[atom_structure, None] * f_atoms
    v_cell += dt[:, None, None] * f_cell
    dr_atoms = dt[atom_structure, None] * v_atoms
    dr_cell = dt[:, None, None] * v_cell
    norm_dr = np.sqrt(vdot(dr_atoms, dr_cell, dr_atoms, dr_cell))
    scale = np.where(norm_dr > p.maxstep_ang, p.maxstep_ang / np.where(norm_dr > 0, norm_dr, 1.0), 1.0)
    x_atoms += scale[atom_structure, None] * dr_atoms
    x_cell += scale[:, None, None] * dr_cell


__all__ = [
    "FireParams",
    "deformation_gradient",
    "expm",
    "expm_frechet_adjoint",
    "filter_forces",
    "fire_step",
    "max_row_norm",
    "segment_sum",
]
