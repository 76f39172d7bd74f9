"""``mliap-tui export``: the filtered error table as CSV (the app's filter language)."""

from __future__ import annotations

import argparse

from mliap_tui.cli import console, options

EXPORT_EPILOG = """\
filter language (clauses combine with AND; see the app's help, key ?):
  sg=136 | sg=P4_2/mnm | sg=195..230     space group number, symbol or range
  cs=cubic,hexagonal                     crystal system(s), unique prefixes work
  dof=3..10  ldof=..2  wdof=1..          total / lattice / Wyckoff DOF ranges
  el=Ti,O elmode=all|any|only  el!=Pb    elements; chemsys=O-Ti
  ehull=..0.05  eform=-1..0              DFT values in eV/atom (or 50meV)
  model=chgnet-*                         models (wildcards allowed)
  err:e_above_hull>50meV  serr:e_per_atom<0   |error| or signed error thresholds
  failed | ok                            status

examples:
  mliap-tui export --filter 'dof=20.. err:e_above_hull>50meV' hard.csv
  mliap-tui export --filter 'cs=cubic model=sevennet-0' --layout wide
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write the filtered error table to CSV (same filter language as the app)",
        description="Filter a dataset's error table and write it as CSV. Values stay in eV/atom "
        "(units are in the column names); signed errors are prediction - DFT.",
        epilog=EXPORT_EPILOG,
        formatter_class=options.formatter(),
    )
    p.add_argument("output", nargs="?", help="CSV path (default: mliap-<dataset>-<layout>-<timestamp>.csv here)")
    options.add_data(p)
    p.add_argument("--filter", dest="filter_text", default="", help="filter string, e.g. 'sg=136 dof=3..10'")
    p.add_argument("--layout", default="tidy", choices=["tidy", "wide"],
                   help="tidy: a row per material x model; wide: a row per material")
    p.add_argument("--rebuilt-hull", action="store_true", help="add Ehull on hulls rebuilt from this dataset's entries")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    options.add_cache(p)
    p.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from mliap_tui.analysis.export import export_filtered

    result = export_filtered(options.cache_of(args), args.data, args.filter_text, path=args.output,
                             layout=args.layout, overwrite=args.overwrite, rebuilt_hull=args.rebuilt_hull)
    console.print(f"{result.n_rows:,} rows -> {result.path}")
    return 0
