"""``mliap-tui summary``: per-model error tables, optionally broken down."""

from __future__ import annotations

import argparse

from mliap_tui.cli import console, options, render
from mliap_tui.core.vocab import CHEAP_METRICS, GROUPINGS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "summary",
        help="per-model error tables (MAE, mean signed error, RMSE, fraction underpredicted)",
        description="Per-model errors of total energy, formation energy and Ehull against DFT "
        "(prediction minus DFT, eV/atom shown as meV/atom), optionally broken down.",
        epilog=options.examples(
            "mliap-tui summary",
            "mliap-tui summary --data sample --by dof",
            "mliap-tui summary --by crystal_system --metric e_form_per_atom --near-hull",
            "mliap-tui summary --mode relax --by dof",
            "mliap-tui summary --by element --weighting fraction",
        ),
        formatter_class=options.formatter(),
    )
    options.add_data(p)
    p.add_argument("--by", choices=list(GROUPINGS),
                   help="break errors down by total DOF bin, crystal system, space group or element")
    p.add_argument("--weighting", choices=["crystal", "fraction"], default="crystal",
                   help="--by element: each crystal counts once for each element it holds (default), or with "
                   "the element's atomic fraction")
    options.add_mode(p, "which predictions: static (default) or relax")
    p.add_argument("--metric", default="e_above_hull", choices=list(CHEAP_METRICS), help="metric for the --by table (default: e_above_hull)")
    p.add_argument("--near-hull", action="store_true", help="only crystals with DFT Ehull < 50 meV/atom")
    options.add_cache(p)
    p.set_defaults(handler=cmd_summary)


def cmd_summary(args: argparse.Namespace) -> int:
    from mliap_tui.analysis.summary import summarize

    s = summarize(options.cache_of(args), args.data, by=args.by, mode=args.mode, metric=args.metric,
                  near_hull=args.near_hull, weighting=args.weighting)
    for renderable in render.summary(s):
        console.print(renderable)
    return 0
