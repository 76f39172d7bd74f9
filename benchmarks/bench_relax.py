"""Relax-mode throughput: the batched engine vs the per-structure ASE loop, same crystals, one run.

    python benchmarks/bench_relax.py                               # CHGNet 0.3.0, 200 sample crystals, CPU
    python benchmarks/bench_relax.py --model sevennet-0 --limit 100
    python benchmarks/bench_relax.py --budgets 64,128,256 --skip-ase  # the batched engine's atom budget
    python benchmarks/bench_relax.py --device cuda --limit 2000 --budgets 4096

The first ``--limit`` crystals of the shipped 400-crystal MP sample (material_id order, as a run
takes them), one model loaded once, one process, methods one after the other:

* ``ase loop``: ``relax_one`` of the worker (``--relax-engine ase``): ASE's
  ``FIRE(FrechetCellFilter(atoms))`` with the family's own ASE calculator, one crystal at a time,
  with OpenBLAS's default thread pool: the way relax mode ran before the batched engine;
* ``ase loop, 1 BLAS thread``: the same with one BLAS thread (what ``--relax-engine ase`` does
  now): the fair baseline, since ASE's filter maths on 3x3 matrices only spins extra threads;
* ``ase loop, adapter calc`` (``--adapter-loop``): the same loop, but the calculator is mliap-tui's
  batched adapter called on one structure (for CHGNet: no double-backward graph): separates the
  adapter's own speed-up from batching;
* ``chgnet StructOptimizer`` (CHGNet only, ``--skip-family`` leaves it out): the family's own
  relaxation API, ``StructOptimizer(model, optimizer_class="FIRE").relax(atoms, fmax, steps,
  ase_filter="FrechetCellFilter")``, one BLAS thread. No family ships a *batched* relaxation (CHGNet's
  ``relax`` takes one structure; SevenNet and the others only hand out an ASE calculator), so this
  per-structure loop is the family's best;
* ``batched B``: the batched engine (``BatchedRelaxer``) with an atom budget of B in flight.

Every method ends with the worker's relaxed-cell symmetry analysis, so all do the same work.
Reported: wall and process-CPU seconds (CPU time is less sensitive to other tenants of a shared
machine), structures/s, atom-steps/s (sum of n_atoms x steps / wall), the step counts' agreement
with the first ASE loop, and each batched budget's ratio to each ASE loop. The load average is
printed with each line: on a shared machine read the ratios, not the absolute rates.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402


def load_items(limit: int) -> list:
    """Worker items (ASE Atoms + checks) of the first ``limit`` sample crystals, material_id order."""
    import polars as pl

    from mliap_tui.core.resources import sample_materials_path
    from mliap_tui.data.structures import structure_columns
    from mliap_tui.engine.batching import item_from_row

    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pymatgen.core import Structure

        df = pl.read_csv(sample_materials_path()).sort("material_id").head(limit)
        for mid, cif in zip(df["material_id"], df["cif"]):
            rows.append({"material_id": mid, **structure_columns(Structure.from_str(cif, fmt="cif"))})
    return [item_from_row(i, r) for i, r in enumerate(rows)]


def fresh(items: list) -> list:
    """The items with their own copy of the start structure (a relaxation moves the atoms)."""
    from dataclasses import replace

    return [replace(it, atoms=it.atoms.copy()) for it in items]


class AdapterCalculator:
    """An ASE calculator over a batched predictor, called on one structure at a time."""

    def __new__(cls, predictor):
        from ase.calculators.calculator import Calculator, all_changes

        from mliap_tui.core.units import EV_PER_ANG3_PER_GPA

        class _Calc(Calculator):
            implemented_properties = ["energy", "forces", "stress"]

            def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
                super().calculate(atoms, properties, system_changes)
                pred = predictor.predict([self.atoms], forces=True, stress=True)[0]
                self.results = {"energy": pred.energy_ev, "forces": pred.forces_ev_per_ang,
                                "stress": np.asarray(pred.stress_gpa) * EV_PER_ANG3_PER_GPA}

        return _Calc()


def run_ase_loop(items, calc, job, blas_one: bool) -> dict:
    from mliap_tui.core.host import blas_threads
    from mliap_tui.engine.worker import relax_one

    steps = {}
    ctx = blas_threads(1) if blas_one else _nothing()
    t, c = time.perf_counter(), time.process_time()
    with ctx:
        for item in fresh(items):
            o = relax_one(item, calc, job, "cpu")
            steps[item.material_id] = o.prediction.steps if o.ok else None
    return {"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c, "steps": steps}


def run_batched(items, predictor, job, budget: int) -> dict:
    from mliap_tui.core.host import blas_threads
    from mliap_tui.engine.relax import BatchedRelaxer
    from mliap_tui.engine.worker import relaxed_outcome

    relaxer = BatchedRelaxer(predictor, fmax_ev_per_ang=job.relax_fmax, max_steps=job.relax_max_steps,
                             max_batch_atoms=budget)
    steps = {}
    t, c = time.perf_counter(), time.process_time()
    with blas_threads(1):
        for result in relaxer.run((it, it.atoms) for it in fresh(items)):
            o = relaxed_outcome(result, job)
            steps[o.item.material_id] = o.prediction.steps if o.ok else None
    s = relaxer.stats
    return {"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c, "steps": steps,
            "model_s": s.model_s, "optimizer_s": s.optimizer_s, "calls": s.calls,
            "mean_atoms_per_call": s.atom_evaluations / max(1, s.calls), "failed": s.finished["failed"]}


def run_chgnet_struct_optimizer(items, predictor, job) -> dict:
    """CHGNet's own relaxation API, one structure at a time (it has no batched form)."""
    from chgnet.model.dynamics import StructOptimizer

    from mliap_tui.core.host import blas_threads
    from mliap_tui.symmetry import analyze_cell

    opt = StructOptimizer(model=predictor.model, optimizer_class="FIRE", use_device="cpu")
    steps = {}
    t, c = time.perf_counter(), time.process_time()
    with blas_threads(1):
        for item in fresh(items):
            try:
                out = opt.relax(item.atoms, fmax=job.relax_fmax, steps=job.relax_max_steps,
                                ase_filter="FrechetCellFilter", verbose=False, assign_magmoms=False)
            except Exception:  # noqa: BLE001 - count it as failed, go on
                steps[item.material_id] = None
                continue
            final = out["final_structure"]
            analyze_cell(final.lattice.matrix, [str(sp) for sp in final.species], final.frac_coords,
                         symprec_ang=job.symprec_ang)
            # the observer logs the start, every step, and once more at the end
            steps[item.material_id] = len(out["trajectory"].energies) - 2
    return {"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c, "steps": steps}


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="chgnet-0.3.0")
    ap.add_argument("--limit", type=int, default=200, help="sample crystals (default 200)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine may be shared)")
    ap.add_argument("--budgets", default="128", help="atom budgets of the batched engine, comma-separated")
    ap.add_argument("--skip-ase", action="store_true", help="batched engine only")
    ap.add_argument("--skip-default-blas", action="store_true", help="leave out the ASE loop with OpenBLAS's thread pool")
    ap.add_argument("--skip-family", action="store_true", help="leave out the family's own relax API (CHGNet)")
    ap.add_argument("--adapter-loop", action="store_true", help="also the ASE loop over the batched adapter")
    ap.add_argument("--out", default=None, help="write the results (JSON) here")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import torch

    from mliap_tui.engine.protocol import WorkerJob
    from mliap_tui.models.registry import load_predictor

    torch.set_num_threads(args.threads)
    predictor = load_predictor(args.model, device=args.device)
    items = [it for it in load_items(args.limit) if it.error is None]
    n_atoms = {it.material_id: it.n_atoms for it in items}
    job = WorkerJob(cache_root="", dataset="bench", model=args.model, mode="relax")
    predictor.predict([it.atoms for it in items[:4]], forces=True, stress=True)  # warm-up
    print(f"{args.model} on {args.device}, {len(items)} sample crystals ({sum(n_atoms.values())} atoms), "
          f"torch threads {torch.get_num_threads()}, fmax {job.relax_fmax} eV/Å, max steps {job.relax_max_steps}",
          flush=True)

    methods: list[tuple[str, dict]] = []

    def report(name: str, r: dict) -> None:
        ok = {m: s for m, s in r["steps"].items() if s is not None}
        r["structures_per_s"] = len(items) / r["wall_s"]
        r["atom_steps_per_s"] = sum(n_atoms[m] * s for m, s in ok.items()) / r["wall_s"]
        r["total_steps"] = sum(ok.values())
        r["load_avg_1min"] = os.getloadavg()[0]
        ref = methods[0][1]["steps"] if methods else None
        same = "" if ref is None else f"  same steps as {methods[0][0]}: {np.mean([ref.get(m) == s for m, s in r['steps'].items()]):.0%}"
        print(f"{name:26s} wall {r['wall_s']:7.1f} s  cpu {r['cpu_s']:7.1f} s  {r['structures_per_s']:6.2f} structures/s  "
              f"{r['atom_steps_per_s']:7.1f} atom-steps/s  steps {r['total_steps']}  load {r['load_avg_1min']:.1f}{same}",
              flush=True)
        methods.append((name, r))

    if not args.skip_ase:
        calc = predictor.ase_calculator()
        if not args.skip_default_blas:
            report("ase loop", run_ase_loop(items, calc, job, blas_one=False))
        report("ase loop, 1 BLAS thread", run_ase_loop(items, calc, job, blas_one=True))
        if args.adapter_loop:
            report("ase loop, adapter calc", run_ase_loop(items, AdapterCalculator(predictor), job, blas_one=True))
    if not args.skip_family and args.model.startswith("chgnet") and args.device == "cpu":
        report("chgnet StructOptimizer", run_chgnet_struct_optimizer(items, predictor, job))
    for budget in (int(b) for b in args.budgets.split(",") if b):
        report(f"batched {budget}", run_batched(items, predictor, job, budget))

    baselines = [(n, r) for n, r in methods if not n.startswith("batched")]
    for name, r in methods:
        if name.startswith("batched"):
            for base, b in baselines:
                print(f"{name} vs {base}: {b['wall_s'] / r['wall_s']:.2f}x wall, {b['cpu_s'] / r['cpu_s']:.2f}x CPU time",
                      flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"model": args.model, "device": args.device, "n": len(items),
                                              "threads": args.threads, "methods": dict(methods)}, indent=1))


if __name__ == "__main__":
    main()
