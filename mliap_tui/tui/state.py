"""What the Explore screen shows, computed without textual (so it can be benchmarked and tested).

``load_dataset`` reads the cache once (materials + predictions of one mode) into a tidy table and
a one-row-per-material wide table; ``compute_view`` applies a filter, sort and metric to the wide
table and computes the per-model summary. Nothing is recomputed from structures: the values are
the cached DFT and predicted energies (eV/atom); errors are shown as meV/atom by the widgets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import polars as pl

from mliap_tui.analysis.aggregate import per_group
from mliap_tui.analysis.errors import (
    ERROR_INPUT_COLUMNS,
    add_rebuilt_hull,
    has_rebuilt_hull,
    join_predictions,
)
from mliap_tui.analysis.export import (
    MATERIAL_ROW,
    check_wide_columns,
    load_materials,
    models_of,
    wide_table,
    with_predicted,
)
from mliap_tui.analysis.filters import Filter, parse_filter, wide_column
from mliap_tui.cache import Cache
from mliap_tui.cache.store import collect_fresh
from mliap_tui.core.vocab import CHEAP_METRICS, METRICS

SUMMARY_COLUMNS = ("model", "n", "mae", "mean_signed", "rmse", "frac_under", "n_failed")


@dataclass
class LoadedDataset:
    """One dataset and mode of the cache, in memory.

    ``predictions``: one row per (material, model) with the predicted values and signed errors
    and only the material columns they need; ``wide``: one row per material (what the table
    shows); :attr:`tidy`: the full tidy table (every material column on every prediction row),
    built on first use (CSV export) since at 150k x 10 it is the largest frame.
    """

    dataset: str
    mode: str
    predictions: pl.DataFrame
    wide: pl.DataFrame
    models: list[str]
    materials: pl.DataFrame | None = None
    load_s: float = 0.0
    n_raw_energies: int = 0  # crystals with a DFT energy off the MP2020 scale only (own settings)
    n_dft_forces: int = 0  # crystals with DFT forces (the Forces screen compares them)
    #: metrics the explorer offers: the cheap ones, and the rebuilt-hull one when its stored
    #: tables cover every model (computed by ``summary``/``export --rebuilt-hull``, not here)
    metrics: tuple[str, ...] = CHEAP_METRICS
    _per_metric: dict = field(default_factory=dict, repr=False)
    _tidy: pl.DataFrame | None = field(default=None, repr=False)

    @property
    def n_materials(self) -> int:
        return self.wide.height

    @property
    def tidy(self) -> pl.DataFrame:
        """Every material column on every prediction row (the tidy export layout)."""
        if self._tidy is None:
            extra = [c for c in self.materials.columns if c not in self.predictions.columns] if self.materials is not None else []
            if MATERIAL_ROW in self.predictions.columns:
                self.predictions = self.predictions.drop(MATERIAL_ROW)
            self._tidy = (self.predictions.join(self.materials.select("material_id", *extra), on="material_id", how="left",
                                                maintain_order="left") if extra else self.predictions)
        return self._tidy

    def wide_for(self, metric: str) -> pl.DataFrame:
        """The wide table with ``<pred column>@model`` for ``metric`` (computed once per metric)."""
        frame = self._per_metric.get(metric)
        if frame is None:
            frame = self._per_metric[metric] = with_predicted(self.wide, metric, self.models)
        return frame

    def sort_order(self, metric: str, column: str, descending: bool) -> pl.Series:
        """Row positions of ``wide_for(metric)`` sorted by ``column`` (nulls last), computed once:
        a later filter only has to drop positions, which keeps re-filtering a sorted view fast."""
        key = (metric, column, descending)
        order = self._per_metric.get(key)
        if order is None:
            order = self._per_metric[key] = self.wide_for(metric).get_column(column).arg_sort(
                descending=descending, nulls_last=True
            )
        return order


def load_dataset(cache: Cache, dataset: str, mode: str = "static") -> LoadedDataset:
    """Read one dataset and mode: the predictions with only the material columns their errors
    need (ERROR_INPUT_COLUMNS), the stored rebuilt hulls (never computed here), the materials."""
    t0 = time.perf_counter()
    materials = load_materials(cache, dataset).with_row_index(MATERIAL_ROW)
    predictions = collect_fresh(lambda: join_predictions(materials.lazy(), cache.scan_predictions(dataset, None, mode),
                                                         material_columns=[*ERROR_INPUT_COLUMNS, MATERIAL_ROW]))
    predictions = add_rebuilt_hull(predictions, cache, dataset, compute=False)
    data = from_frames(dataset, mode, materials, predictions)
    data.n_raw_energies, data.n_dft_forces = cache.scan_materials(dataset).select(
        (pl.col("e_per_atom_dft_raw").is_not_null() & pl.col("e_per_atom_dft_mp2020").is_null()).sum(),
        pl.col("forces_dft_ev_per_ang").is_not_null().sum(),
    ).collect().row(0)
    data.load_s = time.perf_counter() - t0
    return data


def from_frames(dataset: str, mode: str, materials: pl.DataFrame, tidy: pl.DataFrame) -> LoadedDataset:
    """A LoadedDataset from in-memory frames (``tidy``: prediction rows with at least
    ERROR_INPUT_COLUMNS). Status and crystal-system columns become categoricals: comparing them
    is what most filters and the summary do. Rebuilt-hull columns are kept only when they cover
    every model."""
    models = models_of(tidy)
    rebuilt = has_rebuilt_hull(tidy)
    if not rebuilt:
        tidy = tidy.drop([c for c in tidy.columns if c.endswith("_rebuilt")])
    wide = wide_table(materials, tidy, models)
    materials = materials.drop(MATERIAL_ROW, strict=False)
    categorical = [c for c in wide.columns if c.startswith("status@")] + ["crystal_system"]
    wide = wide.with_columns([pl.col(c).cast(pl.Categorical) for c in categorical if c in wide.columns])
    metrics = (*CHEAP_METRICS, "e_above_hull_rebuilt") if rebuilt else CHEAP_METRICS
    return LoadedDataset(dataset, mode, tidy, wide, models, materials=materials, metrics=metrics)


@dataclass
class View:
    """A filtered, sorted slice of a dataset for one metric.

    The rows are ``base`` (the dataset's wide table, shared, not copied) at positions ``order``
    (filtered, then sorted): a filter or sort builds one integer column, and the table reads only
    the rows on screen (:meth:`rows`). :attr:`frame` materialises the whole view when needed
    (plots, export, tests).
    """

    filter: Filter
    metric: str
    sort: str | None
    descending: bool
    models: list[str]
    base: pl.DataFrame
    order: pl.Series  # UInt32 positions in base
    summary: pl.DataFrame  # SUMMARY_COLUMNS, one row per selected model (eV/atom)
    n_total: int
    elapsed_s: float = 0.0
    match_models: list[str] = field(default_factory=list)  # models with a match@model column
    _frame: pl.DataFrame | None = field(default=None, repr=False)
    _plot_rows: pl.DataFrame | None = field(default=None, repr=False)

    @property
    def n_materials(self) -> int:
        return len(self.order)

    @property
    def height(self) -> int:
        return len(self.order)

    @property
    def columns(self) -> list[str]:
        return self.base.columns + [match_column(m) for m in self.match_models]

    def _with_match(self, frame: pl.DataFrame) -> pl.DataFrame:
        if not self.match_models:
            return frame
        return frame.with_columns([self.filter.model_row_mask(m).alias(match_column(m)) for m in self.match_models])

    def slice(self, start: int, length: int, fields: Sequence[str] | None = None) -> pl.DataFrame:
        """Rows ``start .. start+length`` of the view (only those are gathered from ``base``)."""
        positions = self.order.slice(start, length)
        base_fields = None if fields is None else [f for f in fields if f in self.base.columns]
        part = (self.base if base_fields is None else self.base.select(self._row_columns(base_fields))).gather(positions)
        part = self._with_match(part)
        return part if fields is None else part.select([f for f in fields if f in part.columns])

    def _row_columns(self, fields: Sequence[str]) -> list[str]:
        needed = set(fields)
        for m in self.match_models:  # what the match@model expressions read
            needed.add(wide_column("status", m))
            needed.update(wide_column(c, m) for c in self.filter.required_columns() if c.startswith("d_"))
        return [c for c in self.base.columns if c in needed]

    def rows(self, start: int, length: int, fields: Sequence[str]) -> list[tuple]:
        return self.slice(start, length, fields).select(list(fields)).rows()

    def find(self, column: str, value) -> int | None:
        """Row index (in the view) of the first row whose ``column`` equals ``value``."""
        hits = self.base.select(pl.arg_where(pl.col(column) == value)).to_series()
        if not len(hits):
            return None
        where = (self.order == hits[0]).arg_true()
        return int(where[0]) if len(where) else None

    @property
    def frame(self) -> pl.DataFrame:
        """The whole view as a DataFrame (materialised on first use)."""
        if self._frame is None:
            self._frame = self._with_match(self.base.gather(self.order))
        return self._frame

    def plot_rows(self) -> pl.DataFrame:
        """Tidy rows (material, model) that match the filter, for plots and group statistics."""
        if self._plot_rows is None:
            self._plot_rows = tidy_rows(self.frame, self.models, self.metric)
        return self._plot_rows

    def by_group(self, by: str) -> pl.DataFrame:
        """Per (group, model) error statistics of the matching rows (eV/atom): 'dof' or 'crystal_system'."""
        return per_group(self.plot_rows(), self.metric, by)


def match_column(model: str) -> str:
    return wide_column("match", model)


def check_filter(data: LoadedDataset, flt: Filter) -> None:
    """Raise FilterError when the filter needs columns this dataset's table lacks."""
    check_wide_columns(flt, data.models, data.wide.columns)


def summary_exprs(flt: Filter, models: Sequence[str], metric: str) -> list[pl.Expr]:
    err = METRICS[metric][2]
    exprs = []
    for m in models:
        d = pl.col(wide_column(err, m))
        status = pl.col(wide_column("status", m))
        row = flt.model_row_mask(m)
        e = pl.when(row & (status == "ok")).then(d)  # null where the row does not count
        exprs += [
            e.count().alias(f"n|{m}"),
            e.abs().mean().alias(f"mae|{m}"),
            e.mean().alias(f"mean_signed|{m}"),
            (e * e).mean().sqrt().alias(f"rmse|{m}"),
            pl.when(e.count() > 0).then((e < 0).sum() / e.count()).alias(f"frac_under|{m}"),
            (row & (status == "failed")).sum().alias(f"n_failed|{m}"),
        ]
    return exprs


def summarize(frame: pl.DataFrame, flt: Filter, models: Sequence[str], metric: str) -> pl.DataFrame:
    """Per-model n, MAE, mean signed error, RMSE, fraction underpredicted (eV/atom) and failures."""
    schema = {"model": pl.Utf8, "n": pl.UInt32, "mae": pl.Float64, "mean_signed": pl.Float64,
              "rmse": pl.Float64, "frac_under": pl.Float64, "n_failed": pl.UInt32}
    if not models:
        return pl.DataFrame(schema=schema)
    row = frame.select(summary_exprs(flt, models, metric)).row(0, named=True)
    return pl.DataFrame(
        [{"model": m, **{k: row[f"{k}|{m}"] for k in SUMMARY_COLUMNS[1:]}} for m in models], schema=schema
    )


def tidy_rows(frame: pl.DataFrame, models: Sequence[str], metric: str) -> pl.DataFrame:
    """Back from wide to tidy: the rows of ``models`` that match (``match@model``), for one metric."""
    dft, pred, err = METRICS[metric]
    keep = ["material_id", "formula", "spacegroup_number", "spacegroup_symbol", "crystal_system", "total_dof"]
    parts = []
    for m in models:
        match = match_column(m)
        part = frame.filter(pl.col(match)) if match in frame.columns else frame.filter(pl.col(wide_column("status", m)).is_not_null())
        parts.append(
            part.select(
                *keep,
                pl.lit(m).alias("model"),
                pl.col(wide_column("status", m)).alias("status"),
                pl.col(dft),
                pl.col(wide_column(pred, m)).alias(pred),
                pl.col(wide_column(err, m)).alias(err),
            )
        )
    if not parts:
        return pl.DataFrame(schema={c: frame.schema[c] for c in keep} | {"model": pl.Utf8, "status": pl.Utf8, dft: pl.Float64, pred: pl.Float64, err: pl.Float64})
    return pl.concat(parts)


def compute_view(
    data: LoadedDataset,
    flt: Filter | str,
    metric: str = "e_above_hull",
    sort: str | None = None,
    descending: bool = False,
    selected: str | None = None,
) -> View:
    """Filter + per-model summary + sort; the view the Explore screen renders.

    Only the columns a clause reads are scanned; the result is a column of row positions.
    ``selected``: the model picked with ``m`` (decides for ``match=selected``).
    """
    t0 = time.perf_counter()
    if isinstance(flt, str):
        flt = parse_filter(flt, known_models=data.models)
    if metric not in data.metrics:
        raise ValueError(f"the explorer shows {', '.join(data.metrics)} here; {metric!r} is not stored for every model "
                         "(`mliap-tui summary` computes and stores the rebuilt hulls once)")
    check_filter(data, flt)
    base = data.wide_for(metric)
    models = flt.select_models(data.models)
    n = base.height
    if flt.model_patterns is not None or flt.has_row_clauses or any(c.scope == "material" for c in flt.clauses):
        mask = base.select(flt.wide_mask(data.models, selected=selected).alias("mask")).to_series()
        order = mask.arg_true()
    else:
        mask = None
        order = pl.Series("order", range(n), dtype=pl.UInt32) if n else pl.Series("order", [], dtype=pl.UInt32)
    err = METRICS[metric][2]
    stat_cols = [wide_column(c, m) for m in models for c in ("status", err)]
    stat_cols += [wide_column(c, m) for m in models for c in flt.required_columns() if c.startswith("d_")]
    stat_frame = base.select(list(dict.fromkeys(c for c in stat_cols if c in base.columns)))
    if mask is not None and stat_frame.width:
        stat_frame = stat_frame.filter(mask)
    summary = summarize(stat_frame, flt, models, metric)
    if sort is not None and sort in base.columns and len(order):
        full = data.sort_order(metric, sort, descending)
        order = full if mask is None else full.filter(mask.gather(full))
    match_models = models if (flt.model_patterns is not None or flt.has_row_clauses) else []
    return View(flt, metric, sort, descending, models, base, order, summary, n, time.perf_counter() - t0, match_models)


@dataclass
class MaterialDetail:
    """Everything the detail screen shows about one material (eV/atom, Å, degrees)."""

    material_id: str
    row: dict  # materials-table row (structure columns included)
    lattice_abc_ang: tuple[float, float, float]
    angles_deg: tuple[float, float, float]
    volume_ang3: float
    symmetry: object | None  # mliap_tui.symmetry.SymmetryInfo, None when spglib failed
    symmetry_error: str | None
    site_coords: dict[int, tuple[float, float, float]]
    predictions: pl.DataFrame  # tidy rows of this material, every model


def lattice_parameters(lattice_ang) -> tuple[tuple[float, float, float], tuple[float, float, float], float]:
    """(a, b, c) in Å, (alpha, beta, gamma) in degrees and the volume in Å^3 of 3 row vectors."""
    import numpy as np

    m = np.asarray(lattice_ang, dtype=float).reshape(3, 3)
    a, b, c = (float(np.linalg.norm(v)) for v in m)

    def angle(u, v) -> float:
        return float(np.degrees(np.arccos(np.clip(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)), -1, 1))))

    return (a, b, c), (angle(m[1], m[2]), angle(m[0], m[2]), angle(m[0], m[1])), float(abs(np.linalg.det(m)))


def load_detail(cache: Cache, dataset: str, material_id: str, tidy: pl.DataFrame) -> MaterialDetail:
    """Read one material's structure from the cache and analyse its symmetry (Wyckoff orbits)."""
    from mliap_tui.symmetry import DEFAULT_SYMPREC_ANG, SymmetryError, analyze_cell

    rows = cache.scan_materials(dataset).filter(pl.col("material_id") == material_id).collect()
    if rows.is_empty():
        raise KeyError(f"material {material_id!r} is not in dataset {dataset!r}")
    row = rows.row(0, named=True)
    abc, angles, volume = lattice_parameters(row["lattice_ang"])
    frac = [tuple(row["frac_coords"][3 * i : 3 * i + 3]) for i in range(len(row["species"]))]
    symmetry, error = None, None
    try:
        symmetry = analyze_cell(row["lattice_ang"], row["species"], row["frac_coords"], row["symprec_ang"] or DEFAULT_SYMPREC_ANG)
    except (SymmetryError, ValueError) as exc:
        error = str(exc)
    preds = tidy.filter(pl.col("material_id") == material_id).sort("model")
    return MaterialDetail(material_id, row, abc, angles, volume, symmetry, error, dict(enumerate(frac)), preds)


__all__ = [
    "LoadedDataset", "View", "load_dataset", "from_frames", "compute_view", "summarize", "tidy_rows",
    "match_column", "check_filter", "MaterialDetail", "load_detail", "lattice_parameters",
]
