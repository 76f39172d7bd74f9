"""``mliap-tui export``: the filtered error table as CSV (the app's filter language)."""

from __future__ import annotations

import argparse

from mliap_tui.analysis.filters import FILTER_REFERENCE, filter_help_text
from mliap_tui.cli import console, options
from mliap_tui.core.units import plural

EXPORT_EPILOG = (
    filter_help_text(78, sections=[t for t, _ in FILTER_REFERENCE if not t.startswith("force")])
    .replace("match=any|all|selected", "match=any|all").replace(", or the model selected with m", "")
    + "\n\n" + options.examples("mliap-tui export --filter 'dof=20.. err:e_above_hull>50meV' hard.csv",
                                "mliap-tui export --filter 'cs=cubic model=sevennet-0' --layout wide",
                                "mliap-tui export --filter 'serr:ehull<0 match=all' under_everywhere.csv",
                                "mliap-tui export --layout element --filter 'dof=20..' elements.csv")
)


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
    p.add_argument("--layout", default="tidy", choices=["tidy", "wide", "element"],
                   help="tidy: a row per material x model; wide: a row per material; element: per model and "
                   "element, MAE and mean signed error (crystal and atomic-fraction weightings)")
    p.add_argument("--rebuilt-hull", action="store_true", help="add Ehull on hulls rebuilt from this dataset's entries")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    options.add_cache(p)
    p.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from mliap_tui.analysis.export import export_filtered

    result = export_filtered(options.cache_of(args), args.data, args.filter_text, path=args.output,
                             layout=args.layout, overwrite=args.overwrite, rebuilt_hull=args.rebuilt_hull)
    console.print(f"{plural(result.n_rows, 'row')} -> {result.path}")
    return 0
