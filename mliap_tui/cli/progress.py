"""Render engine events as rich progress bars (for ``mliap-tui run``).

Only the CLI imports this module; workers never import rich (a family in its own venv may pin an
old rich). Usage::

    with RichProgress() as show:
        summary = run_evaluation(cache, dataset, models, on_event=show)

One bar per model: done/total structures, structures/s and atoms/s (over the recent window while
running; over the whole evaluation once done, as in the summary table), ETA, failures (and the
last reason), device and peak memory (GPU peak, or process RSS on CPU). The final "done in" is the
model's wall time (worker start and model loading included), the summary table's "time".
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, TaskID, TextColumn
from rich.progress import Progress as RichBar
from rich.text import Text

from mliap_tui.core.units import format_bytes, format_duration
from mliap_tui.engine.progress import memory_label
from mliap_tui.engine.protocol import (
    ChunkCommitted,
    ClusterConnected,
    ClusterWorker,
    Event,
    Log,
    ModelSkipped,
    Progress,
    RunFinished,
    RunPlanned,
    WorkerError,
    WorkerFinished,
    WorkerStarted,
)


def _rate(value: float | None, unit: str, digits: int = 1) -> str:
    return f"{value:.{digits}f} {unit}" if value else f"- {unit}"


class _BarsAndWorkers(RichBar):
    """The model bars, then one line per Dask worker of a cluster run (none on a local run)."""

    def __init__(self, *columns: Any, **kwargs: Any):
        self.worker_lines: dict[str, str] = {}  # before Progress.__init__, which may render
        super().__init__(*columns, **kwargs)

    def get_renderables(self) -> Any:
        yield self.make_tasks_table(self.tasks)
        if self.worker_lines:
            yield Text.from_markup("\n".join(self.worker_lines[k] for k in sorted(self.worker_lines)))


def worker_line(ev: ClusterWorker) -> str:
    """One Dask worker, one line (fits 80 columns): host:port, device, state and task, rate, done."""
    where = ev.address.split("://")[-1]
    state = {"running": "[green]running[/]", "lost": "[red]lost[/]"}.get(ev.state, "[dim]idle[/]")
    task = f" {escape(ev.task)}" if ev.task else ""
    rate = f"  {ev.structures_per_s:.1f} struct/s" if ev.structures_per_s else ""
    return f"  [dim]dask[/] {escape(where)} {escape(ev.device or '-')} {state}{task}{rate}  {ev.done} done"


class RichProgress:
    """A callable event sink that draws and updates one progress bar per model."""

    def __init__(self, console: Console | None = None, transient: bool = False, show_chunks: bool = False):
        self.console = console or Console(stderr=True)
        self.show_chunks = show_chunks
        # two lines per model so the whole display fits an 80-column SSH terminal:
        #   chgnet-0.3.0        ━━━━━━━━━━━━━━━━━━━━  120/400  ETA 0:18  running
        #   cpu RSS 1.1 GB                            17.1 struct/s  231 atoms/s  failed 0
        self.bar = _BarsAndWorkers(
            TextColumn("[bold]{task.fields[model]}[/]\n[dim]{task.fields[where]}[/]"),
            BarColumn(bar_width=20),
            TextColumn(
                "{task.completed}/{task.total}  ETA {task.fields[eta]}  {task.fields[status]}\n"
                "{task.fields[rates]}  {task.fields[failed]}"
            ),
            console=self.console,
            transient=transient,
            refresh_per_second=4,
        )
        self.tasks: dict[str, TaskID] = {}
        self.other: dict[str, str] = {}  # per model: " (N done by another run)" once it finished

    # -- context manager -----------------------------------------------------------------
    def __enter__(self) -> "RichProgress":
        self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()

    # -- events --------------------------------------------------------------------------
    def _task(self, model: str, total: int | None = None) -> TaskID:
        if model not in self.tasks:
            self.tasks[model] = self.bar.add_task(
                model, total=total, model=escape(model), rates="", eta="--:--", failed="", where="", status="[dim]queued[/]"
            )
        elif total is not None:
            self.bar.update(self.tasks[model], total=total)
        return self.tasks[model]

    def __call__(self, ev: Event) -> None:
        if isinstance(ev, RunPlanned):
            for m in ev.models:
                task = self._task(m["model"], total=m["todo"])
                if m["done"]:
                    failed = f", {m['failed']} of them failed" if m.get("failed") else ""
                    self.bar.update(task, status=f"[dim]queued ({m['done']} cached{failed})[/]")
        elif isinstance(ev, ModelSkipped):
            task = self._task(ev.model, total=0)
            self.bar.update(task, status=f"[dim]skipped: {escape(ev.reason)}[/]")
        elif isinstance(ev, WorkerStarted):
            task = self._task(ev.model)
            self.bar.update(task, status=f"running (loaded in {ev.load_s:.1f} s)", where=ev.device)
        elif isinstance(ev, Progress):
            task = self._task(ev.model)
            failed = f"[red]failed {ev.failed}[/]" if ev.failed else "failed 0"
            if ev.last_failures:
                mid, reason = ev.last_failures[-1]
                failed += f" [dim](last {escape(mid)}: {escape(reason[:40])})[/]"
            mem = f"{memory_label(ev.memory_kind)} {format_bytes(ev.peak_memory_bytes)}"
            self.bar.update(
                task,
                total=ev.total,
                completed=ev.done,
                rates=f"{_rate(ev.structures_per_s, 'struct/s')}  {_rate(ev.atoms_per_s, 'atoms/s', 0)}",
                eta=format_duration(ev.eta_s, clock=True),
                failed=failed,
                where=f"{ev.device} {mem}",
            )
        elif isinstance(ev, ChunkCommitted):
            if self.show_chunks:
                self.console.print(f"[dim]{escape(ev.model)}: committed {ev.rows} rows ({ev.failed} failed) -> {escape(ev.path)}[/]")
        elif isinstance(ev, Log):
            style = {"warning": "yellow", "error": "red"}.get(ev.level, "dim")
            said = ev.message if ev.message.startswith(ev.model) else f"{ev.model}: {ev.message}"
            self.console.print(f"[{style}]{escape(said)}[/]")
        elif isinstance(ev, WorkerError):
            task = self._task(ev.model)
            self.bar.update(task, status="[red]error[/]")
            said = ev.message if ev.message.startswith(ev.model) else f"{ev.model}: {ev.message}"
            self.console.print(f"[red]{escape(said)}[/]")
        elif isinstance(ev, WorkerFinished):
            task = self._task(ev.model)
            state = "[yellow]cancelled[/]" if ev.cancelled else "[green]done[/]"
            # the final rates: structures over the evaluation time (what the summary table shows)
            other = f" [dim]({ev.skipped} done by another run)[/]" if ev.skipped else ""
            self.other[ev.model] = other
            self.bar.update(task, status=f"{state}{other}",
                            rates=f"{_rate(ev.structures_per_s, 'struct/s')}  {_rate(ev.atoms_per_s, 'atoms/s', 0)}")
        elif isinstance(ev, ClusterConnected):
            gpus = f", {ev.gpus} with a GPU" if ev.gpus else ""
            self.console.print(f"[dim]Dask {escape(ev.scheduler)}: {ev.workers} worker(s){gpus}, cache shared[/]")
            if ev.dashboard:
                self.console.print(f"Dask dashboard: {escape(ev.dashboard)}")
        elif isinstance(ev, ClusterWorker):
            self.bar.worker_lines[ev.address] = worker_line(ev)
        elif isinstance(ev, RunFinished):
            for m in ev.summary.get("models", []):  # the model's wall time, as in the summary table
                if m["model"] in self.tasks and not m.get("error") and m.get("done"):
                    state = "[yellow]cancelled[/]" if m.get("cancelled") else "[green]done[/]"
                    other = self.other.get(m["model"], "")
                    self.bar.update(self.tasks[m["model"]], status=f"{state} in {format_duration(m['wall_s'])}{other}")
            self.bar.refresh()


class DownloadBar:
    """A progress bar for the paged Materials Project download (``data import mp``): documents
    fetched of the total, pages committed to the cache, resumed pages, ETA."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.bar = RichBar(
            TextColumn("[bold]Materials Project[/] {task.fields[what]}"),
            BarColumn(bar_width=20),
            TextColumn("{task.fields[docs]}  ETA {task.fields[eta]}\n[dim]{task.fields[pages]}[/]"),
            console=self.console,
            refresh_per_second=4,
        )
        self.task: TaskID | None = None

    def __enter__(self) -> "DownloadBar":
        self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()

    def __call__(self, ev: Any) -> None:
        """Take a ``mp_api.DownloadProgress``."""
        fields = {
            "what": f"{ev.database_version} GGA/GGA+U",
            "docs": f"{ev.docs_done:,}/{ev.docs_total:,} documents",
            "eta": format_duration(ev.eta_s, clock=True),
            "pages": f"page {ev.pages_done}/{ev.pages_total} committed"
            + (f", {ev.resumed_pages} from an earlier download" if ev.resumed_pages else ""),
        }
        if self.task is None:
            self.task = self.bar.add_task("download", total=max(ev.pages_total, 1), **fields)
        self.bar.update(self.task, completed=ev.pages_done, total=max(ev.pages_total, 1), **fields)
