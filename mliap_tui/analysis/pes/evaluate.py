"""Evaluate PES grid points in this process, through the engine's batched path.

A slice is a few hundred small structures. Starting a worker subprocess per slice (and loading
the model in it) costs several seconds each time; here the engine's own job runner
(:func:`mliap_tui.engine.worker.run_job`: atom-count batches, graph building prefetched in a
thread, OOM splitting, chunked commits to the cache, progress events) runs in the calling
process with a model loaded once per process and kept (:func:`predictor`). The results land in
the cache exactly as a worker's would, so a slice asked again is read back and a cancelled one
resumes where it stopped.

Events are the engine's (:mod:`mliap_tui.engine.protocol`): RunPlanned, then per model
ModelSkipped (all cached) or Log ("loading ...") / WorkerStarted / Progress / ChunkCommitted /
WorkerFinished, or WorkerError (model unavailable, systematic failure), and RunFinished; the
CLI's rich progress bars and the PES screen read them. ``stop`` (a ``threading.Event``) stops
after the batch in flight; what is evaluated is committed.

Imports torch only through the model adapters, when a model is first loaded.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

from mliap_tui.cache import Cache
from mliap_tui.core.vocab import DEFAULT_MIN_DISTANCE_ANG, Mode, WorkerErrorKind
from mliap_tui.engine.protocol import (
    Event,
    Log,
    ModelSkipped,
    RunFinished,
    RunPlanned,
    WorkerError,
    WorkerJob,
)
from mliap_tui.engine.runner import ModelRunSummary, RunSummary

OnEvent = Callable[[Event], None]

_PREDICTORS: dict[tuple[str, str, str], Any] = {}
_LOAD_LOCK = threading.Lock()


def predictor(model: str, device: str = "auto", dtype: str = "float32") -> Any:
    """The model's batched adapter on ``device``, loaded once per process and kept.

    Raises ModelUnavailable (one line, says what to do) or KeyError (unknown model id).
    """
    from mliap_tui.models.registry import load_predictor, resolve_device

    key = (model, resolve_device(device), dtype)
    with _LOAD_LOCK:
        if key not in _PREDICTORS:
            _PREDICTORS[key] = load_predictor(model, device=key[1], dtype=dtype)
        return _PREDICTORS[key]


def is_loaded(model: str, device: str = "auto", dtype: str = "float32") -> bool:
    from mliap_tui.models.registry import resolve_device

    return (model, resolve_device(device), dtype) in _PREDICTORS


def evaluate_points(
    cache: Cache,
    dataset: str,
    material_ids: Sequence[str],
    models: Sequence[str],
    *,
    device: str = "auto",
    dtype: str = "float32",
    forces: bool = False,
    batch_atoms: int | None = None,
    torch_threads: int | None = None,
    on_event: OnEvent | None = None,
    stop: threading.Event | None = None,
    min_distance_ang: float = DEFAULT_MIN_DISTANCE_ANG,
) -> RunSummary:
    """Evaluate the ``material_ids`` of ``dataset`` not yet cached for each model; blocking.

    Returns the engine's :class:`RunSummary` (per model: cached, evaluated, ok, failed, times,
    error). A model that cannot be loaded is reported there (and as a WorkerError event); the
    other models still run.
    """
    from mliap_tui.engine.worker import SystematicFailure, run_job
    from mliap_tui.models.base import ModelUnavailable
    from mliap_tui.models.registry import get_spec, resolve_device

    stop = stop or threading.Event()
    emit = on_event or (lambda ev: None)
    t_run = time.monotonic()
    resolved = resolve_device(device)
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    summary = RunSummary(run_id=run_id, dataset=dataset, mode=Mode.STATIC.value, device=resolved)
    ids = list(dict.fromkeys(material_ids))
    todos: dict[str, list[str]] = {}
    for model in dict.fromkeys(models):
        get_spec(model)  # KeyError names the known ids
        ok = cache.done_keys(dataset, model, Mode.STATIC.value, include_failed=False)
        any_row = cache.done_keys(dataset, model, Mode.STATIC.value, include_failed=True)
        todo = [m for m in ids if m not in any_row]
        todos[model] = todo
        summary.models.append(ModelRunSummary(
            model=model, mode=Mode.STATIC.value, total=len(ids), already_done=len(ids) - len(todo),
            cached_failed=sum(1 for m in ids if m in any_row and m not in ok), todo=len(todo), device=resolved))
    emit(RunPlanned(run_id=run_id, dataset=dataset, device=resolved, mode=Mode.STATIC.value,
                    models=[{"model": m.model, "total": m.total, "done": m.already_done, "failed": m.cached_failed,
                             "todo": m.todo} for m in summary.models]))
    for ms in summary.models:
        if stop.is_set():
            ms.cancelled = ms.todo > 0
            continue
        if ms.todo == 0:
            emit(ModelSkipped(model=ms.model, mode=ms.mode, reason=f"all {ms.total} points already in the cache"))
            continue
        t0 = time.monotonic()
        try:
            if not is_loaded(ms.model, resolved, dtype):
                emit(Log(model=ms.model, mode=ms.mode, level="info", message=f"loading {ms.model} on {resolved}"))
            pred = predictor(ms.model, resolved, dtype)
        except ModelUnavailable as exc:
            ms.error = str(exc)
            emit(WorkerError(model=ms.model, mode=ms.mode, kind=WorkerErrorKind.MODEL_UNAVAILABLE.value, message=ms.error))
            continue
        job = WorkerJob(cache_root=str(Path(cache.root).resolve()), dataset=dataset, model=ms.model,
                        material_ids=todos[ms.model], device=resolved, dtype=dtype, forces=forces,
                        batch_atoms=batch_atoms, torch_threads=torch_threads, min_distance_ang=min_distance_ang,
                        chunk_seconds=5.0, progress_interval_s=0.25, rate_window_s=10.0, run_id=run_id)
        try:
            fin = run_job(job, emit, stop, predictor=pred)
        except SystematicFailure as exc:
            ms.error = str(exc)
            emit(WorkerError(model=ms.model, mode=ms.mode, kind=WorkerErrorKind.SYSTEMATIC_FAILURE.value, message=ms.error))
            continue
        emit(fin)
        ms.workers = 1
        ms.done, ms.ok, ms.failed = fin.done, fin.ok, fin.failed
        ms.eval_s = fin.eval_s
        ms.structures_per_s = fin.structures_per_s
        ms.cancelled = fin.cancelled
        ms.wall_s = time.monotonic() - t0
    summary.cancelled = stop.is_set()
    summary.wall_s = time.monotonic() - t_run
    emit(RunFinished(run_id=run_id, mode=Mode.STATIC.value, cancelled=summary.cancelled, summary=summary.to_dict()))
    return summary


__all__ = ["evaluate_points", "is_loaded", "predictor"]
