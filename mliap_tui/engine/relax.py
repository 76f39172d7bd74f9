"""Batched relaxations with in-flight batching: relax mode's default engine.

:class:`BatchedRelaxer` runs ASE's ``FIRE(FrechetCellFilter(atoms)).run(fmax, max_steps)`` on many
structures at once (the maths is :mod:`mliap_tui.engine.fire`). Every step is one batched
energy/forces/stress call of the family adapter through :class:`batching.BatchEvaluator`, so a
step keeps static mode's atom-count budget, out-of-memory splitting and culprit isolation.

The loop, per iteration:

1. evaluate every structure in flight (in chunks of at most the current atom budget);
2. compute the filter forces and each structure's ``fmax``;
3. retire the converged, step-capped and failed structures (results come out here);
4. take one FIRE step for the others and check their new geometry for divergence;
5. **refill** (FIFO) from the input while the atoms in flight plus the next structure fit the
   budget; a structure larger than the budget runs alone. A newcomer starts with FIRE's initial
   state and shares the next model call with the others' next step.

Step counting is ASE's ``opt.nsteps``: the start geometry is evaluated and checked at step 0, each
FIRE step is followed by one evaluation and one check; a structure leaves when it converges or at
``nsteps == max_steps`` (then ``max_steps``, unless that last check converged).

A structure **fails alone**, with its reason, when the model fails on it (an exception or an
out-of-memory error that a call on it alone reproduces, or a non-finite energy/force/stress that a
re-evaluation alone confirms: NaN can leak through a batch-mate's ops), or when it diverges: cell
volume outside ``[1/4, 4]`` x the start, two atoms closer than ``min_distance_ang``, non-finite
geometry. The others carry on undisturbed.

Cancel and resume: ``stop`` is checked once per iteration, after that iteration's results were
yielded. Structures then in flight (and the one read ahead) are never yielded
(``in_flight_keys``); the worker redoes them on the next run, from their start geometry, which
gives the same answer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np
from ase import Atoms

from mliap_tui.core.geometry import min_distance_ang
from mliap_tui.core.units import EV_PER_ANG3_PER_GPA
from mliap_tui.core.vocab import (
    DEFAULT_MIN_DISTANCE_ANG,
    DEFAULT_RELAX_FMAX_EV_PER_ANG,
    DEFAULT_RELAX_MAX_STEPS,
    RELAX_MAX_VOLUME_RATIO,
    FailureKind,
    RelaxStatus,
)
from mliap_tui.engine.batching import (
    AdaptiveBatchSize,
    BatchEvaluator,
    Item,
    Outcome,
    make_batches,
)
from mliap_tui.engine.fire import (
    FireParams,
    expm,
    filter_forces,
    fire_step,
    max_row_norm,
)
from mliap_tui.models.registry import voigt6_to_3x3


@dataclass(frozen=True)
class DivergenceLimits:
    """When a relaxation is declared diverged (the structure fails; the others go on)."""

    max_volume_ratio: float = RELAX_MAX_VOLUME_RATIO  # cell volume / start volume above this
    min_volume_ratio: float = 1.0 / RELAX_MAX_VOLUME_RATIO  # ... or below this
    min_distance_ang: float = DEFAULT_MIN_DISTANCE_ANG  # two atoms (periodic images included) closer


@dataclass
class RelaxResult:
    """One finished relaxation (or failure). Geometry and outputs are at the final geometry."""

    key: Any  # what the caller passed with the structure
    status: RelaxStatus
    steps: int  # ASE's opt.nsteps
    n_atoms: int
    cell_ang: np.ndarray  # (3, 3) rows = lattice vectors
    frac_coords: np.ndarray  # (n, 3), not wrapped (ASE get_scaled_positions(wrap=False))
    numbers: np.ndarray  # (n,) atomic numbers
    energy_ev: float | None = None  # total energy (None: failed before any evaluation)
    forces_ev_per_ang: np.ndarray | None = None  # (n, 3)
    stress_gpa: np.ndarray | None = None  # (6,) Voigt xx yy zz yz xz xy, ASE sign
    fmax_ev_per_ang: float | None = None  # ASE's convergence measure (atom and cell rows)
    reason: str | None = None  # why it failed
    failure_kind: str | None = None  # vocab.FailureKind
    wall_s: float = 0.0  # model time attributed to it: sum over its calls of call time / structures

    @property
    def ok(self) -> bool:
        return self.status != RelaxStatus.FAILED


@dataclass
class RelaxStats:
    """Counters for progress lines and benchmarks."""

    calls: int = 0  # model calls (a step of B structures in one chunk is one call)
    structure_evaluations: int = 0
    atom_evaluations: int = 0  # atoms evaluated, summed over calls (= atom-steps, step 0 included)
    model_s: float = 0.0  # inside the evaluator (graph building + model)
    optimizer_s: float = 0.0  # FIRE/filter maths, divergence checks, bookkeeping
    retries_alone: int = 0  # structures re-evaluated alone after a non-finite batch output
    finished: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in RelaxStatus})


class _Batch:
    """Struct-of-arrays state of the structures in flight (see :mod:`mliap_tui.engine.fire`)."""

    def __init__(self) -> None:
        self.keys: list[Any] = []
        self.numbers: list[np.ndarray] = []
        self.infos: list[dict] = []
        self.last: list[dict[str, Any]] = []  # last good evaluation: energy, forces, stress, fmax
        self.n_atoms = np.zeros(0, dtype=int)
        self.orig_cell = np.zeros((0, 3, 3))
        self.volume0 = np.zeros(0)
        self.x_atoms = np.zeros((0, 3))
        self.v_atoms = np.zeros((0, 3))
        self.x_cell = np.zeros((0, 3, 3))
        self.v_cell = np.zeros((0, 3, 3))
        self.dt = np.zeros(0)
        self.a = np.zeros(0)
        self.n_pos = np.zeros(0, dtype=int)
        self.nsteps = np.zeros(0, dtype=int)
        self.wall_s = np.zeros(0)

    @property
    def size(self) -> int:
        return len(self.keys)

    @property
    def total_atoms(self) -> int:
        return int(self.n_atoms.sum())

    @property
    def atom_structure(self) -> np.ndarray:
        return np.repeat(np.arange(self.size), self.n_atoms)

    @property
    def starts(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.n_atoms)[:-1]]).astype(int)

    def add(self, key: Any, numbers: np.ndarray, info: dict, cell_ang: np.ndarray, positions_ang: np.ndarray,
            p: FireParams) -> None:
        n = len(positions_ang)
        self.keys.append(key)
        self.numbers.append(numbers)
        self.infos.append(info)
        self.last.append({})
        self.n_atoms = np.append(self.n_atoms, n)
        self.orig_cell = np.concatenate([self.orig_cell, cell_ang[None]])
        self.volume0 = np.append(self.volume0, abs(float(np.linalg.det(cell_ang))))
        # F = I at the start: u = r, log F = 0; FIRE's initial state
        self.x_atoms = np.concatenate([self.x_atoms, positions_ang])
        self.v_atoms = np.concatenate([self.v_atoms, np.zeros((n, 3))])
        self.x_cell = np.concatenate([self.x_cell, np.zeros((1, 3, 3))])
        self.v_cell = np.concatenate([self.v_cell, np.zeros((1, 3, 3))])
        self.dt = np.append(self.dt, p.dt)
        self.a = np.append(self.a, p.a)
        self.n_pos = np.append(self.n_pos, 0)
        self.nsteps = np.append(self.nsteps, 0)
        self.wall_s = np.append(self.wall_s, 0.0)

    def keep(self, mask: np.ndarray) -> None:
        atom_mask = mask[self.atom_structure]
        for name in ("keys", "numbers", "infos", "last"):
            setattr(self, name, [x for x, k in zip(getattr(self, name), mask) if k])
        for name in ("n_atoms", "orig_cell", "volume0", "x_cell", "v_cell", "dt", "a", "n_pos", "nsteps", "wall_s"):
            setattr(self, name, getattr(self, name)[mask])
        self.x_atoms = self.x_atoms[atom_mask]
        self.v_atoms = self.v_atoms[atom_mask]

    @property
    def exp_cell_factor(self) -> np.ndarray:
        return self.n_atoms.astype(float)

    def geometry(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(log F, F, cell, positions) from the optimisation variables (ASE ``set_positions``)."""
        log_f = self.x_cell / self.exp_cell_factor[:, None, None]
        f = expm(log_f)
        cell = self.orig_cell @ np.swapaxes(f, -1, -2)
        positions = np.einsum("ni,nji->nj", self.x_atoms, f[self.atom_structure])  # u F^T
        return log_f, f, cell, positions


def _frac(cell_ang: np.ndarray, positions_ang: np.ndarray) -> np.ndarray:
    """Fractional coordinates, not wrapped (NaN for a degenerate cell)."""
    try:
        return np.linalg.solve(cell_ang.T, positions_ang.T).T
    except np.linalg.LinAlgError:
        return np.full_like(positions_ang, np.nan)


def input_problem(cell_ang: np.ndarray, positions_ang: np.ndarray, min_distance: float) -> str | None:
    """Why a structure cannot start a relaxation (empty, degenerate cell, overlapping atoms), or None."""
    n = len(positions_ang)
    lengths = np.linalg.norm(cell_ang, axis=1)
    if n == 0 or not (np.all(np.isfinite(cell_ang)) and np.all(np.isfinite(positions_ang))):
        return "empty structure or non-finite cell/positions"
    if abs(float(np.linalg.det(cell_ang))) <= 1e-6 * float(np.prod(lengths)):
        return "degenerate cell (zero volume)"
    if min_distance > 0:
        dmin = min_distance_ang(cell_ang, _frac(cell_ang, positions_ang), min_distance)
        if dmin < min_distance:
            return f"atoms {dmin:.3f} Å apart in the start structure (< {min_distance} Å)"
    return None


class BatchedRelaxer:
    """In-flight batched FIRE(FrechetCellFilter) relaxations; see the module docstring.

    ``predictor``: an adapter (``prepare``/``run``, :class:`mliap_tui.models.base.Predictor`).
    ``batch_size``: the atom budget (shared with OOM handling: an out-of-memory error halves it,
    and refills follow it); ``max_batch_atoms`` builds one when none is given.
    ``on_evaluation(key, nsteps, energy_ev, fmax_ev_per_ang)`` is called after every good
    evaluation (energy traces for tests and benchmarks).
    """

    def __init__(
        self,
        predictor: Any,
        *,
        fmax_ev_per_ang: float = DEFAULT_RELAX_FMAX_EV_PER_ANG,
        max_steps: int = DEFAULT_RELAX_MAX_STEPS,
        max_batch_atoms: int = 256,
        batch_size: AdaptiveBatchSize | None = None,
        device: str = "cpu",
        on_oom: Callable[[int, int], None] | None = None,
        params: FireParams = FireParams(),
        limits: DivergenceLimits = DivergenceLimits(),
        on_evaluation: Callable[[Any, int, float, float], None] | None = None,
    ) -> None:
        if fmax_ev_per_ang <= 0:
            raise ValueError(f"fmax must be > 0 eV/Å, got {fmax_ev_per_ang}")
        if max_steps < 0:
            raise ValueError(f"max_steps must be >= 0, got {max_steps}")
        self.fmax_ev_per_ang = float(fmax_ev_per_ang)
        self.max_steps = int(max_steps)
        self.batch_size = batch_size or AdaptiveBatchSize(max_batch_atoms, minimum=1)
        self.evaluator = BatchEvaluator(predictor, forces=True, stress=True, batch_size=self.batch_size,
                                        device=device, on_oom=on_oom)
        self.params = params
        self.limits = limits
        self.on_evaluation = on_evaluation
        self.stats = RelaxStats()
        self.in_flight_keys: list[Any] = []

    # -- one model call per chunk of the batch ----------------------------------------------------

    def evaluate(self, atoms_list: list[Any]) -> list[Outcome]:
        """One Outcome per structure; a failure is confirmed on the structure alone."""
        t0 = time.perf_counter()
        items = [Item(index=i, material_id=str(i), n_atoms=len(a), atoms=a) for i, a in enumerate(atoms_list)]
        outcomes: list[Outcome | None] = [None] * len(items)
        for chunk in make_batches(items, self.batch_size):
            t = time.perf_counter()
            got = self.evaluator.evaluate_batch(chunk)
            share = (time.perf_counter() - t) / len(chunk)
            self.stats.calls += 1
            self.stats.structure_evaluations += len(chunk)
            self.stats.atom_evaluations += sum(it.n_atoms for it in chunk)
            for o in got:
                if not o.ok and len(chunk) > 1 and o.error_kind == FailureKind.NON_FINITE:
                    # NaN can leak from a batch-mate through shared ops: blame only what repeats alone
                    self.stats.retries_alone += 1
                    o = self.evaluator.evaluate_batch([o.item])[0]
                o.wall_s = share
                outcomes[o.item.index] = o
        self.stats.model_s += time.perf_counter() - t0
        return [o for o in outcomes if o is not None]

    # -- the loop ------------------------------------------------------------------------------

    def run(self, structures: Iterable[tuple[Any, Any]], *, stop: threading.Event | None = None) -> Iterator[RelaxResult]:
        """Yield one :class:`RelaxResult` per ``(key, ase.Atoms)`` of ``structures``, in completion order.

        ``structures`` is read lazily, only when the batch has room. When ``stop`` is set the
        generator returns after the current step; what was in flight is in ``in_flight_keys``.
        """
        p = self.params
        source = iter(structures)
        pending: tuple[Any, Any] | None = None
        exhausted = False
        batch = _Batch()
        self.in_flight_keys = []

        def result(i: int, status: RelaxStatus, cell: np.ndarray, positions: np.ndarray,
                   reason: str | None = None, kind: str | None = None) -> RelaxResult:
            last = batch.last[i]
            self.stats.finished[status.value] += 1
            return RelaxResult(
                key=batch.keys[i], status=status, steps=int(batch.nsteps[i]), n_atoms=int(batch.n_atoms[i]),
                cell_ang=np.array(cell, dtype=float), frac_coords=_frac(cell, positions), numbers=batch.numbers[i],
                energy_ev=last.get("energy_ev"), forces_ev_per_ang=last.get("forces_ev_per_ang"),
                stress_gpa=last.get("stress_gpa"), fmax_ev_per_ang=last.get("fmax_ev_per_ang"),
                reason=reason, failure_kind=kind, wall_s=float(batch.wall_s[i]),
            )

        while True:
            t_opt = time.perf_counter()
            done: list[RelaxResult] = []
            # ---- refill (FIFO, up to the atom budget; an oversized structure runs alone) ----
            while not exhausted:
                if pending is None:
                    try:
                        pending = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                key, atoms = pending
                if batch.size and batch.total_atoms + len(atoms) > self.batch_size.current:
                    break
                pending = None
                cell0 = np.array(atoms.cell.array, dtype=float)
                positions0 = np.array(atoms.positions, dtype=float)
                batch.add(key, np.array(atoms.numbers), dict(atoms.info), cell0, positions0, p)
                problem = input_problem(cell0, positions0, self.limits.min_distance_ang)
                if problem is not None:
                    done.append(result(batch.size - 1, RelaxStatus.FAILED, cell0, positions0, problem, FailureKind.INVALID))
                    batch.keep(np.arange(batch.size) < batch.size - 1)
            if batch.size == 0:
                self.stats.optimizer_s += time.perf_counter() - t_opt
                yield from done
                return

            # ---- evaluate the current geometry of every structure in flight ----
            log_f, f_def, cell, positions = batch.geometry()
            starts = batch.starts
            atoms_list = [
                Atoms(numbers=batch.numbers[i], positions=positions[s : s + n], cell=cell[i], pbc=True, info=dict(batch.infos[i]))
                for i, (s, n) in enumerate(zip(starts, batch.n_atoms))
            ]
            self.stats.optimizer_s += time.perf_counter() - t_opt
            outcomes = self.evaluate(atoms_list)
            t_opt = time.perf_counter()

            b = batch.size
            forces = np.zeros((batch.total_atoms, 3))
            stress = np.zeros((b, 6))
            for i, o in enumerate(outcomes):
                batch.wall_s[i] += o.wall_s
                if o.ok:
                    pred = o.prediction
                    f_i = np.asarray(pred.forces_ev_per_ang, dtype=float).reshape(-1, 3)
                    s_i = np.asarray(pred.stress_gpa, dtype=float).reshape(6)
                    batch.last[i] = {"energy_ev": float(pred.energy_ev), "forces_ev_per_ang": f_i, "stress_gpa": s_i}
                    forces[starts[i] : starts[i] + len(f_i)] = f_i
                    stress[i] = s_i
            f_atoms, f_cell = filter_forces(forces, batch.atom_structure, voigt6_to_3x3(stress) * EV_PER_ANG3_PER_GPA,
                                            cell, f_def, log_f, batch.exp_cell_factor)
            fmax_now = max_row_norm(f_atoms, f_cell, starts)

            # ---- retire: failed evaluation, converged, step cap ----
            leave = np.zeros(b, bool)
            for i, o in enumerate(outcomes):
                here = (cell[i], positions[starts[i] : starts[i] + batch.n_atoms[i]])
                if not o.ok:
                    reason = f"{o.error} (relaxation step {batch.nsteps[i]})"
                    done.append(result(i, RelaxStatus.FAILED, *here, reason, o.error_kind or FailureKind.EXCEPTION))
                    leave[i] = True
                    continue
                batch.last[i]["fmax_ev_per_ang"] = float(fmax_now[i])
                if self.on_evaluation is not None:
                    self.on_evaluation(batch.keys[i], int(batch.nsteps[i]), batch.last[i]["energy_ev"], float(fmax_now[i]))
                if fmax_now[i] < self.fmax_ev_per_ang:
                    done.append(result(i, RelaxStatus.CONVERGED, *here))
                    leave[i] = True
                elif batch.nsteps[i] >= self.max_steps:
                    done.append(result(i, RelaxStatus.MAX_STEPS, *here))
                    leave[i] = True

            # ---- one FIRE step for the others, then their new geometry is checked ----
            stay = ~leave
            if stay.any():
                on = stay[batch.atom_structure]
                xa, va, fa = batch.x_atoms[on], batch.v_atoms[on], f_atoms[on]
                xc, vc, fc = batch.x_cell[stay], batch.v_cell[stay], f_cell[stay]
                dt, a, n_pos = batch.dt[stay], batch.a[stay], batch.n_pos[stay]
                sub = np.repeat(np.arange(int(stay.sum())), batch.n_atoms[stay])
                fire_step(xa, xc, va, vc, fa, fc, sub, batch.nsteps[stay] == 0, dt, a, n_pos, p)
                batch.x_atoms[on], batch.v_atoms[on] = xa, va
                batch.x_cell[stay], batch.v_cell[stay] = xc, vc
                batch.dt[stay], batch.a[stay], batch.n_pos[stay] = dt, a, n_pos
                batch.nsteps[stay] += 1
                leave |= self._diverged(batch, stay, done, result)
            batch.keep(~leave)
            self.stats.optimizer_s += time.perf_counter() - t_opt

            yield from done
            if stop is not None and stop.is_set():
                self.in_flight_keys = list(batch.keys) + ([pending[0]] if pending is not None else [])
                return

    def _diverged(self, batch: _Batch, stay: np.ndarray, done: list[RelaxResult], result: Callable[..., RelaxResult]) -> np.ndarray:
        """Check the new geometry of the structures that stepped; append their failures to ``done``."""
        limits = self.limits
        leave = np.zeros(batch.size, bool)
        _, _, cell, positions = batch.geometry()
        starts = batch.starts
        with np.errstate(invalid="ignore", over="ignore"):
            volume = np.abs(np.linalg.det(np.where(np.isfinite(cell), cell, 0.0)))
        for i in np.flatnonzero(stay):
            s, n = starts[i], batch.n_atoms[i]
            pos = positions[s : s + n]
            step = batch.nsteps[i]
            reason = None
            if not (np.all(np.isfinite(cell[i])) and np.all(np.isfinite(pos))):
                reason = f"non-finite cell or positions after step {step}"
            else:
                ratio = volume[i] / batch.volume0[i]
                if not (limits.min_volume_ratio <= ratio <= limits.max_volume_ratio):
                    reason = f"cell volume {ratio:.3g}x the start after step {step}"
                elif limits.min_distance_ang > 0:
                    dmin = min_distance_ang(cell[i], _frac(cell[i], pos), limits.min_distance_ang)
                    if dmin < limits.min_distance_ang:
                        reason = f"atoms {dmin:.3f} Å apart after step {step}"
            if reason is not None:
                done.append(result(i, RelaxStatus.FAILED, cell[i], pos, f"relaxation diverged: {reason}", FailureKind.DIVERGED))
                leave[i] = True
        return leave


def relax_batched(predictor: Any, structures: Iterable[tuple[Any, Any]], *, stop: threading.Event | None = None,
                  **options: Any) -> Iterator[RelaxResult]:
    """``BatchedRelaxer(predictor, **options).run(structures, stop=stop)``."""
    yield from BatchedRelaxer(predictor, **options).run(structures, stop=stop)


__all__ = ["BatchedRelaxer", "DivergenceLimits", "RelaxResult", "RelaxStats", "input_problem", "relax_batched"]
