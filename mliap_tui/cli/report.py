"""``mliap-tui figures`` and ``mliap-tui report``: what leaves the terminal.

``figures`` writes publication figures (matplotlib: png, svg, pdf, or html holding the SVG) of
what a cached dataset holds; ``report`` writes one self-contained HTML file (or Markdown with
its figures beside it) with the dataset, the error tables, the figures and the provenance.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

from mliap_tui.cli import console, err_console, options
from mliap_tui.core.units import format_bytes, plural
from mliap_tui.core.vocab import CHEAP_METRICS

FIGURES_EPILOG = """\
what is drawn (whatever the dataset holds):
  energies   parity per model, signed-error histograms, MAE and mean signed error by DOF bin
             and by crystal system, a periodic-table heat map per model (MAE per element)
  forces     MLIP vs DFT force components with the softening slope; rare-event CDFs (|ΔF|, Δθ)
             when the set marks its migrating atoms
  PES        every cached slice of the dataset's crystals (mliap-tui pes, or p in the app),
             per model: 1D curve or 2D map, minima, saddles, masked points, collapses

Every figure names the dataset, the mode, each model with its weights fingerprint and package
version, and the n behind it; axes carry units (eV/atom, meV/atom, eV/Å, Å, %).
Needs matplotlib: pip install 'mliap-tui[figures]'.

""" + options.examples(
    "mliap-tui figures --out figs",
    "mliap-tui figures --data sample --models chgnet-0.3.0,sevennet-0 --format pdf --out paper/",
    "mliap-tui figures --mode relax --metric e_form_per_atom --out figs-relaxed",
    "mliap-tui figures --data si-vacancy-sample --out figs-forces",
)

REPORT_EPILOG = """\
The HTML holds its figures (PNG) and style inline: one file that opens offline. Sections: the
dataset (source, counts, crystal systems, DOF histogram), error tables per model (static, and
relaxed when the cache has relaxations), the breakdown by DOF, the figures, and the provenance
of every row (weights sha256 and where they came from, package versions, canary verdict,
devices, runs, dates). --format md writes Markdown with a <name>_figures/ folder beside it.

""" + options.examples(
    "mliap-tui report --out report.html",
    "mliap-tui report --data sample --models chgnet-0.3.0,sevennet-0 --out sample.html",
    "mliap-tui report --format md --out notes/report.md",
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "figures",
        help="write publication figures (png, svg, pdf, html) of a cached dataset",
        description="Write figures of what a cached dataset holds to a folder.",
        epilog=FIGURES_EPILOG,
        formatter_class=options.formatter(),
    )
    options.add_data(p)
    options.add_mode(p, "which predictions the energy figures show: static (default) or relax")
    options.add_models(p, default=None)
    p.add_argument("--out", metavar="DIR", default="figures", help="folder to write into (default: ./figures)")
    p.add_argument("--format", default="png", choices=["png", "svg", "pdf", "html"], help="file format (default: png)")
    p.add_argument("--metric", default="e_above_hull", choices=list(CHEAP_METRICS),
                   help="energy metric of the parity, histogram, DOF, crystal-system and element figures "
                   "(default: e_above_hull)")
    p.add_argument("--weighting", choices=["crystal", "fraction"], default="crystal",
                   help="periodic table: each crystal counts once per element (default), or by atomic fraction")
    p.add_argument("--dpi", type=options.positive_int, default=200, help="png resolution (default: 200)")
    p.add_argument("--no-pes", action="store_true", help="leave out the PES slice figures")
    options.add_cache(p)
    p.set_defaults(handler=cmd_figures)

    r = sub.add_parser(
        "report",
        help="write a self-contained HTML (or Markdown) report of a cached dataset",
        description="Write one report of a cached dataset: tables, figures and provenance.",
        epilog=REPORT_EPILOG,
        formatter_class=options.formatter(),
    )
    options.add_data(r)
    options.add_models(r, default=None)
    r.add_argument("--out", metavar="FILE", default=None, help="report path (default: mliap-report-<dataset>.html/.md)")
    r.add_argument("--format", default=None, choices=["html", "md"],
                   help="html (one file, default) or md (Markdown + a figures folder); default from --out's suffix")
    r.add_argument("--metric", default="e_above_hull", choices=list(CHEAP_METRICS), help="metric of the figures")
    r.add_argument("--no-figures", action="store_true", help="tables only (fast)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing report")
    options.add_cache(r)
    r.set_defaults(handler=cmd_report)


def _check_dataset(cache, dataset: str) -> None:
    if not cache.has_materials(dataset):
        known = ", ".join(cache.datasets()) or "none yet"
        raise options.UserError(f"dataset {dataset!r} is not in the cache {cache.root} (datasets: {known}); "
                                f"mliap-tui data import ... or mliap-tui run --data {dataset}")


def cmd_figures(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from mliap_tui.report.figure_set import dataset_figures, write_plan
    from mliap_tui.report.figures import FiguresUnavailable, require_matplotlib

    cache = options.cache_of(args)
    _check_dataset(cache, args.data)
    try:
        require_matplotlib()
    except FiguresUnavailable as exc:
        err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}")
        return 3
    models = options.split_models(args.models) or None
    plan = dataset_figures(cache, args.data, args.mode, models, args.metric, args.weighting, pes=not args.no_pes)
    for note in plan.notes:
        console.print(f"[yellow]{escape(note)}[/yellow]")
    if not plan.jobs:
        err_console.print(f"nothing to draw for {args.data} ({args.mode}): run models on it first "
                          f"(mliap-tui run --data {args.data})")
        return 1
    out = Path(args.out)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task("figures", total=len(plan.jobs))

        def step(k: int, n: int, job) -> None:
            bar.update(task, completed=k, description=f"drawing {job.name}")

        written, errors = write_plan(plan, out, args.format, args.dpi, on_figure=step)
    for w in written:
        console.print(f"  {w.path.name}  [dim]{format_bytes(w.n_bytes)}[/dim]")
    for e in errors:
        err_console.print(f"[red]not drawn:[/red] {escape(e)}")
    console.print(f"{plural(len(written), 'figure')} -> {out}/" + (f" ({len(errors)} failed)" if errors else ""))
    return 0 if written and not errors else 1


def cmd_report(args: argparse.Namespace) -> int:
    from mliap_tui.report.document import build_report, write_report
    from mliap_tui.report.figures import FiguresUnavailable, require_matplotlib

    cache = options.cache_of(args)
    _check_dataset(cache, args.data)
    fmt = args.format or ("md" if args.out and args.out.endswith(".md") else "html")
    out = Path(args.out or f"mliap-report-{args.data}.{fmt}")
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists: pass --overwrite to replace it, or choose another --out")
    figures = not args.no_figures
    if figures:
        try:
            require_matplotlib()
        except FiguresUnavailable as exc:
            err_console.print(f"[yellow]{escape(str(exc))}; writing the report without figures[/yellow]")
            figures = False
    models = options.split_models(args.models) or None
    with console.status("building the report") as status:
        def step(k: int, n: int, name: str) -> None:
            status.update(f"drawing figure {k + 1}/{n}: {name}")

        rep = build_report(cache, args.data, models, args.metric, figures=figures, on_figure=step)
        paths = write_report(rep, out, fmt)
    n_fig = sum(len(s.figures) for s in rep.sections)
    console.print(f"report -> {paths[0]}  [dim]{format_bytes(paths[0].stat().st_size)}, "
                  f"{plural(len(rep.sections), 'section')}, {plural(n_fig, 'figure')}"
                  + (f", figures in {paths[1].parent}/" if len(paths) > 1 else "") + "[/dim]")
    return 0
