"""Rare-event force metrics (Liu, He, Mo, npj Comput. Mater. 9, 174 (2023)).

Per atom and model:

* ``df_ev_per_ang`` = |F_ML| - |F_DFT| (eV/Å): the force magnitude error (negative = too weak);
* ``dtheta_deg``: the angle between F_ML and F_DFT (degrees, 0-180; NaN when either force is
  below ``MIN_FORCE_EV_PER_ANG``, where a direction is not defined).

Rare-event (RE) atoms are the migrating atoms, ``r == 0`` in the Si sets; ``r`` (distance to the
migrating atom, Å, capped at 5.5 in the data) comes from the per-atom table that ``import_dataset``
stores at ``Cache.atom_properties_path``. Datasets without it (e.g. MPtrj frames) get the
all-atom metrics only.

Summaries: fractions |dF| > 0.5 eV/Å, dtheta > 15° and > 30°, mean |dF| and median dtheta, for RE
atoms vs all atoms (:func:`rare_event_summary`), binned by distance to the migrating atom
(:func:`distance_binned`), and empirical CDFs (:func:`cdf`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import polars as pl

from mliap_tui.cache import Cache

MIN_FORCE_EV_PER_ANG = 1e-3
DF_THRESHOLD_EV_PER_ANG = 0.5
ANGLE_THRESHOLDS_DEG = (15.0, 30.0)
#: Distance bins (Å) to the migrating atom: [lo, hi); 0 = the migrating atoms, 5.5 = capped.
DISTANCE_BINS_ANG = (0.0, 1e-9, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, float("inf"))


def force_angle_deg(f_pred: np.ndarray, f_dft: np.ndarray, min_force: float = MIN_FORCE_EV_PER_ANG) -> np.ndarray:
    """Angle (degrees) between row vectors of two (n, 3) arrays; NaN where a force is ~0."""
    a = np.asarray(f_pred, dtype=float).reshape(-1, 3)
    b = np.asarray(f_dft, dtype=float).reshape(-1, 3)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    ok = (na > min_force) & (nb > min_force)
    out = np.full(len(a), np.nan)
    # atan2(|a x b|, a.b): accurate at 0° and 180° too, where arccos loses digits
    out[ok] = np.degrees(np.arctan2(np.linalg.norm(np.cross(a[ok], b[ok]), axis=1), np.einsum("ij,ij->i", a[ok], b[ok])))
    return out


def magnitude_error(f_pred: np.ndarray, f_dft: np.ndarray) -> np.ndarray:
    """|F_ML| - |F_DFT| per atom (eV/Å)."""
    a = np.asarray(f_pred, dtype=float).reshape(-1, 3)
    b = np.asarray(f_dft, dtype=float).reshape(-1, 3)
    return np.linalg.norm(a, axis=1) - np.linalg.norm(b, axis=1)


# --------------------------------------------------------------------------------------------
# import: the Si sets with their per-atom distances
# --------------------------------------------------------------------------------------------


def load_atom_properties(cache: Cache, dataset: str) -> pl.DataFrame | None:
    path = cache.atom_properties_path(dataset)
    return pl.read_parquet(path) if path.is_file() else None


# --------------------------------------------------------------------------------------------
# per-atom table
# --------------------------------------------------------------------------------------------

ATOM_SCHEMA = {
    "dataset": pl.Utf8, "material_id": pl.Utf8, "model": pl.Utf8, "atom_index": pl.Int32,
    "f_dft_ev_per_ang": pl.Float64, "f_pred_ev_per_ang": pl.Float64, "df_ev_per_ang": pl.Float64,
    "dtheta_deg": pl.Float64,
}


def atom_errors(pairs: pl.DataFrame, props: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per-atom dF and dtheta from ``softening.load_force_pairs`` rows (+ r_ang, is_rare_event).

    Without ``props`` the r columns are null and is_rare_event is False.
    """
    cols: dict[str, list] = {k: [] for k in ATOM_SCHEMA}
    for r in pairs.iter_rows(named=True):
        fp = np.asarray(r["forces_pred_ev_per_ang"], dtype=float).reshape(-1, 3)
        fd = np.asarray(r["forces_dft_ev_per_ang"], dtype=float).reshape(-1, 3)
        n = len(fd)
        cols["dataset"] += [r["dataset"]] * n
        cols["material_id"] += [r["material_id"]] * n
        cols["model"] += [r["model"]] * n
        cols["atom_index"] += list(range(n))
        cols["f_dft_ev_per_ang"] += np.linalg.norm(fd, axis=1).tolist()
        cols["f_pred_ev_per_ang"] += np.linalg.norm(fp, axis=1).tolist()
        cols["df_ev_per_ang"] += magnitude_error(fp, fd).tolist()
        cols["dtheta_deg"] += force_angle_deg(fp, fd).tolist()
    df = pl.DataFrame(cols, schema=ATOM_SCHEMA)
    if props is not None and len(props):
        df = df.join(props.select("material_id", "atom_index", "r_ang", "is_rare_event"),
                     on=["material_id", "atom_index"], how="left")
        df = df.with_columns(pl.col("is_rare_event").fill_null(False))
    else:
        df = df.with_columns(pl.lit(None, dtype=pl.Float64).alias("r_ang"), pl.lit(False).alias("is_rare_event"))
    return df


# --------------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------------


def _metrics(grp: pl.DataFrame) -> dict[str, float]:
    df = grp["df_ev_per_ang"].to_numpy()
    th = grp["dtheta_deg"].to_numpy()
    th_ok = th[np.isfinite(th)]
    out = {
        "n_atoms": len(grp),
        "mean_abs_df_ev_per_ang": float(np.mean(np.abs(df))) if df.size else float("nan"),
        "mean_df_ev_per_ang": float(np.mean(df)) if df.size else float("nan"),
        "frac_abs_df_gt_0.5": float(np.mean(np.abs(df) > DF_THRESHOLD_EV_PER_ANG)) if df.size else float("nan"),
        "median_dtheta_deg": float(np.median(th_ok)) if th_ok.size else float("nan"),
    }
    for t in ANGLE_THRESHOLDS_DEG:
        out[f"frac_dtheta_gt_{t:g}"] = float(np.mean(th_ok > t)) if th_ok.size else float("nan")
    return out


def rare_event_summary(atoms: pl.DataFrame) -> pl.DataFrame:
    """Per (dataset, model, group): group 'RE atoms' (r == 0) and 'all atoms'."""
    rows = []
    for (ds, model), grp in atoms.group_by(["dataset", "model"], maintain_order=True):
        for label, sub in (("RE atoms", grp.filter(pl.col("is_rare_event"))), ("all atoms", grp)):
            if len(sub) == 0:
                continue
            rows.append({"dataset": ds, "model": model, "atoms": label, **_metrics(sub)})
    return pl.DataFrame(rows) if rows else pl.DataFrame()


def bin_label(lo: float, hi: float) -> str:
    if hi <= 1e-9:
        return "0 (RE)"
    if not np.isfinite(hi):
        return f">={lo:g}"
    return f"0<r<{hi:g}" if lo < 1e-6 else f"{lo:g}-{hi:g}"


def distance_binned(atoms: pl.DataFrame, bins: Sequence[float] = DISTANCE_BINS_ANG) -> pl.DataFrame:
    """Metrics per (dataset, model, distance bin to the migrating atom, Å); atoms with r only."""
    sub = atoms.filter(pl.col("r_ang").is_not_null())
    rows = []
    for (ds, model), grp in sub.group_by(["dataset", "model"], maintain_order=True):
        r = grp["r_ang"].to_numpy()
        for i, (lo, hi) in enumerate(zip(bins[:-1], bins[1:])):
            # the first bin is r == 0 exactly; then [lo, hi)
            mask = (r == 0.0) if i == 0 else (r >= lo) & (r < hi) & (r > 0.0)
            if not mask.any():
                continue
            rows.append({"dataset": ds, "model": model, "bin_index": i, "r_bin_ang": bin_label(lo, hi),
                         **_metrics(grp.filter(pl.Series(mask)))})
    return pl.DataFrame(rows) if rows else pl.DataFrame()


def cdf(values: Sequence[float] | np.ndarray, grid: Sequence[float] | np.ndarray) -> np.ndarray:
    """Empirical CDF of the finite ``values`` at each ``grid`` point: fraction <= x."""
    v = np.sort(np.asarray(values, dtype=float))
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.full(len(grid), np.nan)
    return np.searchsorted(v, np.asarray(grid, dtype=float), side="right") / v.size
