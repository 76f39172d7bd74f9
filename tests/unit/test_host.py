"""Process-level settings of core/host.py, each checked in a fresh interpreter (they change a process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support import REPO_DIR

# glibc's own count of mmapped blocks while one 1 MiB block is held (after one was freed, which
# lets glibc's dynamic threshold rise above 1 MiB, as a long-running process's would)
MMAPPED_BLOCKS = r"""
import ctypes, json, sys
from mliap_tui.core.host import undo_malloc_trim_env
undone = undo_malloc_trim_env() if sys.argv[1] == "undo" else False
libc = ctypes.CDLL("libc.so.6")
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.free(libc.malloc(1 << 20))
before = libc.mallinfo2().hblks
block = libc.malloc(1 << 20)
print(json.dumps({"undone": undone, "mmapped": libc.mallinfo2().hblks - before}))
libc.free(block)
"""


def run_python(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k not in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")}
    e["PYTHONPATH"] = os.pathsep.join([str(REPO_DIR)] + ([e["PYTHONPATH"]] if e.get("PYTHONPATH") else []))
    e.update(env or {})
    return subprocess.run([sys.executable, "-c", code, *args], env=e, capture_output=True, text=True, timeout=120,
                          check=True)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings (Linux)")
def test_undoing_dasks_malloc_trim_setting_keeps_tensor_sized_blocks_off_mmap():
    """Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which pins glibc's mmap
    threshold at 128 KiB: every larger block is a fresh mmap whose pages fault in again (the models
    ran 1.7x slower). After undo_malloc_trim_env a 1 MiB block comes from the heap, as without it."""
    dask_env = {"MALLOC_TRIM_THRESHOLD_": "65536"}
    as_dask_left_it = json.loads(run_python(MMAPPED_BLOCKS, "keep", env=dask_env).stdout)
    undone = json.loads(run_python(MMAPPED_BLOCKS, "undo", env=dask_env).stdout)
    untouched = json.loads(run_python(MMAPPED_BLOCKS, "undo").stdout)
    plain = json.loads(run_python(MMAPPED_BLOCKS, "keep").stdout)

    assert as_dask_left_it == {"undone": False, "mmapped": 1}
    assert undone == {"undone": True, "mmapped": 0}
    assert untouched == {"undone": False, "mmapped": 0} == plain  # no variable: glibc's own thresholds, left alone


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
