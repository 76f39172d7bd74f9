"""No command: open the terminal app on the cache."""

from __future__ import annotations

import argparse
import sys

from mliap_tui.cli.options import cache_of


def cmd_app(args: argparse.Namespace) -> int:
    # the first start after an install compiles the app's modules (several seconds): say so, so
    # a blank terminal is not mistaken for a hang; the app's screen replaces this line
    if sys.stderr.isatty():
        print("mliap-tui: starting the app (the first start after an install takes a few seconds)…",
              file=sys.stderr, flush=True)
    from mliap_tui.tui.app import run_app

    cluster = getattr(args, "app_cluster", None)
    if cluster:
        from mliap_tui.engine.cluster import parse_cluster

        parse_cluster(cluster)  # a bad spec: one line, exit 2, before the app opens
    return run_app(cache_of(args), run_options={"cluster": cluster} if cluster else None)
