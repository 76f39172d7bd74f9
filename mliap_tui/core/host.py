"""Facts about the machine this process runs on (no psutil needed)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask; all cores where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def free_disk_bytes(path: str | Path) -> int | None:
    """Free bytes on the file system holding ``path`` (its nearest existing parent); None if unknown."""
    p = Path(path).resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


__all__ = ["free_disk_bytes", "usable_cores"]
