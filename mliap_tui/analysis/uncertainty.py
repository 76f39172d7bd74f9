"""Uncertainty of error statistics: bootstrap intervals, a trend slope, a rank correlation.

Small pure functions over numpy arrays, in whatever unit the caller passes (the study passes
eV/atom and total DOF, so a slope is eV/atom per DOF). Every random draw comes from
``numpy.random.default_rng(seed)``: the same inputs, ``n_boot`` and ``seed`` give the same
interval on every machine.

* :func:`bootstrap_errors` -- MAE and mean signed error of a sample of signed errors with
  percentile bootstrap intervals (crystals resampled with replacement).
* :func:`bootstrap_paired_delta` -- the change of MAE and mean signed error between two error
  sets of the same crystals (relaxed minus static), resampling crystals jointly.
* :func:`trend` -- least-squares slope of y on x with a pairs-bootstrap interval, and Spearman's
  rank correlation with its p-value (``scipy.stats.spearmanr``); ``Trend.significant`` when both
  agree that there is a monotone trend.

Intervals are percentile intervals: the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of
the statistic over ``n_boot`` resamples (default 95 %, 1000 resamples). With fewer than
:data:`MIN_N_INTERVAL` values there is no interval (NaN bounds): a bootstrap of two numbers says
nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Resamples when the caller does not say.
DEFAULT_N_BOOT = 1000
#: Seed when the caller does not say.
DEFAULT_SEED = 0
#: Interval level when the caller does not say.
DEFAULT_LEVEL = 0.95
#: Below this many values an interval is not computed (NaN bounds).
MIN_N_INTERVAL = 3
#: Spearman p-value under which a trend counts (with a slope interval that excludes zero).
SIGNIFICANCE_P = 0.05
#: Largest index matrix drawn at once (values): bootstraps of big samples run in blocks.
_BLOCK_VALUES = 4_000_000

NAN = float("nan")


@dataclass(frozen=True)
class Estimate:
    """A statistic and its interval (NaN bounds when there is none)."""

    value: float
    lo: float = NAN
    hi: float = NAN

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)

    def excludes_zero(self) -> bool:
        return self.has_interval and (self.lo > 0 or self.hi < 0)


@dataclass(frozen=True)
class ErrorEstimates:
    """MAE and mean signed error of one sample, with their intervals."""

    n: int
    mae: Estimate
    mean_signed: Estimate


def _check(n_boot: int, level: float) -> None:
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")


def finite_pairs(a, b, what: str = "paired samples") -> tuple[np.ndarray, np.ndarray]:
    """Two equally long samples as float arrays, pairs with a non-finite value dropped."""
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"{what} differ in length: {a.size} and {b.size}")
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def _finite(values) -> np.ndarray:
    a = np.asarray(values, dtype=float).ravel()
    return a[np.isfinite(a)]


def _index_blocks(n: int, n_boot: int, rng: np.random.Generator):
    """(start, stop, indices) blocks of ``n_boot`` resamples of ``n`` items, at most _BLOCK_VALUES
    indices at a time (a big sample is resampled in pieces, not all in memory)."""
    block = max(1, _BLOCK_VALUES // max(n, 1))
    for start in range(0, n_boot, block):
        stop = min(n_boot, start + block)
        yield start, stop, rng.integers(0, n, size=(stop - start, n))


def _resample_means(columns: list[np.ndarray], n_boot: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Means of each column over ``n_boot`` resamples of rows (the same rows for every column)."""
    out = [np.empty(n_boot) for _ in columns]
    for start, stop, idx in _index_blocks(len(columns[0]), n_boot, rng):
        for col, dest in zip(columns, out):
            dest[start:stop] = col[idx].mean(axis=1)
    return out


def _bounds(samples: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_errors(errors, n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED,
                     level: float = DEFAULT_LEVEL) -> ErrorEstimates:
    """MAE and mean signed error of ``errors`` (non-finite values dropped) with percentile
    bootstrap intervals; one set of resamples serves both statistics."""
    _check(n_boot, level)
    e = _finite(errors)
    n = len(e)
    if n == 0:
        return ErrorEstimates(0, Estimate(NAN), Estimate(NAN))
    mae, mean = float(np.abs(e).mean()), float(e.mean())
    if n < MIN_N_INTERVAL:
        return ErrorEstimates(n, Estimate(mae), Estimate(mean))
    boot_abs, boot_mean = _resample_means([np.abs(e), e], int(n_boot), np.random.default_rng(seed))
    return ErrorEstimates(n, Estimate(mae, *_bounds(boot_abs, level)), Estimate(mean, *_bounds(boot_mean, level)))


def bootstrap_paired_delta(errors_a, errors_b, n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED,
                           level: float = DEFAULT_LEVEL) -> ErrorEstimates:
    """Change from ``errors_a`` to ``errors_b`` (two signed errors of the same items, in the same
    order): MAE(b) - MAE(a) and mean(b) - mean(a), with intervals from resampling items jointly.
    Pairs where either value is not finite are dropped."""
    _check(n_boot, level)
    a, b = finite_pairs(errors_a, errors_b)
    n = len(a)
    if n == 0:
        return ErrorEstimates(0, Estimate(NAN), Estimate(NAN))
    d_abs, d = np.abs(b) - np.abs(a), b - a
    d_mae, d_mean = float(d_abs.mean()), float(d.mean())
    if n < MIN_N_INTERVAL:
        return ErrorEstimates(n, Estimate(d_mae), Estimate(d_mean))
    boot_abs, boot_mean = _resample_means([d_abs, d], int(n_boot), np.random.default_rng(seed))
    return ErrorEstimates(n, Estimate(d_mae, *_bounds(boot_abs, level)), Estimate(d_mean, *_bounds(boot_mean, level)))


def ols_slope(x, y) -> float:
    """Least-squares slope of ``y`` on ``x`` (NaN when ``x`` does not vary)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    dx = x - x.mean()
    sxx = float(dx @ dx)
    return float(dx @ (y - y.mean()) / sxx) if sxx > 0 else NAN


def _bootstrap_slopes(x: np.ndarray, y: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    out = np.empty(n_boot)
    for start, stop, idx in _index_blocks(len(x), n_boot, rng):
        xs, ys = x[idx], y[idx]
        dx = xs - xs.mean(axis=1, keepdims=True)
        sxx = (dx * dx).sum(axis=1)
        sxy = (dx * (ys - ys.mean(axis=1, keepdims=True))).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:stop] = np.where(sxx > 0, sxy / np.where(sxx > 0, sxx, 1.0), np.nan)
    return out


@dataclass(frozen=True)
class Trend:
    """How ``y`` changes with ``x``: slope (y units per x unit) with interval, Spearman rho and p."""

    n: int
    slope: Estimate
    rho: float
    p_value: float

    @property
    def significant(self) -> bool:
        """A trend both ways of looking agree on: Spearman p < SIGNIFICANCE_P, and the slope's
        interval excludes zero on the side of rho's sign."""
        if not (math.isfinite(self.p_value) and self.p_value < SIGNIFICANCE_P and self.slope.excludes_zero()):
            return False
        return (self.slope.lo > 0) == (self.rho > 0)

    @property
    def direction(self) -> int:
        """+1 rising, -1 falling, 0 no significant trend."""
        if not self.significant:
            return 0
        return 1 if self.slope.value > 0 else -1


def spearman(x, y) -> tuple[float, float]:
    """Spearman's rank correlation and its two-sided p-value (scipy); NaN when undefined
    (fewer than 3 pairs, or a constant variable)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return NAN, NAN
    from scipy.stats import spearmanr

    result = spearmanr(x, y)
    return float(result.statistic), float(result.pvalue)


def trend(x, y, n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED, level: float = DEFAULT_LEVEL) -> Trend:
    """Slope of ``y`` on ``x`` (least squares) with a pairs-bootstrap percentile interval, and
    Spearman's rho with its p-value. Pairs with a non-finite value are dropped."""
    _check(n_boot, level)
    x, y = finite_pairs(x, y, "x and y")
    n = len(x)
    slope = ols_slope(x, y) if n >= 2 else NAN
    rho, p = spearman(x, y)
    if n < MIN_N_INTERVAL or not math.isfinite(slope):
        return Trend(n, Estimate(slope), rho, p)
    boots = _bootstrap_slopes(x, y, int(n_boot), np.random.default_rng(seed))
    boots = boots[np.isfinite(boots)]
    if len(boots) < 2:
        return Trend(n, Estimate(slope), rho, p)
    return Trend(n, Estimate(slope, *_bounds(boots, level)), rho, p)


__all__ = [
    "DEFAULT_LEVEL",
    "DEFAULT_N_BOOT",
    "DEFAULT_SEED",
    "MIN_N_INTERVAL",
    "SIGNIFICANCE_P",
    "ErrorEstimates",
    "Estimate",
    "Trend",
    "bootstrap_errors",
    "bootstrap_paired_delta",
    "finite_pairs",
    "ols_slope",
    "spearman",
    "trend",
]
