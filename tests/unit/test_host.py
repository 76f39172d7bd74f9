"""Process-level settings of core/host.py, each checked in a fresh interpreter (they change a process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support import REPO_DIR

# allocate and free a 4 MiB array 200 times and count the page faults that took
PAGE_FAULTS = r"""
import json, resource, sys
import numpy as np
from mliap_tui.core.host import undo_malloc_trim_env
undone = undo_malloc_trim_env() if sys.argv[1] == "undo" else False
np.ones(1 << 19)  # the first one faults its pages in whatever the settings
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    a = np.ones(1 << 19)
    del a
print(json.dumps({"undone": undone, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def run_python(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k not in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")}
    e["PYTHONPATH"] = os.pathsep.join([str(REPO_DIR)] + ([e["PYTHONPATH"]] if e.get("PYTHONPATH") else []))
    e.update(env or {})
    return subprocess.run([sys.executable, "-c", code, *args], env=e, capture_output=True, text=True, timeout=120,
                          check=True)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings (Linux)")
def test_undoing_dasks_malloc_trim_setting_lets_freed_memory_be_reused():
    """Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536: every large allocation is then
    a fresh mmap whose pages fault in again. After undo_malloc_trim_env they are reused."""
    dask_env = {"MALLOC_TRIM_THRESHOLD_": "65536"}
    as_dask_left_it = json.loads(run_python(PAGE_FAULTS, "keep", env=dask_env).stdout)
    undone = json.loads(run_python(PAGE_FAULTS, "undo", env=dask_env).stdout)
    untouched = json.loads(run_python(PAGE_FAULTS, "undo").stdout)

    assert as_dask_left_it["faults"] > 200 * 200  # hundreds of fresh pages per 4 MiB array, every time
    assert undone["undone"] is True
    assert undone["faults"] < as_dask_left_it["faults"] / 20
    assert untouched["undone"] is False  # no variable set: glibc's own dynamic thresholds are left alone


def test_quick_exit_freezes_the_heap_after_the_other_exit_handlers_and_still_flushes_output():
    code = r"""
import atexit, gc, sys
atexit.register(lambda: sys.stdout.write(f"frozen at exit: {gc.get_freeze_count()}\n"))  # runs after ours (LIFO)
from mliap_tui.core.host import quick_exit_once_done
quick_exit_once_done()
quick_exit_once_done()  # once is enough
print("before exit: %d" % gc.get_freeze_count())
sys.stdout.write("last line, still in the pipe's buffer\n")
"""
    out = run_python(code).stdout.splitlines()
    assert out[:2] == ["before exit: 0", "last line, still in the pipe's buffer"]
    assert out[2].startswith("frozen at exit: ") and int(out[2].rsplit(": ", 1)[1]) > 1000
