"""Modal export dialog: confirm the path, choose the layout, never overwrite without asking."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import (
    Button,
    Checkbox,
    Input,
    Label,
    RadioButton,
    RadioSet,
    Static,
)

from mliap_tui.analysis.export import ExportResult, default_export_path
from mliap_tui.tui.messages import ExportFinished

Writer = Callable[[Path, str, bool, bool], ExportResult]


class ExportScreen(ModalScreen[ExportResult | None]):
    """Dismisses with the ExportResult, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="export.cancel")]

    def __init__(self, dataset: str, filter_text: str, counts: dict[str, int], n_marked: int, writer: Writer) -> None:
        super().__init__()
        self.dataset = dataset
        self.filter_text = filter_text
        self.counts = counts
        self.n_marked = n_marked
        self.writer = writer
        self._confirmed: Path | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="export-dialog"):
            yield Label("Export to CSV", id="export-title")
            yield Static(f"filter: {self.filter_text or 'none'} · values eV/atom (units in column names)", id="export-filter")
            with RadioSet(id="export-layout"):
                yield RadioButton(f"tidy: one row per material × model ({self.counts['tidy']:,} rows)", value=True, id="layout-tidy")
                yield RadioButton(f"wide: one row per material, as the table ({self.counts['wide']:,} rows)", id="layout-wide")
            marked = Checkbox(
                f"only the marked materials ({self.counts.get('tidy-marked', 0):,} tidy / "
                f"{self.counts.get('wide-marked', 0):,} wide rows; {self.n_marked} marked in all)",
                value=self.n_marked > 0, disabled=self.n_marked == 0, id="export-marked",
            )
            marked.display = self.n_marked > 0
            yield marked
            path_input = Input(str(default_export_path(self.dataset, layout="tidy")), id="export-path")
            path_input.border_title = "file (Enter exports)"
            yield path_input
            yield Static("", id="export-message")
            with Horizontal(id="export-buttons"):
                yield Button("Cancel", id="export-cancel")
                yield Button("Export", variant="primary", id="export-ok")

    def on_mount(self) -> None:
        self.query_one("#export-path", Input).focus()

    @property
    def chosen_layout(self) -> str:
        return "wide" if self.query_one("#layout-wide", RadioButton).value else "tidy"

    @property
    def marked_only(self) -> bool:
        box = self.query_one("#export-marked", Checkbox)
        return bool(box.value and not box.disabled)

    def _path(self) -> Path:
        path = Path(self.query_one("#export-path", Input).value.strip()).expanduser()
        return path if path.is_absolute() else Path.cwd() / path

    def _message(self, text: str, style: str = "") -> None:
        self.query_one("#export-message", Static).update(Text(text, style=style))

    def _reset_confirm(self) -> None:
        self._confirmed = None
        ok = self.query_one("#export-ok", Button)
        ok.label, ok.variant = "Export", "primary"

    @on(RadioSet.Changed, "#export-layout")
    def _layout_changed(self, event: RadioSet.Changed) -> None:
        path_input = self.query_one("#export-path", Input)
        name = Path(path_input.value).name
        other = "tidy" if self.chosen_layout == "wide" else "wide"
        if f"-{other}-" in name:  # keep the default name in step with the layout
            path_input.value = str(Path(path_input.value).with_name(name.replace(f"-{other}-", f"-{self.chosen_layout}-")))
        self._reset_confirm()

    @on(Input.Changed, "#export-path")
    def _path_changed(self, event: Input.Changed) -> None:
        self._reset_confirm()
        self._message("")

    @on(Button.Pressed, "#export-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#export-ok")
    @on(Input.Submitted, "#export-path")
    def _export(self) -> None:
        path = self._path()
        if path.is_dir():
            self._message(f"{path} is a folder: add a file name", "red")
            return
        if not path.parent.is_dir():
            self._message(f"folder {path.parent} does not exist", "red")
            return
        overwrite = False
        if path.exists():
            if self._confirmed != path:
                self._confirmed = path
                ok = self.query_one("#export-ok", Button)
                ok.label, ok.variant = "Overwrite", "error"
                self._message(f"{path.name} exists: Enter/Overwrite replaces it, or edit the name", "yellow")
                return
            overwrite = True
        self._message("writing…")
        self._write(path, self.chosen_layout, self.marked_only, overwrite)

    @work(thread=True, exclusive=True)
    def _write(self, path: Path, layout: str, marked_only: bool, overwrite: bool) -> None:
        try:
            result = self.writer(path, layout, marked_only, overwrite)
        except Exception as exc:
            self.post_message(ExportFinished(None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(ExportFinished(result))

    def on_export_finished(self, message: ExportFinished) -> None:
        if message.result is None:
            self._message(f"export failed: {message.error}", "red")
            return
        self.dismiss(message.result)
