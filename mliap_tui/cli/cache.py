"""``mliap-tui cache``: look after the cache folder (check it for damaged files)."""

from __future__ import annotations

import argparse

from mliap_tui.cli import console, options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="check the cache for damaged files",
                       description="Look after the parquet cache folder.")
    cache_sub = p.add_subparsers(dest="cache_command", metavar="SUBCOMMAND", required=True)
    check = cache_sub.add_parser(
        "check",
        help="read every cache file fully; move damaged ones to <cache>/quarantine/",
        description="Read every materials table and prediction chunk of the cache in full. A file that "
        "cannot be read is moved to <cache>/quarantine/ with a note (dataset, model, mode, error); `run` then "
        "recomputes its rows, and a damaged materials table asks for a re-import. Exit status 1 when "
        "something was quarantined.",
        epilog=options.examples("mliap-tui cache check", "mliap-tui --cache /data/mliap cache check --data mp"),
        formatter_class=options.formatter(),
    )
    check.add_argument("--data", default=None, metavar="NAME", help="only this dataset (default: all)")
    options.add_cache(check)
    check.set_defaults(handler=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    cache = options.cache_of(args)
    datasets = [args.data] if args.data else cache.datasets()
    files, bad = cache.verify(datasets)
    console.print(f"checked {files:,} files in {len(datasets)} dataset(s) under {cache.root}: "
                  f"{'no damaged file' if not bad else f'{len(bad)} damaged (quarantined, see the warnings)'}")
    return 1 if bad else 0
