"""Softening scale: slope of MLIP on DFT force components, MAE and corrected MAE (eV/Å)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from mliap_tui.analysis.softening import (
    aggregate_softening,
    fit_slope,
    softening_table,
    structure_metrics,
)


def _forces(n_atoms: int = 40, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.0, size=(n_atoms, 3))


@pytest.mark.parametrize("scale", [0.6, 0.85, 1.0, 1.3])
def test_scaled_forces_give_the_scale_back(scale):
    dft = _forces()
    fit = fit_slope(scale * dft, dft)
    assert fit["slope_origin"] == pytest.approx(scale, rel=1e-12)
    assert fit["slope"] == pytest.approx(scale, rel=1e-12)
    assert fit["intercept_ev_per_ang"] == pytest.approx(0.0, abs=1e-12)
    assert fit["r2"] == pytest.approx(1.0)


def test_intercept_fit_separates_offset_from_slope():
    dft = _forces(seed=1)
    pred = 0.8 * dft + 0.25
    fit = fit_slope(pred, dft)
    assert fit["slope"] == pytest.approx(0.8, rel=1e-10)
    assert fit["intercept_ev_per_ang"] == pytest.approx(0.25, rel=1e-10)
    # the fit through the origin cannot absorb the offset: it differs from 0.8
    expected_origin = float(np.dot(dft.ravel(), pred.ravel()) / np.dot(dft.ravel(), dft.ravel()))
    assert fit["slope_origin"] == pytest.approx(expected_origin)


def test_cmae_removes_pure_softening_only():
    dft = _forces(seed=2)
    soft = structure_metrics(0.7 * dft, dft)
    assert soft["mae_ev_per_ang"] == pytest.approx(0.3 * np.mean(np.abs(dft)))
    assert soft["cmae_ev_per_ang"] == pytest.approx(0.0, abs=1e-12)
    noise = np.random.default_rng(3).normal(0.0, 0.1, size=dft.shape)
    noisy = structure_metrics(0.7 * dft + noise, dft)
    assert 0.0 < noisy["cmae_ev_per_ang"] < noisy["mae_ev_per_ang"]


def test_zero_dft_forces_have_no_slope():
    fit = fit_slope(np.ones((4, 3)), np.zeros((4, 3)))
    assert np.isnan(fit["slope_origin"]) and np.isnan(fit["slope"])


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        fit_slope(np.zeros(6), np.zeros(9))


def test_aggregate_median_and_fraction_below_one():
    rows = []
    for i, scale in enumerate([0.5, 0.9, 1.2]):
        dft = _forces(10, seed=10 + i)
        rows.append({"dataset": "d", "material_id": f"m{i}", "model": "x", "n_sites": 10,
                     "forces_dft_ev_per_ang": dft.ravel().tolist(),
                     "forces_pred_ev_per_ang": (scale * dft).ravel().tolist()})
    pairs = pl.DataFrame(rows)
    per = softening_table(pairs)
    assert per.sort("material_id")["slope_origin"].to_list() == pytest.approx([0.5, 0.9, 1.2])
    agg = aggregate_softening(pairs, per).row(0, named=True)
    assert agg["n_structures"] == 3
    assert agg["slope_median"] == pytest.approx(0.9)
    assert agg["frac_slope_below_1"] == pytest.approx(2 / 3)
    assert agg["cmae_ev_per_ang"] == pytest.approx(0.0, abs=1e-12)


def test_forces_screen_filter_and_parity_figure():
    """The Forces screen filters with the explorer's language (force keys) and draws the parity plot."""
    from mliap_tui.analysis.filters import FilterError, apply_filter
    from mliap_tui.analysis.force_audit import ForceAudit
    from mliap_tui.tui.plots import force_parity

    dft = _forces(10, seed=5)
    pairs = pl.DataFrame([{"dataset": "si-vacancy", "material_id": f"m{i}", "model": m, "n_sites": 10,
                           "forces_dft_ev_per_ang": dft.ravel().tolist(),
                           "forces_pred_ev_per_ang": (s * dft).ravel().tolist()}
                          for i, (m, s) in enumerate([("chgnet-0.3.0", 0.6), ("sevennet-0", 0.9)])])
    per = softening_table(pairs)
    assert apply_filter(per, "slope<0.8")["model"].to_list() == ["chgnet-0.3.0"]
    assert apply_filter(per, "model=seven* data=si-vac*")["material_id"].to_list() == ["m1"]
    assert apply_filter(per, "mae>0.01 cmae<1e-6 r2>0.99")["model"].to_list() == ["chgnet-0.3.0", "sevennet-0"]
    with pytest.raises(FilterError, match="unknown key"):
        apply_filter(per, "bogus=1")
    audit = ForceAudit(pairs, per, aggregate_softening(pairs, per), pl.DataFrame(), pl.DataFrame(), pl.DataFrame())
    fig = force_parity(audit, 80, 20)
    assert "chgnet-0.3.0 slope 0.600" in fig and "sevennet-0 slope 0.900" in fig
