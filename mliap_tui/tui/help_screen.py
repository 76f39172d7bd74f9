"""Help (``?``): every key binding with its id (for the keymap file) and the filter language."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from mliap_tui.analysis.filters import GRAMMAR_HELP
from mliap_tui.tui.keymap import all_bindings, keymap_path


def bindings_table(overrides: dict[str, str]) -> Table:
    table = Table(title="keys (remap by id in the keymap file)", title_justify="left", box=None, padding=(0, 1))
    table.add_column("key", style="bold cyan", max_width=16, overflow="fold")
    table.add_column("action")
    table.add_column("where", style="dim")
    table.add_column("id", style="dim", no_wrap=True)
    for binding_id, (keys, description, where) in all_bindings().items():
        shown = overrides.get(binding_id, keys)
        table.add_row(shown.replace("question_mark", "?").replace("slash", "/").replace(",", " "), description, where, binding_id)
    table.add_row("ctrl+p", "command palette: screens, filters, models, metrics, export", "everywhere", "(textual)")
    return table


def help_renderable(overrides: dict[str, str]) -> Group:
    intro = Text.assemble(
        ("mliap-tui explorer", "bold"),
        " — cached DFT vs model energies; nothing is recomputed. Values are eV/atom, errors "
        "(prediction − DFT, negative = underpredicted) are shown in meV/atom.\n"
        "r opens the run screen: pick a dataset, models (greyed ones cannot run here, with the reason), mode and "
        "device, s starts, x cancels (what was computed is kept; s again resumes). "
        "From a shell: `mliap-tui run --data D --models M`, then R here to reload.\n",
        (f"keymap file: {keymap_path()}", "dim"),
    )
    grammar = Text(GRAMMAR_HELP.replace("``", "").replace("::\n", ""))
    return Group(intro, Text(""), bindings_table(overrides), Text(""), Text("filter language", style="bold"), grammar)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", id="help.close")]

    def compose(self) -> ComposeResult:
        overrides = getattr(self.app, "keymap_overrides", {})
        with VerticalScroll(id="help-body"):
            yield Static(help_renderable(overrides), id="help-text")

    def action_dismiss(self, result=None) -> None:  # type: ignore[override]
        self.dismiss(None)
