"""Bootstrap intervals, the DOF trend slope and Spearman's correlation (analysis.uncertainty),
with known answers; and the formatting of intervals and p-values (core.units)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mliap_tui.analysis.uncertainty import (
    MIN_N_INTERVAL,
    bootstrap_errors,
    bootstrap_paired_delta,
    ols_slope,
    spearman,
    trend,
)
from mliap_tui.core.units import format_interval, format_mev_interval, format_p_value


def test_bootstrap_interval_covers_the_mae_and_mean_of_a_known_sample():
    errors = np.array([-0.03, -0.01, 0.0, 0.02, 0.05, -0.04, 0.01, 0.03, -0.02, 0.06])
    est = bootstrap_errors(errors, n_boot=2000, seed=3)
    assert est.n == 10
    assert est.mae.value == pytest.approx(0.027)  # mean of |e|
    assert est.mean_signed.value == pytest.approx(0.007)
    assert est.mae.lo < 0.027 < est.mae.hi
    assert est.mean_signed.lo < 0.007 < est.mean_signed.hi
    # a percentile interval of a mean of 10 values is narrower than the range of the values
    assert 0 < est.mae.lo and est.mae.hi < 0.06


def test_bootstrap_interval_is_close_to_the_normal_interval_for_a_large_sample():
    rng = np.random.default_rng(11)
    errors = rng.normal(0.010, 0.020, 4000)  # eV/atom
    est = bootstrap_errors(errors, n_boot=1000, seed=0)
    half = 1.96 * errors.std(ddof=1) / math.sqrt(len(errors))
    assert est.mean_signed.lo == pytest.approx(errors.mean() - half, abs=2e-4)
    assert est.mean_signed.hi == pytest.approx(errors.mean() + half, abs=2e-4)
    assert est.mean_signed.excludes_zero()


def test_bootstrap_is_reproducible_with_its_seed_and_changes_with_another():
    errors = np.linspace(-0.05, 0.08, 37)
    a = bootstrap_errors(errors, n_boot=500, seed=7)
    b = bootstrap_errors(errors, n_boot=500, seed=7)
    c = bootstrap_errors(errors, n_boot=500, seed=8)
    assert (a.mae.lo, a.mae.hi) == (b.mae.lo, b.mae.hi)
    assert (a.mae.lo, a.mae.hi) != (c.mae.lo, c.mae.hi)


def test_bootstrap_drops_non_finite_values_and_gives_no_interval_below_the_minimum():
    est = bootstrap_errors([0.01, float("nan"), -0.03, float("inf")])
    assert est.n == 2 < MIN_N_INTERVAL
    assert est.mae.value == pytest.approx(0.02) and not est.mae.has_interval
    empty = bootstrap_errors([])
    assert empty.n == 0 and math.isnan(empty.mae.value)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_errors([1.0, 2.0, 3.0], n_boot=0)


def test_paired_delta_recovers_a_known_shift():
    rng = np.random.default_rng(5)
    static = rng.uniform(0.02, 0.04, 300)  # all overpredicted
    relaxed = static - 0.004 + rng.uniform(-0.001, 0.001, 300)  # relaxing lowers every energy by ~4 meV/atom
    est = bootstrap_paired_delta(static, relaxed, n_boot=1000, seed=0)
    assert est.n == 300
    assert est.mean_signed.value == pytest.approx(np.mean(relaxed - static))
    assert est.mean_signed.lo < -0.004 < est.mean_signed.hi
    assert est.mean_signed.hi < 0  # the shift is resolved
    # every error is positive, so the MAE falls by the same amount
    assert est.mae.value == pytest.approx(est.mean_signed.value)
    with pytest.raises(ValueError, match="length"):
        bootstrap_paired_delta([1.0, 2.0], [1.0])


def test_slope_of_a_synthetic_linear_trend_is_recovered_within_its_interval():
    rng = np.random.default_rng(1)
    dof = rng.integers(1, 40, 500).astype(float)
    true_slope = 0.0008  # eV/atom per DOF (0.8 meV/atom per DOF)
    err = 0.01 + true_slope * dof + rng.normal(0, 0.01, dof.size)
    t = trend(dof, err, n_boot=1000, seed=0)
    assert t.slope.value == pytest.approx(ols_slope(dof, err))
    assert t.slope.lo < true_slope < t.slope.hi
    assert t.significant and t.direction == 1
    assert t.rho > 0.5 and t.p_value < 1e-10


def test_no_trend_in_pure_noise():
    rng = np.random.default_rng(2)
    dof = rng.integers(1, 40, 400).astype(float)
    err = rng.normal(0, 0.02, dof.size)
    t = trend(dof, err, n_boot=1000, seed=0)
    assert t.slope.lo < 0 < t.slope.hi
    assert not t.significant and t.direction == 0


def test_spearman_p_is_small_for_a_monotone_series_and_large_for_a_shuffled_one():
    x = np.arange(60, dtype=float)
    y = np.exp(x / 20)  # monotone, not linear
    rho, p = spearman(x, y)
    assert rho == pytest.approx(1.0) and p < 1e-12
    shuffled = np.random.default_rng(4).permutation(y)
    rho_s, p_s = spearman(x, shuffled)
    assert abs(rho_s) < 0.3 and p_s > 0.05
    assert all(math.isnan(v) for v in spearman([1.0, 2.0], [3.0, 4.0]))  # too few pairs
    assert all(math.isnan(v) for v in spearman([1.0, 1.0, 1.0], [3.0, 4.0, 5.0]))  # constant x


def test_trend_of_a_single_dof_value_has_no_slope():
    t = trend([3, 3, 3, 3], [0.01, 0.02, 0.03, 0.04])
    assert math.isnan(t.slope.value) and not t.significant


def test_interval_and_p_value_formatting():
    assert format_interval(0.0210, 0.0302, scale=1000) == "[21.0,30.2]"
    assert format_interval(-0.00046, -0.000003, 2, scale=1000) == "[-0.46,-0.003]"  # never reads as touching 0
    assert format_interval(None, 1.0) == "" and format_interval(float("nan"), 1.0) == ""
    assert format_mev_interval(0.0253, 0.021, 0.0302) == "25.3 [21.0,30.2]"
    assert format_mev_interval(-0.0036, -0.0056, -0.0022, signed=True) == "-3.6 [-5.6,-2.2]"
    assert format_mev_interval(None, 0.0, 1.0) == "-"
    assert [format_p_value(p) for p in (0.5, 0.0512, 0.0012, 3.2e-5, 0.0, float("nan"))] == [
        "0.50", "0.051", "0.0012", "3.2e-05", "<1e-300", "-"]
