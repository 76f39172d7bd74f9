"""Filtered tables for the explorer and for CSV export (textual-free, shared with the CLI).

Two layouts of the same data, both in eV/atom (the unit is in the column names, as everywhere
in the cache; the explorer shows errors as meV/atom but exports eV/atom):

* ``tidy``: one row per (material, model, mode), the error table of
  :func:`mliap_tui.analysis.errors.join_predictions` filtered with
  :func:`mliap_tui.analysis.filters.apply_filter`.
* ``wide``: one row per material, the material columns plus, for each model ``M``,
  ``status@M``, ``error@M`` and per metric ``<pred column>@M`` and ``d_<metric>@M``
  (:func:`wide_table`). This is what the explorer's table shows.

Headless use (what ``mliap-tui export --filter ... out.csv`` should call)::

    from mliap_tui.analysis.export import export_filtered
    result = export_filtered(cache, "sample", "cs=cubic err:ehull>50meV", "out.csv")
    print(f"{result.n_rows} rows -> {result.path}")
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import polars as pl

from mliap_tui.analysis.errors import (
    MATERIAL_COLUMNS,
    REBUILT_HULL_COLUMNS,
    add_rebuilt_hull,
    groups_of,
    join_predictions,
)
from mliap_tui.analysis.filters import (
    Filter,
    FilterError,
    apply_filter,
    parse_filter,
    wide_column,
)
from mliap_tui.cache import Cache
from mliap_tui.cache.compact import prediction_folders
from mliap_tui.cache.store import collect_fresh
from mliap_tui.core.files import write_bytes_atomic
from mliap_tui.core.vocab import CHEAP_METRICS, METRICS

LAYOUTS = ("tidy", "wide", "element")
#: a tidy table joined to a materials frame with ``with_row_index(MATERIAL_ROW)`` carries each
#: prediction's row in that frame, which makes the wide table a scatter instead of a join per model
MATERIAL_ROW = "__material_row"
#: Metrics that need no recomputation (the rebuilt hull does; it is added on request).
#: Per-model columns of the wide table besides the signed errors.
WIDE_ROW_COLUMNS = ("status", "error")

TIDY_COLUMNS = [
    *MATERIAL_COLUMNS,
    "model", "mode", "status", "error", "e_per_atom_pred_native", "e_per_atom_pred_mp2020",
    "model_id", "weights_fingerprint", "trust_override",
    "e_form_per_atom_pred", "e_above_hull_pred_fixed", "d_e_per_atom", "d_e_form_per_atom", "d_e_above_hull",
    "e_above_hull_dft_rebuilt", "e_above_hull_pred_rebuilt", "d_e_above_hull_rebuilt",
    "relaxed_spacegroup_number", "relaxed_total_dof",
]


@dataclass(frozen=True)
class ExportResult:
    path: Path
    n_rows: int
    n_columns: int
    layout: str

    def __str__(self) -> str:
        return f"{self.n_rows:,} rows x {self.n_columns} columns ({self.layout}) -> {self.path}"


# ---- tables -----------------------------------------------------------------------------------
def load_tidy(cache: Cache, dataset: str, mode: str | None = "static", rebuilt_hull: bool | str = False,
              models: Sequence[str] | None = None) -> pl.DataFrame:
    """The tidy error table of ``dataset`` (all models; one mode unless ``mode`` is None).

    ``rebuilt_hull``: False (no rebuilt-hull columns), True (add them, computing and storing
    those not stored yet) or ``"stored"`` (add the stored ones only; nulls elsewhere: what the
    explorer does, so opening it never builds phase diagrams). ``models``: only these.
    """
    table = collect_fresh(lambda: join_predictions(cache.scan_materials(dataset), cache.scan_predictions(dataset, models, mode)))
    if rebuilt_hull:
        table = add_rebuilt_hull(table, cache, dataset, compute=rebuilt_hull != "stored")
    return table.sort("material_id", "model", "mode")


def load_materials(cache: Cache, dataset: str) -> pl.DataFrame:
    """The material columns the explorer needs (no structures), one row per material."""
    return cache.scan_materials(dataset).select(MATERIAL_COLUMNS).collect()


def models_of(table: pl.DataFrame) -> list[str]:
    """Models present in a tidy table, sorted."""
    if "model" not in table.columns or table.is_empty():
        return []
    return sorted(table["model"].unique().drop_nulls().to_list())


def wide_table(materials: pl.DataFrame, tidy: pl.DataFrame, models: Sequence[str] | None = None) -> pl.DataFrame:
    """One row per material: ``materials`` left-joined with each model's status, error and
    signed errors (``d_*@model``, eV/atom). ``tidy`` must hold a single mode.

    Materials without a prediction keep null per-model columns (status null = not evaluated).
    When ``tidy`` has rebuilt-hull columns, each model's ``e_above_hull_pred_rebuilt@model`` is
    kept as is (its DFT counterpart depends on the model's set of ok rows), and the material
    column ``e_above_hull_dft_rebuilt`` is the first model's value.
    """
    if "mode" in tidy.columns and tidy["mode"].n_unique() > 1:
        raise ValueError("wide_table needs a single evaluation mode; filter the tidy table by mode first")
    models = list(models) if models is not None else models_of(tidy)
    d_cols = [METRICS[m][2] for m in METRICS if METRICS[m][2] in tidy.columns]
    rebuilt = [c for c in REBUILT_HULL_COLUMNS if c in tidy.columns]
    per_model = [*WIDE_ROW_COLUMNS, *d_cols, *rebuilt]
    # each prediction's row in ``materials`` (MATERIAL_ROW when the tidy table carries it, i.e. was
    # joined to this very frame), then every model's values scattered into those rows
    if MATERIAL_ROW in tidy.columns:
        rows = tidy.select(MATERIAL_ROW, "model", *per_model)
    else:
        rows = tidy.select("material_id", "model", *per_model).join(
            materials.select("material_id").with_row_index(MATERIAL_ROW), on="material_id", how="inner")
    parts = {key: part for key, part in groups_of(rows, ("model",))}
    n = materials.height
    columns = []
    for model in models:
        part = parts.get((model,))
        aligned = part is not None and part.height == n  # a value for every material (keys are unique)
        if aligned:
            part = part.sort(MATERIAL_ROW)
        for c in per_model:
            name = f"__dft@{model}" if len(rebuilt) > 1 and c == rebuilt[1] else wide_column(c, model)
            if aligned:
                columns.append(part[c].alias(name))
                continue
            empty = pl.repeat(None, n, dtype=tidy.schema[c], eager=True)
            columns.append((empty if part is None else empty.scatter(part[MATERIAL_ROW], part[c])).alias(name))
    wide = materials.drop(MATERIAL_ROW, strict=False).with_columns(columns)
    if len(rebuilt) > 1:
        dft = [f"__dft@{m}" for m in models]
        wide = wide.with_columns(pl.coalesce(dft).alias(rebuilt[1]) if dft else pl.lit(None, pl.Float64).alias(rebuilt[1])).drop(dft)
    return wide


def wide_models(wide: pl.DataFrame) -> list[str]:
    """Models of a wide table, from its ``status@model`` columns (in column order)."""
    return [c.split("@", 1)[1] for c in wide.columns if c.startswith("status@")]


def with_predicted(wide: pl.DataFrame, metric: str, models: Sequence[str] | None = None) -> pl.DataFrame:
    """Add ``<pred column>@model = DFT + d`` for ``metric`` (eV/atom) to a wide table (kept when
    the table has it already)."""
    dft, pred, err = METRICS[metric]
    models = wide_models(wide) if models is None else models
    cols = [
        (pl.col(dft) + pl.col(wide_column(err, m))).alias(wide_column(pred, m))
        for m in models
        if wide_column(err, m) in wide.columns and dft in wide.columns and wide_column(pred, m) not in wide.columns
    ]
    return wide.with_columns(cols) if cols else wide


def filter_wide(wide: pl.DataFrame, flt: Filter | str) -> pl.DataFrame:
    """Materials of a wide table matching ``flt`` (semantics in :mod:`mliap_tui.analysis.filters`)."""
    if isinstance(flt, str):
        flt = parse_filter(flt)
    models = wide_models(wide)
    check_wide_columns(flt, models, wide.columns)
    return wide.filter(flt.wide_mask(models))


def check_wide_columns(flt: Filter, models: Sequence[str], columns: Iterable[str]) -> None:
    """Raise FilterError, reason first, when ``flt`` reads columns a wide table lacks."""
    needed = set()
    for c in flt.required_columns():
        if c.startswith("d_") or c == "status":
            needed.update(wide_column(c, m) for m in models)
        elif c not in ("model", "mode"):
            needed.add(c)
    if (flt.has_row_clauses or flt.model_patterns is not None) and not models:
        raise FilterError(f"no model has been run on this dataset yet, so {flt.text!r} cannot match (mliap-tui run ...)")
    missing = sorted(needed - set(columns))
    if not missing:
        return
    if any("rebuilt" in c for c in missing):
        raise FilterError(f"the rebuilt-hull metric is not computed here ({flt.text!r}); use --rebuilt-hull in export")
    raise FilterError(f"filter {flt.text!r} needs column(s) {', '.join(missing[:4])} that this table lacks")


# ---- CSV ----------------------------------------------------------------------------------------
def csv_ready(df: pl.DataFrame) -> pl.DataFrame:
    """Lists become space-joined strings (CSV has no list type); everything else is kept."""
    out = []
    for name, dtype in df.schema.items():
        if isinstance(dtype, pl.List):
            out.append(pl.col(name).cast(pl.List(pl.Utf8)).list.join(" ").alias(name))
        else:
            out.append(pl.col(name))
    return df.select(out)


def default_export_path(dataset: str, directory: str | Path | None = None, now: float | None = None, layout: str = "tidy") -> Path:
    """``<directory>/mliap-<dataset>-<layout>-<YYYYmmdd-HHMMSS>.csv`` (directory: the working directory)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now if now is not None else time.time()))
    return Path(directory if directory is not None else Path.cwd()) / f"mliap-{dataset}-{layout}-{stamp}.csv"


def write_csv(df: pl.DataFrame, path: str | Path, overwrite: bool = False, layout: str = "tidy") -> ExportResult:
    """Write ``df`` as CSV through a temporary file and an atomic rename.

    Never replaces an existing file unless ``overwrite`` (FileExistsError otherwise); the folder
    must exist (FileNotFoundError names it).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder: give a file name, e.g. {path / 'export.csv'}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {path.parent} does not exist: create it or choose another path")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists: add --overwrite (in the app: confirm) or choose another name")
    out = csv_ready(df)
    write_bytes_atomic(out.write_csv().encode("utf-8"), path, make_parents=False)  # WriteError: one line
    return ExportResult(path=path.resolve(), n_rows=out.height, n_columns=out.width, layout=layout)


def tidy_export_frame(tidy: pl.DataFrame) -> pl.DataFrame:
    """The tidy table's exported columns, in a stable order."""
    return tidy.select([c for c in TIDY_COLUMNS if c in tidy.columns])


def wide_export_frame(wide: pl.DataFrame, metrics: Sequence[str] | None = None) -> pl.DataFrame:
    """Material columns, DFT values, then per model status, error, predicted values and signed errors.

    ``metrics``: default the cheap ones, and the rebuilt-hull one when the table has it.
    """
    models = wide_models(wide)
    if metrics is None:
        metrics = [*CHEAP_METRICS, *(["e_above_hull_rebuilt"] if "e_above_hull_dft_rebuilt" in wide.columns else [])]
    for metric in metrics:
        wide = with_predicted(wide, metric, models)
    base = [c for c in [*MATERIAL_COLUMNS, "e_above_hull_dft_rebuilt"] if c in wide.columns]
    per_model = []
    for m in models:
        per_model += [wide_column("status", m), wide_column("error", m)]
        for metric in metrics:
            _, pred, err = METRICS[metric]
            per_model += [wide_column(pred, m), wide_column(err, m)]
    return wide.select(base + [c for c in per_model if c in wide.columns])


def export_filtered(
    cache: Cache,
    dataset: str,
    filter_text: str | Filter | None,
    path: str | Path | None = None,
    layout: str = "tidy",
    overwrite: bool = False,
    material_ids: Sequence[str] | None = None,
    rebuilt_hull: bool = False,
) -> ExportResult:
    """Filter ``dataset``'s error table and write it as CSV (the headless ``export`` command).

    ``layout``: 'tidy' (one row per material x model), 'wide' (one row per material) or
    'element' (per model, element, metric and weighting: n, MAE, mean signed error, RMSE in eV/atom
    and the fraction underpredicted, over the filtered rows; :mod:`mliap_tui.analysis.elements`);
    ``material_ids``: keep only these materials (the explorer's selected rows);
    ``path`` defaults to :func:`default_export_path` in the working directory.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: use {' or '.join(LAYOUTS)}")
    flt = filter_text if isinstance(filter_text, Filter) else parse_filter(filter_text)
    models = None
    if flt.model_patterns:  # read only the models the filter names (known from the cache's folders)
        folders = prediction_folders(cache, [dataset])
        known = sorted({m for _, m, mode in folders if flt.mode is None or mode == flt.mode})
        flt = parse_filter(flt.text, known_models=known)
        models = flt.select_models(known)
    tidy = load_tidy(cache, dataset, flt.mode, rebuilt_hull=rebuilt_hull, models=models)
    known = models_of(tidy)
    if layout == "tidy":
        table = apply_filter(tidy, flt)
        frame = tidy_export_frame(table)
    elif layout == "element":
        frame = element_export_frame(cache, dataset, apply_filter(tidy, flt))
    else:
        if flt.mode is None:
            raise FilterError("the wide layout holds one evaluation mode: add mode=static or mode=relax")
        wide = wide_table(load_materials(cache, dataset), tidy, flt.select_models(known))
        frame = wide_export_frame(filter_wide(wide, flt))
    if material_ids is not None:
        frame = frame.filter(pl.col("material_id").is_in(list(material_ids)))
    if path is None:
        path = default_export_path(dataset, layout=layout)
    return write_csv(frame, path, overwrite=overwrite, layout=layout)


def element_export_frame(cache: Cache, dataset: str, table: pl.DataFrame) -> pl.DataFrame:
    """Per (model, element, metric, weighting) statistics of the rows of ``table`` (eV/atom)."""
    from mliap_tui.analysis.elements import WEIGHTINGS, element_errors

    species = cache.scan_materials(dataset).select("material_id", "species").collect()
    table = table.join(species, on="material_id", how="left")
    parts = [
        element_errors(table, metric, weighting).with_columns(metric=pl.lit(metric), weighting=pl.lit(weighting))
        for metric in CHEAP_METRICS for weighting in WEIGHTINGS
    ]
    out = pl.concat(parts) if parts else pl.DataFrame()
    return out.select(
        "model", "element", "z", "metric", "weighting", "n",
        pl.col("mae").alias("mae_ev_per_atom"), pl.col("mean_signed").alias("mean_signed_ev_per_atom"),
        pl.col("rmse").alias("rmse_ev_per_atom"), "frac_under", "weight",
    ).sort("model", "metric", "weighting", "z")


__all__ = [
    "element_export_frame", "ExportResult", "LAYOUTS", "load_tidy", "load_materials", "models_of", "wide_table",
    "wide_models", "with_predicted", "filter_wide", "csv_ready", "default_export_path", "write_csv",
    "tidy_export_frame", "wide_export_frame", "export_filtered", "check_wide_columns",
]
