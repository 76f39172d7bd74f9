"""Aggregations of the error table: per model, per DOF bin, crystal system, space group.

All inputs are eV/atom; outputs keep eV/atom (renderers convert to meV/atom for display).
"""

from __future__ import annotations

import polars as pl

from mliap_tui.core.vocab import (
    DOF_BIN_EDGES,  # bins [1,2], [3,5], [6,9], [10,14], [15,19], [20,29], [30,...)
    METRICS,
    NEAR_HULL_EV_PER_ATOM,
    NEAR_HULL_GROUPS,
)


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


def with_group(table: pl.DataFrame, by: str, near_hull_ev_per_atom: float = NEAR_HULL_EV_PER_ATOM) -> pl.DataFrame:
    """``table`` with ``group`` (label) and ``_order`` (sort key) columns for grouping ``by``:
    'dof' (binned total DOF), 'crystal_system', 'spacegroup' or 'near_hull' (DFT Ehull below
    ``near_hull_ev_per_atom``, eV/atom, or not; rows without a DFT Ehull get no group)."""
    if by == "dof":
        label = dof_bin_label(pl.col("total_dof"))
        return table.with_columns(group=label, _order=pl.col("total_dof").min().over(label))
    if by == "crystal_system":
        return table.with_columns(group=pl.col("crystal_system"), _order=pl.col("spacegroup_number").min().over("crystal_system"))
    if by == "spacegroup":
        return table.with_columns(
            group=pl.format("{} {}", pl.col("spacegroup_number"), pl.col("spacegroup_symbol")),
            _order=pl.col("spacegroup_number"),
        )
    if by == "near_hull":
        near = pl.col("e_above_hull_dft_mp2020") < near_hull_ev_per_atom
        return table.with_columns(
            group=pl.when(near).then(pl.lit(NEAR_HULL_GROUPS[0])).otherwise(pl.lit(NEAR_HULL_GROUPS[1])),
            _order=pl.when(near).then(0).otherwise(1),
        ).filter(pl.col("e_above_hull_dft_mp2020").is_not_null())
    raise ValueError(f"unknown grouping {by!r}: use dof, crystal_system, spacegroup or near_hull")


def per_group(table: pl.DataFrame, metric: str, by: str) -> pl.DataFrame:
    """Per (group, model) statistics; ``by`` is 'dof' (binned total DOF), 'crystal_system',
    'spacegroup' or 'near_hull'."""
    err = METRICS[metric][2]
    inputs = {"dof": ["total_dof"], "crystal_system": ["crystal_system", "spacegroup_number"],
              "spacegroup": ["spacegroup_number", "spacegroup_symbol"], "near_hull": ["e_above_hull_dft_mp2020"]}
    if by not in inputs:
        raise ValueError(f"unknown grouping {by!r}: use {', '.join(inputs)}")
    # only the columns the statistics read (a 150k x 10 table is large)
    ok = table.select("model", "status", err, *inputs[by]).filter((pl.col("status") == "ok") & pl.col(err).is_not_null())
    ok = with_group(ok, by)
    return (
        ok.group_by("group", "model")
        .agg(pl.col("_order").min(), *error_stats(err))
        .with_columns(pl.col("_order").min().over("group"))
        .sort("_order", "model")
        .drop("_order")
    )


def near_hull(table: pl.DataFrame) -> pl.DataFrame:
    return table.filter(pl.col("e_above_hull_dft_mp2020") < NEAR_HULL_EV_PER_ATOM)
