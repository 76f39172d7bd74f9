"""End-to-end force audit: softening scale, rare-event force errors and E-V bulk moduli.

    python scripts/run_force_audit.py --cache /tmp/force_audit/cache \
        [--models chgnet-0.3.0,sevennet-0] [--data-root ../shared/data] [--json results.json]

1. imports the Si rare-event sets (DFT_K4 forces, per-atom r next to them) and the MPtrj frames
   (skipped when already in the cache);
2. evaluates every model with forces and stress through the engine (batched, resumable, cached:
   a second run only computes what is missing);
3. writes a strain-scan dataset (9 volumes, ±6 %) of a few MP sample crystals and evaluates it;
4. prints the softening, rare-event and bulk-modulus tables (the same as ``mliap-tui softening`` /
   ``mliap-tui rare-events``) and writes the figures to a JSON file.

The full Si sets (200 cells x 63-65 atoms) take a few minutes per model on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

#: the shared reference data beside the checkout (or $MLIAP_TUI_SHARED_DATA)
SHARED_DATA_DIR = Path(os.environ.get("MLIAP_TUI_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")

DEFAULT_MODELS = "chgnet-0.3.0,sevennet-0"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default="/tmp/force_audit/cache")
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--data-root", default=str(SHARED_DATA_DIR))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None, help="where to write the figures (default: <cache>/force_audit.json)")
    ap.add_argument("--reimport", action="store_true", help="import the datasets even if cached")
    args = ap.parse_args(argv)

    import polars as pl
    from rich.console import Console

    from mliap_tui.analysis import eos
    from mliap_tui.analysis.force_audit import force_audit
    from mliap_tui.cache import Cache
    from mliap_tui.cli import render
    from mliap_tui.data.importer import import_dataset
    from mliap_tui.engine.runner import run_evaluation

    console = Console(highlight=False, width=80)
    cache = Cache.open(args.cache)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    root = Path(args.data_root)
    t0 = time.perf_counter()

    # 1. import
    si_sets = {"si-interstitial": root / "si_re/Interstitial-RE_Testing_Set",
               "si-vacancy": root / "si_re/Vacancy-RE_Testing_Set"}
    for name, path in si_sets.items():
        if args.reimport or not cache.atom_properties_path(name).is_file():
            rep = import_dataset(path, dataset=name, cache=cache)
            console.print(f"imported {name}: {rep.n_loaded} cells, {rep.n_rejected} rejected")
    if args.reimport or not cache.has_materials("mptrj"):
        rep = import_dataset(root / "mptrj/mptrj_10_systems.db", dataset="mptrj", cache=cache)
        console.print(f"imported mptrj: {rep.n_loaded} frames, {rep.n_rejected} rejected")
    if args.reimport or not eos.is_eos_dataset(cache, "eos-scan"):
        structures = eos.structures_from_sample()
        rep = eos.make_eos_dataset(cache, structures, "eos-scan")
        console.print(f"strain scan: {len(structures)} crystals x {len(eos.VOLUME_SCALES)} volumes = {rep.n_loaded} cells")

    # 2-3. evaluate (resumable)
    force_sets = ["mptrj", "si-vacancy", "si-interstitial"]
    for ds in force_sets + ["eos-scan"]:
        summary = run_evaluation(cache, ds, models, forces=True, stress=True, device=args.device)
        console.print(summary.format(), soft_wrap=True)
        if summary.errors:
            console.print(f"[red]{summary.errors}[/red]")

    # 4. tables
    audit = force_audit(cache, force_sets, models)
    per, agg, summ, binned = audit.per_structure, audit.aggregate, audit.summary, audit.binned
    for ds in force_sets:
        console.print(render.softening_summary(agg, ds))
    for ds in force_sets:
        console.print(render.rare_event_summary(summ, ds))
    for ds in ("si-interstitial", "si-vacancy"):
        console.print(render.rare_events_by_distance(binned, ds))
    eos_tab = eos.eos_table(cache, "eos-scan", models)
    console.print(render.eos_fits(eos_tab))
    formulas = dict(cache.scan_materials("eos-scan").select(
        pl.col("material_id").str.split("@").list.first().alias("b"), "formula").unique("b").collect().iter_rows())
    matrix = eos.bulk_modulus_matrix(eos_tab, formulas)

    out = Path(args.json) if args.json else cache.root / "force_audit.json"
    out.write_text(json.dumps({
        "models": models,
        "softening": agg.to_dicts(),
        "rare_events": summ.to_dicts(),
        "rare_events_by_distance": binned.to_dicts(),
        "eos": eos_tab.to_dicts(),
        "bulk_moduli_gpa": matrix.to_dicts(),
        "wall_s": time.perf_counter() - t0,
    }, indent=1, default=str))
    per.write_csv(cache.root / "softening_per_structure.csv")
    console.print(f"figures: {out}; per-structure table: {cache.root / 'softening_per_structure.csv'} "
                  f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
