"""Benchmark: a 21x21 symmetry-restricted PES slice of a small cell, one model on CPU.

    python benchmarks/bench_pes.py [--model chgnet-0.3.0] [--material mp-10014] [--axes S:3a.1:z,S:3a.2:z]
                                   [--points 21] [--threads 2] [--batch-atoms 256,1024] [--skip-subprocess]

Goal (issue 14): a 21x21 CHGNet grid of a <= 12-atom cell in < 10 s on 2 CPU cores, end to end.

Imports the material from the shipped sample into a temporary cache, then times, side by side in
one run (a fresh range per measurement, so nothing is read from the cache unless said):

1. building the grid (structures, closest-approach checks, the derived dataset), no model;
2. **in-process, cold**: the slice as `mliap-tui pes` and the app compute it the first time in a
   session: grid + model loading + batched evaluation (the engine's run_job in this process);
3. **in-process, warm**: the next slice of the session (model already loaded), per batch size;
4. **subprocess**: the previous path, `run_evaluation` (a worker process starts and loads the
   model for every slice), on the same number of points;
5. reading a finished slice back from the cache;
6. the real command, ``python -m mliap_tui pes ...`` in a new process (interpreter start,
   imports, grid, model load, evaluation, report): what a user waits for.

The machine is shared: the script prints the load average before and after; the ratios are
measured in one run so contention affects both sides alike.
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's mliap_tui, not an installed one

import polars as pl  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="chgnet-0.3.0")
    ap.add_argument("--material", default="mp-10014", help="sample material (default TaS2, 9 atoms conventional)")
    ap.add_argument("--axes", default="S:3a.1:z,S:3a.2:z")
    ap.add_argument("--points", type=int, default=21)
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the goal is for 2 cores)")
    ap.add_argument("--batch-atoms", default="256,1024", help="batch budgets (atoms) to time warm, comma-separated")
    ap.add_argument("--skip-subprocess", action="store_true", help="do not time the worker-subprocess path")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from mliap_tui.analysis.pes import slices as pes
    from mliap_tui.cache import Cache
    from mliap_tui.data.importer import import_dataset, sample_path

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-pes-"))
    with gzip.open(sample_path(), "rt") as fh:
        df = pl.read_csv(fh.read().encode())
    df.filter(pl.col("material_id") == args.material).write_csv(tmp / "one.csv")
    cache = Cache(tmp / "cache")
    import_dataset(str(tmp / "one.csv"), dataset="sample", cache=cache, n_jobs=1)
    axes = args.axes.split(",")
    budgets = [int(b) for b in args.batch_atoms.split(",") if b.strip()]
    kw = dict(device="cpu", torch_threads=args.threads)
    ranges = iter(f"{0.30 + 0.01 * k:.2f}A" for k in range(100))  # a fresh grid per measurement

    t0 = time.perf_counter()
    s = pes.build_slice(cache, "sample", args.material, axes, next(ranges), args.points)
    t_grid = time.perf_counter() - t0
    n_eval = int(s.evaluated.sum())
    print(f"{args.material} {' x '.join(axes)} {args.points}x{args.points} = {s.mask.size} points "
          f"({n_eval} evaluated), {s.crystal.n_sites} atoms each, {args.model} on CPU, {args.threads} torch threads")
    print(f"  grid build (no model)                {t_grid:7.2f} s")

    cold_range = next(ranges)
    t0 = time.perf_counter()
    s = pes.compute_slice(cache, "sample", args.material, axes, [args.model], cold_range, args.points,
                          batch_atoms=budgets[-1], **kw)
    t_cold = time.perf_counter() - t0
    m = s.run_summary.models[0]
    print(f"  in-process, cold (load + eval)       {t_cold:7.2f} s   ({m.done} points, engine eval {m.eval_s:.2f} s, "
          f"{m.structures_per_s or 0:.0f} points/s, batch {budgets[-1]} atoms)")
    warm = {}
    for b in budgets:
        t0 = time.perf_counter()
        s = pes.compute_slice(cache, "sample", args.material, axes, [args.model], next(ranges), args.points,
                              batch_atoms=b, **kw)
        warm[b] = time.perf_counter() - t0
        m = s.run_summary.models[0]
        print(f"  in-process, warm, batch {b:>5} atoms  {warm[b]:7.2f} s   ({m.structures_per_s or 0:.0f} points/s)")
    t_sub = None
    if not args.skip_subprocess:
        from mliap_tui.engine.runner import run_evaluation

        s = pes.build_slice(cache, "sample", args.material, axes, next(ranges), args.points)
        t0 = time.perf_counter()
        summary = run_evaluation(cache, s.dataset, [args.model], material_ids=s.ids, torch_threads=args.threads, **{
            k: v for k, v in kw.items() if k == "device"})
        t_sub = time.perf_counter() - t0 + t_grid
        print(f"  subprocess worker (previous path)    {t_sub:7.2f} s   (grid + worker start + load + eval; "
              f"{summary.models[0].structures_per_s or 0:.0f} points/s)")
    t0 = time.perf_counter()
    again = pes.compute_slice(cache, "sample", args.material, axes, [args.model], cold_range, args.points, **kw)
    assert again.run_summary.models[0].todo == 0
    print(f"  read back (all cached)               {time.perf_counter() - t0:7.2f} s")
    cmd = [sys.executable, "-m", "mliap_tui", f"--cache={cache.root}", "pes", args.material, "--axes", args.axes,
           "--range", next(ranges), "--points", str(args.points), "--models", args.model, "--device", "cpu",
           "--torch-threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    t_cli = time.perf_counter() - t0
    print(f"  CLI end to end (new process)         {t_cli:7.2f} s   (exit {out.returncode})")
    best_warm = min(warm.values())
    if t_sub:
        print(f"ratio subprocess / in-process: cold {t_sub / t_cold:.1f}x, warm {t_sub / best_warm:.1f}x")
    for what, t in (("CLI (new process)", t_cli), ("in-process cold", t_cold), ("warm", best_warm)):
        verdict = "met" if t < 10 else f"MISSED by {t - 10:.1f} s"
        print(f"goal 21x21 in < 10 s on 2 cores, {what}: {t:.1f} s -> {verdict}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
