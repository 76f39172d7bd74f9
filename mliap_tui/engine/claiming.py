"""Work claiming for the engine: a worker evaluates its materials shard by shard, each under a lease.

The lease mechanics (files, owners, heartbeat, expiry, take-over) are in
:mod:`mliap_tui.cache.claims`; this module decides what a worker does with them:

* :func:`shard_groups` cuts a job's materials into the dataset's shards (fixed ranges of its
  sorted material ids, the same for every run); the runner gives each of a model's workers whole
  shards, so the workers of one run never contend for a shard.
* :class:`ShardQueue` hands the worker its shards in rounds. In a round it tries each pending shard
  once: a shard held by a live owner (another run) is left for a later round; a claimed one is
  checked against the cache *after* the claim (what the previous owner committed is not redone)
  and its missing materials are evaluated. When the round's rows are committed its leases are
  released (and, earlier, each shard as soon as all its rows are committed). If shards held by
  others remain, the worker waits (polling) until they are released, expire or their owner dies,
  then runs another round. Everything is committed and released before it waits, so two workers
  never wait for each other.
* Materials of a claimed shard that another run has committed meanwhile are not evaluated and not
  counted as this worker's: the progress total drops by them (``Progress.skipped``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import polars as pl

from mliap_tui.cache import Cache
from mliap_tui.cache.claims import (
    ClaimBoard,
    Heartbeat,
    Holder,
    LeaseState,
    Owner,
    shard_key,
    shard_size,
)
from mliap_tui.cache.store import collect_fresh
from mliap_tui.core.vocab import Status
from mliap_tui.engine.protocol import Event, Log, WorkerJob

Emit = Callable[[Event], None]


# --------------------------------------------------------------------------------------------
# shards of a dataset
# --------------------------------------------------------------------------------------------


def shard_table(cache: Cache, dataset: str, size: int | None = None) -> tuple[pl.DataFrame, int]:
    """(material_id, shard) of every material of ``dataset``, and the shard size used."""
    ids = cache.scan_materials(dataset).select("material_id").collect()["material_id"].sort()
    size = size or shard_size(len(ids))
    table = pl.DataFrame({"material_id": ids, "shard": (pl.int_range(0, len(ids), eager=True) // size).cast(pl.Int64)})
    return table, size


def shard_groups(cache: Cache, dataset: str, ids: Sequence[str], size: int | None = None) -> list[tuple[int, list[str]]]:
    """``ids`` grouped by dataset shard: [(shard index, ids in their given order)], shards in order.

    Ids that are not in the dataset come last under shard -1 (the worker reports them).
    """
    table, _ = shard_table(cache, dataset, size)
    order = pl.DataFrame({"material_id": list(ids), "__order": pl.int_range(0, len(ids), eager=True)},
                         schema={"material_id": pl.Utf8, "__order": pl.Int64})
    joined = order.join(table, on="material_id", how="left").with_columns(pl.col("shard").fill_null(-1)).sort("__order")
    groups: dict[int, list[str]] = {}
    for mid, k in zip(joined["material_id"].to_list(), joined["shard"].to_list()):
        groups.setdefault(int(k), []).append(mid)
    return sorted(groups.items(), key=lambda kv: (kv[0] < 0, kv[0]))


# --------------------------------------------------------------------------------------------
# the worker's queue
# --------------------------------------------------------------------------------------------


@dataclass
class Shard:
    index: int
    ids: list[str]  # this job's materials in the shard, job order
    key: str = ""
    done: bool = False  # claimed and evaluated (or found complete)
    outstanding: set[str] = field(default_factory=set)  # handed out, not committed yet
    exhausted: bool = False  # every material of the shard was handed out

    def __post_init__(self) -> None:
        self.key = self.key or shard_key(self.index)


def committed_ids(cache: Cache, job: WorkerJob, ids: Sequence[str], since_unix_s: float,
                  weights_fingerprint: str | None = None) -> set[str]:
    """Which of ``ids`` need no evaluation now: an ok row, or a failed row (unless ``retry_failed``,
    where only failures committed since ``since_unix_s``, i.e. by a run retrying them too, count).
    With ``weights_fingerprint`` only rows made with those weights count."""
    wanted = list(ids)

    def build() -> pl.LazyFrame:
        lf = cache.scan_predictions(job.dataset, [job.model], job.mode).filter(pl.col("material_id").is_in(wanted))
        if weights_fingerprint is not None:
            lf = lf.filter(pl.col("weights_fingerprint") == weights_fingerprint)
        return lf.select("material_id", "status", "created_unix_s")

    rows = collect_fresh(build)
    ok = pl.col("status") == Status.OK.value
    done = ok if not job.retry_failed else ok | (pl.col("created_unix_s") >= since_unix_s)
    return set(rows.filter(done)["material_id"].to_list())


class ShardQueue:
    """The shards of one worker's job, claimed one at a time (see the module docstring)."""

    def __init__(self, cache: Cache, job: WorkerJob, ids: Sequence[str], emit: Emit,
                 stop: threading.Event, owner: Owner | None = None, since_unix_s: float | None = None,
                 weights_fingerprint: str | None = None):
        self.cache, self.job, self.emit, self.stop = cache, job, emit, stop
        self.weights_fingerprint = weights_fingerprint  # the loaded model's: rows of other weights do not count
        self.owner = owner or Owner.current(job.run_id, job.worker)
        self.since_unix_s = time.time() if since_unix_s is None else since_unix_s
        self.board = ClaimBoard(cache.claims_dir(job.dataset, job.model, job.mode), self.owner, ttl_s=job.lease_ttl_s)
        groups = shard_groups(cache, job.dataset, ids, job.claim_size)
        self.unknown = [m for k, g in groups if k < 0 for m in g]  # not in the dataset
        self.shards = [Shard(k, g) for k, g in groups if k >= 0]
        self.skipped = 0  # materials of this job committed by another run before this worker got to them
        self._lock = threading.Lock()
        self._heartbeat = Heartbeat(self.board, job.heartbeat_s).start()
        self._waiting_said = ""

    # -- state ------------------------------------------------------------------------------
    @property
    def pending(self) -> list[Shard]:
        return [s for s in self.shards if not s.done]

    # -- a round --------------------------------------------------------------------------------
    def claim_round(self) -> Iterator[tuple[Shard, list[str]]]:
        """(shard, materials to evaluate) for every pending shard this worker can claim now.

        Iterate it fully, hand every material out (:meth:`handed_out`), then call :meth:`end_round`
        once the rows are committed.
        """
        for shard in self.pending:
            if self.stop.is_set():
                return
            lease = self.board.try_claim(shard.key, {"n": len(shard.ids), "first": shard.ids[0], "last": shard.ids[-1]})
            if lease is None:
                continue
            for holder in self.board.taken_over:
                self.emit(Log(model=self.job.model, mode=self.job.mode, worker=self.job.worker, level="warning",
                              message=f"took over {shard.key} from {holder.describe()}: its committed rows are kept, "
                                      "the rest is evaluated here"))
            self.board.taken_over.clear()
            done = committed_ids(self.cache, self.job, shard.ids, self.since_unix_s, self.weights_fingerprint)
            todo = [m for m in shard.ids if m not in done]
            if len(todo) < len(shard.ids):
                self.skipped += len(shard.ids) - len(todo)
            shard.done = True
            with self._lock:
                shard.outstanding = set(todo)
                shard.exhausted = False
            yield shard, todo
            with self._lock:
                shard.exhausted = True
                if not shard.outstanding:
                    self.board.release(shard.key)

    def lost(self, shard: Shard) -> bool:
        """True when the shard's lease was lost (a taker judged this worker dead): stop evaluating it."""
        return shard.key in self.board.lost

    def committed(self, material_ids: Sequence[str]) -> None:
        """Rows of these materials are on disk: release every shard whose rows all are."""
        with self._lock:
            for shard in self.shards:
                if shard.outstanding:
                    shard.outstanding.difference_update(material_ids)
                    if shard.exhausted and not shard.outstanding:
                        self.board.release(shard.key)

    def end_round(self) -> None:
        """Everything of the round is committed (or will be redone): release all leases."""
        with self._lock:
            for shard in self.shards:
                shard.outstanding.clear()
                shard.exhausted = True
            self.board.release_all()

    def wait(self) -> bool:
        """Wait until a pending shard may be claimed (released, expired, owner dead); False if stopped."""
        said = False
        while not self.stop.is_set():
            holders = [(s, self.board.holder(s.key)) for s in self.pending]
            if not holders or any(h.state != LeaseState.LIVE for _, h in holders):
                return True
            if not said:
                self._say_waiting(holders)
                said = True
            self.stop.wait(self.job.claim_poll_s)
        return False

    def _say_waiting(self, holders: list[tuple[Shard, Holder]]) -> None:
        owners = sorted({h.describe() for _, h in holders})
        n = sum(len(s.ids) for s, _ in holders)
        # a warning, so the app shows it too: the run is not stuck, it waits for another one
        self.emit(Log(model=self.job.model, mode=self.job.mode, worker=self.job.worker, level="warning",
                      message=f"waiting for {len(holders)} shard(s) ({n} materials) claimed by another run: "
                              f"{'; '.join(owners[:3])}{' ...' if len(owners) > 3 else ''}; taken over if it stops"))

    def close(self) -> None:
        self._heartbeat.stop()
        self.board.release_all()


__all__ = ["Shard", "ShardQueue", "committed_ids", "shard_groups", "shard_table"]
