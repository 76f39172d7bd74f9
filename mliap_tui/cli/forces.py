"""``mliap-tui softening`` and ``mliap-tui rare-events``: headless force audits.

Forces are eV/Å, angles degrees, bulk moduli GPa. The numbers come from
:func:`mliap_tui.analysis.force_audit.force_audit` (the Forces screen shows the same).
"""

from __future__ import annotations

import argparse

from mliap_tui.cli import console, options, render
from mliap_tui.core.units import plural

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
  mliap-tui rare-events --data si-interstitial,si-vacancy --models sevennet-0
  mliap-tui rare-events --data si-vacancy --by-distance --csv si_vac_atoms.csv
"""


def register(sub: argparse._SubParsersAction) -> None:
    fmt = options.formatter()
    s = sub.add_parser("softening", help="force softening scale (slope, MAE, cMAE) and E-V bulk moduli",
                       description="Force softening of each model on datasets with DFT forces.",
                       epilog=SOFTENING_EPILOG, formatter_class=fmt)
    options.add_data(s, required=True, many=True)
    options.add_models(s, default=None)
    s.add_argument("--per-structure", action="store_true", help="also list every structure (lowest slopes first)")
    s.add_argument("--csv", metavar="FILE", default=None, help="write the per-structure table to FILE")
    options.add_cache(s)
    s.set_defaults(handler=cmd_softening)

    r = sub.add_parser("rare-events", help="rare-event force errors: |dF| and angle, RE vs all atoms",
                       description="Force magnitude and angle errors on migrating (rare-event) atoms vs all atoms.",
                       epilog=RARE_EVENTS_EPILOG, formatter_class=fmt)
    options.add_data(r, required=True, many=True)
    options.add_models(r, default=None)
    r.add_argument("--by-distance", action="store_true", help="also the table binned by distance to the migrating atom")
    r.add_argument("--csv", metavar="FILE", default=None, help="write the per-atom table to FILE")
    options.add_cache(r)
    r.set_defaults(handler=cmd_rare_events)


def cmd_softening(args: argparse.Namespace) -> int:
    from mliap_tui.analysis import eos
    from mliap_tui.analysis.force_audit import force_audit

    cache = options.cache_of(args)
    datasets, models = options.split_list(args.data), options.split_list(args.models) or None
    force_sets = []
    for ds in datasets:
        if eos.is_eos_dataset(cache, ds):
            table = eos.eos_table(cache, ds, models)
            if not len(table):
                console.print(f"[yellow]{ds}: no predictions yet: mliap-tui run --data {ds} --models ...[/yellow]")
            else:
                console.print(render.eos_fits(table))
        else:
            force_sets.append(ds)
    if not force_sets:
        return 0
    audit = force_audit(cache, force_sets, models)
    if audit.empty:
        console.print("[red]no structures with both DFT and predicted forces: run the engine with forces "
                      f"(mliap-tui run --data {force_sets[0]} --models ... --forces)[/red]")
        return 1
    for ds in dict.fromkeys(audit.aggregate["dataset"].to_list()):
        console.print(render.softening_summary(audit.aggregate, ds))
    if args.per_structure:
        console.print(render.softening_per_structure(audit.per_structure))
    if args.csv:
        audit.per_structure.write_csv(args.csv)
        console.print(f"wrote {plural(len(audit.per_structure), 'row')} to {args.csv}")
    return 0


def cmd_rare_events(args: argparse.Namespace) -> int:
    from mliap_tui.analysis.force_audit import force_audit

    cache = options.cache_of(args)
    audit = force_audit(cache, options.split_list(args.data), options.split_list(args.models) or None)
    if not len(audit.atoms):
        console.print("[red]no atoms with both DFT and predicted forces: run the engine with forces first[/red]")
        return 1
    for ds in dict.fromkeys(audit.summary["dataset"].to_list()):
        console.print(render.rare_event_summary(audit.summary, ds))
    if args.by_distance:
        if len(audit.binned):
            for ds in dict.fromkeys(audit.binned["dataset"].to_list()):
                console.print(render.rare_events_by_distance(audit.binned, ds))
        else:
            console.print("[yellow]no per-atom distances (atom_properties.parquet) in these datasets[/yellow]")
    if args.csv:
        audit.atoms.write_csv(args.csv)
        console.print(f"wrote {plural(len(audit.atoms), 'row')} to {args.csv}")
    return 0
