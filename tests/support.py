"""Helpers shared by the tests (imported by conftest.py and by test modules; holds no tests).

Reference data beyond what the repository ships lives in ``../shared/data`` next to a checkout
(CI has it; a fresh clone does not). ``SHARED_DATA_DIR`` is that folder, or None when it is absent
or hidden with ``MLIAP_TUI_SHARED_DATA=none`` (how ``.ci/run`` replays a fresh clone);
``MLIAP_TUI_SHARED_DATA=/path`` points elsewhere. Tests that need it use :func:`needs_shared`,
which skips with the reason when the files are not there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
FIXTURES = TESTS_DIR / "fixtures"
REPO_DIR = TESTS_DIR.parent


def _shared_data_dir() -> Path | None:
    env = os.environ.get("MLIAP_TUI_SHARED_DATA")
    if env is not None:
        if env.strip().lower() in ("", "none", "0", "off"):
            return None
        return Path(env).expanduser()
    candidate = REPO_DIR.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


SHARED_DATA_DIR: Path | None = _shared_data_dir()


def shared_path(*parts: str) -> Path | None:
    """A file or folder of the shared reference data, or None when it is not available."""
    if SHARED_DATA_DIR is None:
        return None
    path = SHARED_DATA_DIR.joinpath(*parts)
    return path if path.exists() else None


def shared_models_dir() -> Path | None:
    """``../shared/models`` (real checkpoints for tests), or None."""
    if SHARED_DATA_DIR is None:
        return None
    path = SHARED_DATA_DIR.parent / "models"
    return path if path.is_dir() else None


def needs_shared(*relpaths: str) -> pytest.MarkDecorator:
    """Skip unless every ``relpath`` exists under the shared data folder (reason says which)."""
    missing = [p for p in relpaths if shared_path(*p.split("/")) is None]
    where = SHARED_DATA_DIR or "../shared/data (absent, or hidden by MLIAP_TUI_SHARED_DATA=none)"
    return pytest.mark.skipif(bool(missing), reason=f"needs shared reference data {', '.join(missing)} under {where}")


def require_shared(*relpaths: str) -> Path:
    """Inside a test or fixture: the path of ``relpaths[0]``, or skip naming what is missing."""
    for rel in relpaths:
        if shared_path(*rel.split("/")) is None:
            pytest.skip(f"needs shared reference data {rel} (../shared/data is absent here)")
    return shared_path(*relpaths[0].split("/"))  # type: ignore[return-value]


# ---- real crystals the repository ships --------------------------------------------------------


def sample_records() -> list[dict]:
    """The shipped 400-crystal MP sample as CSV records (material_id, cif, DFT values...)."""
    import csv
    import gzip

    from mliap_tui.core.resources import sample_materials_path

    with gzip.open(sample_materials_path(), "rt", newline="") as fh:
        return list(csv.DictReader(fh))


def sample_structures(n: int, max_sites: int = 12, skip: int = 0) -> list[tuple[str, object]]:
    """(material_id, pymatgen Structure) of the first ``n`` shipped sample crystals with at most
    ``max_sites`` sites, after skipping ``skip`` records."""
    import warnings

    from pymatgen.core import Structure

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, rec in enumerate(sample_records()):
            if k < skip:
                continue
            s = Structure.from_str(rec["cif"], fmt="cif")
            if len(s) > max_sites:
                continue
            out.append((rec["material_id"], s))
            if len(out) == n:
                break
    return out


def sample_rows(n: int, max_sites: int = 12, skip: int = 0, **extra: object) -> list[dict]:
    """Materials rows (structure columns + ``extra``) of :func:`sample_structures`."""
    from mliap_tui.data.structures import structure_columns

    return [{"material_id": mid, **extra, **structure_columns(s)} for mid, s in sample_structures(n, max_sites, skip)]


def sample_atoms(n: int, max_sites: int = 12, skip: int = 0) -> list:
    """ASE Atoms of :func:`sample_structures`."""
    from pymatgen.io.ase import AseAtomsAdaptor

    return [AseAtomsAdaptor.get_atoms(s) for _, s in sample_structures(n, max_sites, skip)]


# ---- caches built once per machine -----------------------------------------------------------


def build_once(root: Path, build) -> Path:
    """Run ``build(root)`` unless ``root`` holds a finished build (a ``.complete`` marker); a file
    lock keeps parallel test runs from building it twice, and a half-built folder is rebuilt."""
    import fcntl
    import shutil
    import time

    done = root / ".complete"
    if done.exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(str(root) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not done.exists():
                if root.exists():
                    shutil.rmtree(root)
                build(root)
                done.write_text(time.ctime())
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return root


# ---- processes of a run ------------------------------------------------------------------------


def wait_for(predicate, timeout: float, what: str) -> None:
    """Poll ``predicate`` every 50 ms until it is true; fail naming ``what`` after ``timeout`` s."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def workers_of(cache_root: Path) -> list[int]:
    """Worker processes of runs on ``cache_root`` (the runner marks them in their environment)."""
    mark = f"MLIAP_TUI_WORKER_CACHE={Path(cache_root).resolve()}".encode()
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            if b"mliap_tui.engine.worker" in cmdline and mark in environ.split(b"\0"):
                out.append(int(pid))
    return out


def copy_dataset(template_root: Path, root: Path, dataset: str = "sample"):
    """A fresh cache at ``root`` holding ``dataset`` copied from the cache at ``template_root``
    (materials and import report only: no predictions, no claims)."""
    from mliap_tui.cache import Cache

    cache = Cache(root)
    cache.dataset_dir(dataset).mkdir(parents=True)
    for name in ("materials.parquet", "import_report.json"):
        (cache.dataset_dir(dataset) / name).write_bytes((Path(template_root) / "datasets" / dataset / name).read_bytes())
    return cache
