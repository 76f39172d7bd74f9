"""A real cache for the study tests (``study dof``, the Study screen), built once and reused.

The first 24 records of the shipped 400-crystal MP sample, keeping cells of at most 8 atoms (the
real import pipeline: DFT formation energy, Ehull, MP2020 corrections, symmetry, DOF), then REAL
CHGNet 0.3.0 predictions through the real engine: static single points on every crystal and
FIRE relaxations (ASE path, at most 200 steps) on all of them. The relaxed cells are compared
with the DFT structures once here (``analysis.relax_geometry``), so a screen opened on this cache
shows no progress line. Lives in ``$TMPDIR/mliap-tui-study-cache-v<N>-<uid>``, rebuilt only when
missing (a file lock keeps parallel test runs from building it twice); ``conftest.py`` serves it
as the session fixture ``study_cache``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from support import build_once

from mliap_tui.cache import Cache

FIXTURE_VERSION = 1
DATASET = "study"
MODEL = "chgnet-0.3.0"
N_RECORDS = 24
MAX_ATOMS = 8


def cache_root() -> Path:
    return Path(tempfile.gettempdir()) / f"mliap-tui-study-cache-v{FIXTURE_VERSION}-{os.getuid()}"


def build_cache(root: Path) -> Cache:
    from mliap_tui.analysis.relax_geometry import update_relax_geometry
    from mliap_tui.data.importer import import_dataset
    from mliap_tui.data.structures import CellLimits
    from mliap_tui.engine.runner import run_evaluation

    cache = Cache(root)
    import_dataset("sample", DATASET, cache=cache, limit=N_RECORDS, limits=CellLimits(max_atoms=MAX_ATOMS), n_jobs=1)
    for mode in ("static", "relax"):
        summary = run_evaluation(cache, DATASET, [MODEL], mode=mode, device="cpu", torch_threads=1,
                                 relax_max_steps=200)
        if not summary.ok:
            raise RuntimeError(f"study fixture: {mode} run failed: {summary.errors}")
    update_relax_geometry(cache, DATASET, n_jobs=1)
    return cache


def get_cache() -> Cache:
    return Cache(build_once(cache_root(), build_cache))


def copy_cache(dest: Path) -> Cache:
    """A private copy of the fixture cache (for tests that write to it)."""
    shutil.copytree(get_cache().root, dest, ignore=shutil.ignore_patterns(".complete"))
    return Cache(dest)


if __name__ == "__main__":
    print(get_cache().root)
