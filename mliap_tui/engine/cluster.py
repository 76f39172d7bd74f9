"""Runs on a Dask cluster: the same work units and cache commits as a local run, spread over Dask workers.

``mliap-tui run --cluster SPEC`` (``ClusterRun``) plans like a local run (the missing pairs of each
model, read from the cache) and then, instead of starting worker subprocesses here, submits one
Dask **task** per work unit = (model, group of whole claim shards, sized by atom count) to a Dask
scheduler. Where SPEC is

* ``tcp://host:8786`` (any scheduler address): a running cluster (``dask scheduler`` + ``dask worker``);
* ``local`` or ``local:N``: a ``LocalCluster`` of N single-threaded worker processes on this machine
  (N defaults to the visible GPUs, else the usable cores);
* ``slurm``, ``pbs``, ``lsf`` (``slurm:N`` for N jobs, default 1): a dask-jobqueue cluster built from
  dask-jobqueue's own config (``~/.config/dask/jobqueue.yaml``; ``docs/cluster/jobqueue.yaml`` is a
  GPU-partition example).

On the worker the task (:func:`evaluate_task`) runs :func:`mliap_tui.engine.worker.run_job`, the very
code of a worker subprocess: claims, chunk files, atomic renames, all unchanged, so the cache folder
must be on a file system every worker sees at the same path (checked at start by
:func:`check_shared_cache`). A worker keeps its loaded models between tasks (one per model, device,
dtype and checkpoint). Tasks of a GPU run ask for the Dask resource ``GPU=1`` (start GPU workers with
``--resources GPU=1``), so one task runs per GPU. A family with its own interpreter
(``--python-for``) runs its worker subprocess inside the task.

Events go from the task to this process through Dask's event log (topic ``mliap-<run id>``); the
runner turns them into the same per-model Progress events as a local run, plus one
:class:`ClusterWorker` event per Dask worker.

Faults: a worker that dies mid-task (SIGKILL, node lost) loses its uncommitted rows only; Dask runs
the task again on another worker, which takes the dead worker's shard leases over and evaluates
only what is not committed. A scheduler that goes away stops the run (:class:`ClusterLost`); the
tasks still running commit what they have and stop, and the next run resumes.

Needs ``dask[distributed]`` (and ``dask-jobqueue`` for HPC schedulers): ``pip install
'mliap-tui[cluster]'``. This module imports neither rich nor textual; dask only when used.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import queue
import re
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from mliap_tui.core.host import quick_exit_once_done, undo_malloc_trim_env, usable_cores
from mliap_tui.core.vocab import Status
from mliap_tui.engine.progress import RateWindow, eta_seconds
from mliap_tui.engine.protocol import (
    ChunkCommitted,
    ClusterConnected,
    ClusterWorker,
    Event,
    Log,
    Progress,
    WorkerError,
    WorkerFinished,
    WorkerJob,
    WorkerStarted,
    event_from_json,
)
from mliap_tui.engine.runner import EvaluationRun, ModelRunSummary, visible_gpus

JOBQUEUE_KINDS = ("slurm", "pbs", "lsf")
_TRAILING_NOTE = re.compile(r"\s*\[[^\]]*\]\s*$")  # "... [0.2 s]", "... [cached]"
GPU_RESOURCE = "GPU"
#: tasks per worker a model's work is cut into (smaller tasks balance better and lose less when
#: a worker dies; each costs a few ms of scheduling and a claim-check read)
TASKS_PER_WORKER = 4
CONNECT_TIMEOUT_S = 30.0
WORKERS_TIMEOUT_S = 60.0
#: the scheduler is considered gone when the client has not been connected for this long
SCHEDULER_GRACE_S = 10.0
CANCEL_GRACE_S = 60.0
CHECK_DIR = ".cluster-check"
#: a LocalCluster's Dask settings. The statistical profiler samples every thread's stack every 10 ms:
#: a GIL cost a model's Python-side graph building pays (set it in a remote cluster's config too).
#: The periodic checks (event-loop tick 20 ms, system monitor 0.5 s, memory monitor 0.1 s) cost
#: idle workers 2 % of a core each and the scheduler + nannies 5 % (measured on 2 cores); at these
#: intervals 0.4 % and 1 %.
LOCAL_CLUSTER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    # Dask's default makes glibc put every block over 128 KiB in a fresh mmap (see
    # core.host.undo_malloc_trim_env, which a task calls anyway for the workers of other clusters)
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "500ms",
}
INSTALL_HINT = "install the cluster extra: pip install 'mliap-tui[cluster]' (dask[distributed], dask-jobqueue)"


class ClusterError(ValueError):
    """The cluster cannot be used (bad spec, unreachable scheduler, no workers, cache not shared)."""


class ClusterLost(RuntimeError):
    """The scheduler went away during the run."""


# --------------------------------------------------------------------------------------------
# which cluster
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterSpec:
    kind: str  # address | local | slurm | pbs | lsf
    address: str = ""
    n: int | None = None  # local: workers; jobqueue: jobs

    def describe(self) -> str:
        return self.address if self.kind == "address" else f"{self.kind}{'' if self.n is None else f':{self.n}'}"


def parse_cluster(text: str) -> ClusterSpec:
    """``tcp://host:port`` | ``host:port`` | ``local[:N]`` | ``slurm|pbs|lsf[:N]`` (ClusterError otherwise)."""
    value = (text or "").strip()
    head, sep, tail = value.partition(":")
    if head.lower() in ("local",) + JOBQUEUE_KINDS and (not sep or tail.isdigit()):
        n = int(tail) if sep else None
        if n is not None and n < 1:
            raise ClusterError(f"--cluster {value}: the count must be at least 1")
        return ClusterSpec(head.lower(), n=n)
    if "://" in value:
        return ClusterSpec("address", address=value)
    if sep and tail.isdigit() and head:
        return ClusterSpec("address", address=f"tcp://{value}")
    raise ClusterError(f"--cluster {value!r}: use a scheduler address (tcp://host:8786), local[:N], "
                       "or slurm|pbs|lsf[:JOBS] (dask-jobqueue config)")


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ClusterError(f"--cluster needs Dask distributed, which is not installed: {INSTALL_HINT}") from None
    return distributed


def jobqueue_cluster(kind: str, **overrides: Any) -> Any:
    """A dask-jobqueue cluster of ``kind`` (slurm, pbs, lsf) from its config file (``jobqueue.<kind>``)."""
    try:
        import dask_jobqueue
    except ImportError:
        raise ClusterError(f"--cluster {kind} needs dask-jobqueue, which is not installed: {INSTALL_HINT}") from None
    cls = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster, "lsf": dask_jobqueue.LSFCluster}[kind]
    try:
        return cls(**overrides)
    except ValueError as exc:  # e.g. "You must specify how much cores and memory per job"
        raise ClusterError(f"--cluster {kind}: {exc} (set jobqueue.{kind} in ~/.config/dask/jobqueue.yaml; "
                           "docs/cluster/jobqueue.yaml is an example)") from None


def open_cluster(spec: ClusterSpec, *, gpus: bool = False, torch_threads: int | None = None) -> tuple[Any, Any]:
    """(client, cluster or None): connected to ``spec``. The caller closes both."""
    distributed = _import_distributed()
    cluster = None
    if spec.kind == "address":
        try:
            client = distributed.Client(spec.address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"no Dask scheduler answers at {spec.address} ({str(exc).splitlines()[0][:120]}): "
                               "start one with `dask scheduler` (and workers with `dask worker ADDRESS`)") from None
        return client, None
    if spec.kind == "local":
        _start_resource_tracker()
        found = visible_gpus() if gpus else []
        n = spec.n or (len(found) if found else usable_cores())
        kwargs: dict[str, Any] = {"resources": {GPU_RESOURCE: 1}} if found else {}
        import dask

        with dask.config.set(LOCAL_CLUSTER_CONFIG), _environ_kept(_pre_spawn_keys()):
            cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                               dashboard_address=":0", host="127.0.0.1", silence_logs=logging.ERROR,
                                               **kwargs)
    else:
        cluster = jobqueue_cluster(spec.kind)
        cluster.scale(jobs=spec.n or 1)
    client = distributed.Client(cluster, set_as_default=False)
    return client, cluster


def _pre_spawn_keys() -> list[str]:
    import dask

    return list(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})


@contextlib.contextmanager
def _environ_kept(keys: Sequence[str]) -> Iterator[None]:
    """Give ``keys`` of this process's environment back their values on the way out.

    A Nanny sets its ``pre-spawn-environ`` (OMP_NUM_THREADS=1, MKL_NUM_THREADS=1, ...) in the
    environment of the process it lives in, here the client's, before it starts a worker; left
    there, every later local worker subprocess of the app or CLI (a plain run after a cluster run)
    would inherit them.
    """
    saved = _environ_snapshot(keys)
    try:
        yield
    finally:
        _restore_environ(saved)


def _environ_snapshot(keys: Sequence[str]) -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in keys}


def _restore_environ(saved: dict[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker with the real stderr. It passes ``sys.stderr``'s
    descriptor to its process; inside the app, Textual's stand-in stderr has none (-1), and the
    LocalCluster's worker processes then fail to start ("bad value(s) in fds_to_keep")."""
    from multiprocessing import resource_tracker

    saved = sys.stderr
    try:
        if sys.__stderr__ is not None:
            sys.stderr = sys.__stderr__
        resource_tracker.ensure_running()
    finally:
        sys.stderr = saved


def workers_info(client: Any) -> dict[str, dict[str, Any]]:
    return dict(client.scheduler_info(n_workers=-1).get("workers", {})) if _accepts_n_workers(client) \
        else dict(client.scheduler_info().get("workers", {}))


def _accepts_n_workers(client: Any) -> bool:
    import inspect

    try:
        return "n_workers" in inspect.signature(client.scheduler_info).parameters
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------------------------
# is the cache shared?
# --------------------------------------------------------------------------------------------


def _probe_cache(root: str, token: str) -> dict[str, Any]:
    """Runs on each worker: read the client's token in the cache folder and answer with one of its own."""
    host = socket.gethostname()
    check = Path(root) / CHECK_DIR
    try:
        seen = (check / f"{token}.client").read_text()
    except OSError as exc:
        return {"ok": False, "host": host, "reason": f"cannot read {check / (token + '.client')}: {exc.strerror or exc}"}
    if seen != token:
        return {"ok": False, "host": host, "reason": f"{check} holds another run's token (a different folder at that path)"}
    name = f"{token}.{host}.{os.getpid()}"
    try:
        (check / name).write_text(token)
    except OSError as exc:
        return {"ok": False, "host": host, "reason": f"cannot write in {check}: {exc.strerror or exc}"}
    return {"ok": True, "host": host, "file": name}


def check_shared_cache(client: Any, cache_root: Path) -> int:
    """Every worker reads a token this process wrote in the cache folder and writes one back that
    this process reads: both directions through the file system. ClusterError naming the workers
    that failed; returns the number of workers checked."""
    check = Path(cache_root) / CHECK_DIR
    check.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    mine = check / f"{token}.client"
    mine.write_text(token)
    try:
        answers = client.run(_probe_cache, str(Path(cache_root).resolve()), token)
        bad = []
        for address, a in sorted(answers.items()):
            if a.get("ok") and not (check / a["file"]).is_file():
                a = {**a, "ok": False, "reason": f"its file {a['file']} does not appear here"}
            if not a.get("ok"):
                bad.append(f"{address} on {a.get('host', '?')}: {a.get('reason')}")
        if bad:
            raise ClusterError(
                f"the cache folder {Path(cache_root).resolve()} is not shared with {len(bad)} of {len(answers)} Dask "
                f"worker(s) ({'; '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}): put the cache on a file system "
                "every worker mounts at the same path (--cache /shared/path)")
        return len(answers)
    finally:
        for f in check.glob(f"{token}.*"):
            f.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# the task (runs on a Dask worker)
# --------------------------------------------------------------------------------------------

_PREDICTORS: dict[tuple[str, str, str, str | None], Any] = {}
_PREDICTORS_LOCK = threading.Lock()
#: one task at a time per loaded model in a worker process (a worker started with --nthreads > 1
#: would otherwise run two tasks through one model object, and torch's thread count is global)
_IN_USE: dict[tuple[str, str, str, str | None], threading.Lock] = {}


def cached_predictor(job: WorkerJob) -> tuple[Any, float]:
    """(predictor, load seconds): this worker process's loaded model for the job, loaded once."""
    key = (job.model, job.device, job.dtype, job.checkpoint)
    with _PREDICTORS_LOCK:
        _IN_USE.setdefault(key, threading.Lock())
        if key in _PREDICTORS:
            return _PREDICTORS[key], 0.0
        from mliap_tui.models.registry import load_predictor

        undo_malloc_trim_env()  # Dask's nanny set MALLOC_TRIM_THRESHOLD_: models ran 1.7x slower
        t = time.monotonic()
        # a model's banner (CHGNet prints one) must not land in a LocalCluster client's terminal,
        # which the worker processes share: it would tear the progress display
        with contextlib.redirect_stdout(io.StringIO()):
            predictor = load_predictor(job.model, device=job.device, dtype=job.dtype, checkpoint=job.checkpoint)
        _PREDICTORS[key] = predictor
        quick_exit_once_done()  # the worker process holds a model now: skip the final collection at exit
        return predictor, time.monotonic() - t


def worker_device(name: Any) -> tuple[str, str]:
    """(device to load on, device label of the rows) for a GPU task on this worker: its one visible
    GPU, or (a LocalCluster's workers see every GPU) GPU ``name mod count``."""
    ids = visible_gpus()
    if not ids:
        raise RuntimeError(f"a GPU task landed on Dask worker {name} on {socket.gethostname()}, which sees no GPU: "
                           "give the GPU resource only to workers with a GPU")
    if len(ids) == 1:
        return "cuda", f"cuda:{ids[0]}"
    k = int(name) % len(ids) if str(name).isdigit() else 0
    return f"cuda:{k}", f"cuda:{ids[k]}"


def _watch_cancel(client: Any, cancel_name: str, stop: threading.Event, done: threading.Event) -> None:
    """Set ``stop`` when the run is cancelled (a Dask Event) or the scheduler is unreachable."""
    from distributed import Event as DaskEvent

    failures = 0
    while not done.is_set() and not stop.is_set():
        try:
            if DaskEvent(cancel_name, client=client).is_set():
                stop.set()
            failures = 0
        except Exception:  # noqa: BLE001 - scheduler gone: commit what we have and stop
            failures += 1
            if failures * 1.0 >= SCHEDULER_GRACE_S:
                stop.set()
        done.wait(1.0)


def evaluate_task(job_json: str, topic: str, cancel_name: str, task_label: str, gpu: bool,
                  python: str | None = None) -> dict[str, Any]:
    """One work unit on a Dask worker: run the job against the shared cache, relay its events.

    Returns {"finished": event json} or {"error": {"kind", "message"}}; events go to ``topic``.
    """
    from distributed import get_client, get_worker

    from mliap_tui.engine.worker import run_job

    worker = get_worker()
    host = socket.gethostname()
    job = WorkerJob.from_json(job_json)
    if gpu:
        job.device, job.device_label = worker_device(worker.name)

    loaded_s = [0.0]  # this task's model loading (0 when the worker had it loaded already)

    def emit(ev: Event) -> None:
        if isinstance(ev, WorkerStarted):
            ev.load_s = loaded_s[0]
        try:
            worker.log_event(topic, {"worker": worker.address, "host": host, "task": task_label, "event": ev.to_json()})
        except Exception:  # noqa: BLE001 - the scheduler is gone; the rows are on disk regardless
            pass

    stop, done = threading.Event(), threading.Event()
    watcher = threading.Thread(target=_watch_cancel, args=(get_client(), cancel_name, stop, done), daemon=True, name="mliap-cancel")
    watcher.start()
    try:
        if python and os.path.abspath(python) != os.path.abspath(sys.executable):  # venvs share a realpath
            return _run_subprocess(job, python, emit, stop)
        from mliap_tui.models.base import ModelUnavailable

        try:
            predictor, load_s = cached_predictor(job)
            loaded_s[0] = load_s
            with _IN_USE[(job.model, job.device, job.dtype, job.checkpoint)]:
                finished = run_job(job, emit, stop, predictor=predictor)
            # after its chunk events on the same topic: the client stops waiting for this task's
            # events when it arrives (run_job returns the event; a worker subprocess emits it)
            emit(finished)
        except ModelUnavailable as exc:
            return {"error": {"kind": "model_unavailable", "message": str(exc)}}
        except Exception as exc:  # noqa: BLE001 - reported, the other tasks go on
            from mliap_tui.engine.batching import describe_exception

            return {"error": {"kind": "exception", "message": f"{job.model} on {host}: {describe_exception(exc)}"}}
        return {"finished": finished.to_json(), "load_s": load_s}
    finally:
        done.set()


def _run_subprocess(job: WorkerJob, python: str, emit: Any, stop: threading.Event) -> dict[str, Any]:
    """A family with its own venv: its worker subprocess runs inside the task; events relayed."""
    from mliap_tui.engine.runner import WorkerProcess

    events: queue.Queue = queue.Queue()
    w = WorkerProcess(job, python, events)
    while True:
        try:
            _, ev = events.get(timeout=0.5)
        except queue.Empty:
            if stop.is_set():
                w.terminate()
            continue
        if ev is None:
            break
        if isinstance(ev, WorkerFinished):
            w.finished = ev
        elif isinstance(ev, WorkerError):
            w.error = ev
        emit(ev)
    if w.finished is not None:
        return {"finished": w.finished.to_json()}
    return {"error": {"kind": w.error.kind if w.error else "crashed", "message": w.failure_message() or "worker failed"}}


# --------------------------------------------------------------------------------------------
# work units
# --------------------------------------------------------------------------------------------


def plan_tasks(groups: Sequence[Sequence[str]], sizes: dict[str, int], n_workers: int,
               per_worker: int = TASKS_PER_WORKER) -> list[list[str]]:
    """Whole claim shards (``groups``, in order) packed into tasks of about equal atom count:
    about ``per_worker`` tasks per worker, never fewer than one shard per task."""
    loads = [sum(sizes.get(m, 1) for m in g) for g in groups]
    if not groups:
        return []
    target = sum(loads) / max(1, n_workers * per_worker)
    tasks: list[list[str]] = []
    current: list[str] = []
    load = 0
    for g, n in zip(groups, loads):
        if current and load + n / 2 > target:
            tasks.append(current)
            current, load = [], 0
        current.extend(g)
        load += n
    if current:
        tasks.append(current)
    return tasks


@dataclass
class _TaskState:
    label: str
    total: int
    base: int = 0  # rows committed by earlier attempts (a worker died)
    committed: int = 0
    progress: Progress | None = None
    worker: str = ""
    finished: bool = False

    @property
    def done(self) -> int:
        if self.finished and self.progress is None:
            return self.committed
        return self.base + (self.progress.done if self.progress else 0)


@dataclass
class _WorkerState:
    address: str
    host: str = ""
    device: str = ""
    task: str = ""
    state: str = "idle"
    done: int = 0
    rate: float | None = None
    by_task: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# the run (client side)
# --------------------------------------------------------------------------------------------


class ClusterRun(EvaluationRun):
    """An :class:`EvaluationRun` whose work units run as Dask tasks (``cluster`` = a spec string)."""

    def __init__(self, *args: Any, cluster: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.spec = parse_cluster(cluster)
        self.client: Any = None
        self._cluster: Any = None
        self.gpu = False
        self.n_workers = 0
        self.dashboard = ""
        self._cancel_name = f"mliap-cancel-{self.run_id}"
        self._topic = f"mliap-{self.run_id}"
        self._inbox: queue.Queue = queue.Queue()
        self.workers: dict[str, _WorkerState] = {}
        self._started_models: dict[str, list[_TaskState]] = {}
        self._said: set[tuple[str, str]] = set()  # (model, info message) already shown
        self._environ_saved: dict[str, str | None] = {}  # before connecting (see _environ_kept)

    # -- connection ---------------------------------------------------------------------------
    def connect(self) -> None:
        """Connect, wait for workers, check the cache is shared, decide CPU or GPU tasks."""
        if self.client is not None:
            return
        device = (self.device or "auto").strip().lower()
        if device.startswith("cuda:"):
            raise ClusterError("--device cuda:N pins one local GPU; with --cluster use --device cuda (every worker "
                               "with the GPU resource) or cpu")
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")
        _import_distributed()
        self._environ_saved = _environ_snapshot(_pre_spawn_keys())
        self.client, self._cluster = open_cluster(self.spec, gpus=device != "cpu")
        try:
            self._wait_for_workers()
            info = workers_info(self.client)
            self.n_workers = len(info)
            n_gpu = sum(1 for w in info.values() if w.get("resources", {}).get(GPU_RESOURCE))
            if device == "cuda" and not n_gpu:
                raise ClusterError("--device cuda: no Dask worker offers the GPU resource (start GPU workers with "
                                   "`dask worker ADDRESS --resources GPU=1`, one per GPU)")
            self.gpu = device != "cpu" and n_gpu > 0
            check_shared_cache(self.client, Path(self.cache.root))
            self.dashboard = self.client.dashboard_link or ""
            self.client.subscribe_topic(self._topic, self._inbox.put)
            self._emit(ClusterConnected(scheduler=self.client.scheduler.address, kind=self.spec.kind,
                                        dashboard=self.dashboard, workers=self.n_workers, gpus=n_gpu))
        except BaseException:
            self.close()
            raise

    def _wait_for_workers(self) -> None:
        patient = self.spec.kind in JOBQUEUE_KINDS  # batch jobs wait in the queue
        t0 = time.monotonic()
        said = False
        while True:
            try:
                self.client.wait_for_workers(1, timeout=5)
                return
            except TimeoutError:
                pass
            if self._cancel.is_set():
                raise ClusterError("cancelled while waiting for Dask workers")
            if not patient and time.monotonic() - t0 > WORKERS_TIMEOUT_S:
                raise ClusterError(f"no Dask worker joined {self.spec.describe()} within {WORKERS_TIMEOUT_S:.0f} s: "
                                   "start workers with `dask worker ADDRESS`")
            if not said:
                self._emit(Log(level="info", message=f"waiting for Dask workers to join {self.spec.describe()} ..."))
                said = True

    def close(self) -> None:
        client, cluster = self.client, self._cluster
        self.client = self._cluster = None
        for thing in (client, cluster):
            if thing is not None:
                try:
                    thing.close(timeout=10) if thing is client else thing.close()
                except Exception:  # noqa: BLE001 - best effort (the scheduler may be gone)
                    pass
        # a LocalCluster's nanny that restarted a dead worker set its pre-spawn environment again
        _restore_environ(self._environ_saved)

    def cancel(self) -> None:
        super().cancel()
        client = self.client
        if client is not None:
            try:
                from distributed import Event as DaskEvent

                DaskEvent(self._cancel_name, client=client).set()
            except Exception:  # noqa: BLE001
                pass

    # -- EvaluationRun hooks ------------------------------------------------------------------
    def run(self):  # type: ignore[override]
        self.connect()
        try:
            return super().run()
        finally:
            self.close()

    def _devices(self) -> tuple[str, list[str | None]]:
        return f"dask:{self.n_workers} {'gpu' if self.gpu else 'cpu'}", [None]  # short: the progress shows it

    def _torch_threads_for_tasks(self) -> int | None:
        if self.torch_threads is not None or self.gpu:
            return self.torch_threads
        if self.spec.kind == "local":  # N single-threaded workers share this machine's cores
            return max(1, usable_cores() // max(1, self.n_workers))
        return None

    def _run_model(self, ms: ModelRunSummary, todo: list[str], sizes: dict[str, int],
                   slots: list[str | None], label: str) -> None:
        from mliap_tui.engine.claiming import shard_groups

        t0 = time.monotonic()
        ms.device = label
        groups = [g for _, g in shard_groups(self.cache, self.dataset, todo, self.job_overrides.get("claim_size"))]
        n_workers = max(1, len(workers_info(self.client)))
        units = plan_tasks(groups, sizes, n_workers)
        python = self.python_for_model(ms.model)
        python_arg = python if python != sys.executable else None
        resources = {GPU_RESOURCE: 1} if self.gpu else None
        tasks: dict[str, _TaskState] = {}
        futures = []
        for k, ids in enumerate(units):
            job = self._job(ms.model, ids, k, None)
            if job.torch_threads is None:
                job.torch_threads = self._torch_threads_for_tasks()
            label_k = f"{ms.model} task {k + 1}/{len(units)}"
            key = f"mliap-{self.run_id}-{ms.model}-{self.mode}-{k}"
            tasks[label_k] = _TaskState(label=label_k, total=len(ids))
            futures.append(self.client.submit(evaluate_task, job.to_json(), self._topic, self._cancel_name, label_k,
                                              self.gpu, python_arg, key=key, pure=False, resources=resources))
        ms.workers = n_workers
        self._emit(Log(model=ms.model, mode=self.mode, level="info",
                       message=f"{len(units)} tasks ({ms.todo} structures) on {n_workers} Dask worker(s)"))
        rate = RateWindow(30.0)
        results: dict[int, dict[str, Any]] = {}
        cancel_sent: float | None = None
        last_emit = 0.0
        last_poll = 0.0
        while len(results) < len(futures):
            try:
                changed = self._drain(ms, tasks, timeout=0.2)
            except KeyboardInterrupt:  # Ctrl-C: the tasks commit what they have and stop
                self.cancel()
                continue
            connected = self.client.status == "running"  # if not: raised below, not taken for failed tasks
            for idx, fut in enumerate(futures):
                if not connected or idx in results or not fut.done():
                    continue
                try:
                    results[idx] = fut.result(timeout=5)
                except Exception as exc:  # noqa: BLE001 - a task that raised (or was cancelled)
                    results[idx] = {"error": {"kind": "exception", "message": f"{type(exc).__name__}: {exc}"}}
                if "error" in results[idx]:  # no WorkerFinished will come: do not wait for it
                    list(tasks.values())[idx].finished = True
                changed = True
            now = time.monotonic()
            if self.client.status != "running":
                # the client has lost the scheduler: Dask has cancelled every future of this client
                ms.wall_s = now - t0
                raise ClusterLost(f"the Dask scheduler {self.spec.describe()} went away during the run: committed "
                                  "results are kept (running tasks commit and stop); start the cluster again and "
                                  "run the same command to resume")
            if now - last_poll > 2.0:
                last_poll = now
                self._poll_workers()
            if self._cancel.is_set():
                if cancel_sent is None:
                    cancel_sent = now
                elif now - cancel_sent > CANCEL_GRACE_S:
                    self.client.cancel(futures)
                    break
            if changed and now - last_emit > 0.25:
                last_emit = now
                self._emit_progress(ms, tasks, rate)
        # the tasks' last events travel apart from their results: wait until every task's arrived
        quiet_until = time.monotonic() + 5.0
        while time.monotonic() < quiet_until and not all(t.finished for t in tasks.values()):
            self._drain(ms, tasks, timeout=0.2)
        self._drain(ms, tasks, timeout=0.0)
        self._emit_progress(ms, tasks, rate)
        evals = []
        for idx in sorted(results):
            r = results[idx]
            if "error" in r and ms.error is None and not self._cancel.is_set():
                ms.error = r["error"]["message"]
                self._emit(WorkerError(model=ms.model, mode=self.mode, worker=idx, kind=r["error"]["kind"],
                                       message=ms.error))
            elif "finished" in r:
                fin = event_from_json(r["finished"])
                if isinstance(fin, WorkerFinished):
                    evals.append(fin.eval_s)
                    if fin.cancelled and not self._cancel.is_set() and ms.error is None:
                        ms.error = (f"task {idx + 1} stopped before its end ({fin.done}/{fin.total}: lost contact with "
                                    "the scheduler?); run again to resume")
        ms.done = sum(t.done for t in tasks.values())
        self._count_committed(ms)
        ms.cancelled = self._cancel.is_set() and ms.done + ms.elsewhere < ms.todo
        ms.wall_s = time.monotonic() - t0
        ms.eval_s = ms.wall_s
        ms.structures_per_s = ms.done / ms.wall_s if ms.wall_s > 0 and ms.done else None
        for w in self.workers.values():
            w.task, w.state = "", ("lost" if w.state == "lost" else "idle")
            self._emit_worker(w)
        self._emit(WorkerFinished(model=ms.model, mode=self.mode, worker=-1, done=ms.done, total=ms.todo, ok=ms.ok,
                                  failed=ms.failed, wall_s=ms.wall_s, eval_s=ms.eval_s,
                                  structures_per_s=ms.structures_per_s, cancelled=ms.cancelled, device=label,
                                  skipped=ms.elsewhere))

    def _count_committed(self, ms: ModelRunSummary) -> None:
        """ok/failed = this run's rows on disk. The chunk events say the same, except for a worker
        killed between committing a chunk and sending its event (that event never comes)."""
        import polars as pl

        from mliap_tui.cache.store import collect_fresh

        def build() -> pl.LazyFrame:
            return (self.cache.scan_predictions(self.dataset, [ms.model], self.mode)
                    .filter(pl.col("run_id") == self.run_id).select("status"))

        try:
            statuses = collect_fresh(build)["status"]
        except (OSError, ValueError) as exc:  # keep the events' counts
            self._emit(Log(model=ms.model, mode=self.mode, level="warning",
                           message=f"could not count the committed rows: {exc}"))
            return
        ok = int((statuses == Status.OK.value).sum())
        ms.ok, ms.failed = ok, len(statuses) - ok
        ms.done = max(ms.done, ms.ok + ms.failed)

    # -- events from the tasks ----------------------------------------------------------------
    def _drain(self, ms: ModelRunSummary, tasks: dict[str, _TaskState], timeout: float) -> bool:
        changed = False
        while True:
            try:
                item = self._inbox.get(timeout=timeout) if not changed and timeout else self._inbox.get_nowait()
            except queue.Empty:
                return changed
            changed = True
            msg = item[1] if isinstance(item, tuple) else item
            ev = event_from_json(msg.get("event", ""))
            task = tasks.get(msg.get("task", ""))
            if ev is None or task is None:
                continue
            w = self.workers.setdefault(msg["worker"], _WorkerState(address=msg["worker"]))
            w.host = msg.get("host", w.host)
            self._on_task_event(ms, task, w, ev)

    def _on_task_event(self, ms: ModelRunSummary, task: _TaskState, w: _WorkerState, ev: Event) -> None:
        if isinstance(ev, WorkerStarted):
            if task.worker and task.worker != w.address:  # an earlier attempt's worker died
                self._emit(Log(model=ms.model, mode=self.mode, level="warning",
                               message=f"{task.label} restarted on {w.host} ({w.address}) after worker {task.worker} "
                                       f"was lost; its {task.committed} committed rows are kept"))
            task.worker, task.base, task.progress = w.address, task.committed, None
            w.device, w.task, w.state = ev.device, task.label, "running"
            self._emit_worker(w)
            if not any(t.worker for t in self._started_models.get(ms.model, [])):
                self._started_models[ms.model] = [task]
                # the model's first task: the progress shows it running, like a local worker's start
                self._emit(WorkerStarted(model=ms.model, mode=self.mode, worker=-1, run_id=self.run_id,
                                         device=ms.device, dtype=ev.dtype, total=ms.todo, load_s=ev.load_s,
                                         batch_atoms=ev.batch_atoms, torch_threads=ev.torch_threads))
            return
        if isinstance(ev, Progress):
            task.progress = ev
            w.task, w.state, w.rate = task.label, "running", ev.structures_per_s
            w.by_task[task.label] = task.done
            w.done = sum(w.by_task.values())
            return
        if isinstance(ev, ChunkCommitted):
            task.committed += ev.rows
            ms.chunks += 1
            ms.ok += ev.ok
            ms.failed += ev.failed
        elif isinstance(ev, WorkerFinished):
            task.finished = True
            w.state, w.task = "idle", ""
            self._emit_worker(w)
            return  # the model's WorkerFinished is emitted once, at the end
        elif isinstance(ev, WorkerError):
            return  # reported from the task's result
        elif isinstance(ev, Log):
            if ev.level == "info":  # each task says it (e.g. "canary passed ... [cached]"): once per model is enough
                key = (ms.model, _TRAILING_NOTE.sub("", ev.message))
                if key in self._said:
                    return
                self._said.add(key)
            ev.message = f"[{w.host}] {ev.message}"
        self._emit(ev)

    def _emit_progress(self, ms: ModelRunSummary, tasks: dict[str, _TaskState], rate: RateWindow) -> None:
        done = sum(t.done for t in tasks.values())
        skipped = sum(max(0, (t.progress.skipped if t.progress else 0) - t.base) for t in tasks.values())
        ms.elsewhere = skipped
        ms.done = done
        atoms_total = sum(t.progress.atoms_total for t in tasks.values() if t.progress)
        atoms_done = sum(t.progress.atoms_done for t in tasks.values() if t.progress)
        rate.add(done, atoms_done)
        s_rate, a_rate = rate.rates()
        total = ms.todo - skipped
        failures = [f for t in tasks.values() if t.progress for f in t.progress.last_failures][-5:]
        ms.last_failures = list(failures)
        mems = [t.progress.peak_memory_bytes for t in tasks.values() if t.progress and t.progress.peak_memory_bytes]
        kinds = [t.progress.memory_kind for t in tasks.values() if t.progress]
        self._emit(Progress(model=ms.model, mode=self.mode, worker=-1, done=done, total=total, atoms_done=atoms_done,
                            atoms_total=atoms_total, ok=ms.ok, failed=ms.failed, structures_per_s=s_rate,
                            atoms_per_s=a_rate, eta_s=eta_seconds(0, total - done, None, s_rate),
                            device=ms.device, peak_memory_bytes=max(mems) if mems else None,
                            memory_kind=kinds[0] if kinds else "", last_failures=failures, skipped=skipped))
        for w in self.workers.values():
            if w.state == "running":
                self._emit_worker(w)

    def _poll_workers(self) -> None:
        try:
            alive = set(workers_info(self.client))
        except Exception:  # noqa: BLE001 - the connection check in the loop handles a lost scheduler
            return
        for address, w in self.workers.items():
            if address not in alive and w.state != "lost":
                w.state, w.task, w.rate = "lost", "", None
                self._emit(Log(level="warning", message=f"Dask worker {address} on {w.host} is gone; "
                                                        "its task runs again on another worker"))
                self._emit_worker(w)

    def _emit_worker(self, w: _WorkerState) -> None:
        self._emit(ClusterWorker(address=w.address, host=w.host, device=w.device, task=w.task, state=w.state,
                                 done=w.done, structures_per_s=w.rate if w.state == "running" else None))


def run_on_cluster(cache: Any, dataset: str, model_ids: Sequence[str], cluster: str, **options: Any):
    """:func:`mliap_tui.engine.runner.run_evaluation` on a Dask cluster (blocking)."""
    return ClusterRun(cache, dataset, model_ids, cluster=cluster, **options).run()


def cluster_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("distributed") is not None


__all__ = ["ClusterError", "ClusterLost", "ClusterRun", "ClusterSpec", "check_shared_cache", "cluster_available",
           "evaluate_task", "jobqueue_cluster", "open_cluster", "parse_cluster", "plan_tasks", "run_on_cluster"]
