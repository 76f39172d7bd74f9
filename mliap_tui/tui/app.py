"""The Textual app: ``run_app(cache)`` is what ``mliap-tui`` with no command opens.

Screens: Explore (filters, summary, virtual table, plots), Detail (one material, with its PES slices
on ``p``), Forces (softening and rare-event analyses, ``f``), Run (pick
models and start, follow and cancel an evaluation; installed once so a run goes on while the
explorer is shown), Export (modal), Help (modal). Every binding has an id (remappable, see ``mliap_tui.tui.keymap``);
``ctrl+p`` opens the command palette. Data work runs in thread workers that post typed
messages (``mliap_tui.tui.messages``); nothing is recomputed from structures except the
symmetry of the one material shown in the detail view.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from textual.app import App
from textual.binding import Binding

from mliap_tui.cache import Cache
from mliap_tui.tui.explore import ExploreScreen
from mliap_tui.tui.help_screen import HelpScreen
from mliap_tui.tui.keymap import load_keymap
from mliap_tui.tui.messages import ResultsChanged
from mliap_tui.tui.run_screen import RunScreen


class MliapTuiApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "mliap-tui"
    BINDINGS = [
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("r", "run_screen", "Run models", id="app.run_screen"),
        Binding("f", "forces_screen", "Forces", id="app.forces_screen"),
        Binding("q", "quit", "Quit", show=False, id="app.quit"),
    ]

    def __init__(self, cache: Cache, dataset: str | None = None, keymap: dict[str, str] | None = None,
                 keymap_warnings: list[str] | None = None, run_options: dict[str, Any] | None = None,
                 device_poll_s: float | None = 1.0) -> None:
        super().__init__()
        self.run_options = dict(run_options or {})  # extra EvaluationRun options (e.g. torch_threads)
        self.device_poll_s = device_poll_s
        self.cache = cache
        self.initial_dataset = dataset
        self.keymap_overrides = dict(keymap or {})
        self.keymap_warnings = list(keymap_warnings or [])

    def on_mount(self) -> None:
        if self.keymap_overrides:
            self.set_keymap(self.keymap_overrides)
        for warning in self.keymap_warnings:
            self.notify(warning, severity="warning", timeout=10)
        self.explore = ExploreScreen(self.cache, self.initial_dataset)
        self.push_screen(self.explore)
        if not self.cache.datasets():
            self.notify("The cache has no dataset: press r then i to import the shipped sample, "
                        "or run `mliap-tui data import sample` in a shell.", title="empty cache", timeout=15)

    @property
    def run_screen(self) -> RunScreen:
        """The one Run screen (installed, so a run survives going back to the explorer)."""
        if not self.is_screen_installed("run"):
            dataset = getattr(self.screen_stack[-1], "dataset", None) if self.screen_stack else None
            self.install_screen(RunScreen(self.cache, dataset or self.initial_dataset, self.run_options,
                                          self.device_poll_s), name="run")
        return self.get_screen("run")  # type: ignore[return-value]

    def action_run_screen(self) -> None:
        screen = self.run_screen
        if self.screen is not screen and screen not in self.screen_stack:
            self.push_screen(screen)

    def action_forces_screen(self) -> None:
        """Softening and rare-event analyses over every dataset that carries DFT forces."""
        from mliap_tui.tui.forces_screen import ForcesScreen

        if isinstance(self.screen, ForcesScreen):
            return
        # with no dataset with DFT forces the screen says how to get one (i imports the shipped sample)
        self.push_screen(ForcesScreen(self.cache, datasets_with_dft_forces(self.cache)))

    def on_results_changed(self, message: ResultsChanged) -> None:
        """A run committed new results: the explorer reloads (it handles the message itself)."""
        self.explore.post_message(ResultsChanged(message.dataset))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        self.cancel_runs()
        self.exit(0)

    def cancel_runs(self) -> None:
        """Cancel a run in progress: its workers commit what they evaluated, then exit."""
        if self.is_screen_installed("run"):
            self.get_screen("run").cancel_for_exit()


def datasets_with_dft_forces(cache: Cache) -> list[str]:
    """Datasets whose materials carry DFT forces (lazy: reads one column's null count)."""
    import polars as pl

    out = []
    for name in cache.datasets():
        n = cache.scan_materials(name).select(pl.col("forces_dft_ev_per_ang").is_not_null().sum()).collect().item()
        if n:
            out.append(name)
    return out


def run_app(cache: Cache, dataset: str | None = None, keymap_file: str | Path | None = None,
            run_options: dict[str, Any] | None = None) -> int:
    """Open the explorer on ``cache``; returns the exit code. ``run_options``: extra options of the
    Run screen's runs (e.g. ``{"cluster": "local:2"}``)."""
    keymap, warnings = load_keymap(Path(keymap_file) if keymap_file else None)
    app = MliapTuiApp(cache, dataset, keymap, warnings, run_options=run_options)
    try:
        app.run()
    except KeyboardInterrupt:  # SIGINT from outside the terminal (the app reads Ctrl-C as a key)
        app.return_code = 130
    finally:
        # however the app ended, a run still going is cancelled: its workers commit and exit
        app.cancel_runs()
    if app.return_code == 130:
        print("interrupted: committed results are kept; run again to resume", file=sys.stderr)
    return app.return_code or 0
