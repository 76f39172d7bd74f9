"""``mliap-tui cache``: look after the cache folder (what it holds, compaction, damaged files)."""

from __future__ import annotations

import argparse

from mliap_tui.cli import console, options, render


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="what the cache holds; compact it; check it for damaged files",
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

    info = cache_sub.add_parser(
        "info",
        help="datasets, models, modes: rows, files and bytes on disk",
        description="What the cache holds, counted from its files: per dataset its crystals, and per "
        "model and mode the committed rows on disk, the (material, model, mode) pairs they hold after "
        "newest-wins, failed pairs, files and bytes, the stored derived tables (rebuilt hulls), and "
        "which folders a run is evaluating right now.",
        epilog=options.examples("mliap-tui cache info", "mliap-tui --cache /data/mliap cache info --data mp"),
        formatter_class=options.formatter(),
    )
    info.add_argument("--data", default=None, metavar="NAME", help="only this dataset (default: all)")
    options.add_cache(info)
    info.set_defaults(handler=cmd_info)

    compact = cache_sub.add_parser(
        "compact",
        help="merge each model's committed chunk files into one sorted file",
        description="Merge the committed chunk files of every (dataset, model, mode) into one "
        "deduplicated parquet file sorted by material_id (newest row of each pair kept), so every "
        "later read is one file. Safe while runs write to the same cache: a chunk committed "
        "meanwhile is kept as it is. Runs do this for what they committed when they end.",
        epilog=options.examples("mliap-tui cache compact", "mliap-tui cache compact --data mp"),
        formatter_class=options.formatter(),
    )
    compact.add_argument("--data", default=None, metavar="NAME", help="only this dataset (default: all)")
    options.add_cache(compact)
    compact.set_defaults(handler=cmd_compact)


def _datasets(cache, name: str | None) -> list[str]:
    if name is None:
        return cache.datasets()
    if not cache.has_materials(name):
        known = ", ".join(cache.datasets()) or "none"
        raise FileNotFoundError(f"dataset {name!r} is not in the cache at {cache.root} (known: {known})")
    return [name]


def cmd_info(args: argparse.Namespace) -> int:
    from mliap_tui.cache.inventory import cache_info

    cache = options.cache_of(args)
    console.print(render.cache_info(cache_info(cache, _datasets(cache, args.data)), cache.root))
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    from mliap_tui.cache.compact import compact_all

    cache = options.cache_of(args)
    results = compact_all(cache, _datasets(cache, args.data))
    console.print(render.compaction(results))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    cache = options.cache_of(args)
    datasets = [args.data] if args.data else cache.datasets()
    files, bad = cache.verify(datasets)
    console.print(f"checked {files:,} files in {len(datasets)} dataset(s) under {cache.root}: "
                  f"{'no damaged file' if not bad else f'{len(bad)} damaged (quarantined, see the warnings)'}")
    return 1 if bad else 0
