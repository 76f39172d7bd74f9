"""Faults a real user hits, replayed: a full disk, a read-only cache, a truncated chunk or materials
file, a killed worker or runner, Ctrl-C. After each, nothing claimed is missing, nothing is counted
that is not on disk, and the next run ends with every (material, model) pair exactly once.

Real parts throughout: the shipped sample, CHGNet 0.3.0, worker subprocesses, the CLI as a
subprocess. A real full disk / read-only file system needs a tmpfs mount (root with
CAP_SYS_ADMIN); where that is refused the same faults are injected at the write call.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pytest
from support import REPO_DIR
from support import wait_for as _wait_for
from support import workers_of as _workers_of

from mliap_tui.cache import Cache, CacheWriteError
from mliap_tui.cache.quarantine import drain
from mliap_tui.data.importer import import_dataset
from mliap_tui.engine import protocol
from mliap_tui.engine.worker import run_job

MODEL = "chgnet-0.3.0"
N = 12


def make_cache(root: Path, n: int = N) -> Cache:
    cache = Cache(root)
    import_dataset("sample", cache=cache, limit=n, n_jobs=1)
    return cache


def raw_rows(cache: Cache, dataset: str = "sample") -> pl.DataFrame:
    """Every committed row, not deduplicated: what is physically on disk."""
    files = cache.prediction_files(dataset)
    return pl.read_parquet(files) if files else pl.DataFrame({"material_id": []}, schema={"material_id": pl.Utf8})


def assert_each_pair_once(cache: Cache, n: int = N) -> None:
    raw = raw_rows(cache)
    counts = raw.group_by("material_id").len()
    assert raw.height == n and counts["len"].max() == 1, counts.filter(pl.col("len") > 1)
    assert set(raw["material_id"]) == set(cache.scan_materials("sample").collect()["material_id"])


def no_temp_files(root: Path) -> bool:
    return not [p for p in root.rglob("*.tmp")]


def cli(*args: str, cache: Path, timeout: int = 300, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mliap_tui", f"--cache={cache}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO_DIR,
                          env={**os.environ, "COLUMNS": "200"}, **kw)


@pytest.fixture(scope="module")
def predictor():
    import torch

    from mliap_tui.models.registry import load_predictor

    torch.set_num_threads(1)
    return load_predictor(MODEL)


def job(cache: Cache, **kw) -> protocol.WorkerJob:
    """One structure per batch and a chunk every 4 rows: 3 chunks of 4 rows for the 12 crystals."""
    return protocol.WorkerJob(cache_root=str(cache.root), dataset="sample", model=MODEL, batch_atoms=1, chunk_rows=4,
                              chunk_seconds=600, torch_threads=1, **kw)


# ---- writes that fail ------------------------------------------------------------------------------


def test_disk_full_during_a_commit_claims_nothing_and_the_rerun_completes(tmp_path, monkeypatch, predictor):
    """ENOSPC on the second chunk: the worker stops with one line naming the path and the reason;
    only the first chunk's rows are counted (they are on disk), no temporary file is left, and the
    next run computes exactly the rest."""
    from mliap_tui.core import files

    cache = make_cache(tmp_path)
    real_open, calls = open, {"n": 0}

    def full_disk_open(path, mode="r", *a, **kw):
        if "predictions" in str(path) and "w" in mode:
            calls["n"] += 1
            if calls["n"] >= 2:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, mode, *a, **kw)

    monkeypatch.setattr(files, "open", full_disk_open, raising=False)
    events: list = []
    with pytest.raises(CacheWriteError) as err:
        run_job(job(cache), events.append, predictor=predictor)
    message = str(err.value)
    assert "No space left on device [ENOSPC]" in message and "predictions" in message and "free some space" in message
    committed = [e for e in events if isinstance(e, protocol.ChunkCommitted)]
    assert sum(e.rows for e in committed) == raw_rows(cache).height == 4
    assert no_temp_files(tmp_path)

    monkeypatch.undo()
    finished = run_job(job(cache), events.append, predictor=predictor)
    assert finished.done == N - 4
    assert_each_pair_once(cache)


@contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); the injected-fault test covers it")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(path: Path) -> Path:
    filler = path / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * (1 << 16))
                fh.flush()
        except OSError:
            pass
    return filler


@pytest.mark.slow
def test_real_full_disk_then_read_only_cache_via_the_cli(tmp_path):
    """The cache on a small tmpfs: filled, `run` exits 1 with one line and counts nothing it did
    not write; remounted read-only, the same; with space back, the rerun completes exactly once."""
    with tmpfs(tmp_path / "small", "6m") as root:
        make_cache(root)
        filler = fill(root)
        out = cli("run", "--data", "sample", "--models", MODEL, cache=root)
        text = " ".join((out.stdout + out.stderr).split())
        assert out.returncode == 1, text[-2000:]
        assert "No space left on device [ENOSPC]" in text and "free some space" in text
        assert raw_rows(Cache(root)).height == 0 and "│ 0 │" in out.stdout.replace(" ", "").replace("│0│", "│ 0 │")
        assert no_temp_files(root)
        filler.unlink()

        subprocess.run(["mount", "-o", "remount,ro", str(root)], check=True)
        out = cli("run", "--data", "sample", "--models", MODEL, cache=root)
        text = " ".join((out.stdout + out.stderr).split())
        assert out.returncode == 1 and "Read-only file system [EROFS]" in text, text[-2000:]
        subprocess.run(["mount", "-o", "remount,rw", str(root)], check=True)

        out = cli("run", "--data", "sample", "--models", MODEL, cache=root)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        assert_each_pair_once(Cache(root))


def test_a_vanished_cache_folder_stops_the_run_cleanly(tmp_path, predictor):
    cache = make_cache(tmp_path)
    events: list = []

    def delete_on_first_chunk(ev):
        events.append(ev)
        if isinstance(ev, protocol.ChunkCommitted):
            import shutil

            shutil.rmtree(cache.dataset_dir("sample"))

    with pytest.raises(CacheWriteError, match="vanished"):
        run_job(job(cache), delete_on_first_chunk, predictor=predictor)
    assert not cache.dataset_dir("sample").exists()  # not silently re-created without its materials


# ---- reads that meet a bad file -------------------------------------------------------------------------


def test_a_truncated_chunk_is_quarantined_and_recomputed(tmp_path, predictor):
    cache = make_cache(tmp_path)
    run_job(job(cache), lambda ev: None, predictor=predictor)
    files = cache.prediction_files("sample")
    assert len(files) == 3
    victim = files[1]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    drain()

    out = cli("summary", "--data", "sample", cache=tmp_path)
    text = " ".join((out.stdout + out.stderr).split())
    assert out.returncode == 0, text[-2000:]
    assert "unreadable cache file" in text and "sample/chgnet-0.3.0/static, 4 rows" in text
    assert "computes them again" in text
    moved = list((tmp_path / "quarantine").glob("*.parquet"))
    assert len(moved) == 1 and not victim.exists()
    note = json.loads(Path(str(moved[0]) + ".json").read_text())
    assert note["dataset"] == "sample" and note["model"] == MODEL and note["mode"] == "static" and note["rows"] == 4
    assert "PAR1" in note["error"]

    out = cli("run", "--data", "sample", "--models", MODEL, cache=tmp_path)
    assert out.returncode == 0
    assert_each_pair_once(cache)


def test_a_truncated_materials_file_asks_for_a_reimport_and_keeps_predictions(tmp_path, predictor):
    cache = make_cache(tmp_path)
    run_job(job(cache), lambda ev: None, predictor=predictor)
    path = cache.materials_path("sample")
    path.write_bytes(path.read_bytes()[:1000])
    out = cli("summary", "--data", "sample", cache=tmp_path)
    text = " ".join((out.stdout + out.stderr).split())
    assert out.returncode == 2 and "is unreadable" in text and "import it again with mliap-tui data import" in text
    assert "Traceback" not in text and not path.exists() and raw_rows(cache).height == N
    import_dataset("sample", cache=cache, limit=N, n_jobs=1)  # what the message asks for
    out = cli("summary", "--data", "sample", cache=tmp_path)
    assert out.returncode == 0 and "chgnet-0.3.0" in out.stdout


def test_cache_check_finds_damage_inside_a_whole_looking_file(tmp_path, predictor):
    cache = make_cache(tmp_path)
    run_job(job(cache), lambda ev: None, predictor=predictor)
    victim = cache.prediction_files("sample")[0]
    data = bytearray(victim.read_bytes())
    data[8:200] = b"\xff" * 192  # the frame (magic, footer) stays whole; the pages do not
    victim.write_bytes(bytes(data))
    drain()
    out = cli("cache", "check", cache=tmp_path)
    assert out.returncode == 1 and "1 damaged" in out.stdout and "unreadable cache file" in out.stderr
    assert cli("cache", "check", cache=tmp_path).returncode == 0


async def test_the_explorer_opens_past_a_truncated_chunk(tmp_path, predictor):
    from mliap_tui.tui.app import MliapTuiApp

    cache = make_cache(tmp_path)
    run_job(job(cache), lambda ev: None, predictor=predictor)
    victim = cache.prediction_files("sample")[0]
    victim.write_bytes(victim.read_bytes()[:100])
    drain()
    app = MliapTuiApp(cache, device_poll_s=None)
    notes: list[str] = []
    notify = app.notify
    app.notify = lambda message, *a, **kw: (notes.append(str(message)), notify(message, *a, **kw))[1]
    async with app.run_test(size=(80, 24)) as pilot:
        for _ in range(100):
            await pilot.pause(0.1)
            if app.explore.data is not None:
                break
        assert app.explore.data is not None and app.explore.data.n_materials == N
        assert any("unreadable cache file" in m and "4 rows" in m for m in notes), notes


# ---- killed and interrupted runs ----------------------------------------------------------------------------


def _start_run(cache_root: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mliap_tui", f"--cache={cache_root}", "run", "--data", "sample", "--models", MODEL]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_DIR, start_new_session=True,
                            env={**os.environ, "COLUMNS": "200"})


@pytest.mark.slow
@pytest.mark.parametrize("when", ["while the model loads", "after a commit"])
def test_sigkill_of_the_runner_leaves_no_orphan_and_the_rerun_completes(tmp_path, when):
    cache = make_cache(tmp_path)
    before = set(_workers_of(tmp_path))
    proc = _start_run(tmp_path)
    if when == "while the model loads":
        _wait_for(lambda: set(_workers_of(tmp_path)) - before, 60, "the worker to start")
        time.sleep(0.5)
    else:
        _wait_for(lambda: raw_rows(cache).height > 0, 180, "the first chunk")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    # the worker notices its parent died (SIGTERM), commits what it has and exits
    _wait_for(lambda: not (set(_workers_of(tmp_path)) - before), 90, "the orphaned worker to exit")
    kept = raw_rows(cache).height
    assert kept <= N and no_temp_files(tmp_path)
    out = cli("run", "--data", "sample", "--models", MODEL, cache=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:]
    assert_each_pair_once(cache)


@pytest.mark.slow
def test_ctrl_c_in_the_cli_keeps_what_is_committed_and_the_rerun_completes(tmp_path):
    cache = make_cache(tmp_path)
    proc = _start_run(tmp_path)
    _wait_for(lambda: raw_rows(cache).height > 0, 180, "the first chunk")
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends: the whole foreground process group
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout.decode()[-2000:] + stderr.decode()[-2000:]
    assert "interrupted: committed results are kept" in stderr.decode()
    assert 0 < raw_rows(cache).height <= N
    out = cli("run", "--data", "sample", "--models", MODEL, cache=tmp_path)
    assert out.returncode == 0
    assert_each_pair_once(cache)


@pytest.mark.slow
def test_sigint_to_the_app_during_a_run_cancels_it_and_the_rerun_completes(tmp_path):
    """The app in a pseudo-terminal starts a run (r, then s) and gets SIGINT: it exits, the run's
    worker commits and exits with it (no orphan), and the next run completes exactly once."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    cache = make_cache(tmp_path, 40)
    before = set(_workers_of(tmp_path))
    pid, fd = pty.fork()
    if pid == 0:  # the child: the app, as a user starts it
        os.chdir(REPO_DIR)
        os.environ["TERM"] = "xterm-256color"
        os.execvp(sys.executable, [sys.executable, "-m", "mliap_tui", f"--cache={tmp_path}"])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    screen = bytearray()

    def pump(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    screen.extend(os.read(fd, 65536))
                except OSError:
                    return

    try:
        pump(6)
        os.write(fd, b"r")  # the Run screen (chgnet-0.3.0 preselected)
        pump(5)
        os.write(fd, b"s")  # start
        deadline = time.monotonic() + 120
        while not (set(_workers_of(tmp_path)) - before) and time.monotonic() < deadline:
            pump(0.2)
        assert set(_workers_of(tmp_path)) - before, "the run did not start a worker"
        pump(1.0)
        os.kill(pid, signal.SIGINT)
        status = None
        deadline = time.monotonic() + 120
        while status is None and time.monotonic() < deadline:
            pump(0.2)
            wpid, st = os.waitpid(pid, os.WNOHANG)
            status = st if wpid else None
        assert status is not None, "the app did not exit after SIGINT"
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
    _wait_for(lambda: not (set(_workers_of(tmp_path)) - before), 90, "the run's worker to exit")
    assert no_temp_files(tmp_path)
    out = cli("run", "--data", "sample", "--models", MODEL, cache=tmp_path)
    assert out.returncode == 0
    assert_each_pair_once(cache, 40)
