"""``mliap-tui run``: evaluate models on a dataset (only what is not cached yet)."""

from __future__ import annotations

import argparse

from mliap_tui.cli import console, options, render

RUN_EPILOG = options.examples(
    "mliap-tui run --data sample --models chgnet-0.3.0,sevennet-0",
    "mliap-tui run --data sample --models sevennet-0 --device cuda --limit 100",
    "mliap-tui run --data sample --models chgnet-0.3.0 --mode relax --limit 20",
    "mliap-tui run --data mp --models orb-v2 --python-for orb=/opt/orb-venv/bin/python",
    "mliap-tui run --data mp --models chgnet-0.3.0 --cluster local:4",
    "mliap-tui run --data mp --models sevennet-0 --cluster tcp://head:8786 --cache /shared/mliap-cache",
    "mliap-tui run --data mp --models sevennet-0 --cluster slurm:8 --device cuda   (jobqueue.yaml: README)",
)


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run",
        help="evaluate models on a dataset (only what is not cached yet)",
        description="Evaluate each model on each crystal of a dataset and store the predictions. "
        "Models run in worker subprocesses, in batches sized by atom count; results are "
        "committed in chunks, so an interrupted run resumes where it stopped.",
        epilog=RUN_EPILOG,
        formatter_class=options.formatter(),
    )
    run.add_argument("--data", default="sample", metavar="NAME|PATH",
                     help="dataset in the cache, 'sample', or a file/folder to import first (default: sample)")
    options.add_models(run)
    options.add_device(run)
    options.add_mode(run, "static single points on the DFT structures (default) or FIRE relaxations")
    run.add_argument("--limit", type=options.positive_int, help="evaluate at most N materials per model")
    run.add_argument("--forces", action="store_true", help="also store forces (eV/Å) and stress (GPa)")
    run.add_argument("--retry-failed", action="store_true", help="re-evaluate rows that failed before")
    run.add_argument("--torch-threads", type=options.positive_int, metavar="N",
                     help="intra-op threads per CPU worker (default: every usable core; 1 is often faster on a "
                     "machine other processes share)")
    run.add_argument("--checkpoint", action="append", default=[], metavar="MODEL=PATH",
                     help="local weights file (or folder) for a model; repeat for several models")
    run.add_argument("--python-for", action="append", default=[], metavar="FAMILY=PYTHON",
                     help="run a model family's worker with another interpreter (its own venv), e.g. orb=/opt/orb/bin/python")
    run.add_argument("--cluster", metavar="ADDRESS|local[:N]|slurm|pbs|lsf",
                     help="run the work units as Dask tasks: on a running scheduler (tcp://host:8786), a LocalCluster "
                     "of N workers here, or a dask-jobqueue cluster from its config (slurm:JOBS); the cache folder "
                     "must be shared with every worker (needs pip install 'mliap-tui[cluster]')")
    options.add_cache(run)
    run.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from mliap_tui.cli.progress import RichProgress
    from mliap_tui.data.importer import is_cached, resolve_dataset
    from mliap_tui.engine.runner import run_evaluation

    cache = options.cache_of(args)
    model_ids = options.model_ids(args.models)
    python_for = options.parse_pairs(args.python_for, "--python-for")
    checkpoints = options.parse_pairs(args.checkpoint, "--checkpoint")
    if not is_cached(cache, args.data):
        console.print(f"[dim]importing {args.data} first (not a dataset in the cache yet)[/dim]")
    dataset, report = resolve_dataset(cache, args.data)
    if report is not None:
        console.print(render.import_report(report))
        if not report.n_loaded:
            return 1
    runner = run_evaluation
    extra: dict = {}
    if args.cluster:
        from mliap_tui.engine.cluster import parse_cluster, run_on_cluster

        parse_cluster(args.cluster)  # a bad spec is a user error before anything starts
        import logging

        # Dask's own tracebacks for a lost connection would bury the one-line message we print
        logging.getLogger("distributed").setLevel(logging.ERROR)
        logging.getLogger("distributed.client").setLevel(logging.CRITICAL)
        runner, extra = run_on_cluster, {"cluster": args.cluster}
    from mliap_tui.engine.cluster import ClusterLost

    try:
        with RichProgress(console=console) as show:
            summary = runner(
                cache,
                dataset,
                model_ids,
                **extra,
                mode=args.mode,
                device=args.device,
                dtype=args.dtype,
                limit=args.limit,
                forces=args.forces,
                stress=args.forces,
                python_for=python_for,
                on_event=show,
                retry_failed=args.retry_failed,
                checkpoints=checkpoints,
                torch_threads=args.torch_threads,
            )
    except ClusterLost as exc:
        from rich.markup import escape

        from mliap_tui.cli import EXIT_FAILED, err_console

        err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}")
        return EXIT_FAILED
    console.print(render.run_summary(summary))
    if summary.cancelled:  # Ctrl-C (or SIGTERM): the runner cancelled, the workers committed and exited
        from mliap_tui.cli import EXIT_INTERRUPTED, err_console

        err_console.print("interrupted: committed results are kept; run the same command again to resume")
        return EXIT_INTERRUPTED
    if summary.ok:
        console.print(f"[dim]next: mliap-tui summary --data {dataset} --by dof   (or mliap-tui to explore)[/dim]")
    return 0 if summary.ok else 1
