"""Benchmark: a 21x21 symmetry-restricted PES slice for one model on CPU, through the engine.

    python benchmarks/bench_pes.py [--model chgnet-0.3.0] [--material mp-1183892] [--points 21]

Imports the three sample crystals into a temporary cache, then times (1) building the grid
(structures + min-distance checks), (2) evaluating it (worker start-up and model loading
included, and the engine's own evaluation time), (3) reading it back from the cache.
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
import time
import warnings
from pathlib import Path

import polars as pl


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="chgnet-0.3.0")
    ap.add_argument("--material", default="mp-1183892")
    ap.add_argument("--axes", default="Cl:4f:x,lattice:a")
    ap.add_argument("--points", type=int, default=21)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from mliap_tui.analysis.pes import slices as pes
    from mliap_tui.cache import Cache
    from mliap_tui.data.importer import import_dataset, sample_path

    tmp = Path(tempfile.mkdtemp(prefix="bench-pes-"))
    with gzip.open(sample_path(), "rt") as fh:
        df = pl.read_csv(fh.read().encode())
    df.filter(pl.col("material_id") == args.material).write_csv(tmp / "one.csv")
    cache = Cache(tmp / "cache")
    import_dataset(str(tmp / "one.csv"), dataset="sample", cache=cache, n_jobs=1)
    axes = args.axes.split(",")
    t0 = time.perf_counter()
    s = pes.compute_slice(cache, "sample", args.material, axes, [], points=args.points)
    t_grid = time.perf_counter() - t0
    t0 = time.perf_counter()
    s = pes.compute_slice(cache, "sample", args.material, axes, [args.model], points=args.points, device="cpu")
    t_eval = time.perf_counter() - t0
    m = s.run_summary.models[0]
    t0 = time.perf_counter()
    pes.compute_slice(cache, "sample", args.material, axes, [args.model], points=args.points, device="cpu")
    t_cached = time.perf_counter() - t0
    n = s.energies[args.model].size
    print(f"{args.material} {' x '.join(axes)} {args.points}x{args.points} = {n} points, {s.crystal.n_sites} atoms each, "
          f"{args.model} on CPU")
    print(f"  grid build + write        {t_grid:7.2f} s")
    print(f"  evaluate (end to end)     {t_eval:7.2f} s   (engine eval {m.eval_s:.2f} s, {m.structures_per_s or 0:.1f} structures/s)")
    print(f"  read back (all cached)    {t_cached:7.2f} s")


if __name__ == "__main__":
    main()
