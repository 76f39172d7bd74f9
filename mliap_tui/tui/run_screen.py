"""The Run screen: pick a dataset, models, mode and device; start, watch and cancel an evaluation.

The work happens in the engine's worker subprocesses (``mliap_tui.engine.runner.EvaluationRun``).
``EvaluationRun.run()`` blocks in a thread worker and hands every engine event to a callback that
posts it to this screen as a typed ``EngineEvent``; ``cancel()`` (key x) is called from the UI
thread and stops the workers cleanly (they commit what they evaluated). Starting again resumes:
the plan counts what is already in the cache and only the rest is computed. When a run ends the
Explore screen reloads the dataset.
"""

from __future__ import annotations

import itertools
import time
from enum import Enum
from typing import Any

import polars as pl
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import (
    Checkbox,
    ContentSwitcher,
    Footer,
    Header,
    Input,
    Label,
    ProgressBar,
    Select,
    SelectionList,
    Static,
)
from textual.widgets.selection_list import Selection

from mliap_tui.cache import Cache
from mliap_tui.core.units import format_bytes, format_duration
from mliap_tui.core.vocab import RelaxEngine
from mliap_tui.engine.protocol import (
    ChunkCommitted,
    ClusterConnected,
    ClusterWorker,
    Log,
    ModelSkipped,
    Progress,
    RunFinished,
    RunPlanned,
    WorkerError,
    WorkerFinished,
    WorkerStarted,
)
from mliap_tui.tui.commands import RunCommands
from mliap_tui.tui.device_pane import DevicePane
from mliap_tui.tui.messages import (
    EngineEvent,
    FailuresLoaded,
    PlanComputed,
    ResultsChanged,
    RunEnded,
    SampleImported,
)

DEVICES = ("auto", "cpu", "cuda")
#: the mode choices (label, value): relax mode runs the batched engine, or ASE's (the reference)
MODE_CHOICES = (("static", "static"), ("relax", "relax"), ("relax ase", "relax-ase"))
DEFAULT_MODEL = "chgnet-0.3.0"


def _rate(value: float | None, unit: str) -> str:
    return "—" if value is None else f"{value:,.1f} {unit}"


def _memory(nbytes: int | None, kind: str) -> str:
    if not nbytes:
        return ""
    label = {"cuda_max_allocated": "peak CUDA", "cpu_peak_rss": "peak RSS"}.get(kind, "peak mem")
    return f"{label} {format_bytes(nbytes)}"


def cluster_worker_line(ev: ClusterWorker) -> Text:
    """One Dask worker of a cluster run: address, device, state and task, rate, structures done."""
    line = Text("dask ", style="dim")
    line.append(f"{ev.address.split('://')[-1]} {ev.device or '-'} ")
    line.append(ev.state or "idle", style={"running": "green", "lost": "red"}.get(ev.state, "dim"))
    if ev.task:
        line.append(f" {ev.task}")
    if ev.structures_per_s:
        line.append(f"  {ev.structures_per_s:.1f} struct/s")
    line.append(f"  {ev.done} done", style="dim")
    return line


def model_choices() -> list[tuple[str, bool, str]]:
    """(model id, ready, availability message) for every registry model and installed plug-in;
    cheap (no model import)."""
    from mliap_tui.models.registry import all_specs, availability

    out = []
    for spec in all_specs():
        av = availability(spec)
        out.append((spec.id, av.ready, av.message))
    return out


# --------------------------------------------------------------------------------------------
# one model's progress
# --------------------------------------------------------------------------------------------


class PaneState(Enum):
    """Where one model of a run stands (the pane shows ``label``, plus a detail after a colon)."""

    WAITING = "waiting"
    LOADING = "starting worker, loading model…"
    RUNNING = "running"
    CANCELLING = "cancelling…"
    DONE = "done"
    CANCELLED = "cancelled"
    ERROR = "error"
    SKIPPED = "skipped"
    NOTHING_TO_DO = "nothing to do"

    @property
    def active(self) -> bool:
        """Still to finish in this run (waiting, loading, running or cancelling)."""
        return self in (PaneState.WAITING, PaneState.LOADING, PaneState.RUNNING, PaneState.CANCELLING)

    @property
    def style(self) -> str:
        return {PaneState.DONE: "green", PaneState.ERROR: "bold red", PaneState.CANCELLED: "yellow",
                PaneState.RUNNING: "bold"}.get(self, "dim")


class ModelPane(Vertical, can_focus=True):
    """Progress of one model: bar, rates, ETA, failures (enter lists them)."""

    BINDINGS = [Binding("enter", "failures", "Failures", id="run.pane_failures")]

    class FailuresRequested(Message):
        def __init__(self, model: str, last_failures: list[list[str]]) -> None:
            super().__init__()
            self.model = model
            self.last_failures = last_failures

    def __init__(self, model: str, total: int, cached: int, cached_failed: int, todo: int) -> None:
        super().__init__(classes="model-pane")
        self.model = model
        self.total, self.cached, self.cached_failed, self.todo = total, cached, cached_failed, todo
        self.done = 0
        self.failed = 0
        self.ok = 0
        self.state = PaneState.WAITING if todo else PaneState.NOTHING_TO_DO
        self.detail = ""
        self.last_failures: list[list[str]] = []
        self.workers_started = 0
        self.workers_ended = 0
        self.chunks = 0
        self.stats = ""
        self.progress_total = 0
        self.bar_state: tuple[int, int] | None = None

    def compose(self) -> ComposeResult:
        yield Static(self._title(), classes="pane-title")
        with Horizontal(classes="pane-bar"):
            yield ProgressBar(total=max(self.todo, 1) if self.todo else 1, show_eta=False, id=f"bar-{self._slug}")
            yield Label(self._counts(), classes="pane-counts")
        yield Static("", classes="pane-stats")
        yield Static("", classes="pane-failures")

    @property
    def _slug(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.model)

    _composed = False

    def on_mount(self) -> None:
        self._composed = True
        if not self.todo:
            self.bar_state = (1, 1)
        if self.bar_state is not None:
            self.query_one(ProgressBar).update(total=self.bar_state[0], progress=self.bar_state[1])
        self._refresh()

    def _title(self) -> Text:
        cached = f"cached {self.cached}" + (f" ({self.cached_failed} failed)" if self.cached_failed else "")
        return Text.assemble((self.model, "bold cyan"), f"  {self.total} in scope · {cached} · to do {self.todo}  ",
                             (self.status_text, self.state.style))

    @property
    def status_text(self) -> str:
        """What the pane says about its state, e.g. 'done: 400 ok, 0 failed in 7.1 s'."""
        return f"{self.state.value}: {self.detail}" if self.detail else self.state.value

    def _counts(self) -> str:
        return f"{self.done}/{self.todo} structures"

    def _refresh(self) -> None:
        if not self._composed:  # state set before the children exist: on_mount shows it
            return
        self.query_one(".pane-title", Static).update(self._title())
        self.query_one(".pane-counts", Label).update(self._counts())
        self.query_one(".pane-stats", Static).update(self.stats)
        fail = self.query_one(".pane-failures", Static)
        if self.failed or self.cached_failed:
            text = Text.assemble((f"failed {self.failed} this run", "bold red" if self.failed else "dim"),
                                 f" (+{self.cached_failed} cached)" if self.cached_failed else "",
                                 ("  enter: reasons", "dim"))
            if self.last_failures:
                mid, reason = self.last_failures[-1]
                text.append(f"\nlast: {mid}: {reason}", style="red")
            fail.update(text)
            fail.display = True
        else:
            fail.update("")
            fail.display = False

    def set_state(self, state: PaneState, detail: str = "") -> None:
        self.state, self.detail = state, detail
        self._refresh()

    def on_started(self, ev: WorkerStarted) -> None:
        self.workers_started += 1
        threads = f" · {ev.torch_threads} threads" if ev.torch_threads else ""
        self.state, self.detail = PaneState.RUNNING, f"on {ev.device}"
        self.stats = (f"{ev.dtype} · model loaded in {ev.load_s:.1f} s · batch ≤ {ev.batch_atoms} atoms{threads} · "
                      f"{ev.atoms_total} atoms to do")
        self._refresh()

    def on_progress(self, ev: Progress) -> None:
        self.done, self.ok, self.failed = ev.done, ev.ok, ev.failed
        self.last_failures = [list(x) for x in ev.last_failures]
        self.progress_total = ev.total
        self._update_bar(max(ev.total, 1), ev.done)
        mem = _memory(ev.peak_memory_bytes, ev.memory_kind)
        self.stats = (f"{ev.atoms_done}/{ev.atoms_total} atoms · {_rate(ev.structures_per_s, 'structures/s')} · "
                      f"{_rate(ev.atoms_per_s, 'atoms/s')} · ETA {format_duration(ev.eta_s)} · {ev.device}"
                      + (f" · {mem}" if mem else ""))
        self._refresh()

    def on_finished(self, ev: WorkerFinished) -> None:
        self.workers_ended += 1
        if self.workers_ended < self.workers_started:
            return
        self.done, self.ok, self.failed = max(self.done, ev.done), max(self.ok, ev.ok), max(self.failed, ev.failed)
        if ev.cancelled:
            self.state, self.detail = PaneState.CANCELLED, f"{self.done} evaluated and kept; start again to resume"
        else:
            self._update_bar(max(self.todo, 1), self.todo or 1)
            self.state, self.detail = PaneState.DONE, f"{self.ok} ok, {self.failed} failed in {format_duration(ev.wall_s)}"
        mem = _memory(ev.peak_memory_bytes, ev.memory_kind)
        self.stats = (f"{_rate(ev.structures_per_s, 'structures/s')} · {_rate(ev.atoms_per_s, 'atoms/s')} over "
                      f"{ev.eval_s:.1f} s of evaluation · {ev.device}" + (f" · {mem}" if mem else ""))
        self._refresh()

    def _update_bar(self, total: int, progress: int) -> None:
        self.bar_state = (total, progress)
        if self._composed:
            self.query_one(ProgressBar).update(total=total, progress=progress)

    def on_error(self, ev: WorkerError) -> None:
        self.workers_ended += 1
        self.state, self.detail = PaneState.ERROR, ev.message
        self._refresh()

    def action_failures(self) -> None:
        self.post_message(self.FailuresRequested(self.model, self.last_failures))


# --------------------------------------------------------------------------------------------
# failures modal
# --------------------------------------------------------------------------------------------


class FailuresScreen(ModalScreen[None]):
    """Failed rows of one model, read from the cache, plus the newest ones not committed yet."""

    BINDINGS = [Binding("escape,q,enter", "close", "Close", id="failures.close")]

    def __init__(self, cache: Cache, dataset: str, model: str, mode: str, last_failures: list[list[str]]) -> None:
        super().__init__()
        self.cache, self.dataset, self.model, self.mode = cache, dataset, model, mode
        self.last_failures = last_failures
        self.rows: list[dict] | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="failures-body"):
            yield Static(f"failed evaluations of {self.model} on {self.dataset} ({self.mode}): loading…", id="failures-text")

    def on_mount(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="failures")
    def _load(self) -> None:
        try:
            preds = (self.cache.scan_predictions(self.dataset, [self.model], self.mode)
                     .filter(pl.col("status") == "failed").select("material_id", "error"))
            formulas = self.cache.scan_materials(self.dataset).select("material_id", "formula")
            rows = preds.join(formulas, on="material_id", how="left").sort("material_id").collect().to_dicts()
        except Exception as exc:  # noqa: BLE001 - shown in the modal
            self.post_message(FailuresLoaded(self.model, [], f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(FailuresLoaded(self.model, rows))

    def on_failures_loaded(self, message: FailuresLoaded) -> None:
        self.rows = message.rows
        table = Table(box=None, padding=(0, 1), expand=True)
        table.add_column("material", no_wrap=True)
        table.add_column("formula", no_wrap=True)
        table.add_column("reason", overflow="fold")
        for r in message.rows:
            table.add_row(r["material_id"], r.get("formula") or "?", r.get("error") or "")
        committed = {r["material_id"] for r in message.rows}
        pending = [f for f in self.last_failures if f[0] not in committed]
        for mid, reason in pending:
            table.add_row(mid, "?", Text(f"{reason} (not committed yet)", style="yellow"))
        title = Text.assemble((f"{len(message.rows) + len(pending)} failed evaluations", "bold"),
                              f" of {self.model} on {self.dataset} ({self.mode}) · escape closes\n")
        if message.error:
            title.append(f"could not read the cache: {message.error}\n", style="red")
        if not message.rows and not pending and not message.error:
            title.append("none: every evaluated structure has an energy\n", style="green")
        from rich.console import Group

        self.query_one("#failures-text", Static).update(Group(title, table))

    def action_close(self) -> None:
        self.dismiss(None)


# --------------------------------------------------------------------------------------------
# the screen
# --------------------------------------------------------------------------------------------


class RunScreen(Screen):
    """Set up, start, follow and cancel an evaluation run."""

    COMMANDS = {RunCommands}
    BINDINGS = [
        Binding("s", "start", "Start", id="run.start"),
        Binding("x", "cancel_run", "Cancel", id="run.cancel"),
        Binding("n", "setup", "Setup", id="run.setup"),
        Binding("v", "show_progress", "Progress", id="run.progress"),
        Binding("i", "import_sample", "Import sample", show=False, id="run.import_sample"),
        Binding("escape", "back", "Explore", id="run.back"),
    ]

    def __init__(self, cache: Cache, dataset: str | None = None, run_options: dict[str, Any] | None = None,
                 device_poll_s: float | None = 1.0) -> None:
        super().__init__()
        self.cache = cache
        self.initial_dataset = dataset
        self.run_options = dict(run_options or {})
        self.worker_lines: dict[str, Text] = {}  # a cluster run's Dask workers, by address
        self.device_poll_s = device_poll_s
        self.run: Any = None  # the EvaluationRun in flight
        self.running = False
        self.cancelling = False
        self.importing = False
        self.last_summary: Any = None
        self.run_dataset: str | None = None
        self.run_mode = "static"
        self.panes: dict[str, ModelPane] = {}
        self._tokens = itertools.count(1)
        self._run_token = 0
        self._plan_token = 0
        self._started_at: float | None = None
        self.choices = model_choices()

    # ---- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◇")
        datasets = self.cache.datasets()
        ds = self.initial_dataset if self.initial_dataset in datasets else ("sample" if "sample" in datasets else (datasets[0] if datasets else None))
        with ContentSwitcher(id="run-switcher", initial="run-setup"):
            with Vertical(id="run-setup"):
                with Horizontal(id="run-options"):
                    yield Label("data", classes="opt-label")
                    yield Select([(d, d) for d in datasets], value=ds if ds else Select.NULL, allow_blank=ds is None,
                                 prompt="no dataset", compact=True, id="run-dataset")
                    yield Label("mode", classes="opt-label")
                    yield Select(MODE_CHOICES, value="static", allow_blank=False, compact=True, id="run-mode",
                                 tooltip="relax: FIRE on a Fréchet cell filter, many crystals at once; "
                                 "relax ase: ASE's FIRE one crystal at a time (the reference, slower)")
                    yield Label("device", classes="opt-label")
                    yield Select([(d, d) for d in DEVICES], value="auto", allow_blank=False, compact=True, id="run-device")
                    yield Label("limit", classes="opt-label")
                    yield Input(placeholder="all", type="integer", compact=True, id="run-limit")
                    yield Checkbox("forces", self._has_dft_forces(ds), compact=True, id="run-forces",
                                   tooltip="also store forces (eV/Å) and stress (GPa): the Forces screen needs them")
                selections = []
                for model_id, ready, message in self.choices:
                    if ready:
                        prompt = Text.assemble((model_id, "bold"), ("  " + message, "dim"))
                    else:
                        prompt = Text.assemble((model_id, "strike"), f"  {message}")
                    selections.append(Selection(prompt, model_id, ready and model_id == DEFAULT_MODEL, disabled=not ready))
                yield SelectionList(*selections, id="run-models")
                yield Static(self._unavailable_text(), id="run-model-info")
                yield Static("", id="run-plan")
            with VerticalScroll(id="run-progress"):
                yield Static("", id="run-status")
                yield Vertical(id="run-panes")
                yield Static("", id="run-workers")  # a cluster run: one line per Dask worker
        yield DevicePane(self.device_poll_s, id="device-pane")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = "run models"
        self.query_one("#run-models", SelectionList).border_title = "models (space toggles; greyed: cannot run here)"
        self.query_one("#run-models", SelectionList).focus()
        self.set_interval(1.0, self._tick)
        self.replan()

    # ---- settings -------------------------------------------------------------------------
    @property
    def dataset(self) -> str | None:
        value = self.query_one("#run-dataset", Select).value
        return None if value is Select.NULL or value is None else str(value)

    @property
    def mode(self) -> str:
        return str(self.query_one("#run-mode", Select).value).partition("-")[0]

    @property
    def relax_engine(self) -> str:
        """The relax engine of the mode choice ("relax-ase" -> ase; otherwise batched)."""
        return str(self.query_one("#run-mode", Select).value).partition("-")[2] or RelaxEngine.BATCHED.value

    @property
    def device(self) -> str:
        return str(self.query_one("#run-device", Select).value)

    @property
    def forces(self) -> bool:
        return bool(self.query_one("#run-forces", Checkbox).value)

    def _has_dft_forces(self, dataset: str | None) -> bool:
        """Default of the forces box: on for a dataset with DFT forces (they are what it is for)."""
        if not dataset or not self.cache.has_materials(dataset):
            return False
        import polars as pl

        return bool(self.cache.scan_materials(dataset).select(pl.col("forces_dft_ev_per_ang").is_not_null().any())
                    .collect().item())

    @property
    def limit(self) -> int | None:
        text = self.query_one("#run-limit", Input).value.strip()
        return int(text) if text.isdigit() and int(text) > 0 else None

    @property
    def selected_models(self) -> list[str]:
        return list(self.query_one("#run-models", SelectionList).selected)

    def set_models(self, models: list[str]) -> None:
        """Select exactly ``models`` (those that can run here); used by the palette and tests."""
        sl = self.query_one("#run-models", SelectionList)
        sl.deselect_all()
        ready = {m for m, ok, _ in self.choices if ok}
        for m in models:
            if m not in ready:
                raise ValueError(f"model {m!r} cannot run here: {dict((c[0], c[2]) for c in self.choices).get(m, 'unknown model')}")
            sl.select(m)

    def set_option(self, name: str, value: str) -> None:
        self.query_one(f"#run-{name}", Select).value = value

    def _unavailable_text(self) -> Text:
        """Why the greyed models cannot run here, grouped by reason (the list truncates it)."""
        groups: dict[str, list[str]] = {}
        for model_id, ready, message in self.choices:
            if not ready:
                groups.setdefault(message, []).append(model_id)
        if not groups:
            return Text("every registered model can run here", style="dim")
        text = Text()
        for i, (message, models) in enumerate(groups.items()):
            text.append(("\n" if i else "") + ", ".join(models), style="bold yellow")
            text.append(f": {message}", style="dim")
        return text

    @on(Select.Changed)
    @on(SelectionList.SelectedChanged)
    @on(Input.Changed, "#run-limit")
    def _settings_changed(self, event) -> None:
        if isinstance(event, Select.Changed) and event.select.id == "run-dataset":
            # a dataset with DFT forces is there to compare forces: compute them by default
            self.query_one("#run-forces", Checkbox).value = self._has_dft_forces(self.dataset)
        self.replan()

    def replan(self) -> None:
        """Recompute the plan (what is cached, what is left) in a thread."""
        plan_box = self.query_one("#run-plan", Static)
        datasets = self.cache.datasets()
        if not datasets:
            plan_box.update(Text.assemble(
                ("The cache has no dataset yet", "bold yellow"), f" ({self.cache.root}).\n",
                "Press ", ("i", "bold"), " to import the shipped sample here (400 Materials Project crystals, about a "
                "minute), or in a shell: ", ("mliap-tui data import sample", "bold"), ".",
            ))
            return
        if self.dataset is None or not self.selected_models:
            plan_box.update(Text("select a dataset and at least one model (space toggles), then s starts", style="dim"))
            return
        self._plan_token = next(self._tokens)
        plan_box.update(Text("planning…", style="dim"))
        self._plan_worker(self._plan_token, self.dataset, self.selected_models, self.mode, self.limit)

    @work(thread=True, exclusive=True, group="plan")
    def _plan_worker(self, token: int, dataset: str, models: list[str], mode: str, limit: int | None) -> None:
        from mliap_tui.engine.runner import EvaluationRun

        try:
            plan = EvaluationRun(self.cache, dataset, models, mode=mode, limit=limit).plan()
        except Exception as exc:  # noqa: BLE001 - shown under the settings
            self.post_message(PlanComputed(token, [], f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(PlanComputed(token, plan))

    def on_plan_computed(self, message: PlanComputed) -> None:
        if message.token != self._plan_token:
            return
        box = self.query_one("#run-plan", Static)
        if message.error:
            box.update(Text(f"cannot plan: {message.error}", style="red"))
            return
        table = Table(box=None, padding=(0, 1), title=f"plan ({self.dataset}, {self.mode}): s starts", title_justify="left")
        table.add_column("model")
        table.add_column("in scope", justify="right")
        table.add_column("cached", justify="right")
        table.add_column("of which failed", justify="right")
        table.add_column("to do", justify="right", style="bold")
        for m in message.plan:
            table.add_row(m.model, str(m.total), str(m.already_done), str(m.cached_failed), str(m.todo))
        box.update(table)
        self.plan = message.plan

    # ---- start / cancel -------------------------------------------------------------------
    def action_start(self) -> None:
        if self.running:
            self.notify("a run is already going (x cancels it)", severity="warning")
            return
        if self.importing:
            self.notify("wait for the import to finish", severity="warning")
            return
        dataset, models = self.dataset, self.selected_models
        if dataset is None:
            self.notify("no dataset: press i to import the sample", severity="warning")
            return
        if not models:
            self.notify("select at least one model (space toggles)", severity="warning")
            return
        self.start(dataset, models, self.mode, self.device, self.limit, self.forces, self.relax_engine)

    def start(self, dataset: str, models: list[str], mode: str, device: str, limit: int | None,
              forces: bool = False, relax_engine: str = RelaxEngine.BATCHED.value) -> None:
        from mliap_tui.engine.runner import EvaluationRun

        token = self._run_token = next(self._tokens)
        options = dict(self.run_options)
        cluster = options.pop("cluster", None)
        factory: Any = EvaluationRun
        if cluster:  # `mliap-tui --cluster SPEC`: the work units run as Dask tasks
            from functools import partial

            from mliap_tui.engine.cluster import ClusterRun

            factory = partial(ClusterRun, cluster=cluster)

        def on_event(ev) -> None:  # runs in the run's thread
            self.post_message(EngineEvent(token, ev))

        try:
            options = {"relax_engine": relax_engine, **options}
            run = factory(self.cache, dataset, models, mode=mode, device=device, limit=limit,
                          forces=forces, stress=forces, on_event=on_event, **options)
        except (KeyError, ValueError) as exc:
            self.notify(str(exc), severity="error")
            return
        self.run, self.running, self.cancelling = run, True, False
        self.run_dataset, self.run_mode = dataset, mode
        self.last_summary = None
        self._started_at = time.monotonic()
        panes = self.query_one("#run-panes", Vertical)
        panes.remove_children()
        self.panes = {}
        self.worker_lines: dict[str, Text] = {}
        workers = self.query_one("#run-workers", Static)
        workers.update("")
        workers.display = False
        label = f"{mode}, {relax_engine} engine" if mode == "relax" else mode
        self._status(f"planning run on {dataset} ({label}, device {device})…")
        self.query_one(ContentSwitcher).current = "run-progress"
        self._run_worker(token, run)

    @work(thread=True, exclusive=True, group="run")
    def _run_worker(self, token: int, run) -> None:
        try:
            summary = run.run()
        except Exception as exc:  # noqa: BLE001 - e.g. device 'cuda' with no GPU: shown, not raised
            self.post_message(RunEnded(token, None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(RunEnded(token, summary))

    def action_cancel_run(self) -> None:
        if not self.running or self.run is None:
            self.notify("no run in progress", timeout=2)
            return
        self.cancelling = True
        self.run.cancel()  # non-blocking: SIGTERM to the workers, which commit and exit
        self._status("cancelling: workers finish their batch and commit what they evaluated…")
        for pane in self.panes.values():
            if pane.state in (PaneState.RUNNING, PaneState.LOADING, PaneState.WAITING):
                pane.set_state(PaneState.CANCELLING)

    def cancel_for_exit(self) -> None:
        if self.running and self.run is not None:
            self.run.cancel()

    # ---- engine events --------------------------------------------------------------------
    def on_engine_event(self, message: EngineEvent) -> None:
        if message.token != self._run_token:
            return
        ev = message.event
        if isinstance(ev, RunPlanned):
            container = self.query_one("#run-panes", Vertical)
            for m in ev.models:
                pane = ModelPane(m["model"], m["total"], m["done"], m["failed"], m["todo"])
                self.panes[m["model"]] = pane
                container.mount(pane)
            self._status(f"run {ev.run_id} on {ev.dataset} · {ev.mode} · device {ev.device}")
            self._next_loading()
            first = next(iter(self.panes.values()), None)
            if first is not None:
                self.call_after_refresh(first.focus)
            return
        if isinstance(ev, ClusterConnected):
            link = f" · dashboard {ev.dashboard}" if ev.dashboard else ""
            self.notify(f"Dask {ev.scheduler}: {ev.workers} worker(s){link}", timeout=10)
            return
        if isinstance(ev, ClusterWorker):
            self.worker_lines[ev.address] = cluster_worker_line(ev)
            workers = self.query_one("#run-workers", Static)
            workers.update(Text("\n").join(self.worker_lines[k] for k in sorted(self.worker_lines)))
            workers.display = True
            return
        pane = self.panes.get(ev.model)
        if isinstance(ev, WorkerStarted) and pane:
            pane.on_started(ev)
        elif isinstance(ev, Progress) and pane:
            pane.on_progress(ev)
        elif isinstance(ev, ChunkCommitted) and pane:
            pane.chunks += 1
        elif isinstance(ev, WorkerFinished) and pane:
            pane.on_finished(ev)
            self._next_loading()
        elif isinstance(ev, WorkerError):
            if pane:
                pane.on_error(ev)
            self.notify(f"{ev.model}: {ev.message}", severity="error", timeout=10)
            self._next_loading()
        elif isinstance(ev, ModelSkipped) and pane:
            pane.set_state(PaneState.SKIPPED, ev.reason)
            self._next_loading()
        elif isinstance(ev, Log) and ev.level in ("warning", "error"):
            self.notify(f"{ev.model}: {ev.message}", severity="warning" if ev.level == "warning" else "error", timeout=6)
        elif isinstance(ev, RunFinished):
            pass  # RunEnded (with the summary object) closes the run

    def _next_loading(self) -> None:
        """Models run one after another: the first one still waiting is the one loading now."""
        if self.cancelling:
            return
        for pane in self.panes.values():
            if pane.state in (PaneState.RUNNING, PaneState.LOADING):
                if pane.workers_started and pane.workers_ended >= pane.workers_started:
                    continue
                return
            if pane.state is PaneState.WAITING:
                pane.set_state(PaneState.LOADING)
                return

    def on_run_ended(self, message: RunEnded) -> None:
        if message.token != self._run_token:
            return
        self.running = False
        self.run = None
        summary = message.summary
        self.last_summary = summary
        # one clock for every time shown: the run's summary (the CLI prints the same numbers)
        if summary is not None:
            elapsed = format_duration(summary.wall_s)
        else:
            elapsed = format_duration(time.monotonic() - self._started_at) if self._started_at else "?"
        if message.error:
            self._status(Text(f"run failed: {message.error}", style="bold red"))
            self.notify(message.error, severity="error", timeout=10)
        elif summary is not None and summary.cancelled:
            kept = sum(m.ok + m.failed for m in summary.models)  # committed rows: what is on disk
            self._status(Text.assemble(("cancelled", "bold yellow"), f" after {elapsed}: {kept} evaluations kept in the "
                                       "cache · s resumes (only what is missing), n for the setup"))
        elif summary is not None:
            errors = summary.errors
            done = sum(m.done for m in summary.models)
            text = Text.assemble(("finished", "bold green" if not errors else "bold yellow"),
                                 f" in {elapsed}: {done} evaluated on {summary.device} · explorer reloaded · n for the setup")
            for e in errors:
                text.append(f"\n{e}", style="red")
            self._status(text)
        for pane in self.panes.values():
            ms = next((m for m in summary.models if m.model == pane.model), None) if summary is not None else None
            if pane.state is PaneState.DONE and ms is not None:
                # committed rows and the model's wall time (worker start and model loading included)
                pane.set_state(PaneState.DONE, f"{ms.ok} ok, {ms.failed} failed in {format_duration(ms.wall_s)}")
            if pane.state.active and summary is not None:
                if ms is not None and ms.cancelled:
                    pane.set_state(PaneState.CANCELLED, f"{ms.ok + ms.failed} committed and kept; start again to resume")
                elif ms is not None and ms.error:
                    pane.set_state(PaneState.ERROR, ms.error)
        self.reload_explore(self.run_dataset)
        self.replan()

    def reload_explore(self, dataset: str | None) -> None:
        """Tell the app that ``dataset`` has new results (the explorer reloads it)."""
        self.post_message(ResultsChanged(dataset))

    # ---- status line ----------------------------------------------------------------------
    def _status(self, text: str | Text) -> None:
        self._status_text = text
        self._render_status()

    def _render_status(self) -> None:
        text = getattr(self, "_status_text", "")
        head = Text()
        if self.running and self._started_at is not None:
            head.append(f"running {format_duration(time.monotonic() - self._started_at)} · ", style="bold")
            head.append(f"{self.run_dataset} · {self.run_mode} · x cancels · esc: explorer\n", style="dim")
        head.append(text if isinstance(text, Text) else Text(text))
        self.query_one("#run-status", Static).update(head)

    def _tick(self) -> None:
        if self.running:
            self._render_status()

    # ---- navigation -----------------------------------------------------------------------
    def action_setup(self) -> None:
        self.query_one(ContentSwitcher).current = "run-setup"
        self.query_one("#run-models", SelectionList).focus()
        self.replan()

    def action_show_progress(self) -> None:
        self.query_one(ContentSwitcher).current = "run-progress"

    def action_back(self) -> None:
        self.app.pop_screen()

    @on(ModelPane.FailuresRequested)
    def _failures(self, event: ModelPane.FailuresRequested) -> None:
        if self.run_dataset is None:
            return
        self.app.push_screen(FailuresScreen(self.cache, self.run_dataset, event.model, self.run_mode, event.last_failures))

    # ---- sample import --------------------------------------------------------------------
    def action_import_sample(self) -> None:
        if self.importing or self.running:
            self.notify("busy: wait for the current import or run", severity="warning")
            return
        if "sample" in self.cache.datasets():
            self.notify("the sample is already in the cache", timeout=3)
            return
        self.importing = True
        self.query_one("#run-plan", Static).update(Text("importing the sample (structures, DFT references, symmetry)…", style="bold"))
        self._import_worker()

    @work(thread=True, exclusive=True, group="import")
    def _import_worker(self) -> None:
        from mliap_tui.data.importer import import_dataset

        try:
            report = import_dataset("sample", cache=self.cache)
        except Exception as exc:  # noqa: BLE001 - shown in the plan box
            self.post_message(SampleImported(None, "", f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(SampleImported("sample", f"{report.n_loaded} materials imported, {report.n_rejected} rejected"))

    def on_sample_imported(self, message: SampleImported) -> None:
        self.importing = False
        if message.error:
            self.query_one("#run-plan", Static).update(Text(f"import failed: {message.error}", style="red"))
            return
        select = self.query_one("#run-dataset", Select)
        select.set_options([(d, d) for d in self.cache.datasets()])
        select.value = message.dataset
        self.notify(f"sample: {message.report_text}", timeout=5)
        self.reload_explore(message.dataset)
        self.replan()
