"""``mliap-tui``: the command line. One module per command group; each registers its parsers
with :func:`register` and sets ``handler`` on them, so there is one way a command is found::

    data.py      data import | data show          models.py   models
    run.py       run                              summary.py  summary
    study.py     study dof
    export.py    export                           pes.py      pes
    forces.py    softening | rare-events          cache.py    cache check
    report.py    figures | report                 doctor.py   doctor
    app.py       (no command: the app)

Options several commands share live in :mod:`.options`, every rich table in :mod:`.render`,
the run progress bars in :mod:`.progress`. Work happens in the layers below; a command parses,
calls one library function, renders its result and returns an exit status:

    0 done, 1 the work failed (a model errored, nothing imported), 2 a user error (bad option,
    unknown dataset/model, file exists), 3 a model cannot run here, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from rich.console import Console

from mliap_tui import __version__
from mliap_tui.cli import options
from mliap_tui.core.files import WriteError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

EXIT_OK, EXIT_FAILED, EXIT_USER_ERROR, EXIT_MODEL_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

MAIN_EPILOG = """\
typical session:
  mliap-tui data import sample                     # the shipped 400-crystal MP sample -> ./cache
  mliap-tui models                                 # which models can run here, and why not
  mliap-tui run --data sample --models chgnet-0.3.0,sevennet-0
  mliap-tui summary --by dof                       # MAE / mean signed error per DOF bin
  mliap-tui study dof                              # static vs relaxed by DOF, intervals, trend
  mliap-tui pes mp-560588 --axes Zn:2b:z,lattice:c/a --models chgnet-0.3.0,sevennet-0
  mliap-tui softening --data si-vacancy            # force softening scale (after run --forces)
  mliap-tui report --out report.html               # tables, figures and provenance in one file

Energies are eV/atom, forces eV/Å, stress GPa. Signed errors are prediction minus DFT, so
underprediction is negative. Results live in parquet files under the cache folder
(--cache DIR, or $MLIAP_TUI_CACHE; default ./cache): a re-run computes only what is missing.
"""

#: command modules, in the order `--help` lists them
COMMAND_MODULES = ("data", "models", "run", "summary", "study", "export", "pes", "forces", "report", "cache", "doctor")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="mliap-tui",
        description="Audit universal machine-learning interatomic potentials against DFT.\n"
        "With no command, opens the terminal app on the default cache.",
        epilog=MAIN_EPILOG,
        formatter_class=options.formatter(),
    )
    parser.add_argument("--version", action="version", version=f"mliap-tui {__version__}")
    options.add_cache(parser, top=True)
    parser.add_argument("--cluster", dest="app_cluster", metavar="SPEC",
                        help="the app's Run screen runs on a Dask cluster (as `run --cluster SPEC`)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"mliap_tui.cli.{name}").register(sub)
    from mliap_tui.cli import app

    parser.set_defaults(handler=app.cmd_app)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except WriteError as exc:  # disk full, read-only, vanished folder: one line, nothing claimed
        err_console.print(f"[bold red]error:[/bold red] {_message(exc)}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        err_console.print("interrupted: committed results are kept; run the same command again to resume")
        return EXIT_INTERRUPTED
    except (FileNotFoundError, FileExistsError, ValueError) as exc:  # UserError is a ValueError
        err_console.print(f"[bold red]error:[/bold red] {_message(exc)}")
        return EXIT_USER_ERROR
    except Exception as exc:  # the one place that turns an unexpected failure into a message
        if os.environ.get("MLIAP_TUI_DEBUG"):
            raise
        from mliap_tui.models.base import ModelUnavailable

        if isinstance(exc, ModelUnavailable):
            err_console.print(f"[bold red]model unavailable:[/bold red] {_message(exc)}")
            return EXIT_MODEL_UNAVAILABLE
        if type(exc).__name__ == "ComputeError" and "parquet" in str(exc).lower():
            err_console.print(f"[bold red]error:[/bold red] a cache file is damaged ({_message(exc)}): "
                              "mliap-tui cache check finds it and moves it to quarantine; run again then")
            return EXIT_FAILED
        err_console.print(
            f"[bold red]error:[/bold red] {type(exc).__name__}: {_message(exc)}  (set MLIAP_TUI_DEBUG=1 for a traceback)"
        )
        return EXIT_FAILED
    finally:
        report_quarantined()


def report_quarantined() -> None:
    """Tell the user about every unreadable cache file this command set aside (rows to recompute)."""
    from mliap_tui.cache.quarantine import drain

    notes = drain()
    for note in notes:
        err_console.print(f"[yellow]warning:[/yellow] {_markup_escape(note.describe())}")
    if notes:
        rows = sum(n.rows or 0 for n in notes if n.model)
        known = all(n.rows is not None for n in notes if n.model)
        if any(n.model for n in notes):
            err_console.print(f"[yellow]{'' if known else 'at least '}{rows:,} prediction rows are no longer in the cache: "
                              "`mliap-tui run` with the same options computes them again[/yellow]")


def _markup_escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _message(exc: BaseException) -> str:
    from rich.markup import escape

    return escape(str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc))


if __name__ == "__main__":
    sys.exit(main())
