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

from typing import Sequence

import polars as pl

from mliap_tui.cache import Cache, CacheWriteError
from mliap_tui.cache.store import collect_fresh
from mliap_tui.cache.weights import label_weight_variants

MATERIAL_COLUMNS = [
    "material_id", "formula", "elements", "chemsys", "n_sites", "spacegroup_number", "spacegroup_symbol",
    "crystal_system", "wyckoff", "lattice_dof", "wyckoff_dof", "total_dof", "polar_dof",
    "e_per_atom_dft_mp2020", "e_form_per_atom_dft_mp2020", "e_above_hull_dft_mp2020",
]



#: the material columns the predicted quantities and errors need (and the rebuilt hull reads)
ERROR_INPUT_COLUMNS = ["material_id", "formula", "e_per_atom_dft_mp2020", "e_form_per_atom_dft_mp2020",
                       "e_above_hull_dft_mp2020"]


def join_predictions(materials: pl.LazyFrame, predictions: pl.LazyFrame,
                     material_columns: list[str] = MATERIAL_COLUMNS) -> pl.LazyFrame:
    """Materials x predictions with the derived predicted quantities and signed errors (lazy).

    ``material_columns``: the material columns to carry (at least ERROR_INPUT_COLUMNS); fewer make
    a lighter table (the explorer keeps the rest once per material, not once per prediction).
    """
    pred = label_weight_variants(predictions).select(
        "material_id", "model", "mode", "status", "error", "e_per_atom_pred_native", "e_per_atom_pred_mp2020",
        "relaxed_spacegroup_number", "relaxed_total_dof", "model_id", "weights_fingerprint", "trust_override",
    )
    mats = materials.select(list(material_columns)).with_columns(pl.lit(True).alias("__known"))
    d_e = pl.col("e_per_atom_pred_mp2020") - pl.col("e_per_atom_dft_mp2020")
    # predictions left-join materials (hash built on the smaller side, prediction order kept:
    # folder by folder), then the predictions of materials not in the table dropped (an inner join)
    return (
        pred.join(mats, on="material_id", how="left", maintain_order="left")
        .filter(pl.col("__known").is_not_null())
        .select(*material_columns, *[c for c in pred.collect_schema().names() if c != "material_id"])
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


def groups_of(frame: pl.DataFrame, keys: Sequence[str] = ("model", "mode")) -> list[tuple[tuple, pl.DataFrame]]:
    """(key values, rows) per group of ``keys``, in order of appearance. Rows read from the cache
    come folder by folder, so each (model, mode) is one run of rows: those are cut out as slices
    (no copy); otherwise a group_by."""
    cuts = {0, frame.height}
    for key in keys:
        lengths = frame.select(pl.col(key).rle().struct.field("len")).to_series()
        cuts.update(lengths.cum_sum().to_list())
    bounds = sorted(cuts)
    slices = [(tuple(frame.row(a, named=True)[k] for k in keys), frame.slice(a, b - a)) for a, b in zip(bounds, bounds[1:])
              if b > a]
    if len({k for k, _ in slices}) == len(slices):
        return slices
    return [(tuple(k), g) for k, g in frame.group_by(*keys, maintain_order=True)]


def hull_entries(group: pl.DataFrame) -> pl.DataFrame:
    """The rows of one (model, mode) that enter its rebuilt hulls: a predicted and a DFT energy."""
    return group.filter(pl.col("e_per_atom_pred_mp2020").is_not_null() & pl.col("e_per_atom_dft_mp2020").is_not_null())


def hull_inputs_version(entries: pl.DataFrame) -> str:
    """The version key of a stored rebuilt-hull table: the derivation's version, the elemental
    references, and an order-independent digest of every entry (id, formula, both energies)."""
    import numpy as np

    from mliap_tui.core.resources import elemental_refs_path

    hashed = entries.select(HULL_INPUT_COLUMNS).hash_rows(seed=1804)
    digest = f"{int(np.asarray(hashed.to_numpy(), dtype=np.uint64).sum(dtype=np.uint64)):016x}"  # order-independent
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
    }, schema={"material_id": pl.Utf8, "e_above_hull_pred_rebuilt": pl.Float64, "e_above_hull_dft_rebuilt": pl.Float64}
    ).sort("material_id")  # the order of a compacted file: read back without a join


def rebuilt_hull_of(group: pl.DataFrame, model: str, mode: str, cache: Cache | None = None, dataset: str | None = None,
                    compute: bool = True, dft_cache: dict | None = None, store: bool = True) -> pl.DataFrame | None:
    """The rebuilt-hull table of one (model, mode): stored in the cache next to its predictions
    when it was computed from these very rows, else computed now (``compute``) and stored
    (``store``: False for a subset of the rows, whose table must not replace the whole set's),
    else None."""
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
    if store and cache is not None and dataset is not None:
        try:
            write_derived(cache, dataset, model, mode, REBUILT_HULL_TABLE, version, table)
        except CacheWriteError:
            pass  # computed all the same; stored next time the disk allows
    return table


def add_rebuilt_hull(table: pl.DataFrame, cache: Cache | None = None, dataset: str | None = None,
                     compute: bool = True, store: bool = True) -> pl.DataFrame:
    """Method (b): Ehull from hulls rebuilt per (model, mode) from this dataset's own entries.

    The DFT hull is rebuilt from the same entries, so a missing competing phase affects both
    sides alike. Failed predictions are left out of both hulls. With ``cache`` and ``dataset``
    the hulls are computed once per (model, mode) and set of predictions and stored next to
    them (:mod:`mliap_tui.cache.derived`); ``compute=False`` only reads stored ones (the other
    rows get nulls); ``store=False`` reads stored ones and computes the rest without storing (a
    filtered subset: its hulls are not the whole set's). The rows keep their order.
    """
    n = table.height
    values = {c: pl.Series(c, dtype=pl.Float64).clear(n) for c in REBUILT_HULL_COLUMNS}  # all null
    dft_hulls: dict[tuple[str, ...], dict[str, float]] = {}  # models with the same ok set share it
    slim = table.select(*HULL_INPUT_COLUMNS, "model", "mode").with_row_index("__row")
    for (model, mode), group in groups_of(slim):
        hull = rebuilt_hull_of(group, model, mode, cache, dataset, compute, dft_hulls, store)
        if hull is None:
            continue
        entries = hull_entries(group)
        if entries["material_id"].equals(hull["material_id"]):  # stored in this order: no join needed
            at = hull.with_columns(entries["__row"])
        else:
            at = group.select("__row", "material_id").join(hull, on="material_id", how="inner")
        for c in REBUILT_HULL_COLUMNS:  # into this group's rows, wherever they are in the table
            values[c] = values[c].scatter(at["__row"], at[c])
    return table.with_columns(*values.values()).with_columns(
        d_e_above_hull_rebuilt=pl.col("e_above_hull_pred_rebuilt") - pl.col("e_above_hull_dft_rebuilt"))


def has_rebuilt_hull(table: pl.DataFrame) -> bool:
    """True when every (model, mode) of ``table`` with predictions has rebuilt-hull values."""
    if "e_above_hull_pred_rebuilt" not in table.columns or table.is_empty():
        return False
    pred = pl.col("e_per_atom_pred_mp2020").is_not_null()
    found = table.select(pred.any().alias("any"), (pred & pl.col("e_above_hull_pred_rebuilt").is_null()).any().alias("gap"))
    return bool(found["any"][0]) and not bool(found["gap"][0])


def error_table(
    cache: Cache,
    dataset: str,
    mode: str = "static",
    models: list[str] | None = None,
    rebuilt_hull: bool = False,
    sort: bool = True,
    material_columns: list[str] = MATERIAL_COLUMNS,
) -> pl.DataFrame:
    """The tidy per-(material, model) table of ``dataset`` (ok and failed rows), sorted by
    material and model unless ``sort`` is False (statistics do not need it); ``material_columns``
    as in :func:`join_predictions`."""
    table = collect_fresh(lambda: join_predictions(cache.scan_materials(dataset), cache.scan_predictions(dataset, models, mode),
                                                   material_columns))
    if rebuilt_hull:
        table = add_rebuilt_hull(table, cache, dataset)
    return table.sort("material_id", "model") if sort else table
