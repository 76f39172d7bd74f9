"""``mliap-tui models``: the registry, and what can run on this machine."""

from __future__ import annotations

import argparse

from mliap_tui.cli import console, options, render


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list every model, whether it is installed and has weights here",
        description="List the model registry and the installed plug-ins: energy convention, element "
        "coverage, whether the package is installed and the weights can be loaded on this machine, "
        "and how the model was verified here (the canary check of its published weights, or only "
        "its adapter against the family's own calculator). Below: every weights the cache has seen.",
        epilog=options.examples("mliap-tui models", "mliap-tui models --json | jq '.[] | select(.ready)'"),
        formatter_class=options.formatter(),
    )
    p.add_argument("--json", action="store_true", help="machine-readable output (one object per model)")
    options.add_cache(p)
    p.set_defaults(handler=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    from mliap_tui.models.listing import (
        models_json,
        models_rows,
        plugin_problems,
        weights_seen,
    )

    cache = options.cache_of(args)
    if args.json:
        console.print_json(models_json(cache))
    else:
        console.print(render.models_table(models_rows(cache), weights_seen(cache), plugin_problems()))
    return 0
