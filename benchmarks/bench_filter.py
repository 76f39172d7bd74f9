"""Filter-to-redraw latency of the Explore screen on a 150k-material x 10-model cache.

The cache is SYNTHETIC: random compositions, space groups, DOF and energies written with the
real schema (``cache.MATERIALS_SCHEMA`` / ``PREDICTIONS_SCHEMA`` through ``Cache.write_*``),
so the code paths and table sizes are the real ones but the numbers mean nothing physically.
Structures (lattice, coordinates) are left null: the detail view is not benchmarked.

For each of ~30 filters it measures
  compute  = parse + filter + per-model summary + sort   (``tui.state.compute_view``)
  render   = push the view to the widgets (table, summary strip, status line) and render every
             visible line of the virtual table at 200x60 (``VirtualTable.render_line``)
  total    = compute + render                             (target: median < 100 ms)
and, separately, ``app``: the time from ``ExploreScreen.set_filter_text`` until the screen has
shown the new view, through the thread worker and the message queue of the running app.

    python benchmarks/bench_filter.py                    # 150k x 10, builds a cache in a temp dir
    python benchmarks/bench_filter.py --materials 20000 --models 4 --keep /tmp/bench-cache
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from mliap_tui.cache import Cache
from mliap_tui.symmetry import crystal_system, lattice_dof

DATASET = "bench"
ELEMENTS = ["H", "Li", "B", "C", "N", "O", "F", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "K", "Ca", "Ti", "V",
            "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As", "Se", "Sr", "Y", "Zr", "Nb", "Mo",
            "Ag", "Cd", "In", "Sn", "Sb", "Te", "Ba", "La", "Ce", "Hf", "Ta", "W", "Pt", "Au", "Pb", "Bi"]
FILTERS = [
    "", "sg=225", "sg=Fm-3m", "sg=195..230", "sg!=1", "cs=cubic", "cs=tetragonal,hexagonal", "cs!=triclinic",
    "dof=3..10", "dof=..2", "dof=20..", "ldof=6 wdof=10..", "pdof=1..", "nsites=..8",
    "model=m03", "model=m00,m05,m09", "model=m0*", "el=O", "el=Ti,O", "el=Fe,O elmode=any",
    "el=Li,Fe,P,O elmode=only", "el!=O", "chemsys=O-Ti", "ehull=..0.05", "eform=-1..0",
    "err:ehull>50meV", "serr:ehull<-30meV", "failed", "ok dof=6..12 cs=orthorhombic",
    "sg=136 cs=tetragonal dof=3..10 model=m01 el=Ti,O elmode=all ehull=..0.05 err:ehull>0.05",
]
SORTS = [None, "d_e_above_hull@m03", "formula", "total_dof", "e_above_hull_pred_fixed@m07"]


def build_cache(root: Path, n_materials: int, n_models: int, seed: int = 0, relax_models: int = 0,
                chunk_rows: int | None = None) -> Cache:
    """A synthetic cache with the real schema: ``n_models`` models static, the first
    ``relax_models`` of them also relaxed; each model's rows committed in chunks of ``chunk_rows``
    (default: three chunks, as a resumed run leaves them)."""
    rng = np.random.default_rng(seed)
    cache = Cache(root)
    n_el = rng.choice([1, 2, 3, 4], size=n_materials, p=[0.05, 0.45, 0.4, 0.1])
    picks = [sorted(rng.choice(len(ELEMENTS), size=k, replace=False)) for k in n_el]
    elements = [[ELEMENTS[i] for i in p] for p in picks]
    sg = rng.integers(1, 231, size=n_materials)
    systems = [crystal_system(int(n)) for n in sg]
    ldof = np.array([lattice_dof(s) for s in systems])
    wdof = rng.integers(0, 25, size=n_materials)
    e_form = rng.normal(-1.0, 0.8, size=n_materials)
    e_hull = np.abs(rng.normal(0.0, 0.08, size=n_materials)) * (rng.random(n_materials) > 0.3)
    e_tot = e_form - 4.0 + rng.normal(0, 1.0, size=n_materials)
    ids = [f"syn-{i:07d}" for i in range(n_materials)]
    materials = pl.DataFrame(
        {
            "material_id": ids,
            "dataset": [DATASET] * n_materials,
            "source": ["synthetic benchmark"] * n_materials,
            "formula": ["".join(f"{e}{c}" for e, c in zip(el, rng.integers(1, 5, size=len(el)))) for el in elements],
            "elements": elements,
            "chemsys": ["-".join(el) for el in elements],
            "n_sites": rng.integers(1, 80, size=n_materials).astype(np.int32),
            "e_form_per_atom_dft_mp2020": e_form,
            "e_above_hull_dft_mp2020": e_hull,
            "e_per_atom_dft_mp2020": e_tot,
            "symprec_ang": [0.1] * n_materials,
            "spacegroup_number": sg.astype(np.int16),
            "spacegroup_symbol": [f"SG{n}" for n in sg],
            "crystal_system": systems,
            "lattice_dof": ldof.astype(np.int16),
            "wyckoff_dof": wdof.astype(np.int16),
            "total_dof": (ldof + wdof).astype(np.int16),
            "polar_dof": rng.choice([0, 0, 0, 1, 2, 3], size=n_materials).astype(np.int16),
        }
    )
    cache.write_materials(DATASET, materials)
    for k in range(n_models):
        model = f"m{k:02d}"
        for mode in ("static", "relax") if k < relax_models else ("static",):
            failed = rng.random(n_materials) < 0.01
            pred = e_tot + rng.normal(0.01 * (k - n_models / 2), 0.03 + 0.005 * k, size=n_materials)
            columns = {
                "material_id": ids,
                "model": [model] * n_materials,
                "mode": [mode] * n_materials,
                "status": np.where(failed, "failed", "ok"),
                "error": ["synthetic failure" if f else None for f in failed],
                "n_sites": materials["n_sites"],
                "e_per_atom_pred_native": np.where(failed, np.nan, pred),
                "e_per_atom_pred_mp2020": np.where(failed, np.nan, pred),
                "run_id": ["bench"] * n_materials,
                "created_unix_s": [time.time()] * n_materials,
            }
            if mode == "relax":  # what a relaxation stores: the relaxed cell and its symmetry
                n_sites = materials["n_sites"].to_numpy()
                columns |= {
                    "relaxed_lattice_ang": [list(rng.normal(0, 3, 9)) for _ in range(n_materials)],
                    "relaxed_frac_coords": [list(rng.random(3 * n)) for n in n_sites],
                    "relaxed_spacegroup_number": sg.astype(np.int16),
                    "relaxed_total_dof": (ldof + wdof).astype(np.int16),
                    "relax_steps": rng.integers(5, 300, size=n_materials).astype(np.int32),
                }
            df = pl.DataFrame(columns).with_columns(pl.col("e_per_atom_pred_mp2020", "e_per_atom_pred_native").fill_nan(None))
            step = chunk_rows or n_materials // 3 + 1  # default: several chunks, as a resumed run leaves them
            for start in range(0, n_materials, step):
                cache.write_prediction_chunk(DATASET, model, mode, df.slice(start, step))
    return cache


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


async def run(cache: Cache, repeats: int) -> dict:
    from mliap_tui.tui.app import MliapTuiApp
    from mliap_tui.tui.explore import ExploreScreen
    from mliap_tui.tui.state import compute_view
    from mliap_tui.tui.table import VirtualTable

    t0 = time.perf_counter()  # from the app's start: run_test returns once the app is mounted
    app = MliapTuiApp(cache, DATASET)
    out: dict[str, list[float]] = {"compute": [], "render": [], "total": [], "app": []}
    rows: list[tuple] = []
    async with app.run_test(size=(200, 60)) as pilot:
        while not (isinstance(app.screen, ExploreScreen) and app.screen.view is not None):
            await asyncio.sleep(0.01)
        load_s = time.perf_counter() - t0
        screen: ExploreScreen = app.screen
        data = screen.data
        table = screen.query_one("#results", VirtualTable)
        await pilot.pause()
        cold_sorts = {}
        for column in SORTS[1:]:  # first sort by a column: one full-table argsort, cached after that
            t1 = time.perf_counter()
            data.sort_order("e_above_hull", column, True)
            cold_sorts[column] = time.perf_counter() - t1
        for i, text in enumerate(FILTERS):
            sort = SORTS[i % len(SORTS)]
            best = None
            for _ in range(repeats):
                t1 = time.perf_counter()
                view = compute_view(data, text, "e_above_hull", sort, descending=True)
                t2 = time.perf_counter()
                screen.filter = view.filter
                screen.show_view(view)
                lines = [table.render_line(y) for y in range(table.size.height)]
                t3 = time.perf_counter()
                sample = (t2 - t1, t3 - t2, t3 - t1)
                best = sample if best is None or sample[2] < best[2] else best
            out["compute"].append(best[0])
            out["render"].append(best[1])
            out["total"].append(best[2])
            rows.append((text or "(none)", sort or "-", view.n_materials, best[0], best[1], len(lines)))
        # through the running app: input handling, worker thread, message, widget updates
        shown = asyncio.Event()
        show_view = screen.show_view

        def show_and_signal(view) -> None:
            show_view(view)
            [table.render_line(y) for y in range(table.size.height)]
            shown.set()

        screen.show_view = show_and_signal
        screen.sort = None
        for text in FILTERS:
            shown.clear()
            t1 = time.perf_counter()
            screen.set_filter_text(text)
            await shown.wait()
            out["app"].append(time.perf_counter() - t1)
    return {"load_s": load_s, "n_materials": data.n_materials, "n_models": len(data.models), "series": out,
            "rows": rows, "cold_sorts": cold_sorts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--materials", type=int, default=150_000)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="best of N per filter (default 3)")
    parser.add_argument("--keep", type=Path, help="build (or reuse) the synthetic cache here")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="mliap-bench-"))
    cache = Cache(root)
    if not cache.has_materials(DATASET):
        t0 = time.perf_counter()
        build_cache(root, args.materials, args.models)
        print(f"built synthetic cache {root} ({args.materials:,} materials x {args.models} models) in {time.perf_counter() - t0:.1f} s")
    result = asyncio.run(run(cache, args.repeats))
    print(f"dataset loaded into the app (tidy + wide tables) in {result['load_s']:.2f} s: "
          f"{result['n_materials']:,} materials x {result['n_models']} models")
    print("first sort by a column (one-time argsort of the whole table, then cached): "
          + ", ".join(f"{c} {t * 1e3:.0f} ms" for c, t in result["cold_sorts"].items()))
    print(f"{'filter':60} {'sort':28} {'rows':>8} {'compute ms':>10} {'render ms':>10}")
    for text, sort, n, c, r, _ in result["rows"]:
        print(f"{text[:60]:60} {sort[:28]:28} {n:8,} {c * 1e3:10.1f} {r * 1e3:10.1f}")
    print()
    for name, values in result["series"].items():
        ms = [v * 1e3 for v in values]
        print(f"{name:8} median {statistics.median(ms):7.1f} ms   p95 {pct(ms, 95):7.1f} ms   max {max(ms):7.1f} ms   (n={len(ms)})")
    med = statistics.median(result["series"]["total"]) * 1e3
    print(f"\nfilter-to-redraw median {med:.1f} ms: {'within' if med < 100 else 'OVER'} the 100 ms target")


if __name__ == "__main__":
    main()
