"""``mliap-tui study dof``: static vs relaxed errors, what relaxing did, and the DOF trend."""

from __future__ import annotations

import argparse

from mliap_tui.cli import console, err_console, options, render
from mliap_tui.core.vocab import METRIC_ALIASES, METRICS, STUDY_GROUPINGS

STUDY_EPILOG = """\
what it shows (energies meV/atom, signed error = prediction - DFT, negative = underpredicted):
  static      the model at the DFT structure
  relaxed     the model's energy after it relaxed the crystal (FIRE, run --mode relax), vs DFT
  difference  relaxed - static on the same crystals (for E, Eform and Ehull on the DFT hull the
              mean difference is the mean relaxation energy E_relaxed - E_static)
  relaxation  E_relaxed - E_static, RMSD to the DFT structure (pymatgen StructureMatcher, Å),
              space group kept / lowered / raised (k/l/r) by operations per cell
each by total DOF bin, crystal system or near-hull band (DFT Ehull < 50 meV/atom), with 95%
bootstrap intervals [lo,hi], and the DOF trend: slope of the error on total DOF (meV/atom per
DOF, with interval) and Spearman's rank correlation with its p-value. "error grows with DOF"
is said only when both agree (p < 0.05 and an interval that excludes 0).

A dataset without DFT Ehull (e.g. WBM) shows the metrics it has and says so. Without relaxed
rows the static study is printed with the run command that makes them.

examples:
  mliap-tui study dof
  mliap-tui study dof --data sample --models chgnet-0.3.0,sevennet-0 --by crystal-system
  mliap-tui study dof --metric eform --near-hull --n-boot 5000 --seed 1
  mliap-tui study dof --data wbm --csv study.csv      # study-errors.csv, -relaxation.csv, -trend.csv
"""


def grouping(text: str) -> str:
    """argparse type: dof | crystal-system | near-hull (underscores accepted)."""
    value = text.strip().lower().replace("-", "_")
    if value not in STUDY_GROUPINGS:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(g.replace('_', '-') for g in STUDY_GROUPINGS)}, got {text!r}")
    return value


def metric(text: str) -> str:
    """argparse type: a metric name or alias (e, eform, ehull, ehull_rebuilt, ...)."""
    value = METRIC_ALIASES.get(text.strip().lower().replace("-", "_"))
    if value is None:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(METRICS)} (or e, eform, ehull, "
                                         f"ehull_rebuilt), got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    study = sub.add_parser("study", help="the static-vs-relaxed symmetry study (errors by DOF, with intervals)",
                           description="Studies of a dataset's cached predictions.")
    study_sub = study.add_subparsers(dest="study_command", metavar="SUBCOMMAND", required=True)
    p = study_sub.add_parser(
        "dof",
        help="static and relaxed errors by total DOF, crystal system or near-hull, with intervals and the trend",
        description="Is a model's energy error there at the DFT geometry (static), does it appear when the "
        "model relaxes the crystal, and does it grow with the crystal's degrees of freedom (DOF)? Tables of "
        "MAE and mean signed error with bootstrap intervals per bin, what the relaxation did, and the DOF trend.",
        epilog=STUDY_EPILOG,
        formatter_class=options.formatter(),
    )
    options.add_data(p)
    options.add_models(p, default=None)
    p.add_argument("--by", type=grouping, default="dof", metavar="dof|crystal-system|near-hull",
                   help="break the tables down by total DOF bin (default), crystal system, or near-hull band")
    p.add_argument("--metric", type=metric, default=None,
                   help="metric of the tables by group and of the trend: e, eform, ehull (default, when the "
                   "dataset has DFT Ehull; else e), ehull_rebuilt")
    p.add_argument("--near-hull", action="store_true", help="only crystals with DFT Ehull < 50 meV/atom")
    p.add_argument("--unpaired", action="store_true",
                   help="static statistics on every static row, not only the crystals relaxed too")
    p.add_argument("--n-boot", type=options.positive_int, default=1000, metavar="N",
                   help="bootstrap resamples for each interval (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0): same seed, same intervals")
    p.add_argument("--csv", metavar="PATH",
                   help="also write the tables: PATH-errors.csv, PATH-relaxation.csv, PATH-trend.csv (eV/atom, Å)")
    p.add_argument("--overwrite", action="store_true", help="replace existing --csv files")
    p.add_argument("--jobs", type=options.positive_int, default=None,
                   help="processes comparing relaxed with DFT structures the first time (default: all cores)")
    options.add_cache(p)
    p.set_defaults(handler=cmd_study_dof)


def cmd_study_dof(args: argparse.Namespace) -> int:
    from mliap_tui.analysis.relax_geometry import pending_rows
    from mliap_tui.analysis.study import run_study, write_study_csv

    cache = options.cache_of(args)
    models = options.split_list(args.models) or None
    cache.scan_materials(args.data)  # an unknown dataset is a one-line user error before any work
    if args.csv and not args.overwrite:
        from mliap_tui.analysis.study import csv_paths

        taken = [str(p) for p in csv_paths(args.csv).values() if p.exists()]
        if taken:
            raise options.UserError(f"{', '.join(taken)} already exist(s): add --overwrite or choose another --csv")
    pending = pending_rows(cache, args.data, models).height
    progress = None
    if pending:
        err_console.print(f"comparing {pending:,} relaxed cells with their DFT structures (StructureMatcher, "
                          "spglib; once: the results are cached)…")

        def progress(done: int, total: int) -> None:
            err_console.print(f"  {done:,}/{total:,} compared")

    study = run_study(cache, args.data, models, metric=args.metric, by=args.by, near_hull_only=args.near_hull,
                      paired=not args.unpaired, n_boot=args.n_boot, seed=args.seed, n_jobs=args.jobs,
                      on_progress=progress)
    for renderable in render.study(study):
        console.print(renderable)
    if args.csv:
        if study.data.empty_reason:
            raise options.UserError(f"nothing to write: {study.data.empty_reason}")
        for result in write_study_csv(study, args.csv, overwrite=args.overwrite):
            console.print(f"wrote {result}")
    return 0
