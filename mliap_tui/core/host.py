"""Facts about the machine this process runs on (no psutil needed)."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


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


@contextmanager
def blas_threads(n: int = 1) -> Iterator[None]:
    """Limit the BLAS/LAPACK libraries loaded so far (numpy's and scipy's OpenBLAS) to ``n`` threads.

    Relaxations call LAPACK on tiny matrices thousands of times; OpenBLAS's default thread pool
    then spins a second core for nothing (measured on 2 cores: ASE's FrechetCellFilter maths took
    2x the CPU time, 5x under load). torch's own threads are not touched. Needs threadpoolctl
    (a dependency); without it this does nothing.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a worker venv without it
        yield
        return
    try:
        import scipy.linalg  # noqa: F401 - loads scipy's own OpenBLAS, so that the limit reaches it
    except ImportError:  # pragma: no cover
        pass
    with threadpool_limits(limits=max(1, int(n)), user_api="blas"):
        yield


__all__ = ["blas_threads", "free_disk_bytes", "usable_cores"]
