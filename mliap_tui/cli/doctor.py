"""``mliap-tui doctor``: what this machine offers (paste it into an issue)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from mliap_tui.cli import console, options, render


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="Python, torch/CUDA, model packages and weights, GPUs, cache and disk: paste it into an issue",
        description="Report what this machine offers mliap-tui: Python, torch and CUDA, each model family's "
        "package and version, which weights are found, GPU visibility (NVML), the cache folder and free disk. "
        "Exit status 1 when something blocks a run (no torch, no runnable model, < 1 GiB free).",
        epilog=options.examples("mliap-tui doctor", "mliap-tui doctor --json > doctor.json"),
        formatter_class=options.formatter(),
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    options.add_cache(p)
    p.set_defaults(handler=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from mliap_tui.engine.environment import environment_report

    report = environment_report(options.cache_of(args))
    if args.json:
        console.print_json(json.dumps({**asdict(report), "problems": report.problems}))
    else:
        console.print(render.environment_report(report))
    return 1 if report.problems else 0
