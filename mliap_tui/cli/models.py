"""``mliap-tui models``: the registry, and what can run on this machine."""

from __future__ import annotations

import argparse

from mliap_tui.cli import console, options, render


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list every model, whether it is installed and has weights here",
        description="List the model registry: family, energy convention, element coverage, and "
        "whether the package is installed and the weights can be loaded on this machine.",
        epilog=options.examples("mliap-tui models", "mliap-tui models --json | jq '.[] | select(.ready)'"),
        formatter_class=options.formatter(),
    )
    p.add_argument("--json", action="store_true", help="machine-readable output (one object per model)")
    p.set_defaults(handler=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    from mliap_tui.models.listing import models_json, models_rows

    if args.json:
        console.print_json(models_json())
    else:
        console.print(render.models_table(models_rows()))
    return 0
