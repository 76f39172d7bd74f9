"""PES softening of force predictions (Deng et al., npj Comput. Mater. 2025).

Per structure and model, every force component (x, y, z of every atom) of the model is regressed
on the DFT one:

* ``slope_origin``: least squares through the origin, ``sum(f_ml f_dft) / sum(f_dft^2)``
  (the paper's softening scale: < 1 means the model's PES is softer than DFT's);
* ``slope`` / ``intercept_ev_per_ang`` / ``r2``: ordinary least squares with an intercept;
* ``mae_ev_per_ang``: mean |f_ml - f_dft| over components (eV/Å);
* ``cmae_ev_per_ang``: the same after dividing the predictions by ``slope_origin`` (corrected MAE:
  what is left once the systematic softening is removed).

:func:`aggregate_softening` gives per (dataset, model): structures, median/mean slope, fraction of
structures with slope < 1, MAE and cMAE over all components, and the slope of the pooled fit over
all components of the dataset.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import polars as pl

from mliap_tui.cache import Cache
from mliap_tui.cache.weights import label_weight_variants

#: Structures whose DFT forces are all below this (eV/Å) have no slope (nothing to fit).
MIN_FORCE_SCALE_EV_PER_ANG = 1e-6

STRUCTURE_COLUMNS = (
    "dataset", "material_id", "model", "n_sites", "n_components", "slope_origin", "slope",
    "intercept_ev_per_ang", "r2", "mae_ev_per_ang", "cmae_ev_per_ang", "rmse_ev_per_ang",
    "f_dft_rms_ev_per_ang",
)


def fit_slope(pred: Sequence[float] | np.ndarray, dft: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Linear fits of ``pred`` on ``dft`` (any shape, flattened; eV/Å).

    Returns slope_origin (fit through 0), slope, intercept_ev_per_ang and r2 (fit with intercept;
    r2 of that fit). NaN where the DFT values do not vary (nothing to fit).
    """
    y = np.asarray(pred, dtype=float).ravel()
    x = np.asarray(dft, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"pred has {y.size} components, dft {x.size}")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    nan = float("nan")
    out = {"slope_origin": nan, "slope": nan, "intercept_ev_per_ang": nan, "r2": nan}
    if x.size == 0:
        return out
    sxx0 = float(np.dot(x, x))
    if np.sqrt(sxx0 / x.size) > MIN_FORCE_SCALE_EV_PER_ANG:
        out["slope_origin"] = float(np.dot(x, y) / sxx0)
    xm, ym = x.mean(), y.mean()
    sxx = float(np.dot(x - xm, x - xm))
    if x.size >= 2 and np.sqrt(sxx / x.size) > MIN_FORCE_SCALE_EV_PER_ANG:
        slope = float(np.dot(x - xm, y - ym) / sxx)
        intercept = float(ym - slope * xm)
        resid = y - (slope * x + intercept)
        syy = float(np.dot(y - ym, y - ym))
        out.update(slope=slope, intercept_ev_per_ang=intercept,
                   r2=float(1.0 - np.dot(resid, resid) / syy) if syy > 0 else nan)
    return out


def structure_metrics(pred: Sequence[float] | np.ndarray, dft: Sequence[float] | np.ndarray) -> dict[str, float]:
    """fit_slope + MAE, cMAE (predictions / slope_origin), RMSE and the DFT force RMS (eV/Å)."""
    y = np.asarray(pred, dtype=float).ravel()
    x = np.asarray(dft, dtype=float).ravel()
    out = fit_slope(y, x)
    err = y - x
    out["n_components"] = int(x.size)
    out["mae_ev_per_ang"] = float(np.mean(np.abs(err))) if x.size else float("nan")
    out["rmse_ev_per_ang"] = float(np.sqrt(np.mean(err**2))) if x.size else float("nan")
    out["f_dft_rms_ev_per_ang"] = float(np.sqrt(np.mean(x**2))) if x.size else float("nan")
    s = out["slope_origin"]
    out["cmae_ev_per_ang"] = float(np.mean(np.abs(y / s - x))) if np.isfinite(s) and s != 0 else float("nan")
    return out


# --------------------------------------------------------------------------------------------
# loading forces from the cache
# --------------------------------------------------------------------------------------------


def load_force_pairs(cache: Cache, dataset: str, models: Iterable[str] | None = None, mode: str = "static") -> pl.DataFrame:
    """One row per (material, model) with both DFT and predicted forces (flattened, eV/Å).

    Columns: dataset, material_id, model, n_sites, forces_dft_ev_per_ang, forces_pred_ev_per_ang.
    Rows whose prediction failed, has no forces, or whose force count differs from DFT's are dropped.
    """
    mats = (
        cache.scan_materials(dataset)
        .select("material_id", "n_sites", "forces_dft_ev_per_ang")
        .filter(pl.col("forces_dft_ev_per_ang").is_not_null())
        .collect()
    )
    preds = (
        label_weight_variants(cache.scan_predictions(dataset, list(models) if models is not None else None, mode))
        .filter((pl.col("status") == "ok") & pl.col("forces_pred_ev_per_ang").is_not_null())
        .select("material_id", "model", "forces_pred_ev_per_ang")
        .collect()
    )
    df = mats.join(preds, on="material_id", how="inner")
    df = df.filter(pl.col("forces_dft_ev_per_ang").list.len() == pl.col("forces_pred_ev_per_ang").list.len())
    return df.with_columns(pl.lit(dataset).alias("dataset")).select(
        "dataset", "material_id", "model", "n_sites", "forces_dft_ev_per_ang", "forces_pred_ev_per_ang"
    ).sort("model", "material_id")


def softening_table(pairs: pl.DataFrame) -> pl.DataFrame:
    """Per-structure metrics (STRUCTURE_COLUMNS) from :func:`load_force_pairs` rows."""
    rows = []
    for r in pairs.iter_rows(named=True):
        m = structure_metrics(r["forces_pred_ev_per_ang"], r["forces_dft_ev_per_ang"])
        rows.append({"dataset": r["dataset"], "material_id": r["material_id"], "model": r["model"],
                     "n_sites": r["n_sites"], **m})
    schema = {c: (pl.Utf8 if c in ("dataset", "material_id", "model") else pl.Int64 if c in ("n_sites", "n_components") else pl.Float64)
              for c in STRUCTURE_COLUMNS}
    if not rows:
        return pl.DataFrame(schema=schema)
    return pl.DataFrame(rows, schema=schema).select(list(STRUCTURE_COLUMNS))


def aggregate_softening(pairs: pl.DataFrame, per_structure: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per (dataset, model): n_structures, median/mean slope (through origin), fraction slope < 1,
    median slope with intercept, MAE / cMAE over all components (eV/Å), pooled slope (all
    components of the dataset in one fit) and the pooled cMAE after dividing by it."""
    per_structure = per_structure if per_structure is not None else softening_table(pairs)
    out = []
    for (ds, model), grp in per_structure.group_by(["dataset", "model"], maintain_order=True):
        sub = pairs.filter((pl.col("dataset") == ds) & (pl.col("model") == model))
        x = np.concatenate([np.asarray(v, dtype=float) for v in sub["forces_dft_ev_per_ang"].to_list()]) if len(sub) else np.array([])
        y = np.concatenate([np.asarray(v, dtype=float) for v in sub["forces_pred_ev_per_ang"].to_list()]) if len(sub) else np.array([])
        pooled = structure_metrics(y, x)
        # per-structure cMAE pooled over components (each structure corrected by its own slope)
        w = grp["n_components"].to_numpy().astype(float)
        cm = grp["cmae_ev_per_ang"].to_numpy()
        ok = np.isfinite(cm)
        slopes = grp["slope_origin"].drop_nans().drop_nulls()
        out.append({
            "dataset": ds,
            "model": model,
            "n_structures": len(grp),
            "n_atoms": int(grp["n_sites"].sum()),
            "slope_median": float(slopes.median()) if len(slopes) else float("nan"),
            "slope_mean": float(slopes.mean()) if len(slopes) else float("nan"),
            "frac_slope_below_1": float((slopes < 1.0).mean()) if len(slopes) else float("nan"),
            "slope_intercept_median": float(grp["slope"].drop_nans().median() or float("nan")),
            "intercept_median_ev_per_ang": float(grp["intercept_ev_per_ang"].drop_nans().median() or float("nan")),
            "r2_median": float(grp["r2"].drop_nans().median() or float("nan")),
            "mae_ev_per_ang": pooled["mae_ev_per_ang"],
            "cmae_ev_per_ang": float(np.sum(cm[ok] * w[ok]) / np.sum(w[ok])) if ok.any() else float("nan"),
            "slope_pooled": pooled["slope_origin"],
            "cmae_pooled_ev_per_ang": pooled["cmae_ev_per_ang"],
        })
    return pl.DataFrame(out) if out else pl.DataFrame()


def parity_points(pairs: pl.DataFrame, model: str, max_points: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(dft, pred) force components (eV/Å) of one model, a fixed-seed sample of at most max_points."""
    sub = pairs.filter(pl.col("model") == model)
    if not len(sub):
        return np.array([]), np.array([])
    x = np.concatenate([np.asarray(v, dtype=float) for v in sub["forces_dft_ev_per_ang"].to_list()])
    y = np.concatenate([np.asarray(v, dtype=float) for v in sub["forces_pred_ev_per_ang"].to_list()])
    if x.size > max_points:
        idx = np.random.default_rng(seed).choice(x.size, max_points, replace=False)
        x, y = x[idx], y[idx]
    return x, y
