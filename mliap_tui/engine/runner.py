"""The orchestrator: plan the missing (material, model) pairs, run one worker subprocess per model
(per GPU), relay their events, and summarise.

Use :func:`run_evaluation` (blocking) or :class:`EvaluationRun` (``run()`` in a thread, ``cancel()``
from another)::

    from mliap_tui.cache import Cache
    from mliap_tui.engine.runner import run_evaluation

    summary = run_evaluation(Cache.open(), "mp20", ["chgnet-0.3.0", "sevennet-0"], on_event=print)

* Only pairs not in the cache are evaluated: a material counts as done when its newest row for
  (model, mode) is ok, or failed unless ``retry_failed``.
* ``limit`` restricts the run to the first ``limit`` materials of the dataset (by material_id),
  so successive runs with the same limit work on the same set.
* Models run one after another. On CPU each gets one worker using the cores (``cpu_workers=N``
  splits a model over N CPU workers sharing them, for many-core machines); with GPUs, a model's
  missing materials are split (balanced by atom count) over one worker per GPU, each started with
  ``CUDA_VISIBLE_DEVICES`` set to its GPU.
* ``python_for`` maps a model family (or model id) to another Python interpreter (its own venv);
  the worker gets mliap_tui (only) on ``PYTHONPATH``.

This module imports no torch, no model package and no rich/textual.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import polars as pl

from mliap_tui.cache import Cache
from mliap_tui.core.host import usable_cores
from mliap_tui.core.vocab import (
    DEFAULT_RELAX_FMAX_EV_PER_ANG,
    DEFAULT_RELAX_MAX_STEPS,
    MODES,
    RELAX_ENGINES,
    RelaxEngine,
)
from mliap_tui.engine.progress import combine
from mliap_tui.engine.protocol import (
    ChunkCommitted,
    Event,
    Log,
    ModelSkipped,
    Progress,
    RunFinished,
    RunPlanned,
    WorkerError,
    WorkerFinished,
    WorkerJob,
    WorkerStarted,
    event_from_json,
)

OnEvent = Callable[[Event], None]
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # .../mliap_tui
STDERR_TAIL = 60
CANCEL_GRACE_S = 60.0


# --------------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------------


@dataclass
class ModelRunSummary:
    model: str
    mode: str
    total: int = 0  # materials in scope (after ``limit``)
    already_done: int = 0  # in the cache before this run
    cached_failed: int = 0  # of which failed rows (kept unless retry_failed)
    todo: int = 0  # handed to workers
    done: int = 0  # evaluated by this run (ok + failed), committed or not
    ok: int = 0  # ok rows committed to the cache by this run
    failed: int = 0  # failed rows committed to the cache by this run
    chunks: int = 0
    workers: int = 0
    wall_s: float = 0.0  # wall time of this model, worker start-up and model loading included
    eval_s: float = 0.0  # evaluation only (slowest worker)
    elsewhere: int = 0  # of ``todo``, committed by another run on the same cache meanwhile (claims)
    structures_per_s: float | None = None  # done / eval_s
    device: str = ""
    error: str | None = None
    cancelled: bool = False
    last_failures: list[list[str]] = field(default_factory=list)
    weights_fingerprint: str | None = None  # the weights the rows are made with (None: unknown before loading)
    error_kind: str | None = None  # WorkerErrorKind of ``error`` (model_refused, model_unavailable, ...)

    @property
    def complete(self) -> bool:
        return self.error is None and not self.cancelled and self.done + self.elsewhere >= self.todo


@dataclass
class RunSummary:
    run_id: str
    dataset: str
    mode: str
    device: str
    models: list[ModelRunSummary] = field(default_factory=list)
    cancelled: bool = False
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every model ran to the end without a fatal error (failed rows are fine)."""
        return not self.cancelled and all(m.error is None for m in self.models)

    @property
    def errors(self) -> list[str]:
        return [f"{m.model}: {m.error}" for m in self.models if m.error]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        """A short plain-text table for the CLI."""
        lines = [f"run {self.run_id} on {self.dataset} ({self.mode}, {self.device}){' CANCELLED' if self.cancelled else ''}"]
        for m in self.models:
            rate = f"{m.structures_per_s:.1f}/s" if m.structures_per_s else "-"
            status = "error: " + m.error if m.error else ("cancelled" if m.cancelled else "ok")
            lines.append(
                f"  {m.model:<28} cached {m.already_done:>6}  evaluated {m.done:>6}/{m.todo:<6} ok {m.ok:>6} "
                f"failed {m.failed:>5}  {rate:>9}  {m.wall_s:7.1f} s  {status}"
                + (f"  (another run did {m.elsewhere})" if m.elsewhere else "")
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# devices
# --------------------------------------------------------------------------------------------


def visible_gpus() -> list[str]:
    """GPU ids a worker can be pinned to with CUDA_VISIBLE_DEVICES, without importing torch.

    ``CUDA_VISIBLE_DEVICES`` if set; else NVML's device count (nvidia-ml-py); else, if torch is
    installed, ``torch.cuda.device_count()`` (imports torch: only as a last resort).
    """
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        ids = [x.strip() for x in env.split(",") if x.strip()]
        # "-1" or an empty value hide every GPU
        return [] if not ids or ids[0].startswith("-") else ids
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return [str(i) for i in range(pynvml.nvmlDeviceGetCount())]
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no NVML (no driver, or no nvidia-ml-py)
        pass
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return []
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    except Exception:  # noqa: BLE001
        return []


def plan_devices(device: str, gpus: Sequence[str] | None = None) -> tuple[str, list[str | None]]:
    """(label, slots): one slot per worker of a model, a GPU id or None for CPU.

    ``device``: auto (GPUs when there are any, else CPU), cpu, cuda (every visible GPU) or
    cuda:N (that GPU only).
    """
    device = (device or "auto").strip().lower()
    if device == "cpu":
        return "cpu", [None]
    if device.startswith("cuda:"):
        return device, [device.split(":", 1)[1]]
    if device not in ("auto", "cuda"):
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")
    found = list(gpus) if gpus is not None else visible_gpus()
    if not found:
        if device == "cuda":
            raise ValueError("device 'cuda' requested but no GPU is visible here: use --device cpu (or auto)")
        return "cpu", [None]
    return ("cuda" if len(found) > 1 else f"cuda:{found[0]}"), list(found)


def shard_by_claims(groups: Sequence[Sequence[str]], sizes: dict[str, int], n: int) -> list[list[str]]:
    """Split claim shards (``groups`` of ids, engine/claiming.py) over ``n`` workers, whole shards
    only and balanced by atom count, so the workers of one run never contend for a shard."""
    keys = [str(k) for k in range(len(groups))]
    loads = [sum(sizes.get(m, 1) for m in g) for g in groups]
    return [[m for k in part for m in groups[int(k)]] for part in shard(keys, loads, n)]


def shard(ids: Sequence[str], sizes: Sequence[int], n: int) -> list[list[str]]:
    """Split ``ids`` into ``n`` shards of about equal atom count, each keeping the input order."""
    n = max(1, min(n, len(ids)))
    if n == 1:
        return [list(ids)]
    order = sorted(range(len(ids)), key=lambda i: -sizes[i])
    loads = [0] * n
    members: list[list[int]] = [[] for _ in range(n)]
    for i in order:
        k = loads.index(min(loads))
        loads[k] += sizes[i]
        members[k].append(i)
    return [[ids[i] for i in sorted(m)] for m in members if m]


# --------------------------------------------------------------------------------------------
# one worker process
# --------------------------------------------------------------------------------------------

_SHIM_DIR: str | None = None


def worker_pythonpath() -> str:
    """A folder that makes ``mliap_tui`` (and nothing else) importable for a worker.

    From a source checkout that is the checkout itself. From an installed package it is a small
    folder holding a link to the package, so another venv's interpreter does not also pick up
    this venv's site-packages (and, say, its rich) through PYTHONPATH.
    """
    global _SHIM_DIR
    parent = PACKAGE_DIR.parent
    if (parent / "pyproject.toml").is_file():
        return str(parent)
    if _SHIM_DIR is None or not (Path(_SHIM_DIR) / "mliap_tui").exists():
        import tempfile

        shim = tempfile.mkdtemp(prefix="mliap-tui-worker-path-")
        try:
            os.symlink(PACKAGE_DIR, Path(shim) / "mliap_tui", target_is_directory=True)
        except OSError:  # no symlinks here: fall back to the package's parent
            return str(parent)
        _SHIM_DIR = shim
    return _SHIM_DIR



class WorkerProcess:
    """A worker subprocess: job on stdin, events from stdout into a queue, stderr tail kept."""

    def __init__(self, job: WorkerJob, python: str, events: "queue.Queue[tuple[WorkerProcess, Event | None]]",
                 gpu: str | None = None, extra_env: dict[str, str] | None = None):
        self.job, self.python, self.gpu = job, python, gpu
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL)
        self.finished: WorkerFinished | None = None
        self.error: WorkerError | None = None
        self.started: WorkerStarted | None = None
        self.progress: Progress | None = None
        self.eof = False
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([worker_pythonpath()] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["PYTHONUNBUFFERED"] = "1"
        env["MLIAP_TUI_WORKER_CACHE"] = job.cache_root  # lets ps/tests tell whose worker this is
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        env.update(extra_env or {})
        self.proc = subprocess.Popen(
            [python, "-m", "mliap_tui.engine.worker", "--job", "-", "--die-with-parent"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        self._events = events
        self._out = threading.Thread(target=self._read_stdout, daemon=True, name=f"worker-{job.worker}-out")
        self._err = threading.Thread(target=self._read_stderr, daemon=True, name=f"worker-{job.worker}-err")
        self._out.start()
        self._err.start()
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(job.to_json().encode())
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass  # the worker died at once; its exit code and stderr tell why

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            ev = event_from_json(raw)
            if ev is None:
                text = raw.decode("utf-8", "replace").rstrip()
                if text:
                    self.stderr_tail.append(text)
                continue
            self._events.put((self, ev))
        self.proc.wait()
        self._err.join(timeout=5)
        self._events.put((self, None))  # end of this worker

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            text = raw.decode("utf-8", "replace").rstrip()
            if text:
                self.stderr_tail.append(text)

    def terminate(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass

    def failure_message(self) -> str | None:
        """Why this worker did not finish, one line; None when it finished."""
        if self.error is not None:
            return self.error.message
        if self.finished is not None:
            return None
        rc = self.proc.returncode
        tail = next((line for line in reversed(self.stderr_tail) if line.strip()), "")
        if rc is not None and rc < 0:
            name = signal.Signals(-rc).name if -rc in signal.Signals._value2member_map_ else str(-rc)
            why = f"worker killed by {name}" + (" (out of host memory?)" if name == "SIGKILL" else "")
        else:
            why = f"worker exited with code {rc}"
        msg = f"{why}{': ' + tail if tail else ''}"
        if "ModuleNotFoundError" in tail and self.python != sys.executable:
            msg += f" (install mliap-tui's dependencies in the venv of {self.python})"
        return msg


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------


class EvaluationRun:
    """A cancellable evaluation run. ``run()`` blocks; ``cancel()`` may be called from any thread.

    Events (mliap_tui.engine.protocol) are passed to ``on_event`` from the thread that called
    ``run()``: RunPlanned, then per model WorkerStarted / Progress (summed over the model's
    workers) / ChunkCommitted / Log / WorkerFinished / WorkerError or ModelSkipped, and
    RunFinished at the end.
    """

    def __init__(
        self,
        cache: Cache,
        dataset: str,
        model_ids: Sequence[str],
        mode: str = "static",
        device: str = "auto",
        dtype: str = "float32",
        limit: int | None = None,
        forces: bool = False,
        stress: bool = False,
        python_for: dict[str, str] | None = None,
        on_event: OnEvent | None = None,
        *,
        retry_failed: bool = False,
        material_ids: Sequence[str] | None = None,
        checkpoints: dict[str, str] | None = None,
        trust_models: bool | Sequence[str] = (),
        batch_atoms: int | None = None,
        chunk_rows: int = 200,
        chunk_seconds: float = 15.0,
        torch_threads: int | None = None,
        relax_fmax: float = DEFAULT_RELAX_FMAX_EV_PER_ANG,
        relax_max_steps: int = DEFAULT_RELAX_MAX_STEPS,
        relax_engine: str = RelaxEngine.BATCHED.value,
        gpus: Sequence[str] | None = None,
        cpu_workers: int = 1,
        run_id: str | None = None,
        job_overrides: dict[str, Any] | None = None,
        compact: bool = True,
    ):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
        if not model_ids:
            raise ValueError("no model given: pass at least one model id (mliap-tui models lists them)")
        from mliap_tui.models.registry import get_spec

        self.specs = {}  # model id -> spec; an ase: reference is stored under its model id
        for ref in dict.fromkeys(model_ids):
            spec = get_spec(ref)  # KeyError names the known ids
            self.specs.setdefault(spec.id, spec)
        self.cache, self.dataset, self.mode = cache, dataset, mode
        self.model_ids = list(self.specs)
        self.device, self.dtype, self.limit = device, dtype, limit
        self.forces, self.stress = forces, stress
        self.python_for = dict(python_for or {})
        self.on_event = on_event
        self.retry_failed = retry_failed
        self.material_ids = list(material_ids) if material_ids is not None else None
        self.checkpoints = dict(checkpoints or {})
        #: models that run even if they fail the canary check (True: every model)
        self.trust_models = trust_models
        self._identities: dict[str, Any] = {}
        self._planned_without_weights: set[str] = set()  # weights not on disk when planned
        self.batch_atoms, self.chunk_rows, self.chunk_seconds = batch_atoms, chunk_rows, chunk_seconds
        self.torch_threads = torch_threads
        if relax_engine not in RELAX_ENGINES:
            raise ValueError(f"unknown relax engine {relax_engine!r}: use one of {', '.join(RELAX_ENGINES)}")
        if not relax_fmax > 0:
            raise ValueError(f"fmax must be > 0 eV/Å, got {relax_fmax}")
        if relax_max_steps < 0:
            raise ValueError(f"max steps must be >= 0, got {relax_max_steps}")
        self.relax_fmax, self.relax_max_steps, self.relax_engine = relax_fmax, relax_max_steps, relax_engine
        self.gpus = gpus
        if cpu_workers < 1:
            raise ValueError(f"cpu_workers must be >= 1, got {cpu_workers}")
        self.cpu_workers = cpu_workers
        self.job_overrides = dict(job_overrides or {})
        self.compact = compact
        self.started_unix_s = time.time()
        self.run_id = run_id or time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[WorkerProcess] = []
        self.summary: RunSummary | None = None

    # -- control ------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop: workers commit what they have evaluated and exit; ``run()`` then returns."""
        self._cancel.set()
        with self._lock:
            for w in self._workers:
                w.terminate()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def _emit(self, ev: Event) -> None:
        if self.on_event is not None:
            self.on_event(ev)

    # -- planning -------------------------------------------------------------------------------
    def scope(self) -> pl.DataFrame:
        """material_id and n_sites of the materials in scope, in material_id order."""
        df = self.cache.scan_materials(self.dataset).select("material_id", "n_sites").collect().sort("material_id")
        if self.material_ids is not None:
            df = df.filter(pl.col("material_id").is_in(self.material_ids))
        if self.limit is not None:
            df = df.head(max(0, int(self.limit)))
        return df

    def weights_fingerprint(self, model: str) -> str | None:
        """The fingerprint of the weights ``model`` will run with (None: not on disk before loading)."""
        if model not in self._identities:
            from mliap_tui.models.identity import resolve_identity

            try:
                self._identities[model] = resolve_identity(self.specs[model], self._checkpoint(model)).fingerprint
            except OSError:  # a missing checkpoint: the worker says so
                self._identities[model] = None
        return self._identities[model]

    def _checkpoint(self, model: str) -> str | None:
        path = self.checkpoints.get(model)
        return os.path.abspath(os.path.expanduser(path)) if path else None

    def trusted(self, model: str) -> bool:
        return self.trust_models is True or (not isinstance(self.trust_models, bool) and model in self.trust_models)

    def _plan_model(self, model: str, ids: list[str]) -> tuple[ModelRunSummary, list[str]]:
        fingerprint = self.weights_fingerprint(model)
        if fingerprint is None:  # unknown until loaded: the worker skips what these weights did
            ok = any_row = set()
        else:
            ok = self.cache.done_keys(self.dataset, model, self.mode, include_failed=False, weights_fingerprint=fingerprint)
            any_row = self.cache.done_keys(self.dataset, model, self.mode, include_failed=True, weights_fingerprint=fingerprint)
        done = ok if self.retry_failed else any_row
        todo = [m for m in ids if m not in done]
        failed = sum(1 for m in ids if m in any_row and m not in ok)
        summary = ModelRunSummary(model=model, mode=self.mode, total=len(ids), already_done=len(ids) - len(todo),
                                  cached_failed=0 if self.retry_failed else failed, todo=len(todo),
                                  weights_fingerprint=fingerprint)
        return summary, todo

    def plan(self) -> list[ModelRunSummary]:
        """What each model still has to do (reads the cache; starts nothing)."""
        ids = self.scope()["material_id"].to_list()
        return [self._plan_model(model, ids)[0] for model in self.model_ids]

    def python_for_model(self, model: str) -> str:
        spec = self.specs[model]
        python = self.python_for.get(model) or self.python_for.get(spec.family) or sys.executable
        return os.path.expanduser(python)

    # -- running --------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        t0 = time.monotonic()
        self.started_unix_s = time.time()
        label, slots = self._devices()
        scope = self.scope()
        ids = scope["material_id"].to_list()
        sizes = dict(zip(ids, scope["n_sites"].fill_null(1).to_list()))
        summary = RunSummary(run_id=self.run_id, dataset=self.dataset, mode=self.mode, device=label)
        self.summary = summary
        todos: dict[str, list[str]] = {}
        for model in self.model_ids:
            ms, todos[model] = self._plan_model(model, ids)
            ms.device = label
            if ms.weights_fingerprint is None:
                self._planned_without_weights.add(model)
            summary.models.append(ms)
        self._emit(RunPlanned(run_id=self.run_id, dataset=self.dataset, device=label, mode=self.mode,
                              models=[{"model": m.model, "total": m.total, "done": m.already_done,
                                       "failed": m.cached_failed, "todo": m.todo,
                                       "weights": m.weights_fingerprint} for m in summary.models]))
        try:
            for ms in summary.models:
                if self._cancel.is_set():
                    ms.cancelled = True
                    continue
                if ms.todo == 0:
                    if ms.total == 0:
                        reason = f"no materials in dataset {self.dataset!r} for this selection"
                    else:
                        reason = f"all {ms.total} materials already in the cache for these weights ({(ms.weights_fingerprint or '')[:7]})"
                        if ms.cached_failed:
                            reason += f" ({ms.cached_failed} failed: --retry-failed retries them)"
                    self._emit(ModelSkipped(model=ms.model, mode=self.mode, reason=reason))
                    continue
                self._run_model(ms, todos[ms.model], sizes, slots, label)
            if self.compact and not self._cancel.is_set():
                self._compact(summary)
        finally:
            self._stop_all()
        summary.cancelled = self._cancel.is_set()
        summary.wall_s = time.monotonic() - t0
        self._emit(RunFinished(run_id=self.run_id, mode=self.mode, cancelled=summary.cancelled, summary=summary.to_dict()))
        return summary

    def _devices(self) -> tuple[str, list[str | None]]:
        """(label, slots): the device label of the run and one slot per worker of a model."""
        label, slots = plan_devices(self.device, self.gpus)
        return label, ([None] * self.cpu_workers if slots == [None] else slots)

    def _job(self, model: str, ids: list[str], worker: int, gpu: str | None) -> WorkerJob:
        job = WorkerJob(
            cache_root=str(Path(self.cache.root).resolve()),
            dataset=self.dataset,
            model=model,
            mode=self.mode,
            material_ids=ids,
            retry_failed=self.retry_failed,
            device="cpu" if gpu is None else "cuda",
            device_label=None if gpu is None else f"cuda:{gpu}",
            dtype=self.dtype,
            checkpoint=self._checkpoint(model),
            model_ref=self.specs[model].options.get("ref"),
            weights_fingerprint=self.weights_fingerprint(model),
            trust_model=self.trusted(model),
            forces=self.forces,
            stress=self.stress,
            batch_atoms=self.batch_atoms,
            chunk_rows=self.chunk_rows,
            chunk_seconds=self.chunk_seconds,
            torch_threads=self._torch_threads(gpu),
            relax_fmax=self.relax_fmax,
            relax_max_steps=self.relax_max_steps,
            relax_engine=self.relax_engine,
            run_id=self.run_id,
            worker=worker,
            since_unix_s=self.started_unix_s,
        )
        for key, value in self.job_overrides.items():
            setattr(job, key, value)
        return job.validate()

    def _torch_threads(self, gpu: str | None) -> int | None:
        """CPU workers side by side share the cores; one worker (or a GPU worker) decides itself."""
        if self.torch_threads is not None or gpu is not None or self.cpu_workers == 1:
            return self.torch_threads
        cores = usable_cores()
        return max(1, cores // self.cpu_workers - 1) if cores // self.cpu_workers > 2 else 1

    def _run_model(self, ms: ModelRunSummary, todo: list[str], sizes: dict[str, int],
                   slots: list[str | None], label: str) -> None:
        t0 = time.monotonic()
        python = self.python_for_model(ms.model)
        if python != sys.executable and not os.path.exists(python):
            ms.error = f"Python interpreter for {ms.model} not found: {python} (check --python-for)"
            ms.error_kind = "bad_job"
            self._emit(WorkerError(model=ms.model, mode=self.mode, kind="bad_job", message=ms.error))
            return
        if len(slots) > 1:
            from mliap_tui.engine.claiming import shard_groups

            groups = [g for _, g in shard_groups(self.cache, self.dataset, todo, self.job_overrides.get("claim_size"))]
            shards = shard_by_claims(groups, sizes, len(slots))
        else:
            shards = [todo]
        events: queue.Queue = queue.Queue()
        workers: list[WorkerProcess] = []
        with self._lock:
            if self._cancel.is_set():
                ms.cancelled = True
                return
            for k, (ids, gpu) in enumerate(zip(shards, slots)):
                try:
                    w = WorkerProcess(self._job(ms.model, ids, k, gpu), python, events, gpu=gpu)
                except OSError as exc:
                    ms.error = f"could not start a worker with {python}: {exc}"
                    ms.error_kind = "crashed"
                    self._emit(WorkerError(model=ms.model, mode=self.mode, kind="crashed", message=ms.error))
                    break
                workers.append(w)
                self._workers.append(w)
        ms.workers = len(workers)
        open_workers = len(workers)
        cancel_sent_at: float | None = None
        while open_workers:
            try:
                w, ev = events.get(timeout=0.2)
            except queue.Empty:
                w, ev = None, None
            except KeyboardInterrupt:
                self.cancel()
                continue
            if self._cancel.is_set():
                if cancel_sent_at is None:
                    cancel_sent_at = time.monotonic()
                    for x in workers:
                        x.terminate()
                elif time.monotonic() - cancel_sent_at > CANCEL_GRACE_S:
                    for x in workers:
                        x.kill()
            if w is None:
                continue
            if ev is None:
                open_workers -= 1
                w.eof = True
                continue
            self._handle(ms, w, ev, workers)
        for w in workers:
            msg = w.failure_message()
            if msg and not self._cancel.is_set() and ms.error is None:
                ms.error = msg
                ms.error_kind = w.error.kind if w.error is not None else "crashed"
                if w.error is None:  # crashed without saying why: tell the listener
                    self._emit(WorkerError(model=ms.model, mode=self.mode, worker=w.job.worker, kind="crashed", message=msg))
        with self._lock:
            self._workers = [w for w in self._workers if w not in workers]
        ms.cancelled = self._cancel.is_set() and ms.done < ms.todo
        ms.wall_s = time.monotonic() - t0
        finished = [w.finished for w in workers if w.finished is not None]
        ms.eval_s = max((f.eval_s for f in finished), default=0.0)
        ms.structures_per_s = ms.done / ms.eval_s if ms.eval_s > 0 and ms.done else None

    def _handle(self, ms: ModelRunSummary, w: WorkerProcess, ev: Event, workers: list[WorkerProcess]) -> None:
        if isinstance(ev, Progress):
            w.progress = ev
            # evaluated so far; ok/failed count only committed rows (ChunkCommitted), i.e. rows on disk
            ms.done = sum(x.progress.done for x in workers if x.progress)
            combined = combine([x.progress for x in workers if x.progress is not None])
            if combined is not None:
                ms.last_failures = list(combined.last_failures)
                if len(workers) > 1:
                    # totals of workers that have not reported yet still count
                    combined.total = ms.todo - combined.skipped
                self._emit(combined)
            return
        if isinstance(ev, WorkerStarted):
            w.started = ev
            unknown = ms.model in self._planned_without_weights
            ms.weights_fingerprint = ms.weights_fingerprint or ev.weights_fingerprint
            if unknown and all(x.started is not None for x in workers):
                # planned without knowing the weights: the workers skipped what these weights did
                todo = sum(x.started.total for x in workers if x.started is not None)
                ms.already_done += max(0, ms.todo - todo)
                ms.todo = todo
        elif isinstance(ev, WorkerFinished):
            w.finished = ev
            ms.elsewhere += ev.skipped
        elif isinstance(ev, WorkerError):
            w.error = ev
        elif isinstance(ev, ChunkCommitted):
            ms.chunks += 1
            ms.ok += ev.ok
            ms.failed += ev.failed
        self._emit(ev)

    def _compact(self, summary: RunSummary) -> None:
        """Merge the chunks this run committed into one file per model (cache/compact.py)."""
        from mliap_tui.cache.compact import compact

        for ms in summary.models:
            if not ms.chunks:
                continue
            try:
                result = compact(self.cache, self.dataset, ms.model, self.mode)
            except (OSError, ValueError) as exc:  # the rows are committed; compaction is an optimisation
                self._emit(Log(model=ms.model, mode=self.mode, level="warning",
                               message=f"could not compact the committed chunks: {exc}; `mliap-tui cache compact` retries"))
                continue
            if result.changed:
                self._emit(Log(model=ms.model, mode=self.mode, level="info",
                               message=f"compacted {result.files_merged} files into one ({result.rows_after:,} rows, "
                                       f"{result.seconds:.1f} s)"))

    def _stop_all(self) -> None:
        """On the way out (also on an exception in a listener): no worker outlives the run."""
        with self._lock:
            workers = list(self._workers)
            self._workers.clear()
        for w in workers:
            w.terminate()
        deadline = time.monotonic() + 10
        for w in workers:
            try:
                w.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.kill()


def run_evaluation(cache: Cache, dataset: str, model_ids: Sequence[str], **options: Any) -> RunSummary:
    """Evaluate every (material, model) pair of ``dataset`` not yet in ``cache``; blocking.

    ``options`` are :class:`EvaluationRun`'s (mode, device, dtype, limit, forces, stress,
    python_for, on_event, retry_failed, material_ids, checkpoints, ...). Raises KeyError for an
    unknown model id, FileNotFoundError for an unknown dataset, ValueError for a bad mode/device;
    model-level problems (not installed, crashed worker) are reported in the summary and as
    events, and the other models still run.
    """
    return EvaluationRun(cache, dataset, model_ids, **options).run()


__all__ = ["EvaluationRun", "ModelRunSummary", "RunSummary", "run_evaluation", "plan_devices", "shard", "shard_by_claims",
           "visible_gpus"]
