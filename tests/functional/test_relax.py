"""Relax mode end to end with real models: the batched engine against ASE's FIRE(FrechetCellFilter)
one structure at a time, CHGNet 0.3.0 and SevenNet-0 on the shipped sample. Both engines run
through the worker (``run_job``) into two copies of one cache, and their rows are compared: final
energy (meV/atom), relaxed space group, step counts side by side. A relax run killed with SIGKILL
resumes with every structure exactly once.

The default suite compares a handful of crystals; ``-m slow`` runs the issue's criterion on 100
(>= 95 % within 1 meV/atom, >= 98 % same relaxed space group).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from support import REPO_DIR, wait_for, workers_of

from mliap_tui.cache import Cache
from mliap_tui.core.units import MEV_PER_EV
from mliap_tui.data.importer import import_dataset
from mliap_tui.engine import protocol
from mliap_tui.engine.worker import run_job
from mliap_tui.models.registry import REGISTRY, availability

MODELS = ("chgnet-0.3.0", "sevennet-0")
ENERGY_TOL_MEV_PER_ATOM = 1.0


def _needs(model: str):
    return pytest.mark.skipif(not availability(REGISTRY[model]).ready, reason=f"{model} cannot run here")


@pytest.fixture(scope="module")
def predictors():
    import torch

    from mliap_tui.models.registry import load_predictor

    torch.set_num_threads(1)
    loaded: dict = {}

    def get(model: str):
        if model not in loaded:
            loaded[model] = load_predictor(model)
        return loaded[model]

    return get


@pytest.fixture(scope="module")
def sample_cache(tmp_path_factory):
    """The first 100 sample crystals imported once; tests copy the dataset folder."""
    root = tmp_path_factory.mktemp("sample100")
    import_dataset("sample", cache=Cache(root), limit=100, n_jobs=1)
    return root


def relax_with_both_engines(sample_root: Path, tmp_path: Path, predictor, n: int, **job_options) -> pl.DataFrame:
    """One row per material: the ASE engine's and the batched engine's results side by side."""
    ids = Cache(sample_root).scan_materials("sample").select("material_id").collect().sort("material_id")["material_id"]
    ids = ids.head(n).to_list()
    frames = {}
    for engine in ("ase", "batched"):
        root = tmp_path / engine
        shutil.copytree(sample_root, root)
        job = protocol.WorkerJob(cache_root=str(root), dataset="sample", model=predictor.spec.id, mode="relax",
                                 material_ids=ids, relax_engine=engine, torch_threads=1, **job_options)
        finished = run_job(job, lambda ev: None, predictor=predictor)
        assert finished.done == n
        frames[engine] = Cache(root).scan_predictions("sample", mode="relax").collect()
    cols = ["material_id", "status", "error", "n_sites", "e_per_atom_pred_native", "relax_steps", "relaxed_spacegroup_number",
            "relax_converged", "relax_engine", "relax_fmax_ev_per_ang"]
    a = frames["ase"].select(cols)
    b = frames["batched"].select(cols)
    return a.join(b, on="material_id", suffix="_batched").rename(
        {c: f"{c}_ase" for c in cols if c not in ("material_id", "n_sites")}).sort("material_id")


def agreement(side: pl.DataFrame) -> dict:
    both = side.filter((pl.col("status_ase") == "ok") & (pl.col("status_batched") == "ok"))
    de = ((both["e_per_atom_pred_native_batched"] - both["e_per_atom_pred_native_ase"]).abs() * MEV_PER_EV).to_numpy()
    same_sg = (both["relaxed_spacegroup_number_batched"] == both["relaxed_spacegroup_number_ase"]).to_numpy()
    steps_a, steps_b = both["relax_steps_ase"].to_numpy(), both["relax_steps_batched"].to_numpy()
    n = side.height
    return {
        "n": n,
        "both_ok": both.height,
        "frac_energy_within_1_mev_per_atom": float((de < ENERGY_TOL_MEV_PER_ATOM).sum() / n),
        "frac_same_spacegroup": float(same_sg.sum() / n),
        "max_abs_de_mev_per_atom": float(de.max()) if len(de) else None,
        "median_abs_de_mev_per_atom": float(np.median(de)) if len(de) else None,
        "steps_ase_mean_median_max": [float(steps_a.mean()), float(np.median(steps_a)), int(steps_a.max())],
        "steps_batched_mean_median_max": [float(steps_b.mean()), float(np.median(steps_b)), int(steps_b.max())],
        "frac_identical_steps": float((steps_a == steps_b).mean()),
    }


def steps_table(side: pl.DataFrame) -> str:
    """Step counts of the two engines side by side (80 columns), differing rows first."""
    lines = [f"{'material_id':<14} {'atoms':>5} {'ASE steps':>9} {'batched':>8} {'dE meV/at':>10} {'SG ASE/bat':>11}"]
    rows = side.with_columns(
        ((pl.col("e_per_atom_pred_native_batched") - pl.col("e_per_atom_pred_native_ase")) * MEV_PER_EV).alias("de"),
        (pl.col("relax_steps_batched") != pl.col("relax_steps_ase")).alias("differs"),
    ).sort(["differs", "material_id"], descending=[True, False])
    for r in rows.iter_rows(named=True):
        de = "" if r["de"] is None else f"{r['de']:+.4f}"
        sg = f"{r['relaxed_spacegroup_number_ase']}/{r['relaxed_spacegroup_number_batched']}"
        lines.append(f"{r['material_id']:<14} {r['n_sites']:>5} {r['relax_steps_ase']!s:>9} {r['relax_steps_batched']!s:>8} "
                     f"{de:>10} {sg:>11}")
    return "\n".join(lines)


@pytest.mark.parametrize("model", [pytest.param(m, marks=_needs(m)) for m in MODELS])
def test_batched_engine_matches_ase_on_a_handful_of_crystals(model, predictors, sample_cache, tmp_path):
    side = relax_with_both_engines(sample_cache, tmp_path, predictors(model), 6, batch_atoms=48)
    print(f"\n{model}\n{steps_table(side)}")
    stats = agreement(side)
    assert stats["both_ok"] == 6
    assert stats["frac_energy_within_1_mev_per_atom"] == 1.0 and stats["frac_same_spacegroup"] == 1.0
    assert (side["relax_engine_ase"] == "ase").all() and (side["relax_engine_batched"] == "batched").all()
    for engine in ("ase", "batched"):  # converged rows are below fmax; the flag says so
        conv = side[f"relax_converged_{engine}"].to_numpy()
        fmax = side[f"relax_fmax_ev_per_ang_{engine}"].to_numpy()
        assert np.array_equal(conv, fmax < 0.05)
    assert abs(stats["steps_batched_mean_median_max"][0] - stats["steps_ase_mean_median_max"][0]) <= 2


@pytest.mark.slow
@pytest.mark.parametrize("model", [pytest.param(m, marks=_needs(m)) for m in MODELS])
def test_batched_engine_matches_ase_on_100_sample_crystals(model, predictors, sample_cache, tmp_path):
    """The issue's criterion: >= 95 % within 1 meV/atom, >= 98 % the same relaxed space group."""
    side = relax_with_both_engines(sample_cache, tmp_path, predictors(model), 100)
    stats = agreement(side)
    print(f"\n{model}: {json.dumps(stats)}\n{steps_table(side)}")
    out = os.environ.get("MLIAP_TUI_RELAX_EQUIVALENCE_DIR")
    if out:  # keep the side-by-side table for the record
        Path(out).mkdir(parents=True, exist_ok=True)
        side.write_csv(Path(out) / f"equivalence_{model}_N100.csv")
        (Path(out) / f"equivalence_{model}_N100.json").write_text(json.dumps(stats, indent=1))
    assert stats["n"] == 100 and stats["both_ok"] >= 98
    assert stats["frac_energy_within_1_mev_per_atom"] >= 0.95
    assert stats["frac_same_spacegroup"] >= 0.98


@_needs("chgnet-0.3.0")
def test_relax_rows_keep_bad_rows_apart_and_commit_in_chunks(tmp_path, predictors):
    """A malformed row fails with its reason before the model; the others relax; chunks commit as
    they come (several chunks for one job)."""
    from support import sample_rows

    rows = sample_rows(5, max_sites=6, dataset="relax", source="test")
    bad = dict(rows[0], material_id="x-badfrac", frac_coords=rows[0]["frac_coords"][:-1])
    cache = Cache(tmp_path)
    cache.write_materials("relax", pl.DataFrame(rows + [bad]))
    events: list = []
    job = protocol.WorkerJob(cache_root=str(tmp_path), dataset="relax", model="chgnet-0.3.0", mode="relax", chunk_rows=2,
                             batch_atoms=24, torch_threads=1)
    finished = run_job(job, events.append, predictor=predictors("chgnet-0.3.0"))
    assert (finished.done, finished.ok, finished.failed) == (6, 5, 1)
    preds = cache.scan_predictions("relax", mode="relax").collect()
    assert preds.height == 6 and preds["material_id"].n_unique() == 6
    failed = preds.filter(pl.col("status") == "failed").row(0, named=True)
    assert failed["material_id"] == "x-badfrac" and "frac_coords" in failed["error"]
    ok = preds.filter(pl.col("status") == "ok")
    assert (ok["relax_engine"] == "batched").all() and ok["relaxed_spacegroup_number"].is_not_null().all()
    assert (ok["wall_s"] > 0).all()
    assert sum(isinstance(e, protocol.ChunkCommitted) for e in events) >= 3


# ---- a relax run killed with SIGKILL resumes: no duplicate, no structure lost ------------------------

N_KILL = 100  # a chunk commits every 15 s: enough crystals that the kill lands mid-run


def _relax_cli(cache_root: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mliap_tui", f"--cache={cache_root}", "run", "--data", "sample", "--models",
            "chgnet-0.3.0", "--mode", "relax", "--torch-threads", "1", "--batch-atoms", "64", *extra]


def _relax_rows(cache: Cache) -> pl.DataFrame:
    """Every committed relax row, not deduplicated: what is physically on disk."""
    files = cache.prediction_files("sample", "chgnet-0.3.0", "relax")
    return pl.read_parquet(files) if files else pl.DataFrame(schema={"material_id": pl.Utf8, "status": pl.Utf8})


@pytest.mark.slow
@_needs("chgnet-0.3.0")
@pytest.mark.parametrize("victim", ["worker", "runner and worker"])
def test_a_relax_run_killed_with_sigkill_resumes_exactly_once(tmp_path, victim, sample_cache):
    tmp_path = tmp_path / "cache"
    shutil.copytree(sample_cache, tmp_path)
    cache = Cache(tmp_path)
    before = set(workers_of(tmp_path))
    proc = subprocess.Popen(_relax_cli(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_DIR,
                            start_new_session=True, env={**os.environ, "COLUMNS": "200"})
    try:
        wait_for(lambda: _relax_rows(cache).height > 0, 240, "the first committed chunk")
        mine = set(workers_of(tmp_path)) - before
        assert mine, "no worker process found"
        committed = _relax_rows(cache).height
        assert committed < N_KILL, "the run finished before it could be killed: use more crystals"
        for pid in mine:  # mid-run: structures are in flight in the batch
            os.kill(pid, signal.SIGKILL)
        if victim != "worker":
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wait_for(lambda: not (set(workers_of(tmp_path)) - before), 60, "the killed worker to disappear")
    kept = _relax_rows(cache)
    assert kept.height >= committed and kept["material_id"].n_unique() == kept.height  # what was on disk stays, once
    assert not list(tmp_path.rglob("*.tmp"))
    out = subprocess.run(_relax_cli(tmp_path), capture_output=True, text=True, timeout=900, cwd=REPO_DIR,
                         env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    raw = _relax_rows(cache)
    ids = set(cache.scan_materials("sample").select("material_id").collect()["material_id"])
    assert raw.height == N_KILL and raw["material_id"].n_unique() == N_KILL, raw.group_by("material_id").len().filter(pl.col("len") > 1)
    assert set(raw["material_id"]) == ids
    # the rows from before the kill are untouched (the resume redid only what was not committed)
    assert set(kept["material_id"]) <= set(raw["material_id"])
    assert (raw["relax_engine"] == "batched").all()
