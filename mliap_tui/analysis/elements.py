"""Errors per chemical element: where a model fails, the field's first look (pymatviz
``ptable_heatmap``, matbench-discovery's element-error plots).

A crystal counts for every element it holds. Two weightings:

* ``crystal`` (default): each crystal holding the element counts once; ``mae`` is the mean of
  |error| over those crystals, ``mean_signed`` the mean signed error;
* ``fraction``: each crystal counts with the atomic fraction of the element in it (a crystal
  that is 2 % Li barely moves the Li number).

Errors are eV/atom, prediction minus DFT, on one metric of the tidy error table
(:func:`mliap_tui.analysis.errors.error_table`); failed rows are left out.
"""

from __future__ import annotations

from typing import Literal

import polars as pl
from ase.data import atomic_numbers

from mliap_tui.core.vocab import METRICS

Weighting = Literal["crystal", "fraction"]
WEIGHTINGS: tuple[str, ...] = ("crystal", "fraction")

MAX_Z = 103  # up to Lr: what universal potentials cover (the heavier ones have no data)


def table_position(z: int) -> tuple[int, int]:
    """(row, column) of element ``z`` in the 18-column table, rows 0-6 for the periods and 8-9 for
    the lanthanides (57-70) and actinides (89-102); columns 0-17 are the groups."""
    if z == 1:
        return 0, 0
    if z == 2:
        return 0, 17
    for period, start in ((1, 3), (2, 11)):
        if start <= z < start + 8:
            k = z - start
            return period, k if k < 2 else k + 10
    for period, start in ((3, 19), (4, 37)):
        if start <= z < start + 18:
            return period, z - start
    for period, start, f_row in ((5, 55, 8), (6, 87, 9)):
        if start <= z < start + 32:
            k = z - start
            if k < 2:
                return period, k
            if k < 16:  # La..Yb, Ac..No
                return f_row, k + 1
            return period, k - 14
    raise ValueError(f"no table position for Z={z}")


ELEMENT_SCHEMA = {"model": pl.Utf8, "element": pl.Utf8, "z": pl.Int32, "n": pl.UInt32, "mae": pl.Float64,
                  "mean_signed": pl.Float64, "rmse": pl.Float64, "frac_under": pl.Float64, "weight": pl.Float64}


def element_fractions(species: pl.Expr) -> pl.Expr:
    """A list column of species -> a list of {element, w} structs (w = atomic fraction)."""
    return species.list.eval(pl.element().value_counts(normalize=True).struct.rename_fields(["element", "w"]))


def element_errors(table: pl.DataFrame, metric: str = "e_above_hull", weighting: Weighting = "crystal") -> pl.DataFrame:
    """One row per (model, element): n crystals, MAE, mean signed error, RMSE (eV/atom), fraction
    underpredicted and the total weight, all weighted as ``weighting`` says.

    ``table`` needs ``material_id``, ``model``, ``status``, the metric's signed-error column and
    either ``species`` (for the fraction weighting) or ``elements``.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}: use crystal or fraction")
    err = METRICS[metric][2]
    ok = table.filter((pl.col("status") == "ok") & pl.col(err).is_not_null())
    if not len(ok):
        return pl.DataFrame(schema=ELEMENT_SCHEMA)
    if weighting == "fraction":
        if "species" not in ok.columns:
            raise ValueError("the fraction weighting needs the species column (per-site elements)")
        long = (
            ok.select("model", err, element_fractions(pl.col("species")).alias("f"))
            .explode("f").unnest("f")
        )
    else:
        long = ok.select("model", err, pl.col("elements").alias("element")).explode("element").with_columns(w=pl.lit(1.0))
    e, w = pl.col(err), pl.col("w")
    out = (
        long.group_by("model", "element")
        .agg(
            pl.len().cast(pl.UInt32).alias("n"),
            ((e.abs() * w).sum() / w.sum()).alias("mae"),
            ((e * w).sum() / w.sum()).alias("mean_signed"),
            ((e * e * w).sum() / w.sum()).sqrt().alias("rmse"),
            (((e < 0).cast(pl.Float64) * w).sum() / w.sum()).alias("frac_under"),
            w.sum().alias("weight"),
        )
        .with_columns(pl.col("element").replace_strict(atomic_numbers, default=0, return_dtype=pl.Int32).alias("z"))
        .sort("model", "z")
    )
    return out.select(list(ELEMENT_SCHEMA))


def element_table(cache, dataset: str, mode: str = "static", metric: str = "e_above_hull",
                  weighting: Weighting = "crystal", models: list[str] | None = None) -> pl.DataFrame:
    """:func:`element_errors` of a cached dataset (reads the species only for ``fraction``)."""
    from mliap_tui.analysis.errors import error_table

    table = error_table(cache, dataset, mode=mode, models=models)
    if weighting == "fraction":
        species = cache.scan_materials(dataset).select("material_id", "species").collect()
        table = table.join(species, on="material_id", how="left")
    return element_errors(table, metric, weighting)


__all__ = ["ELEMENT_SCHEMA", "MAX_Z", "WEIGHTINGS", "element_errors", "element_table", "table_position"]
