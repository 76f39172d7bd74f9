"""No command: open the terminal app on the cache."""

from __future__ import annotations

import argparse

from mliap_tui.cli.options import cache_of


def cmd_app(args: argparse.Namespace) -> int:
    from mliap_tui.tui.app import run_app

    return run_app(cache_of(args))
