"""Unreadable cache files are set aside, not fatal.

A truncated or corrupt parquet file (a crashed copy, a flaky network file system) would make every
scan of its dataset fail. Before files are scanned, :func:`check_parquet` looks at their frame
(the ``PAR1`` magic at both ends and a footer that fits: a few bytes read per file, memoised by
path, size and modification time); a file that fails is moved to ``<cache>/quarantine/`` with a
JSON note (which dataset/model/mode, when, the error, how many rows it held when that is known) and
the rest is read. ``run`` recomputes the quarantined rows, since they are no longer in the cache.

Notes made in this process are collected in :data:`QUARANTINED` so the command line and the app
can tell the user what happened.
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

MAGIC = b"PAR1"
QUARANTINE_DIR = "quarantine"
_ROWS_IN_NAME = re.compile(r"-n(\d+)\.parquet$")


@dataclass(frozen=True)
class QuarantineNote:
    original: str  # where the file was
    moved_to: str  # where it is now ("" if it could not be moved)
    dataset: str
    model: str | None
    mode: str | None
    error: str
    rows: int | None  # rows it held, when its name records them
    unix_s: float

    def describe(self) -> str:
        what = "/".join(x for x in (self.dataset, self.model, self.mode) if x)
        rows = f"{self.rows:,} rows" if self.rows is not None else "an unknown number of rows"
        where = f"moved to {self.moved_to}" if self.moved_to else "left in place (could not be moved)"
        return f"unreadable cache file {Path(self.original).name} ({what}, {rows}): {self.error}; {where}"


#: every note made by this process, in order
QUARANTINED: list[QuarantineNote] = []


def rows_in_name(path: Path) -> int | None:
    """Row count recorded in a chunk file name (``part-...-n200.parquet``), if any."""
    m = _ROWS_IN_NAME.search(path.name)
    return int(m.group(1)) if m else None


@lru_cache(maxsize=65536)
def _check_cached(path: str, size: int, mtime_ns: int) -> str | None:
    if size < 12:
        return f"truncated parquet file ({size} bytes)"
    with open(path, "rb") as fh:
        head = fh.read(4)
        fh.seek(size - 8)
        tail = fh.read(8)
    if head != MAGIC:
        return "not a parquet file (no PAR1 magic at the start)"
    if tail[4:] != MAGIC:
        return "truncated or corrupt parquet file (no PAR1 magic at the end)"
    (footer_len,) = struct.unpack("<I", tail[:4])
    if footer_len + 12 > size:
        return f"corrupt parquet footer ({footer_len} bytes claimed in a {size}-byte file)"
    return None


def check_parquet(path: Path) -> str | None:
    """Why ``path`` cannot be a complete parquet file, or None when its frame looks whole."""
    try:
        st = path.stat()
        return _check_cached(str(path), st.st_size, st.st_mtime_ns)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"


def quarantine(root: Path, path: Path, dataset: str, model: str | None, mode: str | None, error: str) -> QuarantineNote:
    """Move ``path`` into ``<root>/quarantine/`` with a JSON note; record and return the note."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target_dir = root / QUARANTINE_DIR
    try:
        rel = path.relative_to(root / "datasets")
        flat = "__".join(rel.parts)
    except ValueError:
        flat = path.name
    target = target_dir / f"{stamp}__{flat}"
    moved = ""
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        moved = str(target)
    except FileNotFoundError:  # another process moved it first
        moved = str(target)
    except OSError:
        moved = ""
    note = QuarantineNote(str(path), moved, dataset, model, mode, error, rows_in_name(path), time.time())
    if moved:
        try:
            Path(moved + ".json").write_text(json.dumps(asdict(note), indent=2))
        except OSError:
            pass
    QUARANTINED.append(note)
    return note


def drain() -> list[QuarantineNote]:
    """The notes made since the last call (and forget them)."""
    out = list(QUARANTINED)
    QUARANTINED.clear()
    return out


__all__ = ["QUARANTINED", "QuarantineNote", "check_parquet", "drain", "quarantine", "rows_in_name"]
