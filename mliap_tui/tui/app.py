"""The Textual app: ``run_app(cache)`` is what ``mliap-tui`` with no command opens.

Screens: Explore (filters, summary, virtual table, plots), Detail (one material), Export
(modal), Help (modal). Every binding has an id (remappable, see ``mliap_tui.tui.keymap``);
``ctrl+p`` opens the command palette. Data work runs in thread workers that post typed
messages (``mliap_tui.tui.messages``); nothing is recomputed from structures except the
symmetry of the one material shown in the detail view.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.binding import Binding

from mliap_tui.cache import Cache
from mliap_tui.tui.explore import ExploreScreen
from mliap_tui.tui.help_screen import HelpScreen
from mliap_tui.tui.keymap import load_keymap


class MliapTuiApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "mliap-tui"
    BINDINGS = [
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("q", "quit", "Quit", show=False, id="app.quit"),
    ]

    def __init__(self, cache: Cache, dataset: str | None = None, keymap: dict[str, str] | None = None,
                 keymap_warnings: list[str] | None = None) -> None:
        super().__init__()
        self.cache = cache
        self.initial_dataset = dataset
        self.keymap_overrides = dict(keymap or {})
        self.keymap_warnings = list(keymap_warnings or [])

    def on_mount(self) -> None:
        if self.keymap_overrides:
            self.set_keymap(self.keymap_overrides)
        for warning in self.keymap_warnings:
            self.notify(warning, severity="warning", timeout=10)
        self.push_screen(ExploreScreen(self.cache, self.initial_dataset))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())


def run_app(cache: Cache, dataset: str | None = None, keymap_file: str | Path | None = None) -> int:
    """Open the explorer on ``cache``; returns the exit code."""
    keymap, warnings = load_keymap(Path(keymap_file) if keymap_file else None)
    app = MliapTuiApp(cache, dataset, keymap, warnings)
    app.run()
    return app.return_code or 0
