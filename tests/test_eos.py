"""E-V scan and Birch-Murnaghan fit (bulk modulus in GPa)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from mliap_tui.analysis.eos import GPA_PER_EV_PER_ANG3, birch_murnaghan, birch_murnaghan_fit, make_eos_dataset, strained_structures
from mliap_tui.cache import Cache


@pytest.mark.parametrize("b0_gpa,b0p", [(24.0, 5.0), (160.0, 4.2), (250.0, 3.8)])
def test_fit_recovers_known_bulk_modulus(b0_gpa, b0p):
    v0 = 20.0
    v = v0 * np.linspace(0.94, 1.06, 9)
    e = birch_murnaghan(v, -5.0, v0, b0_gpa / GPA_PER_EV_PER_ANG3, b0p)
    fit = birch_murnaghan_fit(v, e)
    assert fit["b0_gpa"] == pytest.approx(b0_gpa, rel=1e-6)
    assert fit["v0_ang3"] == pytest.approx(v0, rel=1e-8)
    assert fit["b0_prime"] == pytest.approx(b0p, rel=1e-4)
    assert fit["rms_residual_mev"] < 1e-6 and fit["r2"] == pytest.approx(1.0)
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
