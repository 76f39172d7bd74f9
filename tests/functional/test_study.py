"""The static-vs-relaxed symmetry study (``mliap-tui study dof``, analysis.study) on a real cache:
real sample crystals, real CHGNet 0.3.0 static and relaxed rows through the real engine
(support_study), and the WBM set of matcalc (no DFT Ehull) from the shared reference data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from support import REPO_DIR, require_shared
from support_study import DATASET, MODEL, copy_cache

from mliap_tui.analysis.aggregate import per_model
from mliap_tui.analysis.errors import error_table
from mliap_tui.analysis.relax_geometry import pending_rows
from mliap_tui.analysis.study import ALL, csv_paths, load_study, run_study
from mliap_tui.cache import Cache

RELAX_COMMAND = f"mliap-tui run --data {DATASET} --models {MODEL} --mode relax"


def cli(*args: str, cache: Cache, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mliap_tui", f"--cache={cache.root}", *args]
    env = {"COLUMNS": "80", "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO_DIR, env=env)


@pytest.fixture(scope="module")
def study(study_cache):
    return run_study(study_cache, DATASET, n_boot=500, seed=0)


def test_every_crystal_is_studied_static_and_relaxed(study, study_cache):
    ok = study_cache.scan_predictions(DATASET, mode="relax").filter(pl.col("status") == "ok").collect()
    n = ok.height
    assert n >= 10
    head = study.headline.filter((pl.col("metric") == "e_above_hull") & (pl.col("grouping") == ALL))
    assert set(head["view"]) == {"static", "relax", "difference"}
    assert head["n"].to_list() == [n, n, n]
    assert head.select(pl.col("mae_lo_ev_per_atom") <= pl.col("mae_ev_per_atom")).to_series().all()
    assert head.select(pl.col("mae_ev_per_atom") <= pl.col("mae_hi_ev_per_atom")).to_series().all()
    # the static numbers are the summary's (one error table, one statistic)
    static = per_model(error_table(study_cache, DATASET, "static"), "e_above_hull").row(0, named=True)
    got = head.filter(pl.col("view") == "static").row(0, named=True)
    assert got["mae_ev_per_atom"] == pytest.approx(static["mae"])
    assert got["mean_signed_ev_per_atom"] == pytest.approx(static["mean_signed"])
    # the DOF bins add up to every crystal
    by_dof = study.grouped.filter(pl.col("view") == "static")
    assert by_dof["n"].sum() == n and by_dof["grouping"].unique().to_list() == ["dof"]


def test_relaxation_lowers_the_energy_and_the_difference_view_is_the_relaxation_energy(study_cache):
    data = load_study(study_cache, DATASET)
    relaxed = data.rows.filter(pl.col("mode") == "relax")
    e_relax = relaxed["e_relax_minus_static_ev_per_atom"].to_numpy()
    assert np.isfinite(e_relax).all()
    assert (e_relax <= 1e-4).all()  # FIRE only goes downhill (float32 noise aside)
    # relaxed - static of the total-energy error is E_relaxed - E_static, crystal by crystal
    static = data.rows.filter(pl.col("mode") == "static").select("material_id", pl.col("d_e_per_atom").alias("s"))
    joined = relaxed.join(static, on="material_id")
    np.testing.assert_allclose(joined["d_e_per_atom"] - joined["s"], joined["e_relax_minus_static_ev_per_atom"], atol=1e-9)
    # every relaxed cell was compared with its DFT structure: matched ones have an RMSD in Å
    assert relaxed["matched"].is_not_null().all()
    matched = relaxed.filter(pl.col("matched"))
    assert matched.height and (matched["rmsd_ang"] >= 0).all() and (matched["rmsd_ang"] < 0.5).all()
    assert relaxed.filter(~pl.col("matched"))["rmsd_ang"].is_null().all()
    # the space group of the relaxed cell is the one the engine stored
    assert (relaxed["spacegroup_number_relaxed"] == relaxed["relaxed_spacegroup_number"]).all()


def test_relaxation_table_counts_add_up(study):
    for row in study.relax.iter_rows(named=True):
        assert row["n_kept"] + row["n_lowered"] + row["n_raised"] + row["n_changed"] + row["n_unknown"] == row["n"]
        assert row["n_matched"] <= row["n_compared"] <= row["n"]
        assert row["e_relax_ev_per_atom"] <= 1e-4
    everything = study.relax.filter(pl.col("grouping") == ALL).row(0, named=True)
    assert everything["n"] == study.relax.filter(pl.col("grouping") == "dof")["n"].sum()


def test_trend_rows_and_sentences(study):
    trends = study.trends
    assert set(trends["view"]) == {"static", "relax", "difference"}
    assert set(trends["quantity"]) == {"abs", "signed"}
    for row in trends.iter_rows(named=True):
        assert "meV/atom per DOF" in row["sentence"] and "Spearman rho=" in row["sentence"]
        assert row["significant"] == (row["direction"] != 0)
        if not row["significant"]:
            assert "no significant" in row["sentence"]


def test_study_dof_command_prints_static_and_relaxed_tables_in_80_columns(study_cache, tmp_path):
    out = cli("study", "dof", "--data", DATASET, "--n-boot", "300", "--csv", str(tmp_path / "s.csv"), cache=study_cache)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for needle in ("static (model at the DFT structure)", "relaxed (model-relaxed energy vs DFT)",
                   "relaxed - static, same crystals", "95% bootstrap percentile interval (300 resamples",
                   "DOF trend", "Spearman rho=", "what relaxing did", "RMSD", "k/l/r"):
        assert needle in text, needle
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "--mode relax" not in text  # every crystal is relaxed: no advice to relax
    paths = csv_paths(tmp_path / "s.csv")
    errors = pl.read_csv(paths["errors"])
    assert {"model", "view", "metric", "grouping", "group", "n", "mae_ev_per_atom", "mae_lo_ev_per_atom"} <= set(errors.columns)
    assert pl.read_csv(paths["trend"]).height == 6  # 3 views x (|error|, signed)
    assert pl.read_csv(paths["relaxation"])["n_kept"].sum() > 0
    again = cli("study", "dof", "--data", DATASET, "--csv", str(tmp_path / "s.csv"), cache=study_cache)
    assert again.returncode == 2 and "--overwrite" in again.stderr  # nothing is overwritten silently


def test_study_by_crystal_system_and_near_hull(study_cache):
    for by, needle in (("crystal-system", "by crystal system"), ("near-hull", "near hull")):
        out = cli("study", "dof", "--data", DATASET, "--by", by, "--n-boot", "200", cache=study_cache)
        assert out.returncode == 0, out.stderr
        assert needle in out.stdout
    bad = cli("study", "dof", "--data", DATASET, "--by", "colour", cache=study_cache)
    assert bad.returncode == 2 and "dof, crystal-system, near-hull" in bad.stderr


def test_without_relaxed_rows_the_static_study_says_how_to_relax(study_cache, tmp_path):
    cache = copy_cache(tmp_path / "c")
    shutil.rmtree(cache.predictions_dir(DATASET, MODEL, "relax"))
    out = cli("study", "dof", "--data", DATASET, "--n-boot", "200", cache=cache)
    assert out.returncode == 0, out.stderr
    assert "static (model at the DFT structure)" in out.stdout and "relaxed (model" not in out.stdout
    assert RELAX_COMMAND in out.stdout


def test_unpaired_headline_gives_each_view_its_own_count(study_cache, tmp_path):
    cache = copy_cache(tmp_path / "c")
    parts = sorted(cache.predictions_dir(DATASET, MODEL, "relax").glob("*.parquet"))
    assert len(parts) >= 2
    parts[0].unlink()  # some crystals lose their relaxed row
    n_static = cache.scan_predictions(DATASET, mode="static").filter(pl.col("status") == "ok").collect().height
    n_relax = cache.scan_predictions(DATASET, mode="relax").filter(pl.col("status") == "ok").collect().height
    assert n_relax < n_static
    out = cli("study", "dof", "--data", DATASET, "--unpaired", "--n-boot", "100", cache=cache)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"static n={n_static}" in text and f"relaxed n={n_relax}" in text and f"Δ relax n={n_relax}" in text
    paired = cli("study", "dof", "--data", DATASET, "--n-boot", "100", cache=cache)
    assert paired.returncode == 0, paired.stderr
    assert f"n={n_relax}" in paired.stdout and "static n=" not in paired.stdout  # one count for all views


def test_relaxed_cells_are_compared_once_and_cached(study_cache, tmp_path):
    cache = copy_cache(tmp_path / "c")
    shutil.rmtree(cache.relax_geometry_dir(DATASET))
    n_relaxed = cache.scan_predictions(DATASET, mode="relax").filter(pl.col("status") == "ok").collect().height
    assert pending_rows(cache, DATASET).height == n_relaxed
    seen = []
    load_study(cache, DATASET, n_jobs=1, on_progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1] == (n_relaxed, n_relaxed)
    assert pending_rows(cache, DATASET).height == 0
    assert cache.scan_relax_geometry(DATASET).collect().height == n_relaxed


def test_unknown_dataset_is_a_user_error(tmp_path):
    out = cli("study", "dof", "--data", "nosuch", cache=Cache(tmp_path))
    assert out.returncode == 2 and "not in the cache" in out.stderr


@pytest.fixture(scope="module")
def wbm_cache(tmp_path_factory):
    """30 crystals of the WBM set (total energies only, no formation energy or Ehull), CHGNet static."""
    from mliap_tui.data.importer import import_dataset
    from mliap_tui.engine.runner import run_evaluation

    path = require_shared("wbm/wbm_random_1000_pbe54.json.gz")
    cache = Cache(tmp_path_factory.mktemp("wbm"))
    import_dataset(path, "wbm", cache=cache, limit=30, n_jobs=1)
    summary = run_evaluation(cache, "wbm", [MODEL], device="cpu", torch_threads=1)
    assert summary.ok, summary.errors
    return cache


def test_wbm_without_dft_ehull_falls_back_to_what_it_has(wbm_cache):
    out = cli("study", "dof", "--data", "wbm", "--n-boot", "200", cache=wbm_cache)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "wbm has no DFT Ehull: showing total energy" in text
    assert "total energy, MAE and mean signed error by total DOF" in text
    assert "E (total)" in text and "Ehull(b)" in text  # the rebuilt hull needs total energies only
    assert "near hull" not in text.replace("no near-hull split", "")
    assert "mliap-tui run --data wbm --models chgnet-0.3.0 --mode relax" in text
    study = run_study(wbm_cache, "wbm", metric="e_above_hull", n_boot=100)
    assert study.metric == "e_per_atom" and study.grouped.height > 0
    assert any("cannot be compared" in n for n in study.notes)


def test_summary_by_dof_on_wbm_is_not_an_empty_table(wbm_cache):
    out = cli("summary", "--data", "wbm", "--by", "dof", cache=wbm_cache)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "has no DFT Ehull values: the table by total DOF shows the total-energy error instead" in text
    assert "total energy error by total DOF" in text and "E (total)" in text
    assert "E = Eform = Ehull" not in text  # WBM has no Eform or Ehull to be equal to
