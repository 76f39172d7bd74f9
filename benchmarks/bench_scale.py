"""Full-Materials-Project scale: the cache, the summary, export and the explorer at 150k crystals x 10 models.

The cache is SYNTHETIC (``bench_filter.build_cache``: the real schema written through the real
``Cache``; random compositions, space groups, DOF and energies): 150k materials x 10 models static,
and relaxed for 2 of them (1.8 M prediction rows), committed in chunks of ``--chunk-rows`` rows
as runs commit them. Every step runs in a fresh process of its own (its peak RSS is its own):

  open (chunks)    the explorer on the cache as runs left it, before compaction: app start to
                   the first painted table (``MliapTuiApp.run_test``, 200x60)
  compact          ``cache compact`` (what a run does at its end for what it committed)
  open             the explorer on the compacted cache, then ~30 filters through the running app:
                   filter-to-redraw median and p95 (``bench_filter.run``: parse, filter, summary,
                   sort, worker thread, message, widgets, every visible line rendered)
  summary          ``mliap-tui summary --by dof`` (CLI, process start to exit) with the rebuilt-hull
                   tables stored (see below)
  export           ``mliap-tui export --filter 'model=m00 ehull=..0.05'`` (about 95k tidy rows)
  hull (cold)      the rebuilt hulls computed from scratch for ``--cold-materials`` materials x 1
                   model: what the first ``summary`` of a dataset pays once per model

The rebuilt-hull Ehull of 10 x 150k random compositions would take hours to compute (and mean
nothing), so the stored tables are seeded with synthetic values under their real version keys
(``analysis.errors.hull_inputs_version`` of the real rows): ``summary`` then takes the path it
takes on every call after the first. The cold cost is measured on a subset (``hull (cold)``).

Goals on 2 cores: open < 2 s, filter-to-redraw p95 < 100 ms, summary < 5 s, peak RSS < 4 GiB.

    python benchmarks/bench_scale.py                          # 150k x 10 (+2 relaxed), temp dir
    python benchmarks/bench_scale.py --keep /tmp/scale-cache  # build once, reuse
    python benchmarks/bench_scale.py --materials 20000 --models 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

GOALS = {"open_s": 2.0, "filter_p95_ms": 100.0, "summary_s": 5.0, "peak_rss_gib": 4.0}
EXPORT_FILTER = "model=m00 ehull=..0.05"


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---- steps (each in its own process) ------------------------------------------------------------


def step_build(root: Path, materials: int, models: int, relax_models: int, chunk_rows: int) -> dict:
    from bench_filter import build_cache

    t0 = time.perf_counter()
    cache = build_cache(root, materials, models, relax_models=relax_models, chunk_rows=chunk_rows)
    files = len(cache.prediction_files("bench"))
    return {"build_s": time.perf_counter() - t0, "files": files}


def step_open(root: Path, filters: bool, dataset: str = "bench") -> dict:
    """App start to the first painted table; with ``filters``, bench_filter's filter series too."""
    t_import = time.perf_counter()
    from bench_filter import run as filter_run

    from mliap_tui.cache import Cache
    from mliap_tui.tui.app import MliapTuiApp
    from mliap_tui.tui.explore import ExploreScreen
    from mliap_tui.tui.table import VirtualTable

    import_s = time.perf_counter() - t_import
    cache = Cache(root)
    if filters:
        result = asyncio.run(filter_run(cache, repeats=1))
        app_ms = sorted(v * 1e3 for v in result["series"]["app"])
        total_ms = sorted(v * 1e3 for v in result["series"]["total"])
        return {"open_s": result["load_s"], "import_s": import_s, "filter_app_ms": app_ms, "filter_total_ms": total_ms,
                "rows": result["n_materials"], "models": result["n_models"], "peak_rss": peak_rss_bytes()}

    async def first_paint() -> float:
        t0 = time.perf_counter()  # from the app's start: run_test returns once the app is mounted
        app = MliapTuiApp(cache, dataset)
        async with app.run_test(size=(200, 60)):
            while not (isinstance(app.screen, ExploreScreen) and app.screen.view is not None):
                await asyncio.sleep(0.005)
            table = app.screen.query_one("#results", VirtualTable)
            [table.render_line(y) for y in range(table.size.height)]
            return time.perf_counter() - t0

    return {"open_s": asyncio.run(first_paint()), "import_s": import_s, "peak_rss": peak_rss_bytes()}


def step_compact(root: Path) -> dict:
    from mliap_tui.cache import Cache
    from mliap_tui.cache.compact import compact_all

    t0 = time.perf_counter()
    results = compact_all(Cache(root))
    return {"compact_s": time.perf_counter() - t0, "files_merged": sum(r.files_merged for r in results),
            "rows_after": sum(r.rows_after for r in results), "peak_rss": peak_rss_bytes()}


def step_seed_hulls(root: Path) -> dict:
    """Store synthetic rebuilt-hull tables under the version keys of the real rows (see the docstring)."""
    import numpy as np
    import polars as pl

    from mliap_tui.analysis.errors import (
        REBUILT_HULL_TABLE,
        error_table,
        hull_entries,
        hull_inputs_version,
    )
    from mliap_tui.cache import Cache
    from mliap_tui.cache.derived import write_derived

    cache = Cache(root)
    t0 = time.perf_counter()
    n = 0
    for mode in ("static", "relax"):
        table = error_table(cache, "bench", mode=mode)
        for (model, _), group in table.group_by("model", "mode", maintain_order=True):
            entries = hull_entries(group)
            rng = np.random.default_rng(len(entries))
            dft = np.abs(rng.normal(0, 0.08, len(entries)))
            seeded = pl.DataFrame({"material_id": entries["material_id"], "e_above_hull_pred_rebuilt": dft + rng.normal(0, 0.03, len(entries)).clip(-dft),
                                   "e_above_hull_dft_rebuilt": dft})
            write_derived(cache, "bench", model, mode, REBUILT_HULL_TABLE, hull_inputs_version(entries), seeded)
            n += 1
    return {"seed_s": time.perf_counter() - t0, "tables": n}


def step_cli(root: Path, *argv: str) -> dict:
    """A CLI command as a user runs it (process start to exit), with its peak RSS."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mliap_tui", f"--cache={root}", *argv], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "COLUMNS": "100"})
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall_s": wall, "rc": proc.returncode, "stdout": proc.stdout[-3000:], "stderr": proc.stderr[-2000:],
            "peak_rss": usage.ru_maxrss * 1024}


def step_cold_hull(root: Path, materials: int) -> dict:
    from mliap_tui.analysis.errors import (
        compute_rebuilt_hull,
        error_table,
        hull_entries,
    )
    from mliap_tui.cache import Cache

    table = error_table(Cache(root), "bench", models=["m00"])
    entries = hull_entries(table).sort("material_id").head(materials)
    t0 = time.perf_counter()
    compute_rebuilt_hull(entries)
    return {"hull_s": time.perf_counter() - t0, "materials": entries.height}


STEPS = {"build": step_build, "open": step_open, "compact": step_compact, "seed": step_seed_hulls,
         "cli": step_cli, "cold": step_cold_hull}


def in_process(step: str, *args: str) -> dict:
    """Run ``step`` in a fresh interpreter; its JSON result."""
    proc = subprocess.run([sys.executable, __file__, "--step", step, "--", *args], capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"step {step} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_real(root: Path, dataset: str) -> None:
    """Open, summary (twice: the first computes and stores the rebuilt hulls) and export on a real dataset."""
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    info = in_process("cli", str(root), "cache", "info", "--data", dataset)
    print(info["stdout"])
    opened = in_process("open", str(root), "first", dataset)
    print(f"explorer open: {opened['open_s']:.2f} s to the first painted table (+ {opened['import_s']:.2f} s importing "
          f"the app), peak RSS {opened['peak_rss'] / 2**30:.2f} GiB")
    for label in ("first summary (computes and stores the rebuilt hulls)", "summary again (reads them)"):
        out = in_process("cli", str(root), "summary", "--data", dataset, "--by", "dof")
        if out["rc"] != 0:
            raise SystemExit(f"summary failed: {out['stderr']}")
        print(f"{label}: {out['wall_s']:.2f} s, peak RSS {out['peak_rss'] / 2**30:.2f} GiB")
    print(out["stdout"])
    export = in_process("cli", str(root), "export", "--data", dataset, "--rebuilt-hull", "--overwrite", str(root / "export.csv"))
    print(f"export --rebuilt-hull: {export['stdout'].strip().splitlines()[-1]} in {export['wall_s']:.2f} s")


def pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--materials", type=int, default=150_000)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--relax-models", type=int, default=2)
    parser.add_argument("--chunk-rows", type=int, default=1000, help="rows per committed chunk (default 1000)")
    parser.add_argument("--cold-materials", type=int, default=0,
                        help="also time the rebuilt hulls from scratch on this many synthetic materials (default: skip)")
    parser.add_argument("--keep", type=Path, help="build (or reuse) the synthetic cache here")
    parser.add_argument("--data", help="measure this dataset of the --keep cache instead (a real one): open, summary "
                        "(first call, then again), export of everything")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:  # a child process: one step, one JSON line
        fn = STEPS[args.step]
        root, rest = Path(args.args[0]), args.args[1:]
        if args.step == "build":
            out = fn(root, *map(int, rest))
        elif args.step == "open":
            out = fn(root, rest[:1] == ["filters"], *(rest[1:] or ["bench"]))
        elif args.step == "cold":
            out = fn(root, int(rest[0]))
        else:
            out = fn(root, *rest)
        print(json.dumps(out))
        return

    root = args.keep or Path(tempfile.mkdtemp(prefix="mliap-scale-"))
    from mliap_tui.cache import Cache

    if args.data:
        measure_real(root, args.data)
        return

    cache = Cache(root)
    fresh = not cache.has_materials("bench")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (shared machines make every figure slower)")
    if fresh:
        built = in_process("build", str(root), str(args.materials), str(args.models), str(args.relax_models), str(args.chunk_rows))
        print(f"built synthetic cache {root}: {args.materials:,} materials x {args.models} models static "
              f"+ {args.relax_models} relaxed, {built['files']:,} chunk files, in {built['build_s']:.0f} s")
        before = in_process("open", str(root))
        print(f"explorer open before compaction ({built['files']:,} chunk files): {before['open_s']:.2f} s "
              f"to the first painted table, peak RSS {before['peak_rss'] / 2**30:.2f} GiB")
        compacted = in_process("compact", str(root))
        print(f"cache compact: {compacted['files_merged']:,} files -> one per model and mode "
              f"({compacted['rows_after']:,} rows) in {compacted['compact_s']:.1f} s, peak RSS {compacted['peak_rss'] / 2**30:.2f} GiB")
        seeded = in_process("seed", str(root))
        print(f"seeded {seeded['tables']} rebuilt-hull tables (synthetic values, real version keys) in {seeded['seed_s']:.1f} s")
    else:
        before = compacted = None
        print(f"reusing the cache at {root}")

    opened = in_process("open", str(root), "filters")
    app_ms = opened["filter_app_ms"]
    print(f"explorer open (compacted): {opened['open_s']:.2f} s to the first painted table "
          f"(+ {opened['import_s']:.2f} s importing the app), {opened['rows']:,} materials x {opened['models']} models")
    print(f"filter-to-redraw through the app (n={len(app_ms)}): median {pct(app_ms, 50):.1f} ms, p95 {pct(app_ms, 95):.1f} ms "
          f"(compute + render only: median {pct(opened['filter_total_ms'], 50):.1f} ms, p95 {pct(opened['filter_total_ms'], 95):.1f} ms)")

    summary = in_process("cli", str(root), "summary", "--data", "bench", "--by", "dof")
    if summary["rc"] != 0:
        raise SystemExit(f"summary failed: {summary['stderr']}")
    print(f"summary --by dof (CLI, process start to exit): {summary['wall_s']:.2f} s, peak RSS {summary['peak_rss'] / 2**30:.2f} GiB")
    out_csv = root / "export.csv"
    export = in_process("cli", str(root), "export", "--data", "bench", "--filter", EXPORT_FILTER, "--overwrite", str(out_csv))
    if export["rc"] != 0:
        raise SystemExit(f"export failed: {export['stderr']}")
    print(f"export --filter '{EXPORT_FILTER}': {export['stdout'].strip().splitlines()[-1]} in {export['wall_s']:.2f} s, "
          f"peak RSS {export['peak_rss'] / 2**30:.2f} GiB")
    if args.cold_materials:
        cold = in_process("cold", str(root), str(args.cold_materials))
        print(f"rebuilt hulls from scratch, {cold['materials']:,} synthetic materials x 1 model (what the first summary "
              f"pays per model, once; random compositions are the slow case): {cold['hull_s']:.1f} s")

    peaks = [opened["peak_rss"], summary["peak_rss"], export["peak_rss"]] + (
        [before["peak_rss"], compacted["peak_rss"]] if before else [])
    figures = {"open_s": opened["open_s"], "filter_p95_ms": pct(app_ms, 95), "summary_s": summary["wall_s"],
               "peak_rss_gib": max(peaks) / 2**30}
    print("\nthe four figures (goals on 2 cores):")
    labels = {"open_s": ("explorer open", "s"), "filter_p95_ms": ("filter-to-redraw p95", "ms"),
              "summary_s": ("summary --by dof", "s"), "peak_rss_gib": ("peak RSS (any step)", "GiB")}
    for key, value in figures.items():
        name, unit = labels[key]
        goal = GOALS[key]
        verdict = "meets" if value < goal else f"MISSES by {value - goal:.2f} {unit} ({value / goal:.1f}x)"
        print(f"  {name:24} {value:8.2f} {unit:3} goal < {goal:g} {unit}: {verdict}")


if __name__ == "__main__":
    main()
