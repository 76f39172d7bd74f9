"""The evaluation engine end to end: real CHGNet 0.3.0 and SevenNet-0 on CPU, on real MP-20
crystals, through real worker subprocesses writing to a real parquet cache."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from support import REPO_DIR, sample_rows

from mliap_tui.cache import Cache
from mliap_tui.engine import protocol
from mliap_tui.engine.runner import EvaluationRun, run_evaluation

DATASET = "engine"


def mp20_rows(n: int, max_sites: int, skip: int = 0) -> list[dict]:
    """Materials rows of shipped sample crystals, each with a made-up but distinct MP2020
    correction: the engine must add it for raw-PBE models."""
    rows = sample_rows(n, max_sites, skip, dataset=DATASET, source="mp_sample_materials.csv.gz")
    for k, row in enumerate(rows):
        row["mp2020_correction_per_atom"] = -0.0123 * (k % 5)
    return rows


def crystal(material_id: str, species: list[str], lattice, frac) -> dict:
    lattice = np.asarray(lattice, dtype=float)
    return {
        "material_id": material_id, "dataset": DATASET, "source": "test", "species": species,
        "n_sites": len(species), "lattice_ang": lattice.ravel().tolist(),
        "frac_coords": np.asarray(frac, dtype=float).ravel().tolist(), "elements": sorted(set(species)),
        "mp2020_correction_per_atom": 0.0,
    }


def special_rows(template: dict) -> list[dict]:
    a = 5.376  # AmO2, fluorite (Fm-3m), primitive fcc cell: Am (Z=95) is outside CHGNet's and SevenNet's elements
    amo2 = crystal("x-amo2", ["Am", "O", "O"], 0.5 * a * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]]),
                   [[0, 0, 0], [0.25, 0.25, 0.25], [0.75, 0.75, 0.75]])
    # alpha-Po, simple cubic a = 3.359 Å: inside CHGNet's 94 elements, outside SevenNet-0's 89
    po = crystal("x-po", ["Po"], np.eye(3) * 3.359, [[0, 0, 0]])
    # a real crystal with its first atom given twice
    overlap = dict(template, material_id="x-overlap", species=template["species"] + template["species"][:1],
                   frac_coords=template["frac_coords"] + template["frac_coords"][:3], n_sites=template["n_sites"] + 1)
    # a row whose frac_coords lost a value
    badfrac = dict(template, material_id="x-badfrac", frac_coords=template["frac_coords"][:-1])
    return [amo2, po, overlap, badfrac]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Both models over 12 good crystals and 4 bad rows, one run."""
    root = tmp_path_factory.mktemp("cache")
    good = mp20_rows(12, max_sites=8)
    cache = Cache(root)
    cache.write_materials(DATASET, pl.DataFrame(good + special_rows(good[0])))
    events: list[protocol.Event] = []
    summary = run_evaluation(cache, DATASET, ["chgnet-0.3.0", "sevennet-0"], device="cpu", on_event=events.append,
                             batch_atoms=40, chunk_rows=5)
    preds = cache.scan_predictions(DATASET, mode="static").collect()
    return cache, good, summary, events, preds


def by_id(preds: pl.DataFrame, model: str) -> dict[str, dict]:
    return {r["material_id"]: r for r in preds.filter(pl.col("model") == model).to_dicts()}


def test_run_summary_and_events(evaluated):
    cache, good, summary, events, preds = evaluated
    assert summary.ok, summary.errors
    assert [(m.model, m.todo, m.done, m.ok, m.failed) for m in summary.models] == [
        ("chgnet-0.3.0", 16, 16, 13, 3),
        ("sevennet-0", 16, 16, 12, 4),
    ]
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "RunPlanned" and kinds[-1] == "RunFinished"
    assert kinds.count("WorkerStarted") == 2 and kinds.count("WorkerFinished") == 2 and "WorkerError" not in kinds
    progress = [e for e in events if isinstance(e, protocol.Progress)]
    for model in ("chgnet-0.3.0", "sevennet-0"):
        mine = [p for p in progress if p.model == model]
        assert mine and [p.done for p in mine] == sorted(p.done for p in mine)
        last = mine[-1]
        assert (last.done, last.total, last.atoms_done) == (16, 16, last.atoms_total)
        assert last.device == "cpu" and last.memory_kind == "cpu_peak_rss" and last.peak_memory_bytes > 100 * 2**20
        assert last.structures_per_s and last.structures_per_s > 0 and last.eta_s == 0.0
        assert last.failed >= 3 and last.last_failures
    chunks = [e for e in events if isinstance(e, protocol.ChunkCommitted)]
    assert sum(c.rows for c in chunks) == 32
    assert len(chunks) >= 4  # committed in chunks of 5 rows, not at the end only
    # at the end the run merged each model's chunks into one compacted file (cache/compact.py)
    assert not any(Path(c.path).exists() for c in chunks)
    for model in ("chgnet-0.3.0", "sevennet-0"):
        files = cache.prediction_files(DATASET, model, "static")
        assert len(files) == 1 and files[0].name.startswith("compact-") and files[0].name.endswith("-n16.parquet")
    compacted = [e for e in events if isinstance(e, protocol.Log) and e.message.startswith("compacted")]
    assert [e.model for e in compacted] == ["chgnet-0.3.0", "sevennet-0"]
    # every row of the cache is there once, with the run's id, device and dtype
    assert preds.height == 32 and preds.select("material_id", "model").is_unique().all()
    assert set(preds["run_id"]) == {summary.run_id} and set(preds["device"]) == {"cpu"} and set(preds["dtype"]) == {"float32"}


def test_chgnet_energies_equal_chgnet_own_prediction(evaluated):
    from chgnet.model import CHGNet

    from mliap_tui.data.structures import row_to_structure

    cache, good, summary, events, preds = evaluated
    rows = by_id(preds, "chgnet-0.3.0")
    model = CHGNet.load(model_name="0.3.0", use_device="cpu", verbose=False)
    for g in good:
        want = float(model.predict_structure(row_to_structure(g))["e"])
        r = rows[g["material_id"]]
        assert r["status"] == "ok" and r["error"] is None and r["n_sites"] == g["n_sites"]
        assert r["e_per_atom_pred_native"] == pytest.approx(want, abs=1e-4)
        assert r["e_per_atom_pred_mp2020"] == r["e_per_atom_pred_native"]  # CHGNet is on the MP2020 scale
        assert r["wall_s"] > 0 and r["forces_pred_ev_per_ang"] is None and r["relax_steps"] is None


def test_sevennet_energies_equal_sevennet_calculator(evaluated):
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    from sevenn.calculator import SevenNetCalculator

    from mliap_tui.data.structures import row_to_atoms

    cache, good, summary, events, preds = evaluated
    rows = by_id(preds, "sevennet-0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calc = SevenNetCalculator("7net-0", device="cpu")
    for g in good:
        atoms = row_to_atoms(g)
        atoms.calc = calc
        want = atoms.get_potential_energy() / len(atoms)
        r = rows[g["material_id"]]
        assert r["status"] == "ok"
        assert r["e_per_atom_pred_native"] == pytest.approx(want, abs=1e-4)
        # raw PBE model: the structure's MP2020 correction is added
        assert r["e_per_atom_pred_mp2020"] == pytest.approx(want + g["mp2020_correction_per_atom"], abs=1e-4)


def test_uncovered_elements_and_malformed_rows_fail_with_reasons(evaluated):
    cache, good, summary, events, preds = evaluated
    chg, sev = by_id(preds, "chgnet-0.3.0"), by_id(preds, "sevennet-0")
    for rows in (chg, sev):
        assert all(rows[g["material_id"]]["status"] == "ok" for g in good)
        assert rows["x-amo2"]["status"] == "failed" and "Am" in rows["x-amo2"]["error"]
        assert rows["x-overlap"]["status"] == "failed" and "0.000 Å apart" in rows["x-overlap"]["error"]
        assert rows["x-badfrac"]["status"] == "failed" and "frac_coords has" in rows["x-badfrac"]["error"]
        for key in ("x-amo2", "x-overlap", "x-badfrac"):
            assert rows[key]["e_per_atom_pred_native"] is None and rows[key]["e_per_atom_pred_mp2020"] is None
    assert chg["x-amo2"]["error"] == "elements not covered by chgnet-0.3.0: Am"
    assert chg["x-po"]["status"] == "ok" and np.isfinite(chg["x-po"]["e_per_atom_pred_native"])
    assert sev["x-po"]["status"] == "failed" and sev["x-po"]["error"] == "elements not covered by sevennet-0: Po"
    # done_keys: ok rows only, unless failed ones are asked for
    assert cache.done_keys(DATASET, "sevennet-0", "static") == {g["material_id"] for g in good}
    assert len(cache.done_keys(DATASET, "sevennet-0", "static", include_failed=True)) == 16


def test_second_run_does_nothing_and_retry_failed_retries_only_failures(evaluated):
    cache, good, summary, events, preds = evaluated
    ev2: list[protocol.Event] = []
    again = run_evaluation(cache, DATASET, ["chgnet-0.3.0", "sevennet-0"], device="cpu", on_event=ev2.append)
    assert [(m.already_done, m.cached_failed, m.todo) for m in again.models] == [(16, 3, 0), (16, 4, 0)]
    skipped = [e for e in ev2 if isinstance(e, protocol.ModelSkipped)]
    weights = [m.weights_fingerprint for m in again.models]
    assert all(w and len(w) == 64 for w in weights)  # the bundled weights' sha256
    assert [e.reason for e in skipped] == [
        f"all 16 materials already in the cache for these weights ({weights[0][:7]}) (3 failed: --retry-failed retries them)",
        f"all 16 materials already in the cache for these weights ({weights[1][:7]}) (4 failed: --retry-failed retries them)",
    ]
    assert ev2[0].models[1] == {"model": "sevennet-0", "total": 16, "done": 16, "failed": 4, "todo": 0, "weights": weights[1]}
    assert not any(isinstance(e, protocol.WorkerStarted) for e in ev2)

    retry = run_evaluation(cache, DATASET, ["chgnet-0.3.0"], device="cpu", retry_failed=True)
    m = retry.models[0]
    assert (m.already_done, m.todo, m.done, m.failed) == (13, 3, 3, 3)
    now = cache.scan_predictions(DATASET, ["chgnet-0.3.0"], "static").collect()
    assert now.height == 16 and now["material_id"].is_unique().all()  # newest row wins, no duplicates
    assert set(now.filter(pl.col("status") == "failed")["run_id"]) == {retry.run_id}


def _raw_rows(cache: Cache, model: str) -> pl.DataFrame:
    files = cache.prediction_files(DATASET, model, "static")
    return pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame()


def test_sigkill_cancel_and_resume_leave_no_gaps_and_no_duplicates(tmp_path):
    rows = mp20_rows(60, max_sites=6, skip=200)
    cache = Cache(tmp_path)
    cache.write_materials(DATASET, pl.DataFrame(rows))
    ids = {r["material_id"] for r in rows}
    job = protocol.WorkerJob(cache_root=str(tmp_path), dataset=DATASET, model="chgnet-0.3.0", batch_atoms=24, chunk_rows=4,
                             chunk_seconds=60, run_id="killed")

    # 1. a worker, killed with SIGKILL right after its first committed chunk
    proc = subprocess.Popen([sys.executable, "-m", "mliap_tui.engine.worker", "--job", "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_DIR, start_new_session=True)
    proc.stdin.write(job.to_json().encode())
    proc.stdin.close()
    lines = []
    try:
        for raw in proc.stdout:
            lines.append(raw.decode())
            ev = protocol.event_from_json(raw)
            assert ev is not None, f"stdout carries events only, got {raw!r}"  # CHGNet's banner went to stderr
            if isinstance(ev, protocol.ChunkCommitted):
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=30)
        stderr = proc.stderr.read().decode()
    assert proc.returncode == -signal.SIGKILL, stderr[-2000:]
    first = _raw_rows(cache, "chgnet-0.3.0")
    assert 4 <= first.height < len(rows), "the kill must land in the middle of the run"
    kinds = [protocol.event_from_json(line).event for line in lines]
    # "loading chgnet-0.3.0 ...", the canary verdict, then started
    assert kinds[:3] == ["log", "log", "started"] and kinds[-1] == "chunk"
    assert "canary passed" in protocol.event_from_json(lines[1]).message

    # 2. a run cancelled from another thread at its first chunk: commits what it has and returns
    run: EvaluationRun

    def on_event(ev):
        if isinstance(ev, protocol.ChunkCommitted):
            run.cancel()

    run = EvaluationRun(cache, DATASET, ["chgnet-0.3.0"], device="cpu", on_event=on_event, batch_atoms=24, chunk_rows=4)
    result: dict = {}
    t = threading.Thread(target=lambda: result.setdefault("summary", run.run()))
    t.start()
    t.join(timeout=110)
    assert not t.is_alive()
    cancelled = result["summary"]
    m = cancelled.models[0]
    assert cancelled.cancelled and not cancelled.ok and m.cancelled and m.error is None
    assert m.already_done == first.height and 4 <= m.done < m.todo
    second = _raw_rows(cache, "chgnet-0.3.0")
    assert second.height == first.height + m.done

    # 3. the next run computes only what is missing, split over two worker processes
    progress: list[protocol.Progress] = []
    final = run_evaluation(cache, DATASET, ["chgnet-0.3.0"], device="cpu", batch_atoms=24, cpu_workers=2,
                           on_event=lambda ev: progress.append(ev) if isinstance(ev, protocol.Progress) else None)
    m = final.models[0]
    assert final.ok and m.already_done == second.height and m.done == m.todo == len(rows) - second.height
    assert m.workers == 2 and progress[-1].done == progress[-1].total == m.todo  # summed over both workers
    raw = _raw_rows(cache, "chgnet-0.3.0")
    assert raw.height == len(rows)  # no duplicates ...
    assert set(raw["material_id"]) == ids  # ... and no gaps
    assert (raw["status"] == "ok").all()
    assert set(raw["run_id"]) == {"killed", cancelled.run_id, final.run_id}


@pytest.fixture(scope="module")
def chgnet_predictor():
    from mliap_tui.models.registry import load_predictor

    return load_predictor("chgnet-0.3.0")


def test_static_forces_and_stress_match_the_ase_calculator(tmp_path, chgnet_predictor):
    from mliap_tui.data.structures import row_to_atoms
    from mliap_tui.engine.worker import run_job

    rows = mp20_rows(4, max_sites=8, skip=50)
    cache = Cache(tmp_path)
    cache.write_materials(DATASET, pl.DataFrame(rows))
    job = protocol.WorkerJob(cache_root=str(tmp_path), dataset=DATASET, model="chgnet-0.3.0", forces=True, stress=True)
    finished = run_job(job, lambda ev: None, predictor=chgnet_predictor)
    assert (finished.done, finished.ok) == (4, 4)
    out = by_id(cache.scan_predictions(DATASET, mode="static").collect(), "chgnet-0.3.0")
    calc = chgnet_predictor.ase_calculator()
    for r in rows:
        atoms = row_to_atoms(r)
        atoms.calc = calc
        got = out[r["material_id"]]
        np.testing.assert_allclose(np.reshape(got["forces_pred_ev_per_ang"], (-1, 3)), atoms.get_forces(), atol=1e-4)
        np.testing.assert_allclose(got["stress_pred_gpa"], atoms.get_stress(voigt=True) * 160.21766208, atol=1e-3)
        assert got["e_per_atom_pred_native"] == pytest.approx(atoms.get_potential_energy() / len(atoms), abs=1e-4)


def test_relax_mode_reanalyses_symmetry(tmp_path, chgnet_predictor):
    from mliap_tui.data.structures import row_to_atoms
    from mliap_tui.engine.worker import run_job
    from mliap_tui.symmetry import analyze_cell

    rows = mp20_rows(2, max_sites=4)
    cache = Cache(tmp_path)
    cache.write_materials(DATASET, pl.DataFrame(rows))
    predictor = chgnet_predictor
    static = {r["material_id"]: predictor.predict([row_to_atoms(r)])[0].energy_ev / r["n_sites"] for r in rows}
    events: list[protocol.Event] = []
    job = protocol.WorkerJob(cache_root=str(tmp_path), dataset=DATASET, model="chgnet-0.3.0", mode="relax",
                             relax_max_steps=60, forces=True, stress=True)
    finished = run_job(job, events.append, predictor=predictor)
    assert (finished.done, finished.ok) == (2, 2)
    out = by_id(cache.scan_predictions(DATASET, mode="relax").collect(), "chgnet-0.3.0")
    for r in rows:
        got = out[r["material_id"]]
        assert got["status"] == "ok" and got["mode"] == "relax"
        assert 0 <= got["relax_steps"] <= 60
        assert got["e_per_atom_pred_native"] <= static[r["material_id"]] + 1e-4  # relaxing lowers the energy
        assert len(got["relaxed_lattice_ang"]) == 9 and len(got["relaxed_frac_coords"]) == 3 * r["n_sites"]
        assert len(got["forces_pred_ev_per_ang"]) == 3 * r["n_sites"] and len(got["stress_pred_gpa"]) == 6
        if got["relax_steps"] < 60:  # converged: residual forces below fmax
            assert np.abs(got["forces_pred_ev_per_ang"]).max() < 0.05 * 1.01
        before = analyze_cell(np.reshape(r["lattice_ang"], (3, 3)), r["species"], np.reshape(r["frac_coords"], (-1, 3)))
        # a DFT-relaxed crystal keeps its space group under a good potential's relaxation
        assert got["relaxed_spacegroup_number"] == before.spacegroup_number
        assert got["relaxed_total_dof"] == before.total_dof


def test_worker_rejects_bad_jobs_with_one_line_errors(tmp_path):
    def worker(job_text: str) -> tuple[int, list[protocol.Event]]:
        p = subprocess.run([sys.executable, "-m", "mliap_tui.engine.worker", "--job", "-"], input=job_text.encode(),
                           capture_output=True, cwd=REPO_DIR, timeout=120)
        evs = [protocol.event_from_json(line) for line in p.stdout.decode().splitlines()]
        assert all(e is not None for e in evs)
        return p.returncode, evs

    rc, evs = worker('{"dataset": "x"}')
    assert rc == protocol.EXIT_BAD_JOB and evs[-1].kind == "bad_job" and "cache_root" in evs[-1].message
    rc, evs = worker(json.dumps({"cache_root": str(tmp_path), "dataset": "nope", "model": "chgnet-0.3.0"}))
    assert rc == protocol.EXIT_BAD_JOB and "dataset 'nope' is not in the cache" in evs[-1].message
    Cache(tmp_path).write_materials(DATASET, pl.DataFrame(mp20_rows(1, max_sites=4)))
    rc, evs = worker(json.dumps({"cache_root": str(tmp_path), "dataset": DATASET, "model": "chgnet-0.3.0",
                                 "checkpoint": str(tmp_path / "missing.pth")}))
    assert rc == protocol.EXIT_MODEL_UNAVAILABLE and evs[-1].kind == "model_unavailable"
    assert "missing.pth does not exist" in evs[-1].message and "\n" not in evs[-1].message
    rc, evs = worker(json.dumps({"cache_root": str(tmp_path), "dataset": DATASET, "model": "no-such-model"}))
    assert rc == protocol.EXIT_BAD_JOB and "unknown model 'no-such-model'" in evs[-1].message


def test_runner_reports_a_missing_interpreter_and_unknown_models(tmp_path):
    cache = Cache(tmp_path)
    cache.write_materials(DATASET, pl.DataFrame(mp20_rows(1, max_sites=4)))
    events: list[protocol.Event] = []
    s = run_evaluation(cache, DATASET, ["chgnet-0.3.0"], device="cpu", python_for={"chgnet": str(tmp_path / "no-python")},
                       on_event=events.append)
    assert not s.ok and "Python interpreter for chgnet-0.3.0 not found" in s.errors[0]
    assert any(isinstance(e, protocol.WorkerError) for e in events)
    # another interpreter (e.g. a family's own venv) that lacks mliap_tui's dependencies
    other = Path("/usr/bin/python3")
    if other.is_file() and subprocess.run([str(other), "-c", "import polars"], capture_output=True).returncode != 0:
        s = run_evaluation(cache, DATASET, ["chgnet-0.3.0"], device="cpu", python_for={"chgnet-0.3.0": str(other)})
        assert not s.ok and "worker exited with code 1" in s.errors[0] and "No module named" in s.errors[0]
        assert str(other) in s.errors[0]
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        run_evaluation(cache, DATASET, ["nope"], device="cpu")
    with pytest.raises(FileNotFoundError, match="not in the cache"):
        run_evaluation(cache, "other", ["chgnet-0.3.0"], device="cpu")
