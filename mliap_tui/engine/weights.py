"""The worker's side of model trust: load the job's model, check it, and skip what is done.

Called by :func:`mliap_tui.engine.worker.run_job` right after loading, before any structure of
the dataset is evaluated:

1. the weights' identity (``models/identity.py``) is taken from the loaded model's files;
2. the canary check (``models/canary.py``) runs, or its cached result for these weights is
   reused; a failing model raises ``ModelRefused`` unless the job says ``trust_model``;
3. materials already evaluated *with these weights* are dropped from the job (the runner could
   not know the fingerprint when the weights were not on disk before loading).

Every row the worker writes then carries :meth:`ModelCheck.row_columns`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from mliap_tui.cache import Cache
from mliap_tui.engine.protocol import Log, WorkerJob
from mliap_tui.models.canary import ModelCheck, check_model
from mliap_tui.models.identity import resolve_identity


def load_job_predictor(job: WorkerJob) -> Any:
    """The job's model (registry id, plug-in, or ``ase:`` reference), loaded as the job asks."""
    from mliap_tui.models.registry import load_predictor

    return load_predictor(job.model_ref or job.model, device=job.device, dtype=job.dtype, checkpoint=job.checkpoint)


def check_job_model(cache: Cache, job: WorkerJob, predictor: Any, emit: Callable[[Any], None]) -> ModelCheck:
    """Identity + canary of the loaded model (raises ModelRefused; see the module docstring)."""
    identity = resolve_identity(predictor.spec, job.checkpoint)

    def log(level: str, message: str) -> None:
        emit(Log(model=job.model, mode=job.mode, worker=job.worker, level=level, message=message))

    return check_model(cache, predictor, identity, trust=job.trust_model, log=log)


def drop_ids_done(cache: Cache, job: WorkerJob, ids: Sequence[str], fingerprint: str | None,
                  emit: Callable[[Any], None]) -> list[str]:
    """``ids`` without the materials already done with weights ``fingerprint``.

    Only when the runner planned without knowing the weights (``job.weights_fingerprint`` None or
    different): a job the runner planned for these weights is taken as it is.
    """
    ids = list(ids)
    if fingerprint is None or job.weights_fingerprint == fingerprint or not ids:
        return ids
    done = cache.done_keys(job.dataset, job.model, job.mode, include_failed=not job.retry_failed,
                           weights_fingerprint=fingerprint)
    kept = [m for m in ids if m not in done]
    if len(kept) < len(ids):
        emit(Log(model=job.model, mode=job.mode, worker=job.worker, level="info",
                 message=f"{len(ids) - len(kept)} material(s) already evaluated with these weights ({fingerprint[:7]}): skipped"))
    return kept


__all__ = ["check_job_model", "drop_ids_done", "load_job_predictor"]
