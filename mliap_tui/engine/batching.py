"""Atom-count batching, out-of-memory / exception splitting, and the prefetch pipeline.

The pieces, all independent of where results go:

* :func:`make_batches` groups structures until a batch would exceed ``max_atoms`` atoms (the
  budget is read for every new batch, so it can shrink while batches are being built).
* :class:`AdaptiveBatchSize` halves the atom budget after an out-of-memory error and creeps back
  towards the initial budget after a run of successful batches.
* :class:`BatchEvaluator` runs one batch through ``predictor.prepare``/``predictor.run``. When the
  batch raises (out of memory, or any exception, e.g. one malformed structure) it is split in two
  and each half retried, recursively, so a single culprit ends up alone and is recorded as failed
  with its reason while all the others get their energies.
* :class:`Prefetcher` overlaps CPU graph building with inference: a thread builds and prepares
  batch k+1 (and k+2) while the caller runs batch k; the queue between them is bounded.
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from mliap_tui.core.geometry import closest_pair
from mliap_tui.core.vocab import DEFAULT_MIN_DISTANCE_ANG, FailureKind

#: failure kinds recorded on an :class:`Outcome` (see :class:`mliap_tui.core.vocab.FailureKind`)
INVALID = FailureKind.INVALID
UNSUPPORTED = FailureKind.UNSUPPORTED
OOM = FailureKind.OOM
EXCEPTION = FailureKind.EXCEPTION
NON_FINITE = FailureKind.NON_FINITE

MAX_REASON = 300


@dataclass
class Item:
    """One structure to evaluate. ``error`` is set when it failed before reaching the model."""

    index: int
    material_id: str
    n_atoms: int
    atoms: Any = None  # ase.Atoms
    error: str | None = None
    error_kind: str | None = None
    extra: Any = None  # passed through untouched (the worker keeps the MP2020 correction here)


@dataclass
class Outcome:
    item: Item
    prediction: Any = None  # models.base.Prediction when ok
    error: str | None = None
    error_kind: str | None = None
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def one_line(text: str, limit: int = MAX_REASON) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_exception(exc: BaseException) -> str:
    msg = one_line(str(exc))
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def is_oom_error(exc: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError, a RuntimeError saying 'out of memory', or MemoryError."""
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")
    if torch is not None:
        for name in ("OutOfMemoryError",):
            for owner in (torch, getattr(torch, "cuda", None)):
                cls = getattr(owner, name, None) if owner is not None else None
                if isinstance(cls, type) and isinstance(exc, cls):
                    return True
    if isinstance(exc, RuntimeError):
        msg = str(exc).lower()
        return "out of memory" in msg or "cuda_error_out_of_memory" in msg or "failed to allocate" in msg
    return False


def _is_unsupported(exc: BaseException) -> bool:
    from mliap_tui.models.base import UnsupportedElements

    return isinstance(exc, UnsupportedElements)


def item_from_row(
    index: int,
    row: dict[str, Any],
    *,
    unsupported: Callable[[Sequence[str]], list[str]] | None = None,
    model: str = "model",
    min_distance: float = DEFAULT_MIN_DISTANCE_ANG,
    extra: Any = None,
) -> Item:
    """An :class:`Item` from a materials row, with sanity checks.

    Checks: lattice is 3x3 and finite with a non-zero volume, ``frac_coords`` has 3 finite values
    per species, ``n_sites`` agrees, every symbol is an element, no two atoms closer than
    ``min_distance`` Å, and (when ``unsupported`` is given) every element is covered by the model.
    A failing row comes back with ``error`` set instead of raising.
    """
    material_id = str(row.get("material_id"))
    species = row.get("species")
    n = len(species) if species is not None else 0
    item = Item(index=index, material_id=material_id, n_atoms=n, extra=extra)

    def fail(reason: str, kind: str = INVALID) -> Item:
        item.error, item.error_kind = one_line(reason), kind
        return item

    try:
        lat_vals = row.get("lattice_ang")
        frac_vals = row.get("frac_coords")
        if species is None or lat_vals is None or frac_vals is None:
            return fail("malformed structure: missing lattice_ang, species or frac_coords")
        if n == 0:
            return fail("malformed structure: no sites")
        lattice = np.asarray(lat_vals, dtype=float)
        if lattice.size != 9:
            return fail(f"malformed structure: lattice_ang has {lattice.size} values, expected 9")
        lattice = lattice.reshape(3, 3)
        frac = np.asarray(frac_vals, dtype=float).ravel()
        if frac.size != 3 * n:
            return fail(f"malformed structure: frac_coords has {frac.size} values for {n} species (expected {3 * n})")
        frac = frac.reshape(n, 3)
        n_sites = row.get("n_sites")
        if n_sites is not None and int(n_sites) != n:
            return fail(f"malformed structure: n_sites is {n_sites} but there are {n} species")
        if not (np.isfinite(lattice).all() and np.isfinite(frac).all()):
            return fail("malformed structure: non-finite lattice or coordinates")
        volume = abs(float(np.linalg.det(lattice)))
        if volume < 1e-6:
            return fail(f"malformed structure: zero cell volume ({volume:.3g} Å^3)")
        from ase.data import atomic_numbers

        bad = sorted({s for s in species if s not in atomic_numbers or s == "X"})
        if bad:
            return fail(f"malformed structure: unknown element symbol(s) {', '.join(map(str, bad))}")
        if unsupported is not None:
            missing = unsupported(species)
            if missing:
                return fail(f"elements not covered by {model}: {', '.join(missing)}", UNSUPPORTED)
        if min_distance > 0 and n > 0:
            i, j, dmin = closest_pair(lattice, frac, min_distance)
            if dmin < min_distance:
                pair = f"{species[i]}{i} and its own periodic image" if i == j else f"{species[i]}{i} and {species[j]}{j}"
                return fail(f"malformed structure: atoms {dmin:.3f} Å apart ({pair}; overlapping sites, < {min_distance} Å)")
        from ase import Atoms

        item.atoms = Atoms(symbols=list(species), scaled_positions=frac, cell=lattice, pbc=True)
    except Exception as exc:  # noqa: BLE001 - any surprise in a row fails that row only
        return fail(f"malformed structure: {describe_exception(exc)}")
    return item


def make_batches(items: Iterable[Item], max_atoms: int | Callable[[], int]) -> Iterator[list[Item]]:
    """Greedy batches of at most ``max_atoms`` atoms, in input order.

    A structure larger than the budget gets a batch of its own. Items that already failed
    (``item.error``) are yielded alone as soon as they are met (ahead of the batch being
    filled), so the evaluator can pass them straight through.
    ``max_atoms`` may be a callable, read each time a new batch starts.
    """
    budget = max_atoms if callable(max_atoms) else (lambda: max_atoms)
    batch: list[Item] = []
    atoms = 0
    limit = max(1, int(budget()))
    for item in items:
        if item.error is not None:
            yield [item]
            continue
        if batch and atoms + item.n_atoms > limit:
            yield batch
            batch, atoms = [], 0
        if not batch:
            limit = max(1, int(budget()))
        batch.append(item)
        atoms += item.n_atoms
    if batch:
        yield batch


class AdaptiveBatchSize:
    """The atom budget per batch: halved on OOM, grown back by 25% after ``grow_after`` good batches."""

    def __init__(self, initial: int, minimum: int = 1, grow_after: int = 20):
        self.initial = max(1, int(initial))
        self.minimum = max(1, min(int(minimum), self.initial))
        self.current = self.initial
        self.grow_after = grow_after
        self._good = 0
        self._lock = threading.Lock()
        self.ooms = 0

    def __call__(self) -> int:
        return self.current

    def on_oom(self, batch_atoms: int) -> None:
        with self._lock:
            self.ooms += 1
            self._good = 0
            self.current = max(self.minimum, min(self.current, max(1, batch_atoms // 2)))

    def on_success(self) -> None:
        with self._lock:
            self._good += 1
            if self.current < self.initial and self._good >= self.grow_after:
                self._good = 0
                self.current = min(self.initial, max(self.current + 1, int(self.current * 1.25)))


def check_prediction(pred: Any, n_atoms: int, forces: bool, stress: bool) -> str | None:
    """Why a prediction is unusable (non-finite or wrongly shaped), or None when it is fine."""
    energy = getattr(pred, "energy_ev", None)
    try:
        energy = float(energy)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return f"model returned no energy ({energy!r})"
    if not math.isfinite(energy):
        return f"non-finite energy ({energy})"
    if forces:
        f = pred.forces_ev_per_ang
        if f is None:
            return "model returned no forces"
        f = np.asarray(f, dtype=float)
        if f.shape != (n_atoms, 3):
            return f"forces have shape {f.shape}, expected ({n_atoms}, 3)"
        if not np.isfinite(f).all():
            return "non-finite forces"
    if stress:
        s = pred.stress_gpa
        if s is None:
            return "model returned no stress"
        s = np.asarray(s, dtype=float).ravel()
        if s.shape != (6,):
            return f"stress has shape {s.shape}, expected (6,)"
        if not np.isfinite(s).all():
            return "non-finite stress"
    return None


@dataclass
class Prepared:
    """What the prefetch thread hands over: a batch, its prepared form or the error preparing it."""

    batch: list[Item]
    prepared: Any = None
    error: BaseException | None = None
    prepare_s: float = 0.0


class BatchEvaluator:
    """Runs batches through a predictor, splitting on OOM or exception to isolate culprits."""

    def __init__(
        self,
        predictor: Any,
        *,
        forces: bool = False,
        stress: bool = False,
        batch_size: AdaptiveBatchSize | None = None,
        device: str = "cpu",
        on_oom: Callable[[int, int], None] | None = None,
    ):
        self.predictor = predictor
        self.forces, self.stress = forces, stress
        self.batch_size = batch_size or AdaptiveBatchSize(10**9)
        self.device = device
        self.on_oom = on_oom  # called with (batch structures, batch atoms)
        self.splits = 0

    # -- the two halves of a batch; prepare() is what the prefetch thread calls --------------
    def prepare(self, batch: Sequence[Item]) -> Prepared:
        if len(batch) == 1 and batch[0].error is not None:
            return Prepared(list(batch))
        t = time.perf_counter()
        try:
            prepared = self.predictor.prepare([it.atoms for it in batch], forces=self.forces, stress=self.stress)
        except Exception as exc:  # noqa: BLE001 - isolated by splitting in evaluate()
            return Prepared(list(batch), error=exc, prepare_s=time.perf_counter() - t)
        return Prepared(list(batch), prepared=prepared, prepare_s=time.perf_counter() - t)

    def evaluate(self, p: Prepared) -> list[Outcome]:
        batch = p.batch
        if len(batch) == 1 and batch[0].error is not None:
            it = batch[0]
            return [Outcome(it, error=it.error, error_kind=it.error_kind or INVALID)]
        if p.error is not None:
            return self._split(batch, p.error, p.prepare_s)
        t = time.perf_counter()
        try:
            preds = self.predictor.run(p.prepared)
            preds = list(preds)
            if len(preds) != len(batch):
                raise RuntimeError(f"model returned {len(preds)} predictions for {len(batch)} structures")
        except Exception as exc:  # noqa: BLE001 - OOM or a bad structure: split
            del p.prepared
            return self._split(batch, exc, p.prepare_s + time.perf_counter() - t)
        wall = (p.prepare_s + time.perf_counter() - t) / len(batch)
        self.batch_size.on_success()
        out = []
        for it, pred in zip(batch, preds):
            reason = check_prediction(pred, it.n_atoms, self.forces, self.stress)
            if reason is None:
                out.append(Outcome(it, prediction=pred, wall_s=wall))
            else:
                out.append(Outcome(it, error=reason, error_kind=NON_FINITE, wall_s=wall))
        return out

    def evaluate_batch(self, batch: Sequence[Item]) -> list[Outcome]:
        """prepare + evaluate, synchronously."""
        return self.evaluate(self.prepare(batch))

    def _split(self, batch: list[Item], exc: BaseException, spent_s: float) -> list[Outcome]:
        oom = is_oom_error(exc)
        n_atoms = sum(it.n_atoms for it in batch)
        if oom:
            self._free_device_memory()
            self.batch_size.on_oom(n_atoms)
            if self.on_oom is not None:
                self.on_oom(len(batch), n_atoms)
        if len(batch) == 1:
            it = batch[0]
            if oom:
                reason = f"out of memory on {self.device} for {it.n_atoms} atoms alone ({describe_exception(exc)})"
                return [Outcome(it, error=one_line(reason), error_kind=OOM, wall_s=spent_s)]
            if _is_unsupported(exc):
                return [Outcome(it, error=one_line(str(exc)) or describe_exception(exc), error_kind=UNSUPPORTED, wall_s=spent_s)]
            return [Outcome(it, error=describe_exception(exc), error_kind=EXCEPTION, wall_s=spent_s)]
        self.splits += 1
        half = len(batch) // 2
        if oom:
            # split by atoms so both halves shrink even when sizes are uneven
            cum = np.cumsum([it.n_atoms for it in batch])
            half = int(np.clip(np.searchsorted(cum, cum[-1] / 2), 1, len(batch) - 1))
        return self.evaluate_batch(batch[:half]) + self.evaluate_batch(batch[half:])

    def _free_device_memory(self) -> None:
        torch = sys.modules.get("torch")
        if torch is not None and str(self.device).startswith("cuda"):
            try:
                torch.cuda.empty_cache()
            except Exception:  # noqa: BLE001 - best effort
                pass


_DONE = object()


class Prefetcher:
    """Iterate over prepared batches, preparing up to ``depth`` batches ahead in a thread.

    ``batches`` is consumed by the thread (so building the items, validation included, also
    happens off the main thread). ``depth == 0`` prepares synchronously. Always ``close()``
    (or use as a context manager) so the thread stops when the consumer stops early.
    """

    def __init__(self, batches: Iterable[list[Item]], prepare: Callable[[list[Item]], Prepared], depth: int = 2):
        self._batches = batches
        self._prepare = prepare
        self.depth = depth
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._thread: threading.Thread | None = None
        if depth > 0:
            self._thread = threading.Thread(target=self._produce, name="mliap-prefetch", daemon=True)
            self._thread.start()

    def _put(self, obj: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(obj, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for batch in self._batches:
                if self._stop.is_set():
                    return
                if not self._put(self._prepare(batch)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._put(("__error__", exc))
            return
        self._put(_DONE)

    def __iter__(self) -> Iterator[Prepared]:
        if self._thread is None:
            for batch in self._batches:
                if self._stop.is_set():
                    return
                yield self._prepare(batch)
            return
        while True:
            obj = self._queue.get()
            if obj is _DONE:
                return
            if isinstance(obj, tuple) and len(obj) == 2 and obj[0] == "__error__":
                raise obj[1]
            yield obj

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            # drain so a blocked put() returns
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=30)

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
