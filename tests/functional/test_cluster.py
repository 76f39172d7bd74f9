"""Runs on a real Dask cluster on loopback (engine/cluster.py, ``mliap-tui run --cluster``).

Real parts: ``dask scheduler`` and two ``dask worker`` processes started as separate processes on
127.0.0.1, the shipped sample, CHGNet 0.3.0 evaluated inside the Dask tasks, the shared cache
folder (here: one local folder every process sees). One worker is SIGKILLed while it holds a shard
with rows committed; Dask runs its task again on the other worker, which takes the shard over.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from support import REPO_DIR, copy_dataset

pytest.importorskip("distributed", reason="dask[distributed] is not installed (pip install 'mliap-tui[cluster]')")

from mliap_tui.cache import Cache  # noqa: E402
from mliap_tui.cache.claims import Lease  # noqa: E402
from mliap_tui.data.importer import import_dataset  # noqa: E402

MODEL = "chgnet-0.3.0"
N = 120

DRIVER = r"""
import json, sys
from mliap_tui.cache import Cache
from mliap_tui.engine import protocol
from mliap_tui.engine.cluster import ClusterLost, ClusterRun
root, address, run_id = sys.argv[1], sys.argv[2], sys.argv[3]
limit = int(sys.argv[4]) if len(sys.argv) > 4 else None
logs, workers = [], {}
def on_event(ev):
    if isinstance(ev, protocol.Log):
        logs.append(ev.message)
    elif isinstance(ev, protocol.ClusterWorker):
        workers[ev.address] = ev.state
run = ClusterRun(Cache(root), "sample", ["chgnet-0.3.0"], cluster=address, device="cpu", torch_threads=1,
                 batch_atoms=24, chunk_rows=4, chunk_seconds=2, compact=False, run_id=run_id, on_event=on_event, limit=limit,
                 job_overrides={"heartbeat_s": 1.0, "claim_poll_s": 0.5})
try:
    summary = run.run()
except ClusterLost as exc:
    print(json.dumps({"lost": str(exc), "logs": logs}))
    raise SystemExit(1)
m = summary.models[0]
print(json.dumps({"ok": summary.ok, "todo": m.todo, "done": m.done, "committed": m.ok + m.failed, "failed": m.failed,
                  "error": m.error, "logs": logs, "workers": workers}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO_DIR)] + ([e["PYTHONPATH"]] if e.get("PYTHONPATH") else []))
    e["OMP_NUM_THREADS"] = "1"
    return e


class LoopbackCluster:
    """``dask scheduler`` + ``dask worker`` x n, each its own process (no nanny: a SIGKILL kills the worker)."""

    def __init__(self, n_workers: int = 2):
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.scheduler = self._start("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                                     "--dashboard-address", "127.0.0.1:0")
        self.workers = [self._start("distributed.cli.dask_worker", self.address, "--nthreads", "1", "--no-nanny",
                                    "--host", "127.0.0.1", "--name", f"w{k}", "--no-dashboard", "--death-timeout", "60")
                        for k in range(n_workers)]

    @staticmethod
    def _start(module: str, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO_DIR, env=env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def wait_ready(self, n: int, timeout: float = 120) -> None:
        from distributed import Client

        deadline = time.monotonic() + timeout
        while True:
            try:
                with Client(self.address, timeout=5, set_as_default=False) as c:
                    c.wait_for_workers(n, timeout=max(1, deadline - time.monotonic()))
                return
            except (OSError, TimeoutError):
                if time.monotonic() > deadline:
                    raise

    def stop(self) -> None:
        for p in [*self.workers, self.scheduler]:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)


@pytest.fixture(scope="module")
def sample_cache(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cluster-template")
    import_dataset("sample", cache=Cache(root), limit=N, n_jobs=1)
    return root


def fresh(sample_cache: Path, tmp_path: Path) -> Cache:
    return copy_dataset(sample_cache, tmp_path / "cache")


def raw_rows(cache: Cache) -> pl.DataFrame:
    files = cache.prediction_files("sample")
    return pl.read_parquet(files) if files else pl.DataFrame(schema={"material_id": pl.Utf8, "status": pl.Utf8})


def lease_mid_shard(cache: Cache, pids: set[int]) -> Lease | None:
    """A lease held by one of ``pids`` on a shard with some, not all, rows committed."""
    rows = raw_rows(cache)
    done = set(rows["material_id"]) if rows.height else set()
    for path in cache.claims_dir("sample", MODEL, "static").glob("*.lease"):
        try:
            lease = Lease.from_json(path.read_text())
        except (OSError, ValueError):
            continue
        first, last = lease.note.get("first", ""), lease.note.get("last", "")
        committed = sum(1 for m in done if first <= m <= last)
        if lease.owner.pid in pids and 0 < committed < lease.note.get("n", 0):
            return lease
    return None


def test_a_killed_dask_worker_loses_nothing_and_duplicates_nothing(sample_cache, tmp_path):
    cache = fresh(sample_cache, tmp_path)
    cluster = LoopbackCluster(2)
    try:
        cluster.wait_ready(2)
        driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(cache.root), cluster.address, "run-c"],
                                  cwd=REPO_DIR, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        pids = {w.pid: w for w in cluster.workers}
        deadline = time.monotonic() + 300
        lease = None
        while lease is None and driver.poll() is None and time.monotonic() < deadline:
            lease = lease_mid_shard(cache, set(pids))
            time.sleep(0.05)
        assert lease is not None, "no worker held a shard with rows committed: " + (driver.stderr.read()[-2000:]
                                                                                    if driver.poll() is not None else "")
        os.kill(lease.owner.pid, signal.SIGKILL)  # a Dask worker process, mid-task
        killed = pids[lease.owner.pid]
        killed.wait(timeout=30)
        out, err = driver.communicate(timeout=600)
        assert driver.returncode == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
    finally:
        cluster.stop()
    assert result["ok"] and result["error"] is None, result
    raw = raw_rows(cache)  # not compacted: every row any attempt committed is still a row on disk
    assert raw.height == N, f"{raw.height} rows on disk"  # 120/120 ...
    assert raw["material_id"].is_unique().all()  # ... 0 duplicates ...
    assert (raw["status"] == "ok").sum() == N  # ... 0 failures
    assert set(raw["material_id"]) == set(cache.scan_materials("sample").collect()["material_id"])
    assert result["committed"] == N and result["failed"] == 0  # the run's own count agrees with the disk
    assert any("took over" in m for m in result["logs"]), result["logs"]  # the retry took the dead worker's shard
    canary = [m for m in result["logs"] if "canary passed" in m]
    assert len(canary) == 1, canary  # every task checks the model; the progress says it once
    assert "lost" in result["workers"].values(), result["workers"]  # and the progress showed the worker gone
    assert not list(cache.claims_dir("sample", MODEL, "static").glob("*.lease"))


def test_scheduler_gone_stops_the_run_clearly_and_a_later_run_resumes(sample_cache, tmp_path):
    cache = fresh(sample_cache, tmp_path)
    n = 48
    cluster = LoopbackCluster(1)
    try:
        cluster.wait_ready(1)
        driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(cache.root), cluster.address, "run-1", str(n)],
                                  cwd=REPO_DIR, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while raw_rows(cache).height == 0 and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert driver.poll() is None, "the run ended before the scheduler could be stopped"
        cluster.scheduler.kill()  # the scheduler goes away mid-run
        t0 = time.monotonic()
        out, err = driver.communicate(timeout=120)
        stopped_after_s = time.monotonic() - t0
        assert driver.returncode == 1, err[-3000:]
        lost = json.loads(out.strip().splitlines()[-1])["lost"]
        assert "scheduler" in lost and "went away" in lost and "run the same command to resume" in lost
        assert stopped_after_s < 60
        # the orphaned task notices too: it commits what it has, gives its leases back, stops
        claims = cache.claims_dir("sample", MODEL, "static")
        deadline = time.monotonic() + 60
        while list(claims.glob("*.lease")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not list(claims.glob("*.lease"))
    finally:
        cluster.stop()
    before = raw_rows(cache).height
    assert 0 < before < n
    again = LoopbackCluster(1)
    try:
        again.wait_ready(1)
        driver = subprocess.run([sys.executable, "-c", DRIVER, str(cache.root), again.address, "run-2", str(n)],
                                cwd=REPO_DIR, env=env(), capture_output=True, text=True, timeout=300)
    finally:
        again.stop()
    assert driver.returncode == 0, driver.stderr[-3000:]
    result = json.loads(driver.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["todo"] == n - before  # only what was missing
    raw = raw_rows(cache)
    assert raw.height == n and raw["material_id"].is_unique().all()


def test_cli_run_on_a_cluster_then_nothing_left(sample_cache, tmp_path):
    """``mliap-tui run --cluster ADDRESS``: the dashboard link, one line per worker, rows on disk;
    the same command again finds everything cached."""
    cache = fresh(sample_cache, tmp_path)
    cluster = LoopbackCluster(1)
    try:
        cluster.wait_ready(1)
        cmd = [sys.executable, "-m", "mliap_tui", "--cache", str(cache.root), "run", "--data", "sample", "--models",
               MODEL, "--limit", "12", "--cluster", cluster.address, "--torch-threads", "1"]
        first = subprocess.run(cmd, cwd=REPO_DIR, env=env(), capture_output=True, text=True, timeout=300)
        second = subprocess.run(cmd, cwd=REPO_DIR, env=env(), capture_output=True, text=True, timeout=300)
    finally:
        cluster.stop()
    text = first.stdout + first.stderr
    assert first.returncode == 0, text[-3000:]
    assert "Dask dashboard: http://127.0.0.1:" in text
    assert "1 worker(s), cache shared" in text
    assert "dask 127.0.0.1:" in text  # the worker's line
    assert cache.scan_predictions("sample", [MODEL], "static").collect().height == 12
    assert second.returncode == 0 and "all 12 materials already in the cache" in second.stdout + second.stderr


def test_cluster_run_fails_clearly_when_the_workers_cannot_see_the_cache(sample_cache, tmp_path):
    """A worker that sees another folder at the cache's path: stopped before any task, named."""
    from mliap_tui.engine.cluster import ClusterError, ClusterRun, check_shared_cache

    cache = fresh(sample_cache, tmp_path)
    cluster = LoopbackCluster(1)
    try:
        cluster.wait_ready(1)
        from distributed import Client

        with Client(cluster.address, timeout=10, set_as_default=False) as client:
            assert check_shared_cache(client, Path(cache.root)) == 1  # the real folder: shared
            # make the path the worker is told about one only this process wrote: its token is
            # gone before the worker reads it (as on a node that mounts another file system there)
            import mliap_tui.engine.cluster as cl

            original = cl.CHECK_DIR
            try:
                cl.CHECK_DIR = ".cluster-check-elsewhere"
                client.run(lambda: setattr(__import__("mliap_tui.engine.cluster").engine.cluster, "CHECK_DIR",
                                           ".cluster-check-not-here"))
                with pytest.raises(ClusterError, match="is not shared with 1 of 1 Dask worker"):
                    check_shared_cache(client, Path(cache.root))
            finally:
                cl.CHECK_DIR = original
        cl.CONNECT_TIMEOUT_S = 3.0
        try:
            with pytest.raises(ClusterError, match="no Dask scheduler answers"):
                ClusterRun(cache, "sample", [MODEL], cluster=f"tcp://127.0.0.1:{free_port()}").connect()
        finally:
            cl.CONNECT_TIMEOUT_S = 30.0
    finally:
        cluster.stop()


def test_a_family_with_its_own_interpreter_runs_its_worker_subprocess_inside_the_task(sample_cache, tmp_path):
    """``--python-for`` on a cluster: the Dask task starts the worker subprocess with that interpreter
    (here a wrapper around this venv's python that leaves a mark), on a LocalCluster (``local:1``)."""
    cache = fresh(sample_cache, tmp_path)
    mark = tmp_path / "other-python-was-used"
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\ntouch "{mark}"\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    cmd = [sys.executable, "-m", "mliap_tui", "--cache", str(cache.root), "run", "--data", "sample", "--models", MODEL,
           "--limit", "6", "--cluster", "local:1", "--torch-threads", "1", "--python-for", f"chgnet={wrapper}"]
    done = subprocess.run(cmd, cwd=REPO_DIR, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert mark.exists()
    assert cache.scan_predictions("sample", [MODEL], "static").collect().height == 6


async def test_the_app_run_screen_runs_on_a_cluster_with_a_line_per_dask_worker(sample_cache, tmp_path):
    """``mliap-tui --cluster SPEC``: the Run screen's run goes through ClusterRun (here a real
    LocalCluster of one worker) and shows the Dask worker under the model panes."""
    import time as _time

    from textual.widgets import Static

    from mliap_tui.tui.app import MliapTuiApp
    from mliap_tui.tui.run_screen import RunScreen

    cache = fresh(sample_cache, tmp_path)
    app = MliapTuiApp(cache, run_options={"cluster": "local:1", "torch_threads": 1}, device_poll_s=None)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        await pilot.press("r")
        await pilot.pause()
        screen = pilot.app.screen
        assert isinstance(screen, RunScreen)
        screen.set_models([MODEL])
        screen.query_one("#run-limit").value = "4"
        await pilot.pause(0.5)
        workers = screen.query_one("#run-workers", Static)
        lines: set[str] = set()
        shown = workers.update

        def record(content="", *args, **kwargs):  # every worker line the screen draws, however short-lived
            lines.add(str(content))
            return shown(content, *args, **kwargs)

        workers.update = record
        await pilot.press("s")
        t0 = _time.monotonic()
        while screen.running or _time.monotonic() - t0 < 1:
            assert _time.monotonic() - t0 < 240, "the cluster run did not finish in 240 s"
            await pilot.pause(0.2)
        summary = screen.last_summary
        assert summary is not None and summary.ok, str(screen.query_one("#run-status", Static).render())
        assert summary.device == "dask:1 cpu"
        assert any("running" in line and f"{MODEL} task" in line for line in lines), lines
        assert any(line.startswith("dask 127.0.0.1:") and "4 done" in line for line in lines), lines
    assert cache.scan_predictions("sample", [MODEL], "static").collect().height == 4


NANNY_ENV = ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _nanny_env() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in NANNY_ENV}


def test_a_local_cluster_leaves_this_process_environment_as_it_was(sample_cache, tmp_path, monkeypatch):
    """A Nanny writes its pre-spawn environment (OMP_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_=65536, ...)
    into the process it lives in: a plain run after a cluster run in the same app would inherit it.
    The workers keep the thread limits but not the malloc setting (it made the models 1.7x slower)."""
    from mliap_tui.engine.cluster import ClusterRun

    for k in NANNY_ENV:
        monkeypatch.delenv(k, raising=False)
    run = ClusterRun(fresh(sample_cache, tmp_path), "sample", [MODEL], cluster="local:1", device="cpu")
    run.connect()
    try:
        workers = run.client.run(_nanny_env)
        during = _nanny_env()
    finally:
        run.close()
    assert during == dict.fromkeys(NANNY_ENV) and _nanny_env() == dict.fromkeys(NANNY_ENV)
    (worker,) = workers.values()
    assert worker["MALLOC_TRIM_THRESHOLD_"] is None
    assert worker["OMP_NUM_THREADS"] == "1"  # Dask's thread limits for its workers stay
