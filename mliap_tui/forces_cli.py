"""Headless force audits: ``mliap-tui softening`` and ``mliap-tui rare-events``.

Wire into cli.py with ``add_force_parsers(subparsers)``; each parser sets ``func`` to
:func:`cmd_softening` / :func:`cmd_rare_events`. Tables are rich tables fitting 80 columns.
Forces are eV/Å, angles degrees, bulk moduli GPa.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from rich.console import Console
from rich.table import Table

from mliap_tui.cache import Cache

console = Console(highlight=False, width=None)

SOFTENING_EPILOG = """\
per structure and model: slope of a linear fit of MLIP force components on DFT ones (through the
origin, and with an intercept), force MAE and the corrected MAE (cMAE) after dividing the
predictions by the slope (Deng et al., npj Comput. Mater. 2025). A strain-scan dataset (made by
scripts/run_force_audit.py) prints Birch-Murnaghan bulk moduli per model instead.

examples:
  mliap-tui softening --data si-vacancy,mptrj --models chgnet-0.3.0,sevennet-0
  mliap-tui softening --data mptrj --per-structure --csv mptrj_softening.csv
  mliap-tui softening --data eos-scan --models chgnet-0.3.0,sevennet-0
"""

RARE_EVENTS_EPILOG = """\
per atom: dF = |F_ML| - |F_DFT| (eV/Å) and the angle dtheta between F_ML and F_DFT (degrees),
for rare-event atoms (r == 0, the migrating atoms) and all atoms, and binned by distance to the
migrating atom (Liu, He, Mo, npj Comput. Mater. 9, 174 (2023)).

examples:
  mliap-tui rare-events --data si-interstitial,si-vacancy --models chgnet-0.3.0,sevennet-0
  mliap-tui rare-events --data si-vacancy --by-distance --csv si_vac_atoms.csv
"""


def _split(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _cache(args: argparse.Namespace) -> Cache:
    return Cache.open(getattr(args, "cache", None))


def add_force_parsers(subparsers: Any) -> None:
    """Add the ``softening`` and ``rare-events`` sub-commands to an argparse subparsers object."""
    fmt = argparse.RawDescriptionHelpFormatter
    s = subparsers.add_parser("softening", help="force softening scale (slope, MAE, cMAE) and E-V bulk moduli",
                              epilog=SOFTENING_EPILOG, formatter_class=fmt)
    s.add_argument("--data", required=True, help="dataset(s), comma-separated")
    s.add_argument("--models", default=None, help="model ids, comma-separated (default: all cached)")
    s.add_argument("--per-structure", action="store_true", help="also list every structure")
    s.add_argument("--csv", metavar="FILE", default=None, help="write the per-structure table to FILE")
    s.add_argument("--cache", metavar="DIR", default=argparse.SUPPRESS, help="cache folder")
    s.set_defaults(func=cmd_softening)

    r = subparsers.add_parser("rare-events", help="rare-event force errors: |dF| and angle, RE vs all atoms",
                              epilog=RARE_EVENTS_EPILOG, formatter_class=fmt)
    r.add_argument("--data", required=True, help="dataset(s), comma-separated")
    r.add_argument("--models", default=None, help="model ids, comma-separated (default: all cached)")
    r.add_argument("--by-distance", action="store_true", help="also the table binned by distance to the migrating atom")
    r.add_argument("--csv", metavar="FILE", default=None, help="write the per-atom table to FILE")
    r.add_argument("--cache", metavar="DIR", default=argparse.SUPPRESS, help="cache folder")
    r.set_defaults(func=cmd_rare_events)


def _table(title: str) -> Table:
    from rich import box

    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False,
                 caption_justify="left")


def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}f}"


def _pct(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{100 * x:.1f}"


def _short(model: str, n: int = 12) -> str:
    return model if len(model) <= n else model[: n - 1] + "…"


# --------------------------------------------------------------------------------------------
# softening
# --------------------------------------------------------------------------------------------


def softening_summary_table(agg, dataset: str) -> Table:
    t = _table(f"{dataset}: force softening (slope of MLIP on DFT force components; eV/Å)")
    for name, j in (("model", "left"), ("cells", "right"), ("slope", "right"),
                    ("<1 %", "right"), ("slope+b", "right"), ("MAE", "right"), ("cMAE", "right"), ("pooled", "right")):
        t.add_column(name, justify=j, no_wrap=True)
    for r in agg.filter(agg["dataset"] == dataset).iter_rows(named=True):
        t.add_row(_short(r["model"], 14), str(r["n_structures"]), _f(r["slope_median"]),
                  _pct(r["frac_slope_below_1"]), _f(r["slope_intercept_median"]), _f(r["mae_ev_per_ang"]),
                  _f(r["cmae_ev_per_ang"]), _f(r["slope_pooled"]))
    t.caption = ("slope: median per-structure slope through 0; <1 %: structures with slope < 1; "
                 "slope+b: median slope of the fit with intercept; cMAE: MAE of predictions / slope; "
                 "pooled: one fit over all components")
    return t


def per_structure_table(per: Any, limit: int = 40) -> Table:
    t = _table(f"Per structure (lowest slopes first, {min(limit, len(per))} of {len(per)})")
    for name, j in (("material", "left"), ("model", "left"), ("N", "right"), ("slope", "right"),
                    ("b", "right"), ("R²", "right"), ("MAE", "right"), ("cMAE", "right")):
        t.add_column(name, justify=j, no_wrap=True)
    for r in per.sort("slope_origin", nulls_last=True).head(limit).iter_rows(named=True):
        t.add_row(r["material_id"][-18:], _short(r["model"], 12), str(r["n_sites"]), _f(r["slope_origin"]),
                  _f(r["intercept_ev_per_ang"]), _f(r["r2"]), _f(r["mae_ev_per_ang"]), _f(r["cmae_ev_per_ang"]))
    return t


def eos_rich_table(table: Any) -> Table:
    t = _table("E-V scan, Birch-Murnaghan fit per model")
    for name, j in (("crystal", "left"), ("model", "left"), ("B0 GPa", "right"), ("B0'", "right"),
                    ("V0 Å³/at", "right"), ("RMS meV/at", "right"), ("R²", "right")):
        t.add_column(name, justify=j, no_wrap=True)
    for r in table.sort("base_id", "model").iter_rows(named=True):
        flag = "" if r["v0_inside_scan"] else " *"
        t.add_row(r["base_id"], _short(r["model"]), _f(r["b0_gpa"], 1) + flag, _f(r["b0_prime"], 2),
                  _f(r["v0_ang3_per_atom"], 2), _f(r["rms_residual_mev_per_atom"], 3), _f(r["r2"], 5))
    t.caption = "* minimum outside the scanned volumes (extrapolated). Lower B0 = softer PES."
    return t


def cmd_softening(args: argparse.Namespace) -> int:
    from mliap_tui.analysis import eos, softening

    cache = _cache(args)
    datasets, models = _split(args.data) or [], _split(args.models)
    force_sets = []
    for ds in datasets:
        if eos.is_eos_dataset(cache, ds):
            table = eos.eos_table(cache, ds, models)
            if not len(table):
                console.print(f"[yellow]{ds}: no predictions yet: mliap-tui run --data {ds} --models ...[/yellow]")
            else:
                console.print(eos_rich_table(table))
        else:
            force_sets.append(ds)
    if not force_sets:
        return 0
    import polars as pl

    pairs = pl.concat([softening.load_force_pairs(cache, d, models) for d in force_sets], how="vertical")
    if not len(pairs):
        console.print("[red]no structures with both DFT and predicted forces: run the engine with forces "
                      f"(mliap-tui run --data {force_sets[0]} --models ... --forces)[/red]")
        return 1
    per = softening.softening_table(pairs)
    agg = softening.aggregate_softening(pairs, per)
    for ds in dict.fromkeys(agg["dataset"].to_list()):
        console.print(softening_summary_table(agg, ds))
    if args.per_structure:
        console.print(per_structure_table(per))
    if args.csv:
        per.write_csv(args.csv)
        console.print(f"wrote {len(per)} rows to {args.csv}")
    return 0


# --------------------------------------------------------------------------------------------
# rare events
# --------------------------------------------------------------------------------------------


_RE_COLS = (("n", "right"), ("mean|dF|", "right"), ("|dF|>.5%", "right"), ("dθ med", "right"),
            (">15°%", "right"), (">30°%", "right"))


def rare_event_rich_table(summary: Any, dataset: str) -> Table:
    t = _table(f"{dataset}: force errors, dF = |F_ML|-|F_DFT| (eV/Å), angle dθ (°)")
    for name, j in (("model", "left"), ("atoms", "left"), *_RE_COLS):
        t.add_column(name, justify=j, no_wrap=True)
    for r in summary.filter(summary["dataset"] == dataset).iter_rows(named=True):
        t.add_row(_short(r["model"], 14), r["atoms"].replace(" atoms", ""), str(r["n_atoms"]),
                  _f(r["mean_abs_df_ev_per_ang"]), _pct(r["frac_abs_df_gt_0.5"]), _f(r["median_dtheta_deg"], 1),
                  _pct(r["frac_dtheta_gt_15"]), _pct(r["frac_dtheta_gt_30"]))
    t.caption = "RE = migrating atoms (r == 0); all = every atom of the set."
    return t


def distance_rich_table(binned: Any, dataset: str) -> Table:
    t = _table(f"{dataset}: by distance r to the migrating atom (Å)")
    for name, j in (("model", "left"), ("r Å", "left"), *_RE_COLS):
        t.add_column(name, justify=j, no_wrap=True)
    for r in binned.filter(binned["dataset"] == dataset).sort("model", "bin_index").iter_rows(named=True):
        t.add_row(_short(r["model"], 14), r["r_bin_ang"], str(r["n_atoms"]),
                  _f(r["mean_abs_df_ev_per_ang"]), _pct(r["frac_abs_df_gt_0.5"]), _f(r["median_dtheta_deg"], 1),
                  _pct(r["frac_dtheta_gt_15"]), _pct(r["frac_dtheta_gt_30"]))
    return t


def cmd_rare_events(args: argparse.Namespace) -> int:
    from mliap_tui.analysis import rare_events

    cache = _cache(args)
    atoms = rare_events.dataset_atom_errors(cache, _split(args.data) or [], _split(args.models))
    if not len(atoms):
        console.print("[red]no atoms with both DFT and predicted forces: run the engine with forces first[/red]")
        return 1
    summary = rare_events.rare_event_summary(atoms)
    for ds in dict.fromkeys(summary["dataset"].to_list()):
        console.print(rare_event_rich_table(summary, ds))
    if args.by_distance:
        binned = rare_events.distance_binned(atoms)
        if len(binned):
            for ds in dict.fromkeys(binned["dataset"].to_list()):
                console.print(distance_rich_table(binned, ds))
        else:
            console.print("[yellow]no per-atom distances (atom_properties.parquet) in these datasets[/yellow]")
    if args.csv:
        atoms.write_csv(args.csv)
        console.print(f"wrote {len(atoms)} rows to {args.csv}")
    return 0
