"""Lease files for work claiming (cache/claims.py): exclusive creation, heartbeat, expiry, dead
owners, take-over races between processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from mliap_tui.cache.claims import (
    ClaimBoard,
    Heartbeat,
    Lease,
    LeaseState,
    Owner,
    process_alive,
    shard_key,
    shard_size,
)


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def other_host(run_id: str = "far") -> Owner:
    """An owner on another machine: its pid cannot be checked from here, only its heartbeat."""
    return Owner(host="node-b", pid=4242, run_id=run_id, boot_id="boot-b", pid_ns="pid:[1]", started="1")


def test_shard_size_is_a_function_of_the_dataset_size_only():
    assert shard_size(0) == shard_size(80) == 16
    assert shard_size(22_354) == 350
    assert shard_size(150_000) == 1000
    assert shard_key(17) == "shard-00017"


def test_a_live_lease_is_exclusive_and_released_leases_are_free(tmp_path):
    a = ClaimBoard(tmp_path, Owner.current("run-a"))
    b = ClaimBoard(tmp_path, replace(Owner.current("run-b"), run_id="run-b"))
    lease = a.try_claim("shard-00000", {"n": 3})
    assert lease is not None and a.path("shard-00000") == tmp_path / "shard-00000.000000.lease"
    stored = json.loads(a.path("shard-00000").read_text())
    assert stored["owner"]["pid"] == os.getpid() and stored["owner"]["run_id"] == "run-a" and stored["note"] == {"n": 3}
    assert b.try_claim("shard-00000") is None
    held = b.holder("shard-00000")
    assert held.state == LeaseState.LIVE and "run-a" in held.describe()
    a.release("shard-00000")
    assert not list(tmp_path.glob("*.lease"))
    assert b.try_claim("shard-00000") is not None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary or stale file left


def test_an_expired_lease_is_taken_over_and_its_owner_learns_it_lost_it(tmp_path):
    clock = Clock()
    far = ClaimBoard(tmp_path, other_host(), ttl_s=60, clock=clock)
    assert far.try_claim("shard-00001") is not None
    me = ClaimBoard(tmp_path, Owner.current("me"), ttl_s=60, clock=clock)
    clock.t += 30
    assert me.try_claim("shard-00001") is None  # heartbeat 30 s ago: live
    far.renew("shard-00001")
    clock.t += 59
    assert me.holder("shard-00001").state == LeaseState.LIVE
    clock.t += 2  # 61 s without a heartbeat
    assert me.holder("shard-00001").state == LeaseState.EXPIRED
    taken = me.try_claim("shard-00001")
    assert taken is not None and taken.owner.run_id == "me" and taken.generation == 1
    assert [h.lease.owner.run_id for h in me.taken_over] == ["far"]
    assert me.generations("shard-00001") == [1]  # the stale generation is gone
    assert far.renew("shard-00001") is False and "shard-00001" in far.lost
    far.release("shard-00001")  # not its own any more: the file stays
    assert Lease.from_json(me.path("shard-00001", 1).read_text()).token == taken.token
    assert me.generations("shard-00001") == [1]


def test_a_lease_of_a_dead_process_on_this_machine_is_taken_over_at_once(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(proc.stdout)
    assert not process_alive(dead_pid)
    me = Owner.current("me")
    dead = replace(me, pid=dead_pid, run_id="dead", started="1")
    ClaimBoard(tmp_path, dead).try_claim("shard-00002")
    board = ClaimBoard(tmp_path, me, ttl_s=3600)
    assert board.holder("shard-00002").state == LeaseState.DEAD
    assert board.try_claim("shard-00002") is not None
    # a reused pid (another process start time) is not the owner either
    reused = replace(me, pid=os.getpid(), started="123", run_id="reused")
    ClaimBoard(tmp_path, reused).try_claim("shard-00003")
    assert board.holder("shard-00003").state == LeaseState.DEAD


def test_an_unreadable_lease_is_live_for_its_time_to_live_then_expired(tmp_path):
    board = ClaimBoard(tmp_path, Owner.current("me"), ttl_s=60)
    board.path("shard-00004").write_text("")  # a peer without hard links, caught mid-write
    assert board.holder("shard-00004").state == LeaseState.LIVE and board.try_claim("shard-00004") is None
    old = time.time() - 120
    os.utime(board.path("shard-00004"), (old, old))
    assert board.try_claim("shard-00004") is not None


def test_the_heartbeat_keeps_a_lease_alive(tmp_path):
    board = ClaimBoard(tmp_path, other_host("beating"), ttl_s=0.6)
    board.try_claim("shard-00005")
    with Heartbeat(board, interval_s=0.1):
        time.sleep(1.2)
        assert ClaimBoard(tmp_path, Owner.current("me"), ttl_s=0.6).holder("shard-00005").state == LeaseState.LIVE
    time.sleep(0.8)
    assert ClaimBoard(tmp_path, Owner.current("me"), ttl_s=0.6).holder("shard-00005").state == LeaseState.EXPIRED


RACER = r"""
import sys, time, json, os
from dataclasses import replace
from mliap_tui.cache.claims import ClaimBoard, Owner
folder, name, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
board = ClaimBoard(folder, replace(Owner.current(name), run_id=name), ttl_s=3600)
while time.time() < start:
    pass
won = [k for k in (f"shard-{i:05d}" for i in range(40)) if board.try_claim(k) is not None]
print(json.dumps(won), flush=True)
# stay alive (holding the leases) until every racer has finished: a dead owner's leases are free
deadline = time.time() + 300
while not os.path.exists(folder + ".stop") and time.time() < deadline:
    time.sleep(0.05)
"""


@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "expired leases"])
def test_racing_processes_each_get_a_shard_at_most_once(tmp_path, stale):
    """Six processes claim the same 40 shards at the same instant (over stale leases of a dead
    owner in the second case): every shard has exactly one winner."""
    if stale:
        gone = Owner(host="node-x", pid=1, run_id="gone", boot_id="x", pid_ns="x")
        clock = Clock(time.time() - 10_000)
        old = ClaimBoard(tmp_path, gone, ttl_s=60, clock=clock)
        for i in range(40):
            old.try_claim(shard_key(i))
    start = time.time() + 2.0
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path), f"racer{i}", str(start)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(6)]
    won = {}
    try:
        for p in procs:
            line = p.stdout.readline()
            assert line, p.stderr.read()
            won[p.args[-2]] = json.loads(line)
    finally:
        (tmp_path.parent / (tmp_path.name + ".stop")).touch()
        for p in procs:
            p.wait(timeout=120)
    assert all(p.returncode == 0 for p in procs)
    all_won = [k for keys in won.values() for k in keys]
    assert sorted(all_won) == [shard_key(i) for i in range(40)], won
    board = ClaimBoard(tmp_path, Owner.current("reader"))
    for key in all_won:  # the highest generation names the winner
        owner = board.read(key)[1].owner.run_id
        assert key in won[owner] and len(board.generations(key)) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
