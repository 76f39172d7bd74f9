"""``mliap-tui run``: evaluate models on a dataset (only what is not cached yet)."""

from __future__ import annotations

import argparse

from mliap_tui.cli import console, options, render
from mliap_tui.core.vocab import (
    DEFAULT_RELAX_FMAX_EV_PER_ANG,
    DEFAULT_RELAX_MAX_STEPS,
    RELAX_ENGINES,
    RelaxEngine,
)

RUN_EPILOG = options.examples(
    "mliap-tui run --data sample --models chgnet-0.3.0,sevennet-0",
    "mliap-tui run --data sample --models sevennet-0 --device cuda --limit 100",
    "mliap-tui run --data sample --models chgnet-0.3.0 --mode relax --limit 20",
    "mliap-tui run --mode relax --fmax 0.02 --max-steps 1000 --torch-threads 1",
    "mliap-tui run --mode relax --relax-engine ase --limit 20   # the reference",
    "mliap-tui run --data mp --models orb-v2 --python-for orb=/opt/orb-venv/bin/python",
    "mliap-tui run --models chgnet-0.3.0 --checkpoint chgnet-0.3.0=my-finetune.pth.tar",
    "mliap-tui run --data cualni --model ase:ase.calculators.emt:EMT",
    "mliap-tui run --model 'chg=ase[mp2020]:chgnet.model.dynamics:CHGNetCalculator'",
    "mliap-tui run --data mp --models chgnet-0.3.0 --cluster local:4",
    "mliap-tui run --data mp --models sevennet-0 --cluster tcp://head:8786 --cache /shared/mliap-cache",
    "mliap-tui run --data mp --models sevennet-0 --cluster slurm:8 --device cuda   (jobqueue.yaml: README)",
) + (
    "\n\nmodels: registry ids (mliap-tui models), installed plug-ins (entry point group\n"
    "mliap_tui.models), or an ASE calculator factory\n"
    "  [NAME=]ase[CONV]:package.module:factory[:kwargs-json]\n"
    "(CONV: mp2020, raw_pbe (default) or r2scan). Before evaluating, every model runs\n"
    "the canary check on 12 real MP crystals: a model whose MAE exceeds 150 meV/atom\n"
    "is refused unless --trust-model names it. See README, \"Models you can trust\"."
    "\n\nrelax mode runs ASE's FIRE on a Frechet cell filter (atoms and cell together)\n"
    "until the largest force and cell-gradient row is below --fmax, or --max-steps.\n"
    "The batched engine relaxes many crystals at once through the model's batched\n"
    "path, a finished one making room for the next; it follows ASE step for step.\n"
    "Rows record relax_steps, relax_converged, the final fmax and the engine."
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
    run.add_argument("--models", default=None, metavar="IDS",
                     help=f"models, comma-separated: registry ids, plug-in ids or ase: references "
                          f"(default: {options.DEFAULT_MODELS} unless --model is given)")
    run.add_argument("--model", action="append", default=[], metavar="REF",
                     help="one more model (repeatable); the way to pass an ase: reference whose kwargs hold commas")
    options.add_device(run)
    options.add_mode(run, "static single points on the DFT structures (default) or FIRE relaxations")
    run.add_argument("--limit", type=options.positive_int, help="evaluate at most N materials per model")
    run.add_argument("--forces", action="store_true", help="also store forces (eV/Å) and stress (GPa)")
    run.add_argument("--retry-failed", action="store_true", help="re-evaluate rows that failed before")
    run.add_argument("--checkpoint", action="append", default=[], metavar="MODEL=PATH",
                     help="local weights file (or folder) for a model; repeat for several models")
    run.add_argument("--trust-model", default=None, metavar="IDS",
                     help="run these models (comma-separated ids, or 'all') even if they fail the load-time canary "
                          "check; their rows record trust_override")
    run.add_argument("--python-for", action="append", default=[], metavar="FAMILY=PYTHON",
                     help="run a model family's worker with another interpreter (its own venv), e.g. orb=/opt/orb/bin/python")
    run.add_argument("--cluster", metavar="ADDRESS|local[:N]|slurm|pbs|lsf",
                     help="run the work units as Dask tasks: on a running scheduler (tcp://host:8786), a LocalCluster "
                     "of N workers here, or a dask-jobqueue cluster from its config (slurm:JOBS); the cache folder "
                     "must be shared with every worker (needs pip install 'mliap-tui[cluster]')")
    run.add_argument("--batch-atoms", type=options.positive_int, default=None, metavar="N",
                     help="atoms per model call; in relax mode, atoms in flight (default: the model's GPU budget, "
                          "1/16 of it on CPU; halved automatically after an out-of-memory error)")
    options.add_torch_threads(run)
    relax = run.add_argument_group("relax mode (--mode relax)")
    relax.add_argument("--relax-engine", choices=RELAX_ENGINES, default=RelaxEngine.BATCHED.value,
                       help="batched (default): many crystals at once, a finished one replaced by the next; "
                            "ase: one at a time through the family's ASE calculator (the reference, slower)")
    relax.add_argument("--fmax", type=options.positive_float, default=DEFAULT_RELAX_FMAX_EV_PER_ANG, metavar="EV_PER_ANG",
                       help="converged when every atom force and cell-gradient row is below this, eV/Å "
                            f"(default {DEFAULT_RELAX_FMAX_EV_PER_ANG:g}, as ASE's fmax)")
    relax.add_argument("--max-steps", type=options.non_negative_int, default=DEFAULT_RELAX_MAX_STEPS, metavar="N",
                       help=f"FIRE steps before a crystal is given up (default {DEFAULT_RELAX_MAX_STEPS}); its row "
                            "is kept with relax_converged false")
    options.add_cache(run)
    run.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from mliap_tui.cli.progress import RichProgress
    from mliap_tui.data.importer import is_cached, resolve_dataset
    from mliap_tui.engine.runner import run_evaluation

    cache = options.cache_of(args)
    models_arg = args.models if args.models is not None or args.model else options.DEFAULT_MODELS
    model_ids = options.model_ids(models_arg, extra=args.model)
    trust = _trust(args.trust_model, model_ids)
    python_for = options.parse_pairs(args.python_for, "--python-for")
    checkpoints = options.parse_pairs(args.checkpoint, "--checkpoint")
    options.refuse_unavailable(model_ids, python_for)
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
                trust_models=trust,
                batch_atoms=args.batch_atoms,
                torch_threads=args.torch_threads,
                relax_engine=args.relax_engine,
                relax_fmax=args.fmax,
                relax_max_steps=args.max_steps,
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
        from mliap_tui.analysis.summary import dataset_holds

        console.print(f"[dim]next: {dataset_holds(cache, dataset).next_step(dataset, args.forces, args.mode)}[/dim]")
    return 0 if summary.ok else 1


def _trust(value: str | None, model_refs: list[str]) -> bool | list[str]:
    """``--trust-model``: 'all' or model ids among the run's models (UserError otherwise)."""
    from mliap_tui.models.registry import get_spec

    if not value:
        return []
    if value.strip().lower() == "all":
        return True
    ids = {get_spec(ref).id for ref in model_refs}
    wanted = options.split_list(value)
    unknown = [m for m in wanted if m not in ids]
    if unknown:
        raise options.UserError(f"--trust-model {', '.join(unknown)}: not among this run's models ({', '.join(sorted(ids))})")
    return wanted
