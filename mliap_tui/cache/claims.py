"""Work claims: lease files that let several runs share one cache without doing the same work twice.

Two ``mliap-tui run`` on the same cache (two processes, or two machines on one shared file
system) split a model's missing pairs instead of both computing them. The unit of work is a
**shard**: a fixed range of the dataset's material ids (sorted), the same for every run
(:func:`shard_size`). Before a worker evaluates a shard it claims it with a **lease file**::

    <cache>/datasets/<dataset>/claims/<model>/<mode>/shard-00017.000000.lease

The number after the key is the lease's **generation**. A claim creates the next generation's
file atomically (written to a temporary file, then hard-linked into place, which fails when the
name exists: the NFS-safe form of ``O_CREAT | O_EXCL``; plain ``O_EXCL`` where links are not
supported), so of two processes creating the same generation exactly one succeeds. The holder of
a shard is the owner of its highest generation. The file holds the owner (host, pid, process
start time, boot id, PID namespace, run id, worker), a heartbeat time and a time to live. The
owner's :class:`Heartbeat` thread rewrites it every ``heartbeat_s``; when the owner's rows are
committed it deletes it.

Another run that finds a shard's lease

* held by a **live** owner skips that shard (and comes back to it later);
* **expired** (no heartbeat for ``ttl_s``: the owner's machine or process died) or held by a
  **dead** process on this same machine (pid gone or reused; known at once, no wait) takes it over
  by creating the next generation (one taker wins) and deleting the older ones. The new owner
  then evaluates only what the cache does not hold yet, so whatever the dead owner committed
  stays, and nothing is evaluated twice. No file is ever renamed or replaced by anyone but its
  owner, so a live lease cannot be moved away by a racing taker.

Clocks: expiry compares the heartbeat written by one machine with the clock of another, so the
machines sharing a cache need synchronised clocks (NTP); ``ttl_s`` (default 2 minutes) is far
larger than any usual skew. A live owner that cannot write its heartbeat for longer than
``ttl_s`` (a frozen process or file server) may lose its shard to a taker; it notices at its next
heartbeat (a higher generation exists) and stops evaluating that shard, so at most the rows in
flight are computed twice, and the newest-wins read of the cache still shows each pair once.

Pure standard library; no engine or model code.
"""

from __future__ import annotations

import errno
import json
import math
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable, Iterable

#: seconds without a heartbeat after which a lease is free to take over
DEFAULT_TTL_S = 120.0
#: seconds between heartbeats
DEFAULT_HEARTBEAT_S = 15.0
#: shard size bounds (materials per shard), see :func:`shard_size`
MIN_SHARD = 16
MAX_SHARD = 1000
#: a dataset is cut into about this many shards (within the bounds above)
TARGET_SHARDS = 64
LEASE_SUFFIX = ".lease"


# --------------------------------------------------------------------------------------------
# shards
# --------------------------------------------------------------------------------------------


def shard_size(n_materials: int) -> int:
    """Materials per shard for a dataset of ``n_materials``: about 64 shards, 16 to 1000 each.

    Depends on the dataset only, so every run on it cuts the same shards.
    """
    return int(min(MAX_SHARD, max(MIN_SHARD, math.ceil(max(0, n_materials) / TARGET_SHARDS))))


def shard_key(index: int) -> str:
    """The lease name of shard ``index`` (``shard-00017``)."""
    return f"shard-{int(index):05d}"


# --------------------------------------------------------------------------------------------
# owners
# --------------------------------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def process_start_ticks(pid: int) -> str:
    """The start time of process ``pid`` in clock ticks since boot (/proc), '' where unknown."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return ""
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    fields = text.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


@dataclass(frozen=True)
class Owner:
    """Who holds a lease. ``boot_id``, ``pid_ns`` and ``started`` tell whether ``pid`` can be
    checked from here (same machine, same boot, same PID namespace) and was not reused."""

    host: str
    pid: int
    run_id: str = ""
    worker: int = 0
    boot_id: str = ""
    pid_ns: str = ""
    started: str = ""

    @classmethod
    def current(cls, run_id: str = "", worker: int = 0) -> "Owner":
        pid = os.getpid()
        return cls(host=socket.gethostname(), pid=pid, run_id=run_id, worker=worker,
                   boot_id=_read("/proc/sys/kernel/random/boot_id"), pid_ns=_pid_namespace(),
                   started=process_start_ticks(pid))

    def same_machine(self, other: "Owner") -> bool:
        """True when ``other``'s pid can be looked up here (same host, boot and PID namespace)."""
        return bool(self.boot_id and self.pid_ns) and (self.host, self.boot_id, self.pid_ns) == (
            other.host, other.boot_id, other.pid_ns)

    def describe(self) -> str:
        run = f", run {self.run_id}" if self.run_id else ""
        return f"{self.host} pid {self.pid}{run}"


def process_alive(pid: int, started: str = "") -> bool:
    """Is ``pid`` running here (and, when ``started`` is given, the same process, not a reuse)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    if started:
        now = process_start_ticks(pid)
        if now and now != started:
            return False
    return True


# --------------------------------------------------------------------------------------------
# leases
# --------------------------------------------------------------------------------------------


class LeaseState(StrEnum):
    FREE = "free"  # no lease file
    LIVE = "live"  # held by an owner with a recent heartbeat
    EXPIRED = "expired"  # no heartbeat for ttl_s
    DEAD = "dead"  # its owner's process is gone (same machine)


@dataclass
class Lease:
    """The content of one lease file (JSON)."""

    key: str
    token: str
    owner: Owner
    created_unix_s: float
    heartbeat_unix_s: float
    ttl_s: float
    note: dict[str, Any] = field(default_factory=dict)
    generation: int = 0

    @property
    def expires_unix_s(self) -> float:
        return self.heartbeat_unix_s + self.ttl_s

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Lease":
        data = json.loads(text)
        owner = Owner(**{k: v for k, v in data["owner"].items() if k in Owner.__dataclass_fields__})
        return cls(key=str(data["key"]), token=str(data["token"]), owner=owner,
                   created_unix_s=float(data["created_unix_s"]), heartbeat_unix_s=float(data["heartbeat_unix_s"]),
                   ttl_s=float(data["ttl_s"]), note=dict(data.get("note") or {}), generation=int(data.get("generation", 0)))


@dataclass(frozen=True)
class Holder:
    """What a look at a lease file found: its state and, when readable, the lease."""

    state: LeaseState
    lease: Lease | None = None
    reason: str = ""

    def describe(self) -> str:
        who = self.lease.owner.describe() if self.lease is not None else "an unknown owner"
        return f"{who} ({self.state.value}{': ' + self.reason if self.reason else ''})"


def judge(lease: Lease | None, me: Owner, now: float, mtime: float | None = None, ttl_s: float = DEFAULT_TTL_S) -> Holder:
    """The state of a lease as seen by ``me`` at ``now``.

    An unreadable file (being written by a peer without hard links, or damaged) is live for
    ``ttl_s`` after its modification time, expired after that.
    """
    if lease is None:
        if mtime is not None and now > mtime + ttl_s:
            return Holder(LeaseState.EXPIRED, None, "unreadable lease file, not touched for its time to live")
        return Holder(LeaseState.LIVE, None, "lease file being written")
    owner = lease.owner
    if me.same_machine(owner) and not process_alive(owner.pid, owner.started):
        return Holder(LeaseState.DEAD, lease, f"process {owner.pid} is gone")
    if now > lease.expires_unix_s:
        return Holder(LeaseState.EXPIRED, lease, f"no heartbeat for {now - lease.heartbeat_unix_s:.0f} s")
    return Holder(LeaseState.LIVE, lease)


def _link_exclusive(data: bytes, path: Path) -> bool:
    """Create ``path`` holding ``data`` if it does not exist; True on success. Atomic: readers never
    see a partial lease (hard link of a complete temporary file; O_EXCL where links fail)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
        try:  # no hard links here: O_EXCL (a reader may see the file before its content)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return True
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


class ClaimBoard:
    """The leases of one folder (one dataset, model and mode), as seen by one owner.

    ``try_claim`` returns a :class:`Lease` (now held) or None (held by a live owner: see
    :meth:`holder`); ``renew`` keeps held leases alive; ``release`` gives one back.
    Thread-safe: a heartbeat thread may renew while the owner claims and releases.
    """

    def __init__(self, folder: Path, owner: Owner, ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] = time.time):
        self.folder = Path(folder)
        self.owner = owner
        self.ttl_s = float(ttl_s)
        self.clock = clock
        self.held: dict[str, Lease] = {}
        self.lost: set[str] = set()
        self.taken_over: list[Holder] = []  # stale leases this board took over
        self._lock = threading.RLock()

    def path(self, key: str, generation: int = 0) -> Path:
        return self.folder / f"{key}.{generation:06d}{LEASE_SUFFIX}"

    def generations(self, key: str) -> list[int]:
        """The generations of ``key`` with a file, lowest first."""
        out = []
        for p in self.folder.glob(f"{key}.*{LEASE_SUFFIX}"):
            gen = p.name[len(key) + 1 : -len(LEASE_SUFFIX)]
            if gen.isdigit():
                out.append(int(gen))
        return sorted(out)

    def read(self, key: str, generation: int | None = None) -> tuple[int | None, Lease | None, float | None]:
        """(generation, lease, mtime) of ``key``'s highest generation (or of ``generation``):
        (None, None, None) when there is no file, a None lease when it is unreadable."""
        for _ in range(3):  # the top file may be deleted while we look: look again
            gens = [generation] if generation is not None else self.generations(key)
            if not gens:
                return None, None, None
            path = self.path(key, gens[-1])
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                if generation is not None:
                    return None, None, None
                continue
            try:
                return gens[-1], Lease.from_json(path.read_text()), mtime
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError):
                return gens[-1], None, mtime
        return None, None, None

    def holder(self, key: str) -> Holder:
        gen, lease, mtime = self.read(key)
        if gen is None:
            return Holder(LeaseState.FREE)
        return judge(lease, self.owner, self.clock(), mtime, self.ttl_s)

    def try_claim(self, key: str, note: dict[str, Any] | None = None) -> Lease | None:
        """Claim ``key``: create its next lease generation when it is free or its holder is stale.
        None when a live owner holds it."""
        with self._lock:
            if key in self.held:
                return self.held[key]
            self.folder.mkdir(parents=True, exist_ok=True)
            for _ in range(8):  # a few rounds of races at most
                gen, lease, mtime = self.read(key)
                found = None
                if gen is not None:
                    found = judge(lease, self.owner, self.clock(), mtime, self.ttl_s)
                    if found.state == LeaseState.LIVE:
                        return None
                target = 0 if gen is None else gen + 1
                now = self.clock()
                mine = Lease(key=key, token=uuid.uuid4().hex, owner=self.owner, created_unix_s=now,
                             heartbeat_unix_s=now, ttl_s=self.ttl_s, note=dict(note or {}), generation=target)
                if not _link_exclusive(mine.to_json().encode(), self.path(key, target)):
                    continue  # another claimer made that generation first: look again
                if self.generations(key)[-1:] != [target]:
                    # a higher generation appeared (a taker judged this one stale already): not ours
                    self._unlink_if_mine(key, mine)
                    return None
                for old in self.generations(key):  # the stale generations are no one's any more
                    if old < target:
                        self.path(key, old).unlink(missing_ok=True)
                self.held[key] = mine
                self.lost.discard(key)
                if found is not None:
                    self.taken_over.append(found)
                return mine
            return None

    def _unlink_if_mine(self, key: str, lease: Lease) -> None:
        _, current, _ = self.read(key, lease.generation)
        if current is not None and current.token == lease.token:
            self.path(key, lease.generation).unlink(missing_ok=True)

    def renew(self, key: str) -> bool:
        """Write a fresh heartbeat into ``key``'s lease; False (and ``key`` in :attr:`lost`) when it is no longer ours."""
        with self._lock:
            lease = self.held.get(key)
            if lease is None:
                return False
            gens = self.generations(key)
            if gens and gens[-1] > lease.generation:  # taken over: this owner was judged stale
                self._lose(key)
                return False
            lease.heartbeat_unix_s = self.clock()
            path = self.path(key, lease.generation)
            if lease.generation not in gens:  # its file was removed: ours only if it can be made again
                made = _link_exclusive(lease.to_json().encode(), path)
                if not made or self.generations(key)[-1] != lease.generation:
                    if made:
                        self._unlink_if_mine(key, lease)
                    self._lose(key)
                    return False
                return True
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
            try:
                tmp.write_bytes(lease.to_json().encode())
                os.replace(tmp, path)  # only this owner ever writes this generation's file
            except OSError:
                tmp.unlink(missing_ok=True)  # a failed heartbeat is retried next time
            return True

    def _lose(self, key: str) -> None:
        self.held.pop(key, None)
        self.lost.add(key)

    def renew_all(self) -> list[str]:
        """Renew every held lease; the keys lost since the last call."""
        with self._lock:
            for key in list(self.held):
                self.renew(key)
            return sorted(self.lost)

    def release(self, key: str) -> None:
        """Give ``key`` back (delete its file if it is still ours)."""
        with self._lock:
            lease = self.held.pop(key, None)
            if lease is not None:
                self._unlink_if_mine(key, lease)

    def release_all(self) -> None:
        with self._lock:
            for key in list(self.held):
                self.release(key)

    def leases(self) -> list[tuple[str, Holder]]:
        """(key, holder) of every claimed key in the folder (for ``cache info`` and waiting messages)."""
        if not self.folder.is_dir():
            return []
        keys = sorted({p.name[: -len(LEASE_SUFFIX)].rsplit(".", 1)[0] for p in self.folder.glob(f"*{LEASE_SUFFIX}")})
        return [(k, self.holder(k)) for k in keys]


class Heartbeat:
    """A daemon thread that renews a board's leases every ``interval_s`` until :meth:`stop`."""

    def __init__(self, boards: Iterable[ClaimBoard] | ClaimBoard, interval_s: float = DEFAULT_HEARTBEAT_S):
        self.boards = [boards] if isinstance(boards, ClaimBoard) else list(boards)
        self.interval_s = max(0.05, float(interval_s))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mliap-lease-heartbeat", daemon=True)

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            for board in self.boards:
                try:
                    board.renew_all()
                except Exception:  # noqa: BLE001 - a failed heartbeat is retried next time
                    pass

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def __enter__(self) -> "Heartbeat":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


__all__ = [
    "DEFAULT_HEARTBEAT_S", "DEFAULT_TTL_S", "ClaimBoard", "Heartbeat", "Holder", "Lease", "LeaseState", "Owner",
    "judge", "process_alive", "process_start_ticks", "shard_key", "shard_size",
]
