"""Models from outside the package: an entry-point plug-in (examples/emt_plugin, ASE's EMT) and
``ase:`` references, end to end (run, summary, explorer), and the batched and per-structure paths
of one model agreeing."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from support import FIXTURES, REPO_DIR

from mliap_tui.analysis.summary import summarize
from mliap_tui.cache import Cache
from mliap_tui.data.importer import import_dataset
from mliap_tui.engine.runner import run_evaluation
from mliap_tui.models import plugins
from mliap_tui.models.registry import get_spec, load_predictor
from mliap_tui.tui.state import load_dataset

EMT_CRYSTALS = FIXTURES / "mp20_cu_al_ni.csv.gz"  # the 12 MP-20 crystals made of Cu, Al and Ni only
DATASET = "cualni"


@pytest.fixture(autouse=True)
def _private_hash_memo(tmp_path, monkeypatch):
    monkeypatch.setenv("MLIAP_TUI_HASH_MEMO", str(tmp_path / "memo.json"))


@pytest.fixture
def emt_plugin(tmp_path, monkeypatch):
    """examples/emt_plugin made importable with its entry point, as `pip install` would (a
    dist-info folder on the path), for this process and the engine's workers."""
    site = tmp_path / "site"
    info = site / "mliap_emt_plugin-0.1.0.dist-info"
    info.mkdir(parents=True)
    shutil.copy(REPO_DIR / "examples" / "emt_plugin" / "mliap_emt_plugin.py", site)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mliap-emt-plugin\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[mliap_tui.models]\nemt = mliap_emt_plugin:plugin\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))
    plugins.refresh_plugins()
    yield site
    plugins.refresh_plugins()


@pytest.fixture
def cache(tmp_path) -> Cache:
    cache = Cache(tmp_path / "cache")
    import_dataset(EMT_CRYSTALS, dataset=DATASET, cache=cache, n_jobs=1)
    return cache


def _emt_energies(structures) -> list[float]:
    from ase.calculators.emt import EMT

    out = []
    for s in structures:
        a = s.copy()
        a.calc = EMT()
        out.append(a.get_potential_energy() / len(a))
    return out


def test_an_entry_point_plugin_runs_end_to_end(emt_plugin, cache):
    spec = get_spec("emt")
    assert spec.family == "emt" and "mliap_emt_plugin:plugin" in spec.options["plugin"]
    summary = run_evaluation(cache, DATASET, ["emt"], device="cpu")  # a worker subprocess finds the plug-in too
    m = summary.models[0]
    assert summary.ok and m.ok == 12, m.error
    rows = cache.scan_predictions(DATASET, ["emt"]).collect().sort("material_id")
    materials = cache.scan_materials(DATASET).collect().sort("material_id")
    from mliap_tui.data.structures import row_to_atoms

    expected = _emt_energies([row_to_atoms(r) for r in materials.iter_rows(named=True)])
    np.testing.assert_allclose(rows["e_per_atom_pred_native"].to_numpy(), expected, rtol=1e-9)
    assert rows["weights_fingerprint"].n_unique() == 1 and rows["package_version"][0].startswith("ase ")
    # summary and explorer take it like any model
    s = summarize(cache, DATASET)
    assert s.blocks[0].stats["e_per_atom"]["model"].to_list() == ["emt"]
    (note,) = s.weights  # none of the 12 canary crystals is within EMT's elements: said, not hidden
    assert "unchecked" in note.text() and "canary" in note.text()
    assert load_dataset(cache, DATASET).models == ["emt"]
    # and `mliap-tui models` lists it as a plug-in
    from mliap_tui.models.listing import models_rows

    row = next(r for r in models_rows(cache) if r["id"] == "emt")
    assert row["plugin"] and row["ready"] and row["n_elements"] == 7


def test_an_ase_reference_runs_from_the_command_line(cache):
    ref = "ase:ase.calculators.emt:EMT"
    env = {"COLUMNS": "80", "PATH": "/usr/bin:/bin", "HOME": str(cache.root)}
    run = subprocess.run([sys.executable, "-m", "mliap_tui", f"--cache={cache.root}", "run", "--data", DATASET,
                          "--model", ref], capture_output=True, text=True, timeout=300, cwd=REPO_DIR, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ase-emt" in run.stdout and "canary not judged" in run.stdout
    out = subprocess.run([sys.executable, "-m", "mliap_tui", f"--cache={cache.root}", "summary", "--data", DATASET],
                         capture_output=True, text=True, timeout=300, cwd=REPO_DIR, env=env)
    assert out.returncode == 0 and "ase-emt" in out.stdout
    assert load_dataset(cache, DATASET).models == ["ase-emt"]
    rows = cache.scan_predictions(DATASET).collect()
    assert rows.height == 12 and (rows["status"] == "ok").all()


def test_batched_and_per_structure_paths_agree(tmp_path):
    """CHGNet 0.3.0 three ways: the registry's batched adapter, the same through an ase: factory that
    returns it (batched), and CHGNet's own ASE calculator through an ase: reference (per structure)."""
    from support import sample_atoms

    atoms = [a for a in sample_atoms(6, max_sites=8)]
    for i, a in enumerate(atoms):
        a.rattle(0.03, seed=i)
    registry = load_predictor("chgnet-0.3.0").predict(atoms, forces=True, stress=True)
    batched = load_predictor('ase[mp2020]:mliap_tui.models.plugins:batched:{"model": "chgnet-0.3.0"}')
    per_structure = load_predictor('ase[mp2020]:chgnet.model.dynamics:CHGNetCalculator:{"use_device": "cpu"}')
    assert type(batched).__name__ == "CHGNetPredictor" and type(per_structure).__name__ == "AsePredictor"
    assert batched.spec.id.startswith("ase-batched-") and batched.spec.energy_convention == "mp2020"
    for other in (batched.predict(atoms, forces=True, stress=True), per_structure.predict(atoms, forces=True, stress=True)):
        for a, ref, got in zip(atoms, registry, other):
            assert got.energy_ev / len(a) == pytest.approx(ref.energy_ev / len(a), abs=2e-5)  # eV/atom, float32
            np.testing.assert_allclose(got.forces_ev_per_ang, ref.forces_ev_per_ang, atol=2e-4)
            np.testing.assert_allclose(got.stress_gpa, ref.stress_gpa, atol=2e-3)  # GPa
    assert max(np.abs(p.forces_ev_per_ang).max() for p in registry) > 0.05  # off equilibrium: forces say something


def test_plugin_errors_are_one_line_and_name_the_fix(tmp_path, monkeypatch):
    from mliap_tui.models.base import ModelUnavailable

    with pytest.raises(ModelUnavailable, match="has no callable 'Nope'"):
        load_predictor("ase:ase.calculators.emt:Nope")
    with pytest.raises(KeyError, match="ase:package.module:factory"):
        get_spec("ase:justamodule")
    site = tmp_path / "site"
    info = site / "broken_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "broken_plugin.py").write_text("raise ImportError('needs torch-sparkles')\n")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mliap_tui.models]\nbroken = broken_plugin:plugin\n")
    monkeypatch.syspath_prepend(str(site))
    plugins.refresh_plugins()
    try:
        specs, problems = plugins.plugin_specs()
        assert "broken" not in [s.id for s in specs]
        assert any("broken" in p and "torch-sparkles" in p for p in problems)
        with pytest.raises(KeyError, match="failed to load"):
            get_spec("broken")
    finally:
        plugins.refresh_plugins()


FIRST_USE_PLUGIN = '''
"""A plug-in whose weights file appears only when it is loaded, as a download on first use does."""
import os
from pathlib import Path

from mliap_tui.models.ase_adapter import AsePredictor
from mliap_tui.models.base import ModelSpec, PluginModel

WEIGHTS = Path(os.environ["FIRST_USE_WEIGHTS"])


def load(spec, device="cpu", dtype="float32", checkpoint=None):
    from ase.calculators.emt import EMT

    if not WEIGHTS.exists():
        WEIGHTS.write_text("EMT parameters, fetched on first use")
    return AsePredictor(spec, EMT(), device=device, dtype=dtype)


def plugin():
    spec = ModelSpec(id="emt-first-use", family="emt", version="1", package="ase", pip_extra="", weights="emt",
                     energy_convention="raw_pbe", weights_offline=False, default_batch_atoms=512,
                     elements=frozenset({"Al", "Cu", "Ni"}), options={"weights_files": [str(WEIGHTS)]})
    return PluginModel(spec, load)
'''


def test_weights_that_appear_only_when_loaded_are_identified_by_the_worker(tmp_path, monkeypatch, cache):
    """The runner cannot fingerprint weights that are not on disk yet: it plans everything, and the
    worker, once the model is loaded, skips what these weights already did."""
    site = tmp_path / "site"
    info = site / "first_use-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "first_use_plugin.py").write_text(FIRST_USE_PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: first-use\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mliap_tui.models]\nemt-first-use = first_use_plugin:plugin\n")
    weights = tmp_path / "downloaded" / "emt.params"
    weights.parent.mkdir()
    monkeypatch.setenv("FIRST_USE_WEIGHTS", str(weights))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))
    plugins.refresh_plugins()
    try:
        first = run_evaluation(cache, DATASET, ["emt-first-use"], device="cpu")
        m = first.models[0]
        assert first.ok and m.ok == 12 and weights.is_file()
        from mliap_tui.models.identity import file_sha256

        assert m.weights_fingerprint == file_sha256(weights)  # learnt from the worker
        weights.unlink()  # gone again: the next run plans without knowing the weights
        again = run_evaluation(cache, DATASET, ["emt-first-use"], device="cpu")
        m2 = again.models[0]
        assert again.ok and (m2.already_done, m2.todo, m2.done) == (12, 0, 0), m2
        assert cache.scan_predictions(DATASET).collect().height == 12  # nothing evaluated twice
    finally:
        plugins.refresh_plugins()
