"""One model in one process: evaluate a job's materials and commit the results to the cache.

Run as ``python -m mliap_tui.engine.worker --job JOB.json`` (``--job -`` reads stdin). The job
and event formats are in :mod:`mliap_tui.engine.protocol` and ``docs/ENGINE_PROTOCOL.md``.

This module only needs mliap_tui's data/cache/models/symmetry modules and numpy, polars, ase
(pymatgen/spglib as the adapters and symmetry need them), never textual or rich, so a model
family with clashing dependencies can run it from its own venv.

Static mode: rows are turned into ASE Atoms and checked (:func:`batching.item_from_row`), grouped
by atom count, prepared (graph building) in a prefetch thread while the previous batch runs on
the device, and evaluated with OOM/exception splitting. Relax mode: FIRE on a Fréchet cell filter
(ASE's algorithm and convergence rule), by default for many structures at once with in-flight
batching (:mod:`mliap_tui.engine.relax`, ``relax_engine="batched"``), or one structure at a time
through the family's own ASE calculator (``relax_engine="ase"``, the reference); then the relaxed
cell's space group and DOF are analysed.

Rows are committed in chunks (every ``chunk_rows`` structures or ``chunk_seconds``) with
``Cache.write_prediction_chunk`` (atomic rename): a worker killed with SIGKILL loses at most the
rows of the chunk in flight; SIGTERM/SIGINT stop it cleanly after committing what it has.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import polars as pl

from mliap_tui.cache import PREDICTIONS_SCHEMA, Cache, CacheWriteError
from mliap_tui.core.host import (
    blas_threads,
    quick_exit_once_done,
    undo_malloc_trim_env,
    usable_cores,
)
from mliap_tui.core.units import GPA_PER_EV_PER_ANG3
from mliap_tui.core.vocab import (
    FailureKind,
    Mode,
    RelaxEngine,
    RelaxStatus,
    Status,
    WorkerErrorKind,
)
from mliap_tui.engine import batching
from mliap_tui.engine.batching import (
    EXCEPTION,
    OOM,
    AdaptiveBatchSize,
    BatchEvaluator,
    Item,
    Outcome,
    Prefetcher,
    describe_exception,
    is_oom_error,
    item_from_row,
    make_batches,
    one_line,
)
from mliap_tui.engine.claiming import ShardQueue
from mliap_tui.engine.progress import ProgressTracker, peak_memory
from mliap_tui.engine.protocol import (
    EXIT_BAD_JOB,
    EXIT_ERROR,
    EXIT_MODEL_UNAVAILABLE,
    EXIT_OK,
    ChunkCommitted,
    Event,
    Log,
    ProtocolError,
    WorkerError,
    WorkerFinished,
    WorkerJob,
    WorkerStarted,
)
from mliap_tui.engine.relax import BatchedRelaxer, DivergenceLimits, RelaxResult
from mliap_tui.engine.weights import check_job_model, drop_ids_done, load_job_predictor
from mliap_tui.models.base import Prediction, RelaxedPrediction, mp2020_energy

#: materials columns a worker reads
INPUT_COLUMNS = ["material_id", "n_sites", "lattice_ang", "species", "frac_coords", "mp2020_correction_per_atom"]

#: fraction of a model's GPU atom budget used per batch on CPU: CPU throughput is flat from a
#: few hundred atoms on, and smaller batches let the prefetch thread overlap graph building
#: with inference sooner (and give finer progress)
CPU_BATCH_FRACTION = 1 / 16


class SystematicFailure(RuntimeError):
    """Too many structures in a row failed with an exception: something is wrong with the model."""


Emit = Callable[[Event], None]


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------


def job_ids(cache: Cache, job: WorkerJob) -> list[str]:
    """The job's materials: its list (an id listed twice is evaluated once), or, when it gives
    none, every material of the dataset not done yet (honouring ``retry_failed``)."""
    if job.material_ids is not None:
        return list(dict.fromkeys(job.material_ids))
    # weights unknown before loading: nothing is dropped here (engine.weights.drop_ids_done does it)
    done = set() if job.weights_fingerprint is None else cache.done_keys(
        job.dataset, job.model, job.mode, include_failed=not job.retry_failed, weights_fingerprint=job.weights_fingerprint)
    ids = cache.scan_materials(job.dataset).select("material_id").collect()["material_id"].sort().to_list()
    return [m for m in ids if m not in done]


def atom_counts(cache: Cache, dataset: str, ids: Sequence[str]) -> dict[str, int]:
    """n_sites of each of ``ids`` found in the materials table (ids not there are absent)."""
    wanted = pl.DataFrame({"material_id": list(ids)}, schema={"material_id": pl.Utf8})
    found = wanted.lazy().join(cache.scan_materials(dataset).select("material_id", "n_sites"), on="material_id").collect()
    return dict(zip(found["material_id"].to_list(), found["n_sites"].fill_null(0).to_list()))


def load_rows(cache: Cache, dataset: str, material_ids: Sequence[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The materials rows of ``material_ids``, in that order, and the requested ids missing from the table."""
    lf = cache.scan_materials(dataset)
    cols = [c for c in INPUT_COLUMNS if c in lf.collect_schema().names()]
    lf = lf.select(cols)
    wanted = list(dict.fromkeys(material_ids))
    ids = pl.DataFrame({"material_id": wanted, "__order": np.arange(len(wanted))}, schema={"material_id": pl.Utf8, "__order": pl.Int64})
    df = ids.lazy().join(lf.filter(pl.col("material_id").is_in(wanted)), on="material_id", how="left").sort("__order").collect()
    present = df["species"].is_not_null() if "species" in df.columns else pl.Series([False] * len(df))
    missing = df.filter(~present)["material_id"].to_list()
    return df.filter(present).drop("__order").to_dicts(), missing


def default_batch_atoms(spec: Any, device: str) -> int:
    base = int(getattr(spec, "default_batch_atoms", 2048) or 2048)
    return base if str(device).startswith("cuda") else max(64, int(base * CPU_BATCH_FRACTION))


def default_torch_threads(prefetch: bool = True) -> int:
    """Intra-op threads for CPU inference: every usable core, like torch's own default.

    Measured on a 2-core machine (CHGNet 0.3.0, 200 MP-20 crystals): quiet, 2 threads ran at
    ~78 structures/s against ~54 with 1 thread (the prefetch thread costs nothing measurable);
    but with other processes competing for the cores, 1 thread was 2-3x faster than 2 (OpenMP
    threads that lose their core spin at barriers). Pass ``torch_threads`` on a shared machine.
    """
    return max(1, usable_cores())


def set_torch_threads(n: int | None, prefetch: bool = True) -> int | None:
    """Set torch's intra-op threads (default: :func:`default_torch_threads`)."""
    if n is None:
        n = default_torch_threads(prefetch)
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(max(1, int(n)))
    return torch.get_num_threads()


# --------------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------------


class ChunkWriter:
    """Buffers result rows and commits them as one parquet chunk every N rows or T seconds."""

    def __init__(self, cache: Cache, job: WorkerJob, emit: Emit, on_commit: Callable[[list[str]], None] | None = None):
        self.cache, self.job, self.emit = cache, job, emit
        self.on_commit = on_commit  # told the material_ids of every committed chunk
        self.rows: list[dict[str, Any]] = []
        self.last_commit = time.monotonic()
        self.paths: list[Path] = []
        self.committed = 0

    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        self.rows.extend(rows)

    def discard(self) -> None:
        """Drop the buffered rows (after a failed write: they are evaluated again next run)."""
        self.rows = []

    def maybe_flush(self) -> None:
        if len(self.rows) >= self.job.chunk_rows or (
            self.rows and time.monotonic() - self.last_commit >= self.job.chunk_seconds
        ):
            self.flush()

    def flush(self) -> None:
        self.last_commit = time.monotonic()
        if not self.rows:
            return
        rows, self.rows = self.rows, []
        now = time.time()
        for r in rows:
            r["created_unix_s"] = now
        df = rows_to_frame(rows)
        # a CacheWriteError propagates: these rows are not on disk, and nothing claims they are
        path = self.cache.write_prediction_chunk(self.job.dataset, self.job.model, self.job.mode, df)
        self.paths.append(path)
        self.committed += len(rows)
        if self.on_commit is not None:
            self.on_commit([r["material_id"] for r in rows])
        n_failed = sum(1 for r in rows if r["status"] != Status.OK)
        self.emit(
            ChunkCommitted(model=self.job.model, mode=self.job.mode, worker=self.job.worker, path=str(path),
                           rows=len(rows), ok=len(rows) - n_failed, failed=n_failed)
        )


def rows_to_frame(rows: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """Prediction rows (dicts, any subset of PREDICTION_COLUMNS) as a frame of PREDICTIONS_SCHEMA."""
    return pl.DataFrame({name: [r.get(name) for r in rows] for name in PREDICTIONS_SCHEMA}, schema=PREDICTIONS_SCHEMA)


class RowMaker:
    """Turns outcomes into prediction rows (PREDICTION_COLUMNS) for one job."""

    def __init__(self, job: WorkerJob, convention: str, device_label: str, run_id: str,
                 weights: dict[str, Any] | None = None):
        self.job, self.convention, self.device_label, self.run_id = job, convention, device_label, run_id
        self.weights = dict(weights or {})  # weights_fingerprint, package_version, trust_override

    def base(self, item: Item) -> dict[str, Any]:
        return {
            "material_id": item.material_id,
            "model": self.job.model,
            "mode": self.job.mode,
            "n_sites": item.n_atoms,
            "device": self.device_label,
            "dtype": self.job.dtype,
            "run_id": self.run_id,
            **self.weights,
        }

    def failed(self, item: Item, reason: str, wall_s: float = 0.0) -> dict[str, Any]:
        return {**self.base(item), "status": Status.FAILED.value, "error": one_line(reason), "wall_s": wall_s}

    def ok(self, item: Item, energy_ev: float, wall_s: float, forces: Any = None, stress: Any = None, **extra: Any) -> dict[str, Any]:
        native = float(energy_ev) / item.n_atoms
        row = {
            **self.base(item),
            "status": Status.OK.value,
            "error": None,
            "e_per_atom_pred_native": native,
            "e_per_atom_pred_mp2020": mp2020_energy(native, self.convention, item.extra),
            "wall_s": wall_s,
        }
        if self.job.forces and forces is not None:
            row["forces_pred_ev_per_ang"] = np.asarray(forces, dtype=float).ravel().tolist()
        if self.job.stress and stress is not None:
            row["stress_pred_gpa"] = np.asarray(stress, dtype=float).ravel().tolist()
        row.update(extra)
        return row

    def from_outcome(self, o: Outcome) -> dict[str, Any]:
        if not o.ok:
            return self.failed(o.item, o.error or "failed", o.wall_s)
        p = o.prediction
        extra = p.relaxed_columns() if isinstance(p, RelaxedPrediction) else {}
        return self.ok(o.item, p.energy_ev, o.wall_s, p.forces_ev_per_ang, p.stress_gpa, **extra)


# --------------------------------------------------------------------------------------------
# the job
# --------------------------------------------------------------------------------------------


class _Streak:
    """Holds back rows of structures that failed with an exception while they come in a row.

    When the streak reaches ``limit`` the run is aborted and those rows are dropped: a model that
    raises on everything must not mark a dataset as failed. Any success releases them.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.rows: list[dict[str, Any]] = []
        self.last_reason = ""

    def feed(self, kind: str | None, row: dict[str, Any], writer: ChunkWriter) -> None:
        if self.limit > 0 and kind in (EXCEPTION, OOM):
            self.rows.append(row)
            self.last_reason = row.get("error") or ""
            if len(self.rows) >= self.limit:
                raise SystematicFailure(
                    f"{len(self.rows)} structures in a row failed with an exception (last: {self.last_reason}); "
                    "stopped without recording them"
                )
            return
        if kind is None:
            self.release(writer)
        writer.add([row])

    def release(self, writer: ChunkWriter) -> None:
        if self.rows:
            writer.add(self.rows)
            self.rows = []


def run_job(job: WorkerJob, emit: Emit, stop: threading.Event | None = None, predictor: Any = None) -> WorkerFinished:
    """Evaluate ``job``; events go to ``emit``. Used by the worker process and usable in-process.

    ``predictor`` (optional) replaces ``load_predictor(job.model, ...)``, e.g. to reuse a loaded
    model. Raises ModelUnavailable, SystematicFailure or FileNotFoundError (unknown dataset).
    """
    job.validate()
    stop = stop or threading.Event()
    t_start = time.monotonic()
    cache = Cache(Path(job.cache_root))
    ids = job_ids(cache, job)
    sizes = atom_counts(cache, job.dataset, ids)
    missing = [m for m in ids if m not in sizes]
    if missing:
        emit(Log(model=job.model, mode=job.mode, worker=job.worker, level="warning",
                 message=f"{len(missing)} material id(s) not in dataset {job.dataset!r}, skipped: {', '.join(missing[:5])}"))
        ids = [m for m in ids if m in sizes]

    threads = set_torch_threads(job.torch_threads, prefetch=job.prefetch > 0) if job.device == "cpu" or job.torch_threads else None
    t_load = time.monotonic()
    if predictor is None:
        emit(Log(model=job.model, mode=job.mode, worker=job.worker, level="info",
                 message=f"loading {job.model} on {job.device_label or job.device} ({job.dtype}) for {len(ids)} structures"))
        predictor = load_job_predictor(job)
    check = check_job_model(cache, job, predictor, emit)  # weights identity + canary: raises ModelRefused
    ids = drop_ids_done(cache, job, ids, check.identity.fingerprint, emit)
    load_s = time.monotonic() - t_load
    spec = predictor.spec
    device = str(getattr(predictor, "device", job.device))
    device_label = job.device_label or device
    run_id = job.run_id or f"worker-{os.getpid()}-{int(time.time())}"
    batch_atoms = job.batch_atoms or default_batch_atoms(spec, device)

    total = len(ids)
    atoms_total = sum(sizes[m] for m in ids)
    emit(WorkerStarted(model=job.model, mode=job.mode, worker=job.worker, run_id=run_id, pid=os.getpid(),
                       python=sys.executable, device=device_label, dtype=job.dtype, total=total,
                       atoms_total=atoms_total, batch_atoms=batch_atoms, load_s=load_s, torch_threads=threads,
                       weights_fingerprint=check.identity.fingerprint, canary=check.canary.summary(),
                       trust_override=check.trust_override))

    tracker = ProgressTracker(model=job.model, mode=job.mode, total=total, atoms_total=atoms_total,
                              device=device_label, worker=job.worker, window_s=job.rate_window_s,
                              interval_s=job.progress_interval_s, memory_device=device)
    # the job's materials are evaluated shard by shard, each claimed first (engine/claiming.py)
    shards = ShardQueue(cache, job, ids, emit, stop, since_unix_s=job.since_unix_s,
                        weights_fingerprint=check.identity.fingerprint)
    writer = ChunkWriter(cache, job, emit, on_commit=shards.committed)
    maker = RowMaker(job, spec.energy_convention, device_label, run_id, check.row_columns())
    streak = _Streak(job.max_consecutive_errors)

    def items() -> Iterator[Item]:
        """One round: the materials of every shard this worker can claim now."""
        index = 0
        for shard, todo in shards.claim_round():
            if len(todo) < len(shard.ids):
                left = set(todo)
                tracker.skip(len(shard.ids) - len(todo), sum(sizes[m] for m in shard.ids if m not in left))
            rows, _ = load_rows(cache, job.dataset, todo) if todo else ([], [])
            for row in rows:
                if stop.is_set():
                    return
                if shards.lost(shard):
                    emit(Log(model=job.model, mode=job.mode, worker=job.worker, level="warning",
                             message=f"lost the lease of {shard.key} (no heartbeat for too long); "
                                     "its remaining materials are left to the run that took it over"))
                    break
                yield item_from_row(index, row, unsupported=spec.unsupported, model=job.model,
                                    min_distance=job.min_distance_ang, extra=row.get("mp2020_correction_per_atom"))
                index += 1

    def record(outcomes: Sequence[Outcome]) -> None:
        n_ok = 0
        failures = []
        for o in outcomes:
            streak.feed(o.error_kind, maker.from_outcome(o), writer)
            if o.ok:
                n_ok += 1
            else:
                failures.append((o.item.material_id, o.error or "failed"))
        tracker.record(ok=n_ok, failed=len(failures), atoms=sum(o.item.n_atoms for o in outcomes), failures=failures)
        writer.maybe_flush()
        if tracker.due():
            emit(tracker.event())

    sizer = AdaptiveBatchSize(batch_atoms, minimum=1)
    tracker.batch_atoms = batch_atoms

    def on_oom(n_structures: int, n_atoms: int) -> None:
        emit(Log(model=job.model, mode=job.mode, worker=job.worker, level="warning",
                 message=f"out of memory on a batch of {n_structures} structures / {n_atoms} atoms: "
                         f"splitting; batch budget now {sizer.current} atoms"))

    def structures() -> Iterator[tuple[Item, Any]]:
        """Items for the batched relaxer; those that failed before the model are recorded as met."""
        for item in items():
            if item.error is not None:
                record([Outcome(item, error=item.error, error_kind=item.error_kind)])
            else:
                yield item, item.atoms

    def run_round() -> None:
        if job.mode == Mode.STATIC:
            with Prefetcher(make_batches(items(), sizer), evaluator.prepare, depth=job.prefetch) as prefetch:
                for prepared in prefetch:
                    outcomes = evaluator.evaluate(prepared)
                    tracker.batch_atoms = sizer.current
                    record(outcomes)
                    if stop.is_set():
                        break
        elif job.relax_engine == RelaxEngine.ASE:
            with blas_threads(1):
                for item in items():
                    outcome = relax_one(item, calc, job, device, stop)
                    if outcome is None:  # cancelled mid-relaxation: not recorded, redone next run
                        break
                    record([outcome])
                    if stop.is_set():
                        break
        else:
            with blas_threads(1):
                # structures in flight when `stop` is set are not recorded: the next run redoes them
                for result in relaxer.run(structures(), stop=stop):
                    tracker.batch_atoms = sizer.current
                    record([relaxed_outcome(result, job)])

    t_eval = time.monotonic()
    try:
        if job.mode == Mode.STATIC:
            evaluator = BatchEvaluator(predictor, forces=job.forces, stress=job.stress, batch_size=sizer,
                                       device=device, on_oom=on_oom)
        elif job.relax_engine == RelaxEngine.ASE:
            calc = predictor.ase_calculator()
        else:
            relaxer = BatchedRelaxer(predictor, fmax_ev_per_ang=job.relax_fmax, max_steps=job.relax_max_steps,
                                     batch_size=sizer, device=device, on_oom=on_oom,
                                     limits=DivergenceLimits(min_distance_ang=job.min_distance_ang))
        while True:
            run_round()
            streak.release(writer)
            writer.flush()
            shards.end_round()
            # shards held by another run are left: wait until they are released or taken over
            if stop.is_set() or not shards.pending or not shards.wait():
                break
    except CacheWriteError:
        writer.discard()  # the disk refused a chunk: claim nothing more, the next run redoes it
        raise
    finally:
        # commit whatever is evaluated, also on SystematicFailure (its streak rows stay out)
        try:
            writer.flush()
        finally:
            shards.close()
    eval_s = time.monotonic() - t_eval
    if tracker.emitted_done != tracker.done or tracker.skipped:
        emit(tracker.event())
    mem, kind = peak_memory(device)
    return WorkerFinished(
        model=job.model, mode=job.mode, worker=job.worker, done=tracker.done, total=tracker.total, ok=tracker.ok,
        failed=tracker.failed, atoms_done=tracker.atoms_done, wall_s=time.monotonic() - t_start, eval_s=eval_s,
        structures_per_s=tracker.done / eval_s if eval_s > 0 and tracker.done else None,
        atoms_per_s=tracker.atoms_done / eval_s if eval_s > 0 and tracker.done else None,
        cancelled=stop.is_set() and tracker.done < tracker.total, device=device_label, peak_memory_bytes=mem,
        memory_kind=kind, skipped=tracker.skipped,
    )


def relaxed_outcome(result: RelaxResult, job: WorkerJob) -> Outcome:
    """A batched relaxation's result as an Outcome (``result.key`` is the Item) with its symmetry."""
    item = result.key
    if not result.ok:
        return Outcome(item, error=one_line(result.reason or "relaxation failed"),
                       error_kind=result.failure_kind or FailureKind.EXCEPTION, wall_s=result.wall_s)
    prediction = RelaxedPrediction(
        energy_ev=float(result.energy_ev), forces_ev_per_ang=result.forces_ev_per_ang if job.forces else None,
        stress_gpa=result.stress_gpa if job.stress else None, lattice_ang=result.cell_ang,
        frac_coords=result.frac_coords, steps=result.steps, engine=RelaxEngine.BATCHED.value,
        converged=result.status == RelaxStatus.CONVERGED, fmax_ev_per_ang=result.fmax_ev_per_ang,
    )
    add_relaxed_symmetry(prediction, item.atoms.get_chemical_symbols(), job.symprec_ang, item.material_id)
    return Outcome(item, prediction=prediction, wall_s=result.wall_s)


def relax_one(item: Item, calc: Any, job: WorkerJob, device: str, stop: threading.Event | None = None) -> Outcome | None:
    """ASE's FIRE(FrechetCellFilter) relaxation of one structure (None when ``stop`` interrupts it).

    The reference path (``relax_engine="ase"``). The outcome's prediction is a
    :class:`RelaxedPrediction` (the relaxed cell and its symmetry).
    """
    if item.error is not None:
        return Outcome(item, error=item.error, error_kind=item.error_kind)
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    t = time.perf_counter()
    atoms = item.atoms
    try:
        atoms.calc = calc
        filt = FrechetCellFilter(atoms)
        opt = FIRE(filt, logfile=None)
        converged = False
        for converged in opt.irun(fmax=job.relax_fmax, steps=job.relax_max_steps):
            if stop is not None and stop.is_set():
                return None
        energy = float(atoms.get_potential_energy())
        forces = atoms.get_forces() if job.forces else None
        stress = atoms.get_stress(voigt=True) * GPA_PER_EV_PER_ANG3 if job.stress else None
        fmax = float(np.sqrt((filt.get_forces() ** 2).sum(axis=1)).max())
        steps = int(opt.nsteps)
    except Exception as exc:  # noqa: BLE001 - one structure fails, the run goes on
        kind = OOM if is_oom_error(exc) else EXCEPTION
        reason = f"relaxation failed: {describe_exception(exc)}"
        return Outcome(item, error=reason, error_kind=kind, wall_s=time.perf_counter() - t)
    finally:
        atoms.calc = None
    wall = time.perf_counter() - t
    reason = batching.check_prediction(Prediction(energy, forces, stress), item.n_atoms, job.forces, job.stress)
    if reason is not None:
        return Outcome(item, error=f"after relaxation: {reason}", error_kind=batching.NON_FINITE, wall_s=wall)
    result = RelaxedPrediction(
        energy_ev=energy, forces_ev_per_ang=forces, stress_gpa=stress,
        lattice_ang=np.asarray(atoms.cell.array, dtype=float),
        frac_coords=np.asarray(atoms.get_scaled_positions(wrap=False), dtype=float), steps=steps,
        engine=RelaxEngine.ASE.value, converged=bool(converged), fmax_ev_per_ang=fmax,
    )
    add_relaxed_symmetry(result, atoms.get_chemical_symbols(), job.symprec_ang, item.material_id)
    return Outcome(item, prediction=result, wall_s=wall)


def add_relaxed_symmetry(result: RelaxedPrediction, species: Sequence[str], symprec_ang: float, material_id: str) -> None:
    """Fill the relaxed cell's space group and DOF (left empty, with a note on stderr, if spglib fails)."""
    try:
        from mliap_tui.symmetry import analyze_cell

        info = analyze_cell(result.lattice_ang, species, result.frac_coords, symprec_ang=symprec_ang)
        result.spacegroup_number = int(info.spacegroup_number)
        result.total_dof = int(info.total_dof)
    except Exception as exc:  # noqa: BLE001 - symmetry is a bonus; the energy stands
        print(f"symmetry analysis of relaxed {material_id} failed: {describe_exception(exc)}", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# the process
# --------------------------------------------------------------------------------------------


class EventWriter:
    """Writes events as JSON lines to a file object; a closed pipe sets ``broken``."""

    def __init__(self, stream: Any, on_broken: Callable[[], None] | None = None):
        self.stream = stream
        self.lock = threading.Lock()
        self.broken = False
        self.on_broken = on_broken

    def __call__(self, event: Event) -> None:
        if self.broken:
            return
        line = event.to_json() + "\n"
        with self.lock:
            try:
                self.stream.write(line)
                self.stream.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.broken = True
                if self.on_broken is not None:
                    self.on_broken()


def _die_with_parent() -> None:
    """Linux: get SIGTERM when the parent dies (the runner was killed), so no orphan keeps going."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:  # noqa: BLE001 - best effort
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mliap_tui.engine.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--job", required=True, help="job JSON file, or - for stdin")
    parser.add_argument("--die-with-parent", action="store_true", help="stop when the parent process dies (Linux)")
    args = parser.parse_args(argv)
    quick_exit_once_done()  # a process of its own: no final garbage collection at exit
    undo_malloc_trim_env()  # e.g. started inside a Dask task (--python-for), whose nanny set MALLOC_TRIM_THRESHOLD_

    # stdout carries events only: keep a private handle on it, send fd 1 (library prints) to stderr
    events_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    stop = threading.Event()
    emit = EventWriter(os.fdopen(events_fd, "w", buffering=1, encoding="utf-8"), on_broken=stop.set)

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    parent = os.getppid()
    if args.die_with_parent:
        _die_with_parent()
        if os.getppid() != parent:
            return EXIT_ERROR

    job_model, job_mode, job_worker = "", "static", 0
    try:
        text = sys.stdin.read() if args.job == "-" else Path(args.job).read_text()
        job = WorkerJob.from_json(text)
        job_model, job_mode, job_worker = job.model, job.mode, job.worker
    except (OSError, ProtocolError) as exc:
        emit(WorkerError(kind=WorkerErrorKind.BAD_JOB, message=f"bad job: {one_line(str(exc))}"))
        return EXIT_BAD_JOB

    from mliap_tui.models.base import ModelUnavailable

    def error(kind: WorkerErrorKind, message: str) -> None:
        emit(WorkerError(model=job_model, mode=job_mode, worker=job_worker, kind=kind, message=one_line(message, 1000)))

    from mliap_tui.models.canary import ModelRefused

    try:
        finished = run_job(job, emit, stop)
    except CacheWriteError as exc:
        error(WorkerErrorKind.WRITE_FAILED, str(exc))
        return EXIT_ERROR
    except ModelRefused as exc:
        error(WorkerErrorKind.MODEL_REFUSED, str(exc))
        return EXIT_MODEL_UNAVAILABLE
    except ModelUnavailable as exc:
        error(WorkerErrorKind.MODEL_UNAVAILABLE, str(exc))
        return EXIT_MODEL_UNAVAILABLE
    except SystematicFailure as exc:
        error(WorkerErrorKind.SYSTEMATIC_FAILURE, f"{job.model}: {exc}")
        return EXIT_ERROR
    except (FileNotFoundError, KeyError, ValueError) as exc:
        traceback.print_exc(file=sys.stderr)
        error(WorkerErrorKind.BAD_JOB, str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc))
        return EXIT_BAD_JOB
    except Exception as exc:  # noqa: BLE001 - report, keep the traceback on stderr
        traceback.print_exc(file=sys.stderr)
        error(WorkerErrorKind.EXCEPTION, f"{job.model}: {describe_exception(exc)}")
        return EXIT_ERROR
    emit(finished)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
