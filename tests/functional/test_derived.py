"""The rebuilt-hull Ehull is computed once per (dataset, model, mode, predictions) and stored next to
the predictions (cache/derived.py); summary, export, the explorer and the study view read it."""

from __future__ import annotations

import time

import polars as pl
import pytest

from mliap_tui import thermo
from mliap_tui.analysis import errors
from mliap_tui.analysis.export import export_filtered
from mliap_tui.analysis.study import error_stats, load_study
from mliap_tui.analysis.summary import summarize
from mliap_tui.cache import Cache
from mliap_tui.cache.compact import compact
from mliap_tui.cache.derived import derived_path, stored_version
from mliap_tui.data.importer import import_dataset
from mliap_tui.tui.state import compute_view, load_dataset

N = 40


def predictions(cache: Cache, model: str, shift_ev: float, t: float, ids=None) -> None:
    """Energies a model might predict: DFT plus a shift and a spread (eV/atom), as one chunk."""
    mats = cache.scan_materials("sample").select("material_id", "e_per_atom_dft_mp2020").collect()
    if ids is not None:
        mats = mats.filter(pl.col("material_id").is_in(ids))
    spread = (pl.int_range(0, mats.height, eager=True) % 7 - 3) * 0.01
    e = mats["e_per_atom_dft_mp2020"] + shift_ev + spread
    cache.write_prediction_chunk("sample", model, "static", pl.DataFrame({
        "material_id": mats["material_id"], "model": model, "mode": "static", "status": "ok",
        "e_per_atom_pred_native": e, "e_per_atom_pred_mp2020": e, "created_unix_s": t}))


@pytest.fixture
def cache(tmp_path) -> Cache:
    cache = Cache(tmp_path)
    import_dataset("sample", cache=cache, limit=N, n_jobs=1)
    predictions(cache, "m1", 0.02, 1.0)
    predictions(cache, "m2", -0.03, 1.0)
    return cache


@pytest.fixture
def hull_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = thermo.e_above_hull_rebuilt

    def counted(ids, *a, **kw):
        calls.append(len(ids))
        return real(ids, *a, **kw)

    monkeypatch.setattr(thermo, "e_above_hull_rebuilt", counted)
    return calls


def rebuilt(table: pl.DataFrame) -> pl.DataFrame:
    return table.select("material_id", "model", *errors.REBUILT_HULL_COLUMNS).sort("model", "material_id")


def test_the_rebuilt_hull_is_computed_once_and_read_by_summary_export_and_explorer(cache, hull_calls, tmp_path):
    first = summarize(cache, "sample", by="dof")
    assert len(hull_calls) == 3  # m1 pred, m2 pred, and the DFT hull they share
    for model in ("m1", "m2"):
        assert stored_version(derived_path(cache, "sample", model, "static", errors.REBUILT_HULL_TABLE))
    again = summarize(cache, "sample", by="dof")
    assert len(hull_calls) == 3  # read back, not recomputed
    assert first.blocks[0].stats["e_above_hull_rebuilt"].equals(again.blocks[0].stats["e_above_hull_rebuilt"])
    computed = rebuilt(errors.add_rebuilt_hull(errors.error_table(cache, "sample")))  # no cache: computes
    assert len(hull_calls) == 6
    stored = rebuilt(errors.error_table(cache, "sample", rebuilt_hull=True))
    assert stored.equals(computed) and stored["e_above_hull_pred_rebuilt"].is_not_null().all()

    out = export_filtered(cache, "sample", "", tmp_path / "x.csv", rebuilt_hull=True)
    assert len(hull_calls) == 6 and out.n_rows == 2 * N
    csv = pl.read_csv(out.path).sort("model", "material_id")
    assert (csv["e_above_hull_pred_rebuilt"] - computed["e_above_hull_pred_rebuilt"]).abs().max() < 1e-9

    data = load_dataset(cache, "sample")  # the explorer: stored values only, never computed
    assert len(hull_calls) == 6 and data.metrics[-1] == "e_above_hull_rebuilt"
    view = compute_view(data, "err:ehull_rebuilt>5meV", "e_above_hull_rebuilt")
    want = computed.filter(pl.col("model") == "m1").with_columns(
        d=pl.col("e_above_hull_pred_rebuilt") - pl.col("e_above_hull_dft_rebuilt"))
    summary_m1 = view.summary.filter(pl.col("model") == "m1").row(0, named=True)
    assert summary_m1["n"] == (want["d"].abs() > 0.005).sum() > 0
    assert view.frame["e_above_hull_pred_rebuilt@m1"].drop_nulls().len() > 0


def test_the_study_reads_stored_hulls_and_never_stores_a_subset(cache, hull_calls):
    summarize(cache, "sample")
    assert len(hull_calls) == 3
    data = load_study(cache, "sample", geometry=False)  # static rows only: the whole set, stored
    assert len(hull_calls) == 3
    stats = error_stats(data, "e_above_hull_rebuilt", views=("static",))
    assert stats.height == 2 and (stats["n"] == N).all()
    ids = cache.scan_materials("sample").select("material_id").collect()["material_id"].to_list()[:10]
    mats = cache.scan_materials("sample").filter(pl.col("material_id").is_in(ids)).select(
        "material_id", "e_per_atom_dft_mp2020").collect()
    cache.write_prediction_chunk("sample", "m1", "relax", pl.DataFrame({  # m1 relaxed 10 crystals
        "material_id": mats["material_id"], "model": "m1", "mode": "relax", "status": "ok",
        "e_per_atom_pred_native": mats["e_per_atom_dft_mp2020"], "e_per_atom_pred_mp2020": mats["e_per_atom_dft_mp2020"],
        "created_unix_s": 2.0}))
    before = stored_version(derived_path(cache, "sample", "m1", "static", errors.REBUILT_HULL_TABLE))
    paired = load_study(cache, "sample", geometry=False)  # m1 paired on 10: its hulls computed, not stored
    assert len(hull_calls) > 3
    assert stored_version(derived_path(cache, "sample", "m1", "static", errors.REBUILT_HULL_TABLE)) == before
    assert not derived_path(cache, "sample", "m1", "relax", errors.REBUILT_HULL_TABLE).exists()
    assert paired.rows.filter(pl.col("model") == "m1").height == 20


def test_new_predictions_recompute_only_their_model_and_compaction_recomputes_nothing(cache, hull_calls):
    errors.error_table(cache, "sample", rebuilt_hull=True)
    assert len(hull_calls) == 3
    before = stored_version(derived_path(cache, "sample", "m1", "static", errors.REBUILT_HULL_TABLE))
    compact(cache, "sample", "m1", "static")  # same rows, one file: the stored table still fits
    errors.error_table(cache, "sample", rebuilt_hull=True)
    assert len(hull_calls) == 3
    ids = cache.scan_materials("sample").select("material_id").collect()["material_id"].to_list()[:5]
    predictions(cache, "m1", 0.05, time.time(), ids=ids)  # a re-run changes five of m1's energies
    table = errors.error_table(cache, "sample", rebuilt_hull=True)
    assert len(hull_calls) == 5  # m1 pred again, and its DFT hull (m2's is stored with m2's table)
    assert stored_version(derived_path(cache, "sample", "m1", "static", errors.REBUILT_HULL_TABLE)) != before
    fresh = rebuilt(errors.add_rebuilt_hull(errors.error_table(cache, "sample")))
    assert rebuilt(table).equals(fresh)


def test_the_explorer_offers_the_rebuilt_hull_only_when_it_is_stored(cache, hull_calls):
    data = load_dataset(cache, "sample")
    assert "e_above_hull_rebuilt" not in data.metrics and not hull_calls
    assert not [c for c in data.wide.columns if "rebuilt" in c]
    with pytest.raises(ValueError, match="mliap-tui summary"):
        compute_view(data, "", "e_above_hull_rebuilt")
