"""The tidy error table: one row per (material, model, mode), DFT beside prediction.

Conventions
- Every value is on the MP2020-corrected convention (``*_mp2020``) and in eV/atom.
- Formation energies use the same elemental references for prediction and DFT (the
  matbench-discovery convention), so ``e_form_pred = e_form_dft + (e_pred - e_dft)``.
- ``e_above_hull_pred_fixed`` is method (a): the DFT hull held fixed,
  ``Ehull_pred = Ehull_DFT + (e_form_pred - e_form_DFT)``; it works on any subset.
- ``e_above_hull_pred_rebuilt`` / ``e_above_hull_dft_rebuilt`` are method (b): hulls rebuilt per
  chemical system from the entries of this dataset, once with predicted and once with DFT
  energies, so the two compare like with like even when the dataset is not a complete set.
- Signed errors ``d_*`` are prediction minus DFT: underprediction is negative.
- ``model`` is the model id, or ``<id>~<fingerprint[:7]>`` when rows of several weights share an id
  (``cache.weights.label_weight_variants``); ``model_id`` and ``weights_fingerprint`` say which.
"""

from __future__ import annotations

import polars as pl

from mliap_tui.cache import Cache
from mliap_tui.cache.weights import label_weight_variants

MATERIAL_COLUMNS = [
    "material_id", "formula", "elements", "chemsys", "n_sites", "spacegroup_number", "spacegroup_symbol",
    "crystal_system", "wyckoff", "lattice_dof", "wyckoff_dof", "total_dof", "polar_dof",
    "e_per_atom_dft_mp2020", "e_form_per_atom_dft_mp2020", "e_above_hull_dft_mp2020",
]



def join_predictions(materials: pl.LazyFrame, predictions: pl.LazyFrame) -> pl.LazyFrame:
    """Materials x predictions with the derived predicted quantities and signed errors (lazy)."""
    pred = label_weight_variants(predictions).select(
        "material_id", "model", "mode", "status", "error", "e_per_atom_pred_native", "e_per_atom_pred_mp2020",
        "relaxed_spacegroup_number", "relaxed_total_dof", "model_id", "weights_fingerprint", "trust_override",
    )
    mats = materials.select([c for c in MATERIAL_COLUMNS])
    d_e = pl.col("e_per_atom_pred_mp2020") - pl.col("e_per_atom_dft_mp2020")
    return (
        mats.join(pred, on="material_id", how="inner")
        .with_columns(d_e_per_atom=d_e)
        .with_columns(
            e_form_per_atom_pred=pl.col("e_form_per_atom_dft_mp2020") + pl.col("d_e_per_atom"),
            e_above_hull_pred_fixed=pl.col("e_above_hull_dft_mp2020") + pl.col("d_e_per_atom"),
        )
        .with_columns(
            d_e_form_per_atom=pl.col("e_form_per_atom_pred") - pl.col("e_form_per_atom_dft_mp2020"),
            d_e_above_hull=pl.col("e_above_hull_pred_fixed") - pl.col("e_above_hull_dft_mp2020"),
        )
    )


def add_rebuilt_hull(table: pl.DataFrame) -> pl.DataFrame:
    """Method (b): Ehull from hulls rebuilt per (model, mode) from this dataset's own entries.

    The DFT hull is rebuilt from the same entries, so a missing competing phase affects both
    sides alike. Failed predictions are left out of both hulls.
    """
    from pymatgen.core import Composition

    from mliap_tui.thermo import e_above_hull_rebuilt

    parts = []
    dft_hulls: dict[tuple[str, ...], dict[str, float]] = {}  # models with the same ok set share it
    for (model, mode), group in table.group_by("model", "mode", maintain_order=True):
        ok = group.filter(pl.col("e_per_atom_pred_mp2020").is_not_null() & pl.col("e_per_atom_dft_mp2020").is_not_null())
        ids = ok["material_id"].to_list()
        comps = [Composition(formula) for formula in ok["formula"].to_list()]
        pred = e_above_hull_rebuilt(ids, comps, ok["e_per_atom_pred_mp2020"].to_list())
        key = tuple(ids)
        if key not in dft_hulls:
            dft_hulls[key] = e_above_hull_rebuilt(ids, comps, ok["e_per_atom_dft_mp2020"].to_list())
        dft = dft_hulls[key]
        parts.append(
            group.with_columns(
                e_above_hull_pred_rebuilt=pl.col("material_id").replace_strict(pred, default=None, return_dtype=pl.Float64),
                e_above_hull_dft_rebuilt=pl.col("material_id").replace_strict(dft, default=None, return_dtype=pl.Float64),
            )
        )
    if not parts:
        return table.with_columns(
            e_above_hull_pred_rebuilt=pl.lit(None, pl.Float64), e_above_hull_dft_rebuilt=pl.lit(None, pl.Float64)
        ).with_columns(d_e_above_hull_rebuilt=pl.lit(None, pl.Float64))
    out = pl.concat(parts)
    return out.with_columns(d_e_above_hull_rebuilt=pl.col("e_above_hull_pred_rebuilt") - pl.col("e_above_hull_dft_rebuilt"))


def error_table(
    cache: Cache,
    dataset: str,
    mode: str = "static",
    models: list[str] | None = None,
    rebuilt_hull: bool = False,
) -> pl.DataFrame:
    """The tidy per-(material, model) table of ``dataset`` (ok and failed rows)."""
    table = join_predictions(cache.scan_materials(dataset), cache.scan_predictions(dataset, models, mode)).collect()
    if rebuilt_hull:
        table = add_rebuilt_hull(table)
    return table.sort("material_id", "model")
