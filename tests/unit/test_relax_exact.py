"""The batched relaxation engine against ASE, exactly: float64 EMT (ASE's own calculator through
the ``ase:`` adapter), so any difference is the engine's, not float32 noise.

Covers the Fréchet-filter algebra against ASE's ``FrechetCellFilter``, whole relaxations identical
to ``FIRE(FrechetCellFilter(atoms)).run`` with structures joining mid-run and the step cap, failure
isolation (NaN, a raising model, a runaway cell, colliding atoms, bad inputs), OOM splitting, stop
and resume, and the hand-written matrix exponential against scipy's.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from mliap_tui.core.vocab import FailureKind, RelaxStatus
from mliap_tui.engine.fire import expm, filter_forces
from mliap_tui.engine.relax import BatchedRelaxer, relax_batched
from mliap_tui.models.ase_adapter import AsePredictor
from mliap_tui.models.plugins import ase_spec
from mliap_tui.models.registry import voigt6_to_3x3

EMT_SPEC = ase_spec("ase:ase.calculators.emt:EMT")


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """ASE's filter calls scipy's LAPACK on 3x3 matrices: OpenBLAS's thread pool makes it 7x slower."""
    from mliap_tui.core.host import blas_threads

    with blas_threads(1):
        yield


def emt() -> AsePredictor:
    from ase.calculators.emt import EMT

    return AsePredictor(EMT_SPEC, EMT(), dtype="float64")


def emt_structures(n: int, seed: int = 0) -> list:
    """Rattled, strained small fcc cells (1-32 atoms) of EMT's elements, some alloyed."""
    from ase.build import bulk

    rng = np.random.default_rng(seed)
    specs = [("Cu", 3.61), ("Al", 4.05), ("Ni", 3.52), ("Ag", 4.09), ("Pd", 3.89), ("Au", 4.08), ("Pt", 3.92)]
    out = []
    for i in range(n):
        element, a0 = specs[i % len(specs)]
        atoms = bulk(element, "fcc", a=a0 * rng.uniform(0.95, 1.06), cubic=bool(rng.integers(0, 2)))
        atoms = atoms.repeat(tuple(int(x) for x in rng.integers(1, 3, size=3)))
        for j in range(len(atoms)):
            if rng.random() < 0.3:
                atoms[j].symbol = specs[rng.integers(0, len(specs))][0]
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + rng.normal(0, 0.03, (3, 3))), scale_atoms=True)
        atoms.rattle(0.08, seed=int(rng.integers(1 << 30)))
        out.append(atoms)
    return out


def keyed(structures: list) -> list[tuple[int, object]]:
    return list(enumerate(structures))


def ase_relax(atoms0, max_steps: int = 500):
    from ase.calculators.emt import EMT
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    atoms = atoms0.copy()
    atoms.calc = EMT()
    opt = FIRE(FrechetCellFilter(atoms), logfile=None)
    converged = opt.run(fmax=0.05, steps=max_steps)
    return converged, opt.nsteps, atoms


def test_filter_forces_and_geometry_match_ase_frechet_filter():
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.filters import FrechetCellFilter
    from ase.units import GPa
    from scipy.linalg import expm as scipy_expm

    rng = np.random.default_rng(1)
    for trial in range(20):
        atoms = emt_structures(1, seed=trial)[0]
        n = len(atoms)
        filt = FrechetCellFilter(atoms)
        x0 = filt.get_positions()
        x1 = x0.copy()
        x1[:n] += rng.normal(0, 0.1, (n, 3))
        x1[n:] += rng.normal(0, 0.15, (3, 3)) * n  # a finite cell deformation, through ASE's own setter
        filt.set_positions(x1)
        forces = rng.normal(0, 1, (n, 3))
        stress_ev_per_ang3 = rng.normal(0, 0.05, 6)
        atoms.calc = SinglePointCalculator(atoms, energy=0.0, forces=forces, stress=stress_ev_per_ang3)
        ase_rows = filt.get_forces()
        log_f = (x1[n:] - x0[n:]) / n  # ASE stores n logm(n F): the ln(n) I offset cancels
        assert np.allclose(x0[n:] / n, np.log(n) * np.eye(3), atol=1e-12)
        f_def = scipy_expm(log_f)
        cell = atoms.cell.array
        assert np.allclose(filt.orig_cell @ f_def.T, cell, atol=1e-10)  # cell = orig F^T
        assert np.allclose(x1[:n] @ f_def.T, atoms.positions, atol=1e-10)  # r = u F^T
        stress_3x3 = voigt6_to_3x3((stress_ev_per_ang3 / GPa)[None]) * GPa
        atom_rows, cell_rows = filter_forces(forces, np.zeros(n, int), stress_3x3, cell[None], f_def[None],
                                             log_f[None], np.array([float(n)]))
        assert np.allclose(atom_rows, ase_rows[:n], atol=1e-12)
        assert np.allclose(cell_rows[0], ase_rows[n:], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("max_steps", [500, 12])
def test_whole_relaxations_are_ases_with_structures_joining_mid_run(max_steps):
    """12 structures through a 40-atom budget: most join a running batch. Step counts, status,
    energies, forces, cells and coordinates are ASE's to rounding, also at the step cap."""
    structs = emt_structures(12, seed=3)
    relaxer = BatchedRelaxer(emt(), max_batch_atoms=40, max_steps=max_steps)
    results = {r.key: r for r in relaxer.run(keyed(structs))}
    assert len(results) == len(structs)
    assert relaxer.stats.calls < sum(r.steps + 1 for r in results.values())  # batched: fewer calls than evaluations
    for i, a0 in enumerate(structs):
        converged, nsteps, atoms = ase_relax(a0, max_steps)
        r = results[i]
        assert r.steps == nsteps
        assert r.status == (RelaxStatus.CONVERGED if converged else RelaxStatus.MAX_STEPS)
        assert abs(r.energy_ev - atoms.get_potential_energy()) < 1e-9
        assert np.allclose(r.cell_ang, atoms.cell.array, atol=1e-8)
        assert np.allclose(r.frac_coords, atoms.get_scaled_positions(wrap=False), atol=1e-8)
        assert np.allclose(r.forces_ev_per_ang, atoms.get_forces(), atol=1e-8)
        assert (r.fmax_ev_per_ang < 0.05) == converged
    if max_steps == 12:
        assert any(r.status == RelaxStatus.MAX_STEPS for r in results.values())


class Sabotaged(AsePredictor):
    """EMT, except for structures tagged in ``atoms.info["sabotage"]``: ``nan`` gives NaN forces from
    its 4th evaluation, ``boom`` makes any batch holding it raise, ``expand`` reports a huge
    compressive stress (the filter inflates the cell), ``overlap`` pulls atom 1 onto atom 0."""

    def __init__(self):
        from ase.calculators.emt import EMT

        super().__init__(EMT_SPEC, EMT(), dtype="float64")
        self.nan_calls = 0

    def run(self, prepared):
        atoms_list = prepared[0]
        tags = [a.info.get("sabotage") for a in atoms_list]
        if "boom" in tags:
            raise RuntimeError("model blew up on this batch")
        out = super().run(prepared)
        for a, tag, p in zip(atoms_list, tags, out):
            if tag == "nan":
                self.nan_calls += 1
                if self.nan_calls > 3:
                    p.forces_ev_per_ang = p.forces_ev_per_ang * np.nan
            elif tag == "expand":
                p.stress_gpa = p.stress_gpa - 500.0
            elif tag == "overlap":
                p.forces_ev_per_ang = np.zeros_like(p.forces_ev_per_ang)
                p.forces_ev_per_ang[1] = 20.0 * (a.positions[0] - a.positions[1])
                p.stress_gpa = np.zeros(6)
        return out


def test_one_diverging_or_failing_structure_never_disturbs_the_others():
    structs = emt_structures(10, seed=5)
    sabotage = {2: "nan", 4: "boom", 6: "expand", 8: "overlap"}
    for i, tag in sabotage.items():
        while len(structs[i]) < 2:
            structs[i] = structs[i].repeat((2, 1, 1))
        structs[i].info["sabotage"] = tag
    clean = {r.key: r for r in relax_batched(emt(), keyed(structs), max_batch_atoms=64)}
    relaxer = BatchedRelaxer(Sabotaged(), max_batch_atoms=64)
    res = {r.key: r for r in relaxer.run(keyed(structs))}
    assert len(res) == len(structs)
    for i in range(len(structs)):
        if i in sabotage:
            assert res[i].status == RelaxStatus.FAILED and not res[i].ok, (i, res[i])
        else:  # bit for bit what a clean run gives
            assert res[i].status == clean[i].status and res[i].steps == clean[i].steps
            assert res[i].energy_ev == clean[i].energy_ev
            assert np.array_equal(res[i].cell_ang, clean[i].cell_ang)
    assert "non-finite forces" in res[2].reason and "step 3" in res[2].reason
    assert res[2].failure_kind == FailureKind.NON_FINITE and res[2].energy_ev is not None  # last good evaluation kept
    assert "blew up" in res[4].reason and res[4].failure_kind == FailureKind.EXCEPTION
    assert "cell volume" in res[6].reason and res[6].failure_kind == FailureKind.DIVERGED
    assert "Å apart" in res[8].reason and res[8].failure_kind == FailureKind.DIVERGED


class LeakyNaN(AsePredictor):
    """EMT, except that a batch of more than one structure returns NaN forces for its first one
    (a NaN leaking through a batch op): alone, every structure is fine."""

    def __init__(self):
        from ase.calculators.emt import EMT

        super().__init__(EMT_SPEC, EMT(), dtype="float64")

    def run(self, prepared):
        out = super().run(prepared)
        if len(out) > 1:
            out[0].forces_ev_per_ang = out[0].forces_ev_per_ang * np.nan
        return out


def test_a_nan_from_a_batch_is_checked_alone_before_anyone_is_blamed():
    structs = emt_structures(6, seed=8)
    clean = {r.key: r for r in relax_batched(emt(), keyed(structs), max_batch_atoms=64)}
    relaxer = BatchedRelaxer(LeakyNaN(), max_batch_atoms=64)
    res = {r.key: r for r in relaxer.run(keyed(structs))}
    assert relaxer.stats.retries_alone > 0
    for k, r in clean.items():
        assert res[k].status == r.status and res[k].steps == r.steps and abs(res[k].energy_ev - r.energy_ev) < 1e-12


class SmallMemory(AsePredictor):
    """EMT on a device that runs out of memory above 20 atoms per call."""

    def __init__(self):
        from ase.calculators.emt import EMT

        super().__init__(EMT_SPEC, EMT(), dtype="float64")
        self.largest_call = 0

    def run(self, prepared):
        atoms = sum(len(a) for a in prepared[0])
        if atoms > 20:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.largest_call = max(self.largest_call, atoms)
        return super().run(prepared)


def test_out_of_memory_halves_the_budget_and_loses_nothing():
    structs = emt_structures(8, seed=4)
    clean = {r.key: r for r in relax_batched(emt(), keyed(structs), max_batch_atoms=80)}
    ooms = []
    model = SmallMemory()
    relaxer = BatchedRelaxer(model, max_batch_atoms=80, on_oom=lambda n_structures, n_atoms: ooms.append(n_atoms))
    res = {r.key: r for r in relaxer.run(keyed(structs))}
    assert ooms and min(ooms) <= 40 and relaxer.batch_size.current < 80 and model.largest_call <= 20
    for k, r in clean.items():
        if len(structs[k]) > 20:  # too big for the device even alone: fails with the reason
            assert res[k].status == RelaxStatus.FAILED and res[k].failure_kind == FailureKind.OOM
            assert "out of memory" in res[k].reason
        else:
            assert res[k].status == r.status and res[k].steps == r.steps and abs(res[k].energy_ev - r.energy_ev) < 1e-12


def test_bad_inputs_fail_alone():
    structs = emt_structures(4, seed=11)
    squashed = structs[1].repeat((2, 1, 1))
    squashed.positions[1] = squashed.positions[0] + [0.2, 0.0, 0.0]
    flat = structs[2].copy()
    flat.cell[2] = flat.cell[0] + flat.cell[1]
    res = {r.key: r for r in relax_batched(emt(), keyed([structs[0], squashed, flat, structs[3]]), max_batch_atoms=64)}
    assert res[1].status == RelaxStatus.FAILED and "0.200 Å apart" in res[1].reason and res[1].steps == 0
    assert res[2].status == RelaxStatus.FAILED and "degenerate" in res[2].reason
    assert res[1].failure_kind == res[2].failure_kind == FailureKind.INVALID
    assert res[0].status == res[3].status == RelaxStatus.CONVERGED


def test_stop_then_resume_gives_every_structure_once_and_the_same_answers():
    structs = emt_structures(10, seed=7)
    full = {r.key: r for r in relax_batched(emt(), keyed(structs), max_batch_atoms=48)}
    stop = threading.Event()
    committed = {}
    relaxer = BatchedRelaxer(emt(), max_batch_atoms=48)
    for r in relaxer.run(keyed(structs), stop=stop):
        committed[r.key] = r
        if len(committed) == 3:
            stop.set()
    assert 3 <= len(committed) < len(structs)
    assert relaxer.in_flight_keys and not set(relaxer.in_flight_keys) & set(committed)
    rest = [(i, a) for i, a in keyed(structs) if i not in committed]
    for r in relax_batched(emt(), rest, max_batch_atoms=48):
        assert r.key not in committed
        committed[r.key] = r
    assert set(committed) == set(full)
    for k, r in full.items():
        assert committed[k].steps == r.steps and abs(committed[k].energy_ev - r.energy_ev) < 1e-12


def test_a_structure_larger_than_the_budget_runs_alone():
    structs = emt_structures(4, seed=9)
    big = structs[0].repeat((3, 3, 2))
    relaxer = BatchedRelaxer(emt(), max_batch_atoms=16, max_steps=5)
    res = list(relaxer.run(keyed([big] + structs[1:])))
    assert len(res) == 4 and all(r.ok for r in res)
    assert relaxer.stats.structure_evaluations == sum(r.steps + 1 for r in res)


def test_zero_max_steps_evaluates_once():
    structs = emt_structures(3, seed=2)
    res = list(relax_batched(emt(), keyed(structs), max_steps=0))
    assert all(r.steps == 0 and r.energy_ev is not None for r in res)


def test_expm_matches_scipy():
    from scipy.linalg import expm as scipy_expm

    rng = np.random.default_rng(0)
    for scale in (1e-6, 0.01, 0.3, 2.0, 20.0):
        a = rng.normal(0, scale, (50, 6, 6))
        ref = scipy_expm(a)
        assert np.allclose(expm(a), ref, rtol=1e-12, atol=1e-14 * np.abs(ref).max())
    bad = np.zeros((2, 3, 3))
    bad[1, 0, 0] = np.nan
    out = expm(bad)
    assert np.allclose(out[0], np.eye(3)) and np.isnan(out[1]).all()
