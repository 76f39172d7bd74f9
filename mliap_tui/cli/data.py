"""``mliap-tui data import`` and ``mliap-tui data show``."""

from __future__ import annotations

import argparse
import os

from mliap_tui.cli import console, err_console, options, render
from mliap_tui.core.vocab import (
    DEFAULT_MAX_ATOMS,
    DEFAULT_MIN_DISTANCE_ANG,
    DEFAULT_MIN_VOLUME_PER_ATOM_ANG3,
    DEFAULT_SYMPREC_ANG,
)

IMPORT_EPILOG = """\
sources:
  sample                 the shipped Materials Project subset (400 crystals)
  sample-forces          the shipped force sample: 5 MPtrj frames and 8 Si vacancy-migration cells
                         with DFT forces (datasets mptrj-sample and si-vacancy-sample)
  mp                     the full Materials Project via mp-api (needs MP_API_KEY; pip install 'mliap-tui[mp]')
  FILE.csv[.gz]          MP-20 / MPTS-52 style CSV (material_id, cif, formation_energy_per_atom, e_above_hull)
  FILE.json[.gz]         pymatgen ComputedStructureEntry list, or a matcalc WBM benchmark file
  FOLDER/                CIF / POSCAR / *.vasp files, one structure each (id = file name)
  FILE.extxyz | FILE.db  extended XYZ or ASE database with energies and forces
  SI_SET/                a Si rare-event set folder (DATA.json + structure_poscars.zip, Liu, He, Mo 2023)

Bad structures (malformed CIF, partial occupancy, unknown element, zero volume, atoms closer
than --min-distance, a cell denser than --min-volume-per-atom or larger than --max-atoms, NaN
coordinates or energies, duplicate id) are listed in the report with a short reason; the rest is
imported.

examples:
  mliap-tui data import sample
  mliap-tui data import wbm_random_1000_pbe54.json.gz --name wbm
  mliap-tui data import my_cifs/ --name mine --symprec 0.01
  mliap-tui data import mp20_test.csv.gz mp20_val.csv.gz mpts52_test.csv.gz --name mp22k
  mliap-tui data import mp        (about 150k documents, in pages committed as they arrive;
                                   an interrupted download resumes when run again)
"""

READERS = ("mp_csv", "entries_json", "wbm_json", "structure_files", "extxyz", "ase_db", "si_rare_events")


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="import crystals with DFT references, show what is cached",
                          description="Import crystals with their DFT reference values into the cache, "
                          "or show what a cached dataset holds.")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    imp = data_sub.add_parser(
        "import",
        help="build a dataset's materials table (structures, DFT values, symmetry) in the cache",
        description="Read crystals and their DFT reference values, analyse their symmetry "
        "(space group, Wyckoff orbits, DOF) and store them as one dataset in the cache.",
        epilog=IMPORT_EPILOG,
        formatter_class=options.formatter(),
    )
    imp.add_argument("source", nargs="+",
                     help="what to read: sample | sample-forces | mp | PATH (a file or a folder; see sources below); several "
                     "paths make one dataset")
    imp.add_argument("--name", help="dataset name in the cache (default: 'sample', 'mp' or the (first) file stem)")
    imp.add_argument("--format", dest="fmt", choices=READERS, help="force a reader instead of guessing from the path")
    imp.add_argument("--symprec", type=float, default=DEFAULT_SYMPREC_ANG,
                     help="spglib symmetry tolerance in Å (default %(default)s, the Materials Project's)")
    imp.add_argument("--limit", type=options.positive_int, help="import only the first N structures")
    imp.add_argument("--jobs", type=options.positive_int, help="worker processes for symmetry/corrections (default: all cores)")
    imp.add_argument("--min-distance", type=options.non_negative_float, default=DEFAULT_MIN_DISTANCE_ANG, metavar="ANG",
                     help="reject cells with two atoms closer than this (Å, periodic images included; default %(default)s)")
    imp.add_argument("--min-volume-per-atom", type=options.non_negative_float, default=DEFAULT_MIN_VOLUME_PER_ATOM_ANG3,
                     metavar="ANG3", help="reject cells denser than this (Å³/atom; default %(default)s)")
    imp.add_argument("--max-atoms", type=options.positive_int, default=DEFAULT_MAX_ATOMS, metavar="N",
                     help="reject cells with more atoms than this (default %(default)s)")
    imp.add_argument("--api-key", help="Materials Project API key for 'mp' (default: $MP_API_KEY)")
    options.add_cache(imp)
    imp.set_defaults(handler=cmd_import)

    show = data_sub.add_parser("show", help="summarise the datasets in the cache",
                               description="What each cached dataset holds: crystals, elements, space groups, "
                               "crystal systems, the DOF histogram and the predictions per model and mode.",
                               epilog=options.examples("mliap-tui data show", "mliap-tui data show sample"),
                               formatter_class=options.formatter())
    show.add_argument("dataset", nargs="?", help="dataset name (default: every dataset in the cache)")
    options.add_cache(show)
    show.set_defaults(handler=cmd_show)


def cmd_import(args: argparse.Namespace) -> int:
    from mliap_tui.data.importer import (
        FORCE_SAMPLE_NAME,
        import_dataset,
        import_force_sample,
    )
    from mliap_tui.data.structures import CellLimits

    cache = options.cache_of(args)
    if args.api_key:
        os.environ["MP_API_KEY"] = args.api_key
    limits = CellLimits(min_distance_ang=args.min_distance, min_volume_per_atom_ang3=args.min_volume_per_atom,
                        max_atoms=args.max_atoms)
    from contextlib import nullcontext

    from mliap_tui.cli.progress import DownloadBar

    options_ = dict(fmt=args.fmt, cache=cache, symprec_ang=args.symprec, limit=args.limit, n_jobs=args.jobs,
                    limits=limits)
    if args.source == [FORCE_SAMPLE_NAME]:
        del options_["fmt"]
        reports = import_force_sample(**options_)
    else:
        source = args.source[0] if len(args.source) == 1 else args.source
        with DownloadBar(console=err_console) if "mp" in args.source else nullcontext() as bar:
            reports = [import_dataset(source, dataset=args.name, on_download=bar, **options_)]
    for report in reports:
        console.print(render.import_report(report))
        console.print(f"[dim]stored in {cache.materials_path(report.dataset)}[/dim]")
    if args.source == [FORCE_SAMPLE_NAME]:
        console.print("[dim]next: mliap-tui run --data si-vacancy-sample --models chgnet-0.3.0 --forces, then "
                      "mliap-tui softening --data si-vacancy-sample (or f in the app)[/dim]")
    return 0 if all(r.n_loaded for r in reports) else 1


def cmd_show(args: argparse.Namespace) -> int:
    from mliap_tui.data.summary import dataset_overview

    cache = options.cache_of(args)
    names = [args.dataset] if args.dataset else cache.datasets()
    if not names:
        err_console.print(f"no datasets in {cache.root}. Start with: mliap-tui data import sample")
        return 1
    for name in names:
        console.print(render.dataset_overview(dataset_overview(cache, name)))
    return 0
