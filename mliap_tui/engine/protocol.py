"""The worker protocol: what a worker is given (a job) and what it reports (events).

Everything here is plain JSON so that a worker can run anywhere a Python with mliap_tui's data,
cache and models modules can reach the cache folder (another venv, another node of a cluster).
The full description, with examples, is in ``docs/ENGINE_PROTOCOL.md``; keep the two in step.

* A :class:`WorkerJob` is one JSON object, given to ``python -m mliap_tui.engine.worker --job
  FILE`` (or ``--job -`` for stdin).
* The worker writes its results itself, as committed parquet chunks through
  ``Cache.write_prediction_chunk`` (atomic rename), and reports **events** as JSON lines on its
  stdout: one object per line, with an ``"event"`` key naming its type. Anything a library
  prints is redirected to stderr by the worker, so stdout carries events only; a reader still
  ignores lines that are not JSON objects.
* stderr is free text (warnings, tracebacks); the runner keeps its tail for error messages.
* Exit status: 0 finished (also when cancelled), 2 bad job, 3 model unavailable, 1 other error.

This module imports only the standard library and :mod:`mliap_tui.core.vocab`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar

from mliap_tui.core.vocab import (
    DEFAULT_MIN_DISTANCE_ANG,
    DEFAULT_RELAX_FMAX_EV_PER_ANG,
    DEFAULT_RELAX_MAX_STEPS,
    DEFAULT_SYMPREC_ANG,
    DTYPES,
    MODES,
    RELAX_ENGINES,
)

PROTOCOL_VERSION = 1

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_JOB = 2
EXIT_MODEL_UNAVAILABLE = 3


class ProtocolError(ValueError):
    """A job or event that does not follow the protocol."""


def _finite_or_none(x: Any) -> Any:
    """JSON has no NaN/inf: send them as null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build a dataclass from ``data``, ignoring unknown keys (newer peers may send more)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


# --------------------------------------------------------------------------------------------
# job
# --------------------------------------------------------------------------------------------


@dataclass
class WorkerJob:
    """One model, one mode, a set of materials of one dataset in one cache."""

    cache_root: str
    dataset: str
    model: str
    mode: str = "static"
    #: materials to evaluate, in order; ``None`` = every material of the dataset that is not
    #: done yet (the worker then asks the cache itself, honouring ``retry_failed``).
    material_ids: list[str] | None = None
    retry_failed: bool = False
    device: str = "cpu"  # handed to load_predictor: "cpu", "cuda", "cuda:0"
    #: what the rows record as device; e.g. "cuda:1" for a worker started with
    #: CUDA_VISIBLE_DEVICES=1 (which sees that GPU as cuda:0). Default: ``device``.
    device_label: str | None = None
    dtype: str = "float32"
    checkpoint: str | None = None
    #: an ``ase:`` reference (``mliap_tui.models.plugins``) when ``model`` names such a model
    model_ref: str | None = None
    #: the weights fingerprint the runner planned with (None: unknown before loading; the worker
    #: then skips materials already done with the weights it loaded)
    weights_fingerprint: str | None = None
    #: run even if the load-time canary check fails (rows record ``trust_override``)
    trust_model: bool = False
    forces: bool = False
    stress: bool = False
    #: atoms per batch (static mode; relax mode with the batched engine: atoms in flight);
    #: None = the model spec's default (1/16 of it on CPU)
    batch_atoms: int | None = None
    #: commit a chunk every ``chunk_rows`` structures or ``chunk_seconds``, whichever comes first
    chunk_rows: int = 200
    chunk_seconds: float = 15.0
    prefetch: int = 2  # batches prepared ahead of the one running (bounded queue)
    torch_threads: int | None = None  # None = the CPU cores this process may use
    #: sanity check: two atoms closer than this (Å, periodic images included) fail the structure
    min_distance_ang: float = DEFAULT_MIN_DISTANCE_ANG
    relax_fmax: float = DEFAULT_RELAX_FMAX_EV_PER_ANG  # eV/Å
    relax_max_steps: int = DEFAULT_RELAX_MAX_STEPS
    #: relax mode: "batched" (in-flight batched FIRE, engine/relax.py) or "ase" (one structure at
    #: a time through the family's ASE calculator, the reference)
    relax_engine: str = "batched"
    symprec_ang: float = DEFAULT_SYMPREC_ANG
    progress_interval_s: float = 0.5
    rate_window_s: float = 30.0
    #: abort (exit 1) after this many structures in a row failed with an exception: a
    #: systematic error must not mark a whole dataset as failed
    max_consecutive_errors: int = 50
    run_id: str = ""
    worker: int = 0  # shard index when a model is split across workers (one per GPU)
    #: work claiming (mliap_tui.cache.claims): materials per shard (None = by dataset size, the
    #: same for every run), lease time to live and heartbeat, and how often to look again at
    #: shards another run holds
    claim_size: int | None = None
    lease_ttl_s: float = 120.0
    heartbeat_s: float = 15.0
    claim_poll_s: float = 2.0
    #: with ``retry_failed``: failed rows committed at or after this time (Unix s; the run's
    #: start) count as done, so a failure retried by a concurrent run is not retried again
    since_unix_s: float | None = None
    version: int = PROTOCOL_VERSION

    def validate(self) -> "WorkerJob":
        if self.mode not in MODES:
            raise ProtocolError(f"unknown mode {self.mode!r}: use one of {', '.join(MODES)}")
        if self.dtype not in DTYPES:
            raise ProtocolError(f"unknown dtype {self.dtype!r}: use one of {', '.join(DTYPES)}")
        if self.batch_atoms is not None and self.batch_atoms < 1:
            raise ProtocolError(f"batch_atoms must be >= 1, got {self.batch_atoms}")
        if self.relax_engine not in RELAX_ENGINES:
            raise ProtocolError(f"unknown relax_engine {self.relax_engine!r}: use one of {', '.join(RELAX_ENGINES)}")
        if not self.relax_fmax > 0:
            raise ProtocolError(f"relax_fmax must be > 0 eV/Å, got {self.relax_fmax}")
        if self.relax_max_steps < 0:
            raise ProtocolError(f"relax_max_steps must be >= 0, got {self.relax_max_steps}")
        if self.chunk_rows < 1:
            raise ProtocolError(f"chunk_rows must be >= 1, got {self.chunk_rows}")
        if self.prefetch < 0:
            raise ProtocolError(f"prefetch must be >= 0, got {self.prefetch}")
        if self.claim_size is not None and self.claim_size < 1:
            raise ProtocolError(f"claim_size must be >= 1, got {self.claim_size}")
        if not 0 < self.heartbeat_s < self.lease_ttl_s:
            raise ProtocolError(f"need 0 < heartbeat_s < lease_ttl_s, got {self.heartbeat_s} and {self.lease_ttl_s}")
        if self.material_ids is not None and not all(isinstance(m, str) for m in self.material_ids):
            raise ProtocolError("material_ids must be a list of strings")
        if self.version > PROTOCOL_VERSION:
            raise ProtocolError(f"job uses protocol version {self.version}; this worker speaks {PROTOCOL_VERSION}")
        return self

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "WorkerJob":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProtocolError(f"job is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ProtocolError("job must be a JSON object")
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING and f.name not in data]  # type: ignore[misc]
        if missing:
            raise ProtocolError(f"job is missing required field(s): {', '.join(missing)}")
        return _from_dict(cls, data).validate()


# --------------------------------------------------------------------------------------------
# events
# --------------------------------------------------------------------------------------------

EVENT_TYPES: dict[str, type["Event"]] = {}


def _register(cls: type["Event"]) -> type["Event"]:
    EVENT_TYPES[cls.event] = cls
    return cls


@dataclass
class Event:
    """Common fields of every event. ``t`` is the Unix time it was made."""

    event: ClassVar[str] = "event"
    model: str = ""
    mode: str = "static"
    worker: int = 0
    t: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.event, **{k: _finite_or_none(v) for k, v in asdict(self).items()}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Event":
        return _from_dict(cls, data)

    @staticmethod
    def from_json(line: str) -> "Event | None":
        return event_from_json(line)


@_register
@dataclass
class RunPlanned(Event):
    """Runner: what this run will do. ``models``: [{model, total, done, failed, todo}] per model
    (``done`` = already in the cache, of which ``failed`` are failed rows kept as they are)."""

    event: ClassVar[str] = "run_planned"
    run_id: str = ""
    dataset: str = ""
    device: str = ""
    models: list[dict[str, Any]] = field(default_factory=list)


@_register
@dataclass
class ModelSkipped(Event):
    """Runner: a model had nothing to do (everything cached) or could not start."""

    event: ClassVar[str] = "model_skipped"
    reason: str = ""


@_register
@dataclass
class WorkerStarted(Event):
    """Worker: the model is loaded and evaluation begins."""

    event: ClassVar[str] = "started"
    run_id: str = ""
    pid: int = 0
    python: str = ""
    device: str = ""
    dtype: str = ""
    total: int = 0  # structures in this job
    atoms_total: int = 0
    batch_atoms: int = 0
    load_s: float = 0.0  # seconds spent loading the model (and its canary check)
    torch_threads: int | None = None
    weights_fingerprint: str | None = None  # sha256 of the weights loaded (rows carry it)
    canary: str = ""  # the canary verdict, one line (e.g. "passed: MAE 26 meV/atom on 12 MP crystals")
    trust_override: bool = False  # failed the canary, runs because of trust_model


@_register
@dataclass
class Progress(Event):
    """Worker (or runner, summed over a model's workers): where the evaluation stands.

    Rates are over the last ``window_s`` seconds; ``eta_s`` is remaining atoms / atoms per
    second (null until there is a rate). ``peak_memory_bytes`` is
    ``torch.cuda.max_memory_allocated`` on a GPU (``memory_kind`` "cuda_max_allocated") and
    the process's peak resident set size on CPU ("cpu_peak_rss").
    """

    event: ClassVar[str] = "progress"
    done: int = 0
    total: int = 0
    atoms_done: int = 0
    atoms_total: int = 0
    ok: int = 0
    failed: int = 0
    structures_per_s: float | None = None
    atoms_per_s: float | None = None
    window_s: float = 30.0
    eta_s: float | None = None
    elapsed_s: float = 0.0
    device: str = ""
    peak_memory_bytes: int | None = None
    memory_kind: str = ""
    batch_atoms: int = 0
    #: the last few failures: [[material_id, reason], ...], newest last
    last_failures: list[list[str]] = field(default_factory=list)
    #: materials of the job that another run committed first (left out of ``total``)
    skipped: int = 0


@_register
@dataclass
class ChunkCommitted(Event):
    """Worker: a chunk of result rows is committed to the cache (visible to readers)."""

    event: ClassVar[str] = "chunk"
    path: str = ""
    rows: int = 0
    ok: int = 0
    failed: int = 0


@_register
@dataclass
class Log(Event):
    """Worker or runner: a message for the user (``level``: info, warning, error)."""

    event: ClassVar[str] = "log"
    level: str = "info"
    message: str = ""


@_register
@dataclass
class WorkerFinished(Event):
    """Worker: done (or cancelled; everything evaluated so far is committed)."""

    event: ClassVar[str] = "finished"
    done: int = 0
    total: int = 0
    ok: int = 0
    failed: int = 0
    atoms_done: int = 0
    wall_s: float = 0.0  # whole worker, model loading included
    eval_s: float = 0.0  # evaluation only
    structures_per_s: float | None = None  # done / eval_s
    atoms_per_s: float | None = None
    cancelled: bool = False
    device: str = ""
    peak_memory_bytes: int | None = None
    memory_kind: str = ""
    skipped: int = 0  # materials of the job another run committed first (not in ``total``)


@_register
@dataclass
class WorkerError(Event):
    """Worker or runner: a fatal error; the worker stops (non-zero exit). One line."""

    event: ClassVar[str] = "error"
    kind: str = ""  # vocab.WorkerErrorKind: model_unavailable | model_refused | bad_job | systematic_failure | crashed | exception | write_failed
    message: str = ""


@_register
@dataclass
class RunFinished(Event):
    """Runner: the whole run is over. ``summary`` is ``RunSummary.to_dict()``."""

    event: ClassVar[str] = "run_finished"
    run_id: str = ""
    cancelled: bool = False
    summary: dict[str, Any] = field(default_factory=dict)


@_register
@dataclass
class ClusterConnected(Event):
    """Runner (``--cluster``): connected to a Dask scheduler whose workers see the cache folder."""

    event: ClassVar[str] = "cluster_connected"
    scheduler: str = ""  # the scheduler's address, e.g. tcp://head:8786
    kind: str = ""  # address | local | slurm | pbs | lsf
    dashboard: str = ""  # the Dask dashboard link ("" when the scheduler serves none)
    workers: int = 0
    gpus: int = 0  # workers advertising the GPU resource
    tasks: int = 0  # work units (model, shard) of the run so far


@_register
@dataclass
class ClusterWorker(Event):
    """Runner (``--cluster``): what one Dask worker is doing (one line per worker in the progress)."""

    event: ClassVar[str] = "cluster_worker"
    address: str = ""  # the Dask worker's address
    host: str = ""
    device: str = ""
    task: str = ""  # e.g. "chgnet-0.3.0 task 3/8", "" when idle
    state: str = ""  # running | idle | lost
    done: int = 0  # structures this worker evaluated in this run
    structures_per_s: float | None = None


def event_from_json(line: str | bytes) -> Event | None:
    """Parse one line of a worker's stdout; None for anything that is not a known event."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    cls = EVENT_TYPES.get(data.get("event", ""))
    if cls is None:
        return None
    try:
        return cls.from_dict(data)
    except TypeError:
        return None
