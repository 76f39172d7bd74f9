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
"""

from __future__ import annotations

import polars as pl

from mliap_tui.cache import Cache, CacheWriteError
from mliap_tui.cache.store import collect_fresh

MATERIAL_COLUMNS = [
    "material_id", "formula", "elements", "chemsys", "n_sites", "spacegroup_number", "spacegroup_symbol",
    "crystal_system", "wyckoff", "lattice_dof", "wyckoff_dof", "total_dof", "polar_dof",
    "e_per_atom_dft_mp2020", "e_form_per_atom_dft_mp2020", "e_above_hull_dft_mp2020",
]



def join_predictions(materials: pl.LazyFrame, predictions: pl.LazyFrame) -> pl.LazyFrame:
    """Materials x predictions with the derived predicted quantities and signed errors (lazy)."""
    pred = predictions.select(
        "material_id", "model", "mode", "status", "error", "e_per_atom_pred_native", "e_per_atom_pred_mp2020",
        "relaxed_spacegroup_number", "relaxed_total_dof",
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


#: name and version of the stored rebuilt-hull table (cache/derived.py); bump the version when
#: the computation changes, so stored tables are recomputed
REBUILT_HULL_TABLE = "rebuilt_hull"
REBUILT_HULL_VERSION = "1"
REBUILT_HULL_COLUMNS = ("e_above_hull_pred_rebuilt", "e_above_hull_dft_rebuilt")
#: what the rebuilt hulls of one (model, mode) are computed from
HULL_INPUT_COLUMNS = ("material_id", "formula", "e_per_atom_pred_mp2020", "e_per_atom_dft_mp2020")


def hull_entries(group: pl.DataFrame) -> pl.DataFrame:
    """The rows of one (model, mode) that enter its rebuilt hulls: a predicted and a DFT energy."""
    return group.filter(pl.col("e_per_atom_pred_mp2020").is_not_null() & pl.col("e_per_atom_dft_mp2020").is_not_null())


def hull_inputs_version(entries: pl.DataFrame) -> str:
    """The version key of a stored rebuilt-hull table: the derivation's version, the elemental
    references, and an order-independent digest of every entry (id, formula, both energies)."""
    import numpy as np

    from mliap_tui.core.resources import elemental_refs_path

    frame = entries.select(HULL_INPUT_COLUMNS)
    digest = "".join(f"{int(np.asarray(frame.hash_rows(seed=seed).to_numpy(), dtype=np.uint64).sum(dtype=np.uint64)):016x}"
                     for seed in (1804, 2024))  # two 64-bit sums: a 128-bit, order-independent digest
    return f"{REBUILT_HULL_VERSION}|{elemental_refs_path().name}|polars {pl.__version__}|{len(entries)}|{digest}"


def compute_rebuilt_hull(entries: pl.DataFrame, dft_cache: dict | None = None) -> pl.DataFrame:
    """(material_id, e_above_hull_pred_rebuilt, e_above_hull_dft_rebuilt) of one (model, mode), eV/atom.

    ``dft_cache``: DFT hulls already built in this call, by entry set (models with the same ok
    set share one).
    """
    from pymatgen.core import Composition

    from mliap_tui.thermo import e_above_hull_rebuilt

    ids = entries["material_id"].to_list()
    comps = [Composition(formula) for formula in entries["formula"].to_list()]
    pred = e_above_hull_rebuilt(ids, comps, entries["e_per_atom_pred_mp2020"].to_list())
    key = tuple(ids)
    dft = (dft_cache or {}).get(key)
    if dft is None:
        dft = e_above_hull_rebuilt(ids, comps, entries["e_per_atom_dft_mp2020"].to_list())
        if dft_cache is not None:
            dft_cache[key] = dft
    return pl.DataFrame({
        "material_id": ids,
        "e_above_hull_pred_rebuilt": [pred[m] for m in ids],
        "e_above_hull_dft_rebuilt": [dft[m] for m in ids],
    }, schema={"material_id": pl.Utf8, "e_above_hull_pred_rebuilt": pl.Float64, "e_above_hull_dft_rebuilt": pl.Float64})


def rebuilt_hull_of(group: pl.DataFrame, model: str, mode: str, cache: Cache | None = None, dataset: str | None = None,
                    compute: bool = True, dft_cache: dict | None = None) -> pl.DataFrame | None:
    """The rebuilt-hull table of one (model, mode): stored in the cache next to its predictions
    when it was computed from these very rows, else computed now and stored (``compute``), else None."""
    from mliap_tui.cache.derived import read_derived, write_derived

    entries = hull_entries(group)
    version = hull_inputs_version(entries)
    if cache is not None and dataset is not None:
        stored = read_derived(cache, dataset, model, mode, REBUILT_HULL_TABLE, version)
        if stored is not None:
            return stored
    if not compute:
        return None
    table = compute_rebuilt_hull(entries, dft_cache)
    if cache is not None and dataset is not None:
        try:
            write_derived(cache, dataset, model, mode, REBUILT_HULL_TABLE, version, table)
        except CacheWriteError:
            pass  # computed all the same; stored next time the disk allows
    return table


def add_rebuilt_hull(table: pl.DataFrame, cache: Cache | None = None, dataset: str | None = None,
                     compute: bool = True) -> pl.DataFrame:
    """Method (b): Ehull from hulls rebuilt per (model, mode) from this dataset's own entries.

    The DFT hull is rebuilt from the same entries, so a missing competing phase affects both
    sides alike. Failed predictions are left out of both hulls. With ``cache`` and ``dataset``
    the hulls are computed once per (model, mode) and set of predictions and stored next to
    them (:mod:`mliap_tui.cache.derived`); ``compute=False`` only reads stored ones (the other
    rows get nulls).
    """
    parts = []
    dft_hulls: dict[tuple[str, ...], dict[str, float]] = {}  # models with the same ok set share it
    for (model, mode), group in table.group_by("model", "mode", maintain_order=True):
        hull = rebuilt_hull_of(group, model, mode, cache, dataset, compute, dft_hulls)
        if hull is None:
            parts.append(group.with_columns([pl.lit(None, pl.Float64).alias(c) for c in REBUILT_HULL_COLUMNS]))
        else:
            parts.append(group.join(hull, on="material_id", how="left"))
    if not parts:
        return table.with_columns(
            e_above_hull_pred_rebuilt=pl.lit(None, pl.Float64), e_above_hull_dft_rebuilt=pl.lit(None, pl.Float64)
        ).with_columns(d_e_above_hull_rebuilt=pl.lit(None, pl.Float64))
    out = pl.concat(parts)
    return out.with_columns(d_e_above_hull_rebuilt=pl.col("e_above_hull_pred_rebuilt") - pl.col("e_above_hull_dft_rebuilt"))


def has_rebuilt_hull(table: pl.DataFrame) -> bool:
    """True when every (model, mode) of ``table`` with predictions has rebuilt-hull values."""
    if "e_above_hull_pred_rebuilt" not in table.columns:
        return False
    with_preds = table.filter(pl.col("e_per_atom_pred_mp2020").is_not_null())
    return bool(len(with_preds)) and with_preds["e_above_hull_pred_rebuilt"].is_not_null().all()


def error_table(
    cache: Cache,
    dataset: str,
    mode: str = "static",
    models: list[str] | None = None,
    rebuilt_hull: bool = False,
) -> pl.DataFrame:
    """The tidy per-(material, model) table of ``dataset`` (ok and failed rows)."""
    table = collect_fresh(lambda: join_predictions(cache.scan_materials(dataset), cache.scan_predictions(dataset, models, mode)))
    if rebuilt_hull:
        table = add_rebuilt_hull(table, cache, dataset)
    return table.sort("material_id", "model")
