"""Two runs on one cache split the work (lease files, cache/claims.py + engine/claiming.py).

Real parts: the shipped sample, CHGNet 0.3.0 in worker subprocesses, each run in its own process
(as two ``mliap-tui run`` on one machine, or on two machines sharing the cache folder). The runs
do not compact at the end here, so every row either of them committed is still on disk to count.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from support import REPO_DIR, copy_dataset

from mliap_tui.cache import Cache
from mliap_tui.cache.claims import Lease
from mliap_tui.data.importer import import_dataset

MODEL = "chgnet-0.3.0"
N = 160  # 10 shards of 16 materials

DRIVER = r"""
import json, sys
from mliap_tui.cache import Cache
from mliap_tui.engine import protocol
from mliap_tui.engine.runner import run_evaluation
root, run_id, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
logs = []
summary = run_evaluation(Cache(root), "sample", ["chgnet-0.3.0"], device="cpu", torch_threads=1, batch_atoms=24,
                         chunk_rows=4, chunk_seconds=2, compact=False, run_id=run_id, job_overrides=overrides,
                         on_event=lambda ev: logs.append(ev.message) if isinstance(ev, protocol.Log) else None)
m = summary.models[0]
print(json.dumps({"ok": summary.ok, "todo": m.todo, "done": m.done, "committed": m.ok + m.failed,
                  "elsewhere": m.elsewhere, "error": m.error, "logs": logs}))
"""


@pytest.fixture(scope="module")
def sample_cache(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("claims-template")
    import_dataset("sample", cache=Cache(root), limit=N, n_jobs=1)
    return root


def fresh(sample_cache: Path, tmp_path: Path) -> Cache:
    return copy_dataset(sample_cache, tmp_path)


def start(root: Path, run_id: str, **overrides) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(root), run_id, json.dumps(overrides)], cwd=REPO_DIR,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen, timeout: float = 600) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def raw_rows(cache: Cache) -> pl.DataFrame:
    """Every committed row, not deduplicated: what is physically on disk."""
    files = cache.prediction_files("sample")
    return pl.read_parquet(files) if files else pl.DataFrame(schema={"material_id": pl.Utf8, "run_id": pl.Utf8})


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_runs_at_once_compute_every_pair_exactly_once(sample_cache, tmp_path):
    cache = fresh(sample_cache, tmp_path)
    a, b = start(tmp_path, "run-a"), start(tmp_path, "run-b")
    ra, rb = result(a), result(b)
    assert ra["ok"] and rb["ok"], (ra, rb)
    assert ra["todo"] == rb["todo"] == N  # both planned everything ...
    raw = raw_rows(cache)
    assert raw.height == N and raw["material_id"].is_unique().all()  # ... and each pair was computed once
    assert set(raw["material_id"]) == set(cache.scan_materials("sample").collect()["material_id"])
    by_run = dict(raw.group_by("run_id").len().iter_rows())
    assert by_run.get("run-a", 0) == ra["committed"] and by_run.get("run-b", 0) == rb["committed"]
    assert ra["committed"] > 0 and rb["committed"] > 0, f"the runs did not split the work: {by_run}"
    # what one run left to the other is accounted for, so both report complete work
    assert ra["committed"] + ra["elsewhere"] == N and rb["committed"] + rb["elsewhere"] == N
    assert not list(cache.claims_dir("sample", MODEL, "static").glob("*.lease"))  # every lease given back


@pytest.mark.parametrize("where", ["same machine", "another machine"])
def test_a_run_takes_over_the_shard_of_a_killed_owner(sample_cache, tmp_path, where):
    """Run A's worker is SIGKILLed while it holds a shard with rows committed. Run B, started at the
    same time, takes the shard over (at once when the dead pid is on this machine; after the
    lease's time to live when the owner is on a machine it cannot see), evaluates only what A had
    not committed, and the cache ends with every pair exactly once."""
    import os
    import signal

    cache = fresh(sample_cache, tmp_path)
    claims = cache.claims_dir("sample", MODEL, "static")
    ttl = {"lease_ttl_s": 6.0, "heartbeat_s": 1.0, "claim_poll_s": 0.5}
    a, b = start(tmp_path, "run-a", **ttl), start(tmp_path, "run-b", **ttl)

    def a_lease_with_rows() -> Lease | None:
        rows = raw_rows(cache)
        mine = set(rows.filter(pl.col("run_id") == "run-a")["material_id"]) if rows.height else set()
        for path in claims.glob("*.lease"):
            try:
                lease = Lease.from_json(path.read_text())
            except (OSError, ValueError):
                continue
            first, last = lease.note.get("first", ""), lease.note.get("last", "")
            committed = sum(1 for m in mine if first <= m <= last)
            if lease.owner.run_id == "run-a" and 0 < committed < lease.note.get("n", 0):  # mid-shard
                return lease
        return None

    wait_for(lambda: a_lease_with_rows() is not None, 300, "run A to hold a shard after committing rows")
    lease = a_lease_with_rows()
    if where == "another machine":
        # freeze the owner, then make its lease name a machine B cannot look into: only the
        # heartbeat, now stopped, can tell B that the owner is gone
        os.kill(lease.owner.pid, signal.SIGSTOP)
        path = claims / f"{lease.key}.{lease.generation:06d}.lease"
        data = json.loads(path.read_text())
        data["owner"].update(host="node-gone", boot_id="gone", pid_ns="gone")
        data["heartbeat_unix_s"] = time.time()
        path.write_text(json.dumps(data))
    os.kill(lease.owner.pid, signal.SIGKILL)  # the lease owner: A's worker process
    killed_at = time.monotonic()
    ra = result(a)
    assert not ra["ok"] and "killed by SIGKILL" in (ra["error"] or "")
    rb = result(b)
    assert rb["ok"], rb
    assert any(m.startswith(f"took over {lease.key}") for m in rb["logs"]), rb["logs"]
    if where == "another machine":
        assert time.monotonic() - killed_at >= ttl["lease_ttl_s"] - 1  # it waited for the expiry
    raw = raw_rows(cache)
    counts = raw.group_by("material_id").len()
    assert raw.height == N and counts["len"].max() == 1, counts.filter(pl.col("len") > 1)  # no duplicate
    assert set(raw["material_id"]) == set(cache.scan_materials("sample").collect()["material_id"])  # no loss
    assert raw.filter(pl.col("run_id") == "run-a").height > 0  # what A committed before dying was kept
