"""``mliap-tui`` command line: import data, list models, run evaluations, print summaries.

Each sub-command is a thin shell over the library: parsing here, work in the layers below.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from rich.console import Console

from mliap_tui import __version__
from mliap_tui.cache import DEFAULT_SYMPREC_ANG, Cache

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

MAIN_EPILOG = """\
typical session:
  mliap-tui data import sample                     # the shipped 400-crystal MP sample -> ./cache
  mliap-tui models                                 # which models can run here, and why not
  mliap-tui run --data sample --models chgnet-0.3.0,sevennet-0
  mliap-tui summary --by dof                       # MAE / mean signed error per DOF bin
  mliap-tui pes mp-560588 --axes Zn:2b:z,lattice:c/a --models chgnet-0.3.0,sevennet-0
  mliap-tui softening --data si-vacancy            # force softening scale (after run --forces)

Energies are eV/atom, forces eV/Å, stress GPa. Signed errors are prediction minus DFT, so
underprediction is negative. Results live in parquet files under the cache folder
(--cache DIR, or $MLIAP_TUI_CACHE; default ./cache): a re-run computes only what is missing.
"""

IMPORT_EPILOG = """\
sources:
  sample                 the shipped Materials Project subset (sample_data/)
  mp                     the full Materials Project via mp-api (needs MP_API_KEY; pip install 'mliap-tui[mp]')
  FILE.csv[.gz]          MP-20 / MPTS-52 style CSV (material_id, cif, formation_energy_per_atom, e_above_hull)
  FILE.json[.gz]         pymatgen ComputedStructureEntry list, or a matcalc WBM benchmark file
  FOLDER/                CIF / POSCAR / *.vasp files, one structure each (id = file name)
  FILE.extxyz | FILE.db  extended XYZ or ASE database with energies and forces
  SI_SET/                a Si rare-event set folder (DATA.json + structure_poscars.zip, Liu, He, Mo 2023)

Bad structures (malformed CIF, partial occupancy, unknown element, zero volume, NaN energy,
duplicate id) are listed in the report with their reason; the rest is imported.

examples:
  mliap-tui data import sample
  mliap-tui data import ../shared/data/wbm/wbm_random_1000_pbe54.json.gz --name wbm
  mliap-tui data import my_cifs/ --name mine --symprec 0.01
"""


def _add_cache_arg(p: argparse.ArgumentParser, top: bool = False) -> None:
    # sub-commands accept --cache too, without overriding one given before the command
    p.add_argument(
        "--cache",
        metavar="DIR",
        default=None if top else argparse.SUPPRESS,
        help="cache folder (default: $MLIAP_TUI_CACHE or ./cache)",
    )


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="mliap-tui",
        description="Audit universal machine-learning interatomic potentials against DFT.\n"
        "With no command, opens the terminal app on the default cache.",
        epilog=MAIN_EPILOG,
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"mliap-tui {__version__}")
    _add_cache_arg(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    # data ---------------------------------------------------------------------------------
    data = sub.add_parser("data", help="import crystals with DFT references, show what is cached")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    imp = data_sub.add_parser(
        "import",
        help="build a dataset's materials table (structures, DFT values, symmetry) in the cache",
        description="Read crystals and their DFT reference values, analyse their symmetry "
        "(space group, Wyckoff orbits, DOF) and store them as one dataset in the cache.",
        epilog=IMPORT_EPILOG,
        formatter_class=fmt,
    )
    imp.add_argument("source", help="sample | mp | PATH (file or folder), see below")
    imp.add_argument("--name", help="dataset name in the cache (default: 'sample', 'mp' or the file stem)")
    imp.add_argument(
        "--format",
        dest="fmt",
        choices=["mp_csv", "entries_json", "wbm_json", "structure_files", "extxyz", "ase_db", "si_rare_events"],
        help="force a reader instead of guessing from the path",
    )
    imp.add_argument(
        "--symprec",
        type=float,
        default=DEFAULT_SYMPREC_ANG,
        help="spglib symmetry tolerance in Å (default %(default)s, the Materials Project's)",
    )
    imp.add_argument("--limit", type=int, help="import only the first N structures")
    imp.add_argument("--jobs", type=int, help="worker processes for symmetry/corrections (default: all cores)")
    imp.add_argument("--api-key", help="Materials Project API key for 'mp' (default: $MP_API_KEY)")
    _add_cache_arg(imp)

    show = data_sub.add_parser("show", help="summarise the datasets in the cache")
    show.add_argument("dataset", nargs="?", help="dataset name (default: all)")
    _add_cache_arg(show)

    # models -------------------------------------------------------------------------------
    models = sub.add_parser(
        "models",
        help="list every model, whether it is installed and has weights here",
        description="List the model registry: family, energy convention, element coverage, and "
        "whether the package is installed and the weights can be loaded on this machine.",
    )
    models.add_argument("--json", action="store_true", help="machine-readable output")

    # run ----------------------------------------------------------------------------------
    run = sub.add_parser(
        "run",
        help="evaluate models on a dataset (only what is not cached yet)",
        description="Evaluate each model on each crystal of a dataset and store the predictions. "
        "Models run in worker subprocesses, in batches sized by atom count; results are "
        "committed in chunks, so an interrupted run resumes where it stopped.",
        epilog="examples:\n"
        "  mliap-tui run --data sample --models chgnet-0.3.0,sevennet-0\n"
        "  mliap-tui run --data sample --models sevennet-0 --device cuda --limit 100\n"
        "  mliap-tui run --data sample --models chgnet-0.3.0 --mode relax --limit 20\n"
        "  mliap-tui run --data mp --models orb-v2 --python-for orb=/opt/orb-venv/bin/python\n",
        formatter_class=fmt,
    )
    run.add_argument("--data", default="sample", help="dataset name in the cache (default: sample)")
    run.add_argument(
        "--models",
        default="chgnet-0.3.0,sevennet-0",
        help="comma-separated model ids (see `mliap-tui models`; default: %(default)s)",
    )
    run.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    run.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    run.add_argument("--mode", default="static", choices=["static", "relax"], help="static single points (default) or FIRE relaxations")
    run.add_argument("--limit", type=int, help="evaluate at most N materials per model")
    run.add_argument("--forces", action="store_true", help="also store forces and stress")
    run.add_argument("--retry-failed", action="store_true", help="re-evaluate rows that failed before")
    run.add_argument("--checkpoint", action="append", default=[], metavar="MODEL=PATH", help="local weights file for a model")
    run.add_argument(
        "--python-for",
        action="append",
        default=[],
        metavar="FAMILY=PYTHON",
        help="run a model family's worker with another interpreter (its own venv), e.g. orb=/opt/orb/bin/python",
    )
    _add_cache_arg(run)

    # summary ------------------------------------------------------------------------------
    summ = sub.add_parser(
        "summary",
        help="per-model error tables (MAE, mean signed error, RMSE, fraction underpredicted)",
        description="Per-model errors of total energy, formation energy and Ehull against DFT "
        "(prediction minus DFT, eV/atom shown as meV/atom), optionally broken down.",
    )
    summ.add_argument("--data", default="sample", help="dataset name (default: sample)")
    summ.add_argument("--by", choices=["dof", "crystal_system", "spacegroup"], help="break errors down by this column")
    summ.add_argument("--mode", default="static", choices=["static", "relax"])
    summ.add_argument("--metric", default="e_above_hull", choices=["e_per_atom", "e_form_per_atom", "e_above_hull"], help="metric for --by tables")
    summ.add_argument("--near-hull", action="store_true", help="only crystals with DFT Ehull < 50 meV/atom")
    _add_cache_arg(summ)

    # export -------------------------------------------------------------------------------
    exp = sub.add_parser(
        "export",
        help="write the filtered error table to CSV (same filter language as the app)",
        description="Filter a dataset's error table and write it as CSV. Values stay in eV/atom "
        "(units are in the column names); signed errors are prediction - DFT.",
        epilog="filter language (clauses combine with AND; see the app's help, key ?):\n"
        "  sg=136 | sg=P4_2/mnm | sg=195..230     space group number, symbol or range\n"
        "  cs=cubic,hexagonal                     crystal system(s), unique prefixes work\n"
        "  dof=3..10  ldof=..2  wdof=1..          total / lattice / Wyckoff DOF ranges\n"
        "  el=Ti,O elmode=all|any|only  el!=Pb    elements; chemsys=O-Ti\n"
        "  ehull=..0.05  eform=-1..0              DFT values in eV/atom (or 50meV)\n"
        "  model=chgnet-*                         models (wildcards allowed)\n"
        "  err:e_above_hull>50meV  serr:e_per_atom<0   |error| or signed error thresholds\n"
        "  failed | ok                            status\n\n"
        "examples:\n"
        "  mliap-tui export --filter 'dof=20.. err:e_above_hull>50meV' hard.csv\n"
        "  mliap-tui export --filter 'cs=cubic model=sevennet-0' --layout wide\n",
        formatter_class=fmt,
    )
    exp.add_argument("output", nargs="?", help="CSV path (default: mliap-<dataset>-<layout>-<timestamp>.csv here)")
    exp.add_argument("--data", default="sample", help="dataset name (default: sample)")
    exp.add_argument("--filter", dest="filter_text", default="", help="filter string, e.g. 'sg=136 dof=3..10'")
    exp.add_argument("--layout", default="tidy", choices=["tidy", "wide"], help="tidy: a row per material x model; wide: a row per material")
    exp.add_argument("--rebuilt-hull", action="store_true", help="add Ehull on hulls rebuilt from this dataset's entries")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing file")
    _add_cache_arg(exp)

    # pes, softening, rare-events ----------------------------------------------------------
    from mliap_tui.forces_cli import add_force_parsers
    from mliap_tui.pes_cli import add_pes_parser

    add_pes_parser(sub)
    add_force_parsers(sub)
    return parser


def _cache(args: argparse.Namespace) -> Cache:
    return Cache.open(args.cache)


def _pairs(items: Sequence[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise SystemExit(f"error: {what} expects KEY=VALUE, got {item!r}")
        out[key] = value
    return out


# ---- commands ------------------------------------------------------------------------------
def cmd_data_import(args: argparse.Namespace) -> int:
    from mliap_tui.data.importer import import_dataset

    cache = _cache(args)
    if args.api_key:
        os.environ["MP_API_KEY"] = args.api_key
    report = import_dataset(
        args.source,
        dataset=args.name,
        fmt=args.fmt,
        cache=cache,
        symprec_ang=args.symprec,
        limit=args.limit,
        n_jobs=args.jobs,
    )
    console.print(report)
    console.print(f"[dim]stored in {cache.materials_path(report.dataset)}[/dim]")
    return 0 if report.n_loaded else 1


def cmd_data_show(args: argparse.Namespace) -> int:
    from mliap_tui.data.summary import render_dataset_summary

    cache = _cache(args)
    names = [args.dataset] if args.dataset else cache.datasets()
    if not names:
        err_console.print(f"no datasets in {cache.root}. Start with: mliap-tui data import sample")
        return 1
    for name in names:
        console.print(render_dataset_summary(cache, name))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from mliap_tui.models.listing import models_table, models_json

    if args.json:
        console.print_json(models_json())
    else:
        console.print(models_table())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from mliap_tui.engine.rich_progress import RichProgress, summary_table
    from mliap_tui.engine.runner import run_evaluation

    cache = _cache(args)
    model_ids = [m.strip() for m in args.models.split(",") if m.strip()]
    with RichProgress(console=console) as show:
        summary = run_evaluation(
            cache,
            args.data,
            model_ids,
            mode=args.mode,
            device=args.device,
            dtype=args.dtype,
            limit=args.limit,
            forces=args.forces,
            stress=args.forces,
            python_for=_pairs(args.python_for, "--python-for"),
            on_event=show,
            retry_failed=args.retry_failed,
            checkpoints=_pairs(args.checkpoint, "--checkpoint"),
        )
    console.print(summary_table(summary))
    if summary.ok:
        console.print(f"[dim]next: mliap-tui summary --data {args.data} --by dof   (or mliap-tui to explore)[/dim]")
    return 0 if summary.ok else 1


def cmd_summary(args: argparse.Namespace) -> int:
    from mliap_tui.analysis.report import render_summary

    cache = _cache(args)
    for renderable in render_summary(cache, args.data, by=args.by, mode=args.mode, metric=args.metric, near_hull=args.near_hull):
        console.print(renderable)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mliap_tui.analysis.export import export_filtered

    result = export_filtered(
        _cache(args),
        args.data,
        args.filter_text,
        path=args.output,
        layout=args.layout,
        overwrite=args.overwrite,
        rebuilt_hull=args.rebuilt_hull,
    )
    console.print(f"{result.n_rows:,} rows -> {result.path}")
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    try:
        from mliap_tui.tui.app import run_app
    except ImportError:
        build_parser().print_help()
        return 0
    return run_app(_cache(args))


def _lazy(module: str, name: str):
    def handler(args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(module), name)(args)

    return handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {
        ("data", "import"): cmd_data_import,
        ("data", "show"): cmd_data_show,
        ("models", None): cmd_models,
        ("run", None): cmd_run,
        ("summary", None): cmd_summary,
        ("export", None): cmd_export,
        ("pes", None): _lazy("mliap_tui.pes_cli", "cmd_pes"),
        ("softening", None): _lazy("mliap_tui.forces_cli", "cmd_softening"),
        ("rare-events", None): _lazy("mliap_tui.forces_cli", "cmd_rare_events"),
        (None, None): cmd_app,
    }
    handler = handlers[(args.command, getattr(args, "data_command", None))]
    try:
        return handler(args)
    except KeyboardInterrupt:
        err_console.print("interrupted: committed results are kept; run the same command again to resume")
        return 130
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        err_console.print(f"[bold red]error:[/bold red] {exc}")
        return 2
    except Exception as exc:  # the one place that turns an unexpected failure into a message
        if os.environ.get("MLIAP_TUI_DEBUG"):
            raise
        from mliap_tui.models.base import ModelUnavailable

        if isinstance(exc, ModelUnavailable):
            err_console.print(f"[bold red]model unavailable:[/bold red] {exc}")
            return 3
        err_console.print(f"[bold red]error:[/bold red] {type(exc).__name__}: {exc}  (set MLIAP_TUI_DEBUG=1 for a traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
