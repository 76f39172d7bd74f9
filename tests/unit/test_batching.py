"""Unit tests of the engine's pieces: protocol, progress, batching, OOM/exception splitting,
prefetch, sharding. The splitting tests run the real CHGNet 0.3.0 on real MP-20 crystals; the
only test double is a wrapper that raises a torch-style out-of-memory RuntimeError for batches
above an atom budget (standing in for a device's memory limit)."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from support import sample_rows

from mliap_tui.core.geometry import min_distance_ang
from mliap_tui.engine import batching, progress, protocol, runner
from mliap_tui.engine.batching import (
    AdaptiveBatchSize,
    BatchEvaluator,
    Item,
    Prefetcher,
    is_oom_error,
    item_from_row,
    make_batches,
)
from mliap_tui.engine.worker import mp2020_energy


def mp20_rows(n: int, max_sites: int = 12) -> list[dict]:
    """The first ``n`` shipped sample crystals with at most ``max_sites`` sites, as materials rows."""
    return sample_rows(n, max_sites)


# ---- protocol --------------------------------------------------------------------------------


def test_job_round_trip_and_validation():
    job = protocol.WorkerJob(cache_root="/c", dataset="d", model="chgnet-0.3.0", material_ids=["mp-1", "mp-2"], forces=True)
    back = protocol.WorkerJob.from_json(job.to_json())
    assert back == job
    # newer peers may add fields: ignored
    data = json.loads(job.to_json()) | {"some_future_field": 1}
    assert protocol.WorkerJob.from_json(json.dumps(data)) == job
    with pytest.raises(protocol.ProtocolError, match="missing required field"):
        protocol.WorkerJob.from_json(json.dumps({"dataset": "d", "model": "m"}))
    with pytest.raises(protocol.ProtocolError, match="unknown mode"):
        protocol.WorkerJob.from_json(json.dumps({"cache_root": "/c", "dataset": "d", "model": "m", "mode": "md"}))
    with pytest.raises(protocol.ProtocolError, match="not valid JSON"):
        protocol.WorkerJob.from_json("{nope")
    base = {"cache_root": "/c", "dataset": "d", "model": "m", "mode": "relax"}
    assert protocol.WorkerJob.from_json(json.dumps(base)).relax_engine == "batched"  # the default engine
    with pytest.raises(protocol.ProtocolError, match="unknown relax_engine 'torchsim'"):
        protocol.WorkerJob.from_json(json.dumps(base | {"relax_engine": "torchsim"}))
    with pytest.raises(protocol.ProtocolError, match="relax_fmax must be > 0"):
        protocol.WorkerJob.from_json(json.dumps(base | {"relax_fmax": 0}))


def test_every_event_type_round_trips_through_json():
    samples = {
        "progress": protocol.Progress(model="m", done=3, total=10, structures_per_s=2.5, eta_s=float("nan"),
                                      last_failures=[["mp-1", "boom"]], peak_memory_bytes=123, memory_kind="cpu_peak_rss"),
        "finished": protocol.WorkerFinished(model="m", done=10, ok=9, failed=1, cancelled=True),
        "run_planned": protocol.RunPlanned(run_id="r", models=[{"model": "m", "total": 3, "done": 1, "todo": 2}]),
    }
    for name, cls in protocol.EVENT_TYPES.items():
        ev = samples.get(name) or cls(model="m", worker=2)
        line = ev.to_json()
        assert "\n" not in line and json.loads(line)["event"] == name
        back = protocol.event_from_json(line)
        assert type(back) is cls
        expected = ev.to_dict()
        assert back.to_dict() == expected
    # NaN is not JSON: it travels as null
    assert json.loads(samples["progress"].to_json())["eta_s"] is None
    # junk on stdout is not an event
    for junk in ("CHGNet v0.3.0 initialized", "", "[1, 2]", '{"event": "nope"}', "{broken"):
        assert protocol.event_from_json(junk) is None


# ---- progress --------------------------------------------------------------------------------


def test_rate_window_uses_only_recent_samples():
    w = progress.RateWindow(window_s=10, t0=0.0)
    assert w.rates() == (None, None)
    # slow start: 1 structure/s for 20 s, then 10 structures/s
    done = atoms = 0
    for t in range(1, 21):
        done, atoms = done + 1, atoms + 5
        w.add(done, atoms, t=float(t))
    assert w.rates()[0] == pytest.approx(1.0)
    for t in range(21, 41):
        done, atoms = done + 10, atoms + 100
        w.add(done, atoms, t=float(t))
    sps, aps = w.rates()
    assert sps == pytest.approx(10.0, rel=0.05)  # the slow start is out of the window
    assert aps == pytest.approx(100.0, rel=0.05)
    assert progress.eta_seconds(atoms_left=1000, structures_left=5, atoms_per_s=aps, structures_per_s=sps) == pytest.approx(10.0, rel=0.05)
    assert progress.eta_seconds(0, 0, None, None) == 0.0
    assert progress.eta_seconds(10, 1, None, None) is None


def test_tracker_events_and_combining_workers():
    tr = progress.ProgressTracker(model="m", mode="static", total=4, atoms_total=40, device="cpu", interval_s=0.0)
    tr.record(ok=1, failed=1, atoms=20, failures=[("mp-9", "elements not covered by m: Am")])
    ev = tr.event()
    assert (ev.done, ev.ok, ev.failed, ev.atoms_done) == (2, 1, 1, 20)
    assert ev.last_failures == [["mp-9", "elements not covered by m: Am"]]
    assert ev.memory_kind == "cpu_peak_rss" and ev.peak_memory_bytes > 10 * 2**20  # a Python process with numpy
    other = protocol.Progress(model="m", worker=1, done=3, total=5, atoms_done=30, atoms_total=50, ok=3,
                              structures_per_s=2.0, atoms_per_s=20.0, eta_s=1.0, device="cuda:1", peak_memory_bytes=1)
    ev.structures_per_s, ev.atoms_per_s, ev.eta_s = 1.0, 10.0, 2.0
    both = progress.combine([ev, other])
    assert (both.done, both.total, both.ok, both.failed) == (5, 9, 4, 1)
    assert both.structures_per_s == 3.0 and both.eta_s == 2.0 and both.device == "cpu,cuda:1"
    assert "failed 1" in progress.format_progress(both)


# ---- batching -------------------------------------------------------------------------------


def _items(sizes):
    return [Item(index=i, material_id=f"m{i}", n_atoms=n) for i, n in enumerate(sizes)]


def test_batches_respect_the_atom_budget_and_keep_order():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 40, size=200).tolist() + [150, 3]
    items = _items(sizes)
    items[7].error = "malformed structure: test"
    batches = list(make_batches(items, 100))
    assert sorted(it.index for b in batches for it in b) == list(range(len(items)))
    valid = [b for b in batches if b[0].error is None]
    assert [it.index for b in valid for it in b] == [i for i in range(len(items)) if i != 7]
    for b in batches:
        total = sum(it.n_atoms for it in b)
        assert total <= 100 or len(b) == 1  # only a lone oversized structure may exceed it
    assert [items[7]] in batches  # a failed item travels alone
    # greedy: a batch is only closed when the next structure would not fit
    for b, nxt in zip(valid, valid[1:]):
        assert sum(it.n_atoms for it in b) + nxt[0].n_atoms > 100


def test_budget_is_read_for_every_new_batch():
    budget = AdaptiveBatchSize(64)
    seen = []
    for b in make_batches(_items([8] * 40), budget):
        seen.append(sum(it.n_atoms for it in b))
        if len(seen) == 2:
            budget.on_oom(64)  # halves the budget for the batches still to come
    assert seen[:2] == [64, 64] and set(seen[2:]) == {32}


def test_adaptive_batch_size():
    b = AdaptiveBatchSize(1000, minimum=10, grow_after=3)
    b.on_oom(1000)
    assert b() == 500
    b.on_oom(300)  # a smaller batch failed: go below it
    assert b() == 150
    for _ in range(3):
        b.on_success()
    assert b() == 187
    for _ in range(200):
        b.on_success()
    assert b() == 1000  # never beyond the initial budget
    for _ in range(20):
        b.on_oom(b())
    assert b() == 10


def test_oom_detection():
    import torch

    assert is_oom_error(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total)"))
    assert is_oom_error(torch.cuda.OutOfMemoryError("CUDA out of memory."))
    assert is_oom_error(MemoryError())
    assert is_oom_error(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to allocate 1234 bytes. Error code 12 (Cannot allocate memory) failed to allocate"))
    assert not is_oom_error(RuntimeError("index 95 is out of bounds for dimension 0 with size 94"))
    assert not is_oom_error(ValueError("out of memory"))  # only RuntimeError/MemoryError/torch OOM


def test_mp2020_energy_conventions():
    assert mp2020_energy(-5.0, "mp2020", -0.3) == -5.0  # CHGNet: already corrected
    assert mp2020_energy(-5.0, "raw_pbe", -0.3) == pytest.approx(-5.3)
    assert mp2020_energy(-5.0, "raw_pbe", None) is None  # no correction known: no comparable value
    assert mp2020_energy(-5.0, "r2scan", -0.3) is None  # not on the PBE scale at all
    assert mp2020_energy(None, "mp2020", 0.0) is None


# ---- row checks -------------------------------------------------------------------------------


def test_item_from_row_checks_real_rows_and_catches_malformed_ones():
    rows = mp20_rows(6)
    good = item_from_row(0, rows[0])
    assert good.error is None and good.n_atoms == rows[0]["n_sites"]
    assert good.atoms.get_chemical_symbols() == rows[0]["species"]
    np.testing.assert_allclose(good.atoms.cell.array.ravel(), rows[0]["lattice_ang"])
    np.testing.assert_allclose(good.atoms.get_scaled_positions(wrap=False).ravel(), rows[0]["frac_coords"])

    r = dict(rows[1], frac_coords=rows[1]["frac_coords"][:-1])
    assert "frac_coords has" in item_from_row(1, r).error
    r = dict(rows[1], n_sites=rows[1]["n_sites"] + 1)
    assert "n_sites" in item_from_row(1, r).error
    dup = dict(rows[2], species=rows[2]["species"] + rows[2]["species"][:1],
               frac_coords=rows[2]["frac_coords"] + rows[2]["frac_coords"][:3], n_sites=rows[2]["n_sites"] + 1)
    it = item_from_row(2, dup)
    assert it.error.startswith("malformed structure: atoms 0.000 Å apart") and it.error_kind == batching.INVALID
    r = dict(rows[3], species=["Xx"] + rows[3]["species"][1:])
    assert "unknown element" in item_from_row(3, r).error
    r = dict(rows[3], lattice_ang=[0.0] * 9)
    assert "zero cell volume" in item_from_row(3, r).error
    r = dict(rows[3], lattice_ang=rows[3]["lattice_ang"][:6])
    assert "lattice_ang has 6 values" in item_from_row(3, r).error
    it = item_from_row(4, rows[4], unsupported=lambda species: sorted(set(species) & {rows[4]["species"][0]}), model="mymodel")
    assert it.error == f"elements not covered by mymodel: {rows[4]['species'][0]}" and it.error_kind == batching.UNSUPPORTED


def test_fast_min_distance_matches_ase_neighbour_list():
    from ase.neighborlist import neighbor_list

    from mliap_tui.data.structures import row_to_atoms

    for row in mp20_rows(40, max_sites=20):
        atoms = row_to_atoms(row)
        lattice, frac = atoms.cell.array, atoms.get_scaled_positions(wrap=False)
        heights = 1 / np.linalg.norm(np.linalg.inv(lattice), axis=0)
        cutoff = min(4.0, 0.49 * heights.min())  # the fast path is exact for this cutoff
        d = neighbor_list("d", atoms, cutoff)
        expected = d.min() if len(d) else math.inf
        got = min_distance_ang(lattice, frac, cutoff)
        if expected < cutoff:
            assert got == pytest.approx(expected, abs=1e-9)
        else:
            assert got >= cutoff
    # a pair across the periodic boundary, and a cell thinner than the cutoff (slow path)
    lat = np.diag([5.0, 5.0, 5.0])
    assert min_distance_ang(lat, np.array([[0.0, 0, 0], [0.99, 0, 0]]), 0.5) == pytest.approx(0.05)
    assert min_distance_ang(np.diag([0.3, 5.0, 5.0]), np.array([[0.0, 0, 0]]), 0.5) == pytest.approx(0.3)


# ---- splitting with the real CHGNet -------------------------------------------------------------


@pytest.fixture(scope="module")
def chgnet():
    from mliap_tui.models.registry import load_predictor

    return load_predictor("chgnet-0.3.0", device="cpu")


class DeviceLimit:
    """Test double for a device's memory: the real predictor, but batches above ``max_atoms``
    raise the RuntimeError torch raises on a CUDA OOM."""

    def __init__(self, predictor, max_atoms: int):
        self.inner, self.max_atoms = predictor, max_atoms
        self.spec, self.device, self.dtype = predictor.spec, predictor.device, predictor.dtype
        self.calls: list[int] = []

    def prepare(self, atoms_list, forces=False, stress=False):
        return (sum(len(a) for a in atoms_list), self.inner.prepare(atoms_list, forces=forces, stress=stress))

    def run(self, prepared):
        n_atoms, inner = prepared
        self.calls.append(n_atoms)
        if n_atoms > self.max_atoms:
            raise RuntimeError(f"CUDA out of memory. Tried to allocate {n_atoms * 8} MiB (GPU 0; 0 bytes free)")
        return self.inner.run(inner)


def _real_items(rows):
    return [item_from_row(i, r) for i, r in enumerate(rows)]


def test_oom_splitting_completes_every_structure(chgnet):
    items = _real_items(mp20_rows(24))
    assert all(it.error is None for it in items)
    reference = chgnet.predict([it.atoms for it in items])
    limited = DeviceLimit(chgnet, max_atoms=30)
    ooms = []
    sizer = AdaptiveBatchSize(400)
    ev = BatchEvaluator(limited, batch_size=sizer, on_oom=lambda n, a: ooms.append((n, a)))
    outcomes = [o for b in make_batches(items, sizer) for o in ev.evaluate_batch(b)]
    assert [o.item.index for o in outcomes] == list(range(len(items)))
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    got = np.array([o.prediction.energy_ev / o.item.n_atoms for o in outcomes])
    want = np.array([p.energy_ev / it.n_atoms for p, it in zip(reference, items)])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert ooms and ev.splits > 0
    assert sizer() <= 30 * 1.25 ** 2  # the budget came down to what fits (and may creep back a little)
    assert all(o.wall_s > 0 for o in outcomes)


def test_structure_too_large_alone_fails_with_oom_reason(chgnet):
    items = _real_items(mp20_rows(10))
    big = max(items, key=lambda it: it.n_atoms)
    limited = DeviceLimit(chgnet, max_atoms=big.n_atoms - 1)
    ev = BatchEvaluator(limited, batch_size=AdaptiveBatchSize(10_000))
    outcomes = ev.evaluate_batch(items)
    failed = [o for o in outcomes if not o.ok]
    assert [o.item.material_id for o in failed] == [it.material_id for it in items if it.n_atoms == big.n_atoms]
    for o in failed:
        assert o.error_kind == batching.OOM and o.error.startswith(f"out of memory on cpu for {big.n_atoms} atoms alone")
    assert len(failed) < len(items) and all(o.ok for o in outcomes if o.item.n_atoms < big.n_atoms)


def test_exception_in_a_batch_isolates_the_culprit(chgnet):
    """AmO2 (Am is outside CHGNet's 94 elements) hidden in a batch, the engine's own element
    check bypassed: the adapter raises for the whole batch, splitting isolates AmO2."""
    rows = mp20_rows(9)
    a = 5.376  # AmO2, fluorite, Fm-3m (primitive fcc cell)
    amo2 = {"material_id": "amo2", "species": ["Am", "O", "O"],
            "lattice_ang": (0.5 * a * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]])).ravel().tolist(),
            "frac_coords": [0, 0, 0, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75]}
    rows.insert(5, amo2)
    items = _real_items(rows)
    ev = BatchEvaluator(chgnet)
    outcomes = ev.evaluate_batch(items)
    bad = [o for o in outcomes if not o.ok]
    assert [o.item.material_id for o in bad] == ["amo2"]
    assert bad[0].error_kind == batching.UNSUPPORTED and "Am" in bad[0].error
    assert sum(o.ok for o in outcomes) == len(rows) - 1
    assert ev.splits >= 3  # log2(10) levels to isolate one structure


def test_non_finite_energy_fails_only_that_structure(chgnet):
    items = _real_items(mp20_rows(5))

    class NaNFor:
        def __init__(self, inner, material_index):
            self.inner, self.k = inner, material_index
            self.spec = inner.spec

        def prepare(self, atoms_list, forces=False, stress=False):
            return self.inner.prepare(atoms_list, forces, stress)

        def run(self, prepared):
            preds = self.inner.run(prepared)
            preds[self.k].energy_ev = float("nan")
            return preds

    outcomes = BatchEvaluator(NaNFor(chgnet, 2)).evaluate_batch(items)
    assert [o.ok for o in outcomes] == [True, True, False, True, True]
    assert outcomes[2].error == "non-finite energy (nan)" and outcomes[2].error_kind == batching.NON_FINITE


# ---- prefetch ---------------------------------------------------------------------------------


def test_prefetch_prepares_ahead_in_a_thread_with_a_bounded_queue():
    prepared_at: dict[int, float] = {}
    threads = set()
    lock = threading.Lock()

    def prepare(batch):
        threads.add(threading.current_thread().name)
        with lock:
            prepared_at[batch[0].index] = time.monotonic()
        time.sleep(0.02)
        return batching.Prepared(batch)

    batches = [[it] for it in _items([1] * 12)]
    consumed = []
    with Prefetcher(iter(batches), prepare, depth=2) as pf:
        for p in pf:
            time.sleep(0.05)  # "inference" slower than preparation
            ahead = max(prepared_at) - p.batch[0].index
            assert ahead <= 3  # 2 in the queue + 1 being prepared
            consumed.append(p.batch[0].index)
    assert consumed == list(range(12))
    assert threads == {"mliap-prefetch"}

    # stopping early does not hang, and a failure in the producer reaches the consumer
    with Prefetcher(iter(batches), prepare, depth=2) as pf:
        next(iter(pf))

    def broken():
        yield batches[0]
        raise RuntimeError("row reader broke")

    with pytest.raises(RuntimeError, match="row reader broke"):
        with Prefetcher(broken(), prepare, depth=2) as pf:
            list(pf)
    assert [p.batch[0].index for p in Prefetcher(iter(batches), prepare, depth=0)] == list(range(12))


# ---- runner helpers ---------------------------------------------------------------------------


def test_shards_are_balanced_by_atoms_and_keep_order():
    ids = [f"m{i:03d}" for i in range(101)]
    sizes = [(i * 37) % 50 + 1 for i in range(101)]
    parts = runner.shard(ids, sizes, 4)
    assert sorted(x for p in parts for x in p) == ids
    assert all(p == sorted(p) for p in parts)
    loads = [sum(sizes[ids.index(x)] for x in p) for p in parts]
    assert max(loads) - min(loads) <= max(sizes)
    assert sorted(runner.shard(ids[:2], sizes[:2], 8)) == [[ids[0]], [ids[1]]]


def test_workers_of_one_run_get_whole_claim_shards():
    groups = [[f"m{k}{i}" for i in range(n)] for k, n in enumerate([5, 3, 8, 2, 6])]
    sizes = {m: 10 for g in groups for m in g}
    parts = runner.shard_by_claims(groups, sizes, 2)
    assert sorted(m for p in parts for m in p) == sorted(sizes)
    for g in groups:  # a shard is never split between workers
        assert sum(set(g) <= set(p) for p in parts) == 1
    assert sorted(len(p) for p in parts) == [11, 13]  # greedy by atoms, whole shards only


def test_device_planning():
    assert runner.plan_devices("cpu") == ("cpu", [None])
    assert runner.plan_devices("auto", gpus=[]) == ("cpu", [None])
    assert runner.plan_devices("auto", gpus=["0", "1"]) == ("cuda", ["0", "1"])
    assert runner.plan_devices("cuda:3") == ("cuda:3", ["3"])
    with pytest.raises(ValueError, match="no GPU is visible"):
        runner.plan_devices("cuda", gpus=[])
    with pytest.raises(ValueError, match="unknown device"):
        runner.plan_devices("tpu")


def test_gpu_workers_get_their_own_device_and_label(tmp_path):
    from mliap_tui.cache import Cache

    run = runner.EvaluationRun(Cache(tmp_path), "d", ["chgnet-0.3.0"], device="cuda", gpus=["0", "3"],
                               checkpoints={"chgnet-0.3.0": "weights.pth"})
    job = run._job("chgnet-0.3.0", ["mp-1"], 1, "3")
    # the worker sees its GPU (CUDA_VISIBLE_DEVICES=3) as "cuda" but its rows say cuda:3
    assert (job.device, job.device_label, job.worker, job.material_ids) == ("cuda", "cuda:3", 1, ["mp-1"])
    assert job.cache_root == str(tmp_path.resolve()) and job.checkpoint == str(Path("weights.pth").resolve())
    cpu = runner.EvaluationRun(Cache(tmp_path), "d", ["chgnet-0.3.0"], device="cpu")._job("chgnet-0.3.0", [], 0, None)
    assert (cpu.device, cpu.device_label) == ("cpu", None)
    with pytest.raises(KeyError, match="unknown model"):
        runner.EvaluationRun(Cache(tmp_path), "d", ["chgnet-9"])
    with pytest.raises(ValueError, match="unknown mode"):
        runner.EvaluationRun(Cache(tmp_path), "d", ["chgnet-0.3.0"], mode="md")


def test_rich_progress_renders_events():
    import io

    from rich.console import Console

    from mliap_tui.cli.progress import RichProgress

    out = io.StringIO()
    with RichProgress(console=Console(file=out, force_terminal=False, width=220)) as show:
        show(protocol.RunPlanned(models=[{"model": "chgnet-0.3.0", "total": 10, "done": 2, "failed": 1, "todo": 8},
                                         {"model": "sevennet-0", "total": 10, "done": 10, "failed": 0, "todo": 0}]))
        show(protocol.ModelSkipped(model="sevennet-0", reason="all 10 materials already in the cache"))
        show(protocol.WorkerStarted(model="chgnet-0.3.0", device="cpu", total=8, load_s=3.2))
        show(protocol.Log(model="chgnet-0.3.0", level="warning", message="out of memory on a batch: splitting"))
        show(protocol.Progress(model="chgnet-0.3.0", done=5, total=8, ok=4, failed=1, structures_per_s=12.5,
                               atoms_per_s=120.0, eta_s=3.0, device="cpu", peak_memory_bytes=600 * 2**20,
                               memory_kind="cpu_peak_rss", last_failures=[["x-amo2", "elements not covered by chgnet-0.3.0: Am"]]))
        show(protocol.WorkerFinished(model="chgnet-0.3.0", done=8, ok=7, failed=1, structures_per_s=12.0, wall_s=9.0))
        show(protocol.WorkerError(model="mace-mp-0-medium", message="mace is not installed: pip install 'mliap-tui[mace]'"))
        # the final line shows the summary's numbers: rate over the evaluation, the model's wall time
        show(protocol.RunFinished(summary={"models": [{"model": "chgnet-0.3.0", "wall_s": 9.0, "done": 8,
                                                       "error": None, "cancelled": False}]}))
    text = out.getvalue()
    for piece in ("chgnet-0.3.0", "5/8", "12.0 struct/s", "ETA 00:03", "failed 1", "RSS peak 600.0 MiB",
                  "x-amo2", "skipped: all 10 materials", "out of memory on a batch", "done in 9 s",
                  "mace is not installed"):
        assert piece in text, piece
