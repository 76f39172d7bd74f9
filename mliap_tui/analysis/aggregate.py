"""Aggregations of the error table: per model, per DOF bin, crystal system, space group.

All inputs are eV/atom; outputs keep eV/atom (renderers convert to meV/atom for display).
"""

from __future__ import annotations

import polars as pl

from mliap_tui.core.vocab import METRICS, NEAR_HULL_EV_PER_ATOM

DOF_BIN_EDGES = (1, 3, 6, 10, 15, 20, 30)  # bins [1,2], [3,5], [6,9], [10,14], [15,19], [20,29], [30,...)


def dof_bin_label(total_dof: pl.Expr) -> pl.Expr:
    """Label like '3-5' or '30+' for the DOF bin of each row (sortable by its lower edge)."""
    expr = pl.lit(f"{DOF_BIN_EDGES[-1]}+")
    for lo, hi in reversed(list(zip(DOF_BIN_EDGES[:-1], DOF_BIN_EDGES[1:]))):
        label = f"{lo}" if hi - lo == 1 else f"{lo}-{hi - 1}"
        expr = pl.when(total_dof < hi).then(pl.lit(label)).otherwise(expr)
    return expr


def error_stats(error_col: str) -> list[pl.Expr]:
    """MAE, mean signed error, RMSE, fraction underpredicted and count of one signed-error column."""
    e = pl.col(error_col)
    return [
        e.count().alias("n"),
        e.abs().mean().alias("mae"),
        e.mean().alias("mean_signed"),
        (e.pow(2).mean()).sqrt().alias("rmse"),
        (e < 0).mean().alias("frac_under"),
    ]


def per_model(table: pl.DataFrame, metric: str) -> pl.DataFrame:
    """One row per model: n, mae, mean_signed, rmse, frac_under for ``metric`` (ok rows only)."""
    err = METRICS[metric][2]
    ok = table.select("model", "status", err).filter((pl.col("status") == "ok") & pl.col(err).is_not_null())
    return ok.group_by("model").agg(error_stats(err)).sort("model")


def per_group(table: pl.DataFrame, metric: str, by: str) -> pl.DataFrame:
    """Per (group, model) statistics; ``by`` is 'dof' (binned total DOF), 'crystal_system' or 'spacegroup'."""
    err = METRICS[metric][2]
    inputs = {"dof": ["total_dof"], "crystal_system": ["crystal_system", "spacegroup_number"],
              "spacegroup": ["spacegroup_number", "spacegroup_symbol"]}.get(by, [])
    ok = table.select("model", "status", err, *inputs).filter((pl.col("status") == "ok") & pl.col(err).is_not_null())
    # ``_order``: a group's smallest DOF / space-group number, taken over the aggregated rows
    if by == "dof":
        ok = ok.with_columns(group=dof_bin_label(pl.col("total_dof")), _order=pl.col("total_dof"))
    elif by == "crystal_system":
        ok = ok.with_columns(group=pl.col("crystal_system"), _order=pl.col("spacegroup_number"))
    elif by == "spacegroup":
        ok = ok.with_columns(
            group=pl.format("{} {}", pl.col("spacegroup_number"), pl.col("spacegroup_symbol")),
            _order=pl.col("spacegroup_number"),
        )
    else:
        raise ValueError(f"unknown grouping {by!r}: use dof, crystal_system or spacegroup")
    return (
        ok.group_by("group", "model")
        .agg(pl.col("_order").min(), *error_stats(err))
        .with_columns(pl.col("_order").min().over("group"))
        .sort("_order", "model")
        .drop("_order")
    )


def near_hull(table: pl.DataFrame) -> pl.DataFrame:
    return table.filter(pl.col("e_above_hull_dft_mp2020") < NEAR_HULL_EV_PER_ATOM)
