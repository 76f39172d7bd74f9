"""Overhead of running on Dask: ``--cluster local:N`` vs the plain local engine, same crystals, side by side.

    python benchmarks/bench_cluster.py                          # CHGNet 0.3.0, 300 sample crystals, CPU, local:2
    python benchmarks/bench_cluster.py --limit 100 --repeats 2
    python benchmarks/bench_cluster.py --device cuda --workers 1 --limit 2000   # one GPU: Dask vs plain engine

Same structures (the first ``--limit`` crystals of the shipped sample), same model, each run into a
fresh cache, methods interleaved (``--repeats N``, default 3: the best of N, and the median of the
N back-to-back ratios, which a shared machine's noise moves less):

* plain: ``run_evaluation`` (one worker subprocess using the cores, or one per GPU);
* plain xN: ``run_evaluation(cpu_workers=N)`` (CPU only): N worker subprocesses sharing the cores,
  the same layout as a LocalCluster of N single-threaded workers, so the ratio isolates Dask's cost;
* dask local:N: ``ClusterRun(cluster="local:N")``; "run only" is from connected (LocalCluster
  started, shared cache checked) to the run's end (``run_finished``: results committed and
  compacted), i.e. what a run on a long-lived cluster pays; "end to end" adds starting and
  stopping the LocalCluster (its worker processes take a few seconds to exit).

Every variant loads the model once per worker; times are wall seconds of the whole run (planning,
loading, evaluation, commits, compaction). Ratios > 1 mean Dask is slower.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mliap_tui.cache import Cache  # noqa: E402
from mliap_tui.data.importer import import_dataset  # noqa: E402
from mliap_tui.engine.cluster import ClusterRun  # noqa: E402
from mliap_tui.engine.protocol import RunFinished  # noqa: E402
from mliap_tui.engine.runner import run_evaluation  # noqa: E402


def copy_dataset(src: Path, dst: Path) -> Cache:
    cache = Cache(dst)
    cache.dataset_dir("sample").mkdir(parents=True)
    for name in ("materials.parquet", "import_report.json"):
        (cache.dataset_dir("sample") / name).write_bytes((src / "datasets" / "sample" / name).read_bytes())
    return cache


def count(cache: Cache, model: str) -> int:
    return cache.scan_predictions("sample", [model], "static").collect().height


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="chgnet-0.3.0")
    ap.add_argument("--limit", type=int, default=300, help="crystals of the shipped sample (default 300, at most 400)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--workers", type=int, default=2, help="Dask workers of the LocalCluster (default 2)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="runs of each method, interleaved (default 3); the best and the median paired ratio are printed")
    ap.add_argument("--skip-plain", action="store_true", help="CPU: leave out the one-process plain run (keep plain xN)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        tmp = Path(tmp)
        template = tmp / "template"
        import_dataset("sample", cache=Cache(template), limit=args.limit, n_jobs=1)
        n = Cache(template).scan_materials("sample").collect().height
        common = dict(device=args.device, limit=args.limit)
        cpu = args.device == "cpu"

        def plain(cache: Cache) -> tuple[float, float]:
            t = time.perf_counter()
            s = run_evaluation(cache, "sample", [args.model], **common)
            assert s.ok, s.errors
            return time.perf_counter() - t, 0.0

        def plain_n(cache: Cache) -> tuple[float, float]:
            t = time.perf_counter()
            s = run_evaluation(cache, "sample", [args.model], cpu_workers=args.workers, **common)
            assert s.ok, s.errors
            return time.perf_counter() - t, 0.0

        def dask(cache: Cache) -> tuple[float, float]:
            finished: list[float] = []

            def on_event(ev) -> None:
                if isinstance(ev, RunFinished):
                    finished.append(time.perf_counter())

            t = time.perf_counter()
            run = ClusterRun(cache, "sample", [args.model], cluster=f"local:{args.workers}", on_event=on_event, **common)
            run.connect()
            t_connected = time.perf_counter()
            s = run.run()
            assert s.ok, s.errors
            end = time.perf_counter()
            return end - t, finished[0] - t_connected

        methods = ([] if args.skip_plain and cpu else [("plain", plain)]) + ([(f"plain x{args.workers}", plain_n)] if cpu else []) + \
                  [(f"dask local:{args.workers}", dask)]
        best: dict[str, tuple[float, float]] = {}
        runs: dict[str, list[tuple[float, float]]] = {}
        for r in range(args.repeats):
            for name, fn in methods:
                cache = copy_dataset(template, tmp / f"{name.replace(' ', '_').replace(':', '')}-{r}")
                total, run_only = fn(cache)
                assert count(cache, args.model) == n, f"{name}: {count(cache, args.model)}/{n} rows"
                runs.setdefault(name, []).append((total, run_only or total))
                prev = best.get(name)
                if prev is None or total < prev[0]:
                    best[name] = (total, run_only)
                print(f"  repeat {r + 1}: {name:<16} {total:6.1f} s", flush=True)

    print(f"\n{args.model}, {n} crystals, device {args.device}, best of {args.repeats}")
    print(f"{'method':<18}{'end to end':>12}{'struct/s':>10}{'run only':>10}{'struct/s':>10}")
    for name, (total, run_only) in best.items():
        ro = run_only or total
        print(f"{name:<18}{total:>10.1f} s{n / total:>10.1f}{ro:>8.1f} s{n / ro:>10.1f}")
    dask_name = f"dask local:{args.workers}"
    d_total, d_run = best[dask_name]
    for ref in [k for k in best if not k.startswith("dask")]:
        # each repeat's pair ran back to back: the median of their ratios is the robust figure on a
        # shared machine, the ratio of the bests the optimistic one
        pairs = list(zip(runs[dask_name], runs[ref]))
        med_total = statistics.median(d[0] / p[0] for d, p in pairs)
        med_run = statistics.median(d[1] / p[0] for d, p in pairs)
        print(f"ratio dask local:{args.workers} / {ref}: end to end {d_total / best[ref][0]:.2f} (median of "
              f"{len(pairs)} paired repeats {med_total:.2f}), run only {d_run / best[ref][0]:.2f} (median {med_run:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
