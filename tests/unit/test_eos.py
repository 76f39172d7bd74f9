"""E-V scan and Birch-Murnaghan fit (bulk modulus in GPa), done by pymatgen's EOS fitter."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from mliap_tui.analysis.eos import (
    birch_murnaghan_fit,
    make_eos_dataset,
    strained_structures,
)
from mliap_tui.cache import Cache
from mliap_tui.core.units import GPA_PER_EV_PER_ANG3


def birch_murnaghan(v, e0, v0, b0, b0p):
    """3rd-order Birch-Murnaghan E(V), written out independently of the code under test."""
    eta = (v0 / np.asarray(v, dtype=float)) ** (2.0 / 3.0)
    return e0 + 9.0 * v0 * b0 / 16.0 * ((eta - 1.0) ** 3 * b0p + (eta - 1.0) ** 2 * (6.0 - 4.0 * eta))


def reference_fit(v, e):
    """The fit this project used before it moved to pymatgen: scipy curve_fit from a parabola."""
    from scipy.optimize import curve_fit

    a, b, _ = np.polyfit(v, e, 2)
    v0 = -b / (2 * a)
    popt, _ = curve_fit(birch_murnaghan, v, e, p0=[e.min(), v0, max(2 * a * v0, 1e-3), 4.0], maxfev=20000)
    return {"e0_ev": popt[0], "v0_ang3": popt[1], "b0_gpa": popt[2] * GPA_PER_EV_PER_ANG3, "b0_prime": popt[3]}


@pytest.mark.parametrize("b0_gpa,b0p", [(24.0, 5.0), (160.0, 4.2), (250.0, 3.8)])
def test_fit_recovers_known_bulk_modulus(b0_gpa, b0p):
    v0 = 20.0
    v = v0 * np.linspace(0.94, 1.06, 9)
    e = birch_murnaghan(v, -5.0, v0, b0_gpa / GPA_PER_EV_PER_ANG3, b0p)
    fit = birch_murnaghan_fit(v, e)
    assert fit["b0_gpa"] == pytest.approx(b0_gpa, rel=1e-5)
    assert fit["v0_ang3"] == pytest.approx(v0, rel=1e-7)
    assert fit["b0_prime"] == pytest.approx(b0p, rel=1e-3)
    assert fit["rms_residual_mev"] < 1e-5 and fit["r2"] == pytest.approx(1.0)
    assert fit["v0_inside_scan"]


def test_noise_shows_in_fit_quality_and_too_few_points_fail():
    v = 20.0 * np.linspace(0.94, 1.06, 9)
    e = birch_murnaghan(v, -5.0, 20.0, 100 / GPA_PER_EV_PER_ANG3, 4.0)
    noisy = e + np.random.default_rng(0).normal(0, 2e-3, size=v.size)
    fit = birch_murnaghan_fit(v, noisy)
    assert 0.5 < fit["rms_residual_mev"] < 3.0 and fit["r2"] < 1.0
    assert fit["b0_gpa"] == pytest.approx(100, rel=0.3)
    bad = birch_murnaghan_fit(v[:3], e[:3])
    assert np.isnan(bad["b0_gpa"]) and "need >= 5" in bad["error"]


def test_library_fit_matches_previous_fit_on_real_chgnet_energies():
    """CHGNet E(V) of rock-salt NaCl and fcc Al (real, slightly noisy curves): pymatgen's fit and
    the previous scipy fit agree on B0 within 0.5 %, V0 within 0.01 %."""
    import torch
    from chgnet.model import CHGNet
    from pymatgen.core import Lattice, Structure

    torch.set_num_threads(1)
    model = CHGNet.load(model_name="0.3.0", use_device="cpu", verbose=False)
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.69), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    al = Structure(Lattice.cubic(4.04), ["Al"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    for structure in (nacl, al):
        scans = strained_structures(structure)
        v = np.array([st.volume / len(st) for _, st in scans])
        e = np.array([float(p["e"]) for p in model.predict_structure([st for _, st in scans], batch_size=9)])
        ours, ref = birch_murnaghan_fit(v, e), reference_fit(v, e)
        assert ours["b0_gpa"] == pytest.approx(ref["b0_gpa"], rel=5e-3), (structure.formula, ours, ref)
        assert ours["v0_ang3"] == pytest.approx(ref["v0_ang3"], rel=1e-4)
        assert ours["e0_ev"] == pytest.approx(ref["e0_ev"], abs=1e-5)
        assert 10 < ours["b0_gpa"] < 200 and ours["r2"] > 0.999


def test_strain_scan_dataset(tmp_path):
    from pymatgen.core import Lattice, Structure

    nacl = Structure(Lattice.cubic(5.69), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    scans = strained_structures(nacl, [0.95, 1.0, 1.05])
    assert [st.volume / nacl.volume for _, st in scans] == pytest.approx([0.95, 1.0, 1.05])
    cache = Cache.open(tmp_path)
    report = make_eos_dataset(cache, {"nacl": nacl}, dataset="eos-test", volume_scales=[0.95, 1.0, 1.05])
    assert report.n_loaded == 3
    mats = cache.scan_materials("eos-test").collect()
    assert mats["material_id"].to_list() == ["nacl@v0.950", "nacl@v1.000", "nacl@v1.050"]
    scan = pl.read_parquet(cache.dataset_dir("eos-test") / "eos_scan.parquet")
    assert scan["volume_ang3_per_atom"].to_list() == pytest.approx([nacl.volume / 2 * s for s in (0.95, 1.0, 1.05)])
