"""No command: open the terminal app on the cache."""

from __future__ import annotations

import argparse

from mliap_tui.cli.options import cache_of


def cmd_app(args: argparse.Namespace) -> int:
    from mliap_tui.tui.app import run_app

    cluster = getattr(args, "app_cluster", None)
    if cluster:
        from mliap_tui.engine.cluster import parse_cluster

        parse_cluster(cluster)  # a bad spec: one line, exit 2, before the app opens
    return run_app(cache_of(args), run_options={"cluster": cluster} if cluster else None)
