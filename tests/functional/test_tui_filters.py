"""The filter language and CSV export (mliap_tui.analysis.filters / .export) on a real cache.

Every expectation is computed independently with plain Python over the rows read from the
cache, then compared with what the polars expressions select.
"""

from __future__ import annotations

import polars as pl
import pytest
from support_tui import DATASET

from mliap_tui.analysis.aggregate import per_model
from mliap_tui.analysis.export import (
    default_export_path,
    export_filtered,
    filter_wide,
    load_materials,
    load_tidy,
    wide_table,
    write_csv,
)
from mliap_tui.analysis.filters import (
    FilterError,
    apply_filter,
    parse_filter,
    spacegroup_symbol,
)
from mliap_tui.tui.state import compute_view, load_dataset, summarize


@pytest.fixture(scope="module")
def tidy(tui_cache):
    return load_tidy(tui_cache, DATASET)


@pytest.fixture(scope="module")
def rows(tidy):
    return tidy.to_dicts()


def keys(df: pl.DataFrame) -> set[tuple[str, str]]:
    return set(zip(df["material_id"], df["model"]))


def oracle(rows, pred) -> set[tuple[str, str]]:
    return {(r["material_id"], r["model"]) for r in rows if pred(r)}


def check(tidy, rows, text, pred):
    got = keys(apply_filter(tidy, text))
    want = oracle(rows, pred)
    assert got == want, f"{text}: {len(got)} rows, expected {len(want)}"
    return got


def test_spacegroup_by_number_symbol_and_range(tidy, rows):
    common = max({r["spacegroup_number"] for r in rows}, key=lambda n: sum(r["spacegroup_number"] == n for r in rows))
    got = check(tidy, rows, f"sg={common}", lambda r: r["spacegroup_number"] == common)
    assert got  # the most common group is present
    symbol = spacegroup_symbol(common)
    assert keys(apply_filter(tidy, f"sg={symbol}")) == got
    assert keys(apply_filter(tidy, f"sg={symbol.lower().replace('_', '')}")) == got
    check(tidy, rows, "sg=195..230", lambda r: 195 <= r["spacegroup_number"] <= 230)
    check(tidy, rows, f"sg!={common}", lambda r: r["spacegroup_number"] != common)
    check(tidy, rows, "sg=1..2,225", lambda r: r["spacegroup_number"] in (1, 2, 225))


def test_crystal_system_prefix_and_lists(tidy, rows):
    check(tidy, rows, "cs=tetr", lambda r: r["crystal_system"] == "tetragonal")
    check(tidy, rows, "cs=cubic,hex", lambda r: r["crystal_system"] in ("cubic", "hexagonal"))
    check(tidy, rows, "cs!=cubic", lambda r: r["crystal_system"] != "cubic")


@pytest.mark.parametrize(
    "text, pred",
    [
        ("dof=3..5", lambda r: 3 <= r["total_dof"] <= 5),
        ("dof=..2", lambda r: r["total_dof"] <= 2),
        ("dof=6..", lambda r: r["total_dof"] >= 6),
        ("dof<3", lambda r: r["total_dof"] < 3),
        ("dof>=4", lambda r: r["total_dof"] >= 4),
        ("ldof=2 wdof=1", lambda r: r["lattice_dof"] == 2 and r["wyckoff_dof"] == 1),
        ("pdof=1..", lambda r: r["polar_dof"] >= 1),
        ("nsites=..4", lambda r: r["n_sites"] <= 4),
    ],
)
def test_dof_ranges(tidy, rows, text, pred):
    got = check(tidy, rows, text, pred)
    assert 0 < len(got) < len(rows)  # each case selects a proper subset of this fixture


def test_elements_modes(tidy, rows):
    el = [r["elements"] for r in rows if len(r["elements"]) == 2][0]
    a, b = el
    check(tidy, rows, f"el={a},{b}", lambda r: {a, b} <= set(r["elements"]))
    check(tidy, rows, f"el={a},{b} elmode=any", lambda r: bool({a, b} & set(r["elements"])))
    check(tidy, rows, f"el={a},{b},O elmode=only", lambda r: set(r["elements"]) <= {a, b, "O"})
    check(tidy, rows, f"el!={a}", lambda r: a not in r["elements"])
    check(tidy, rows, f"el={a.lower()}", lambda r: a in r["elements"])
    chemsys = rows[0]["chemsys"]
    reversed_sys = "-".join(reversed(chemsys.split("-")))
    check(tidy, rows, f"chemsys={reversed_sys}", lambda r: r["chemsys"] == chemsys)


def test_energy_clauses_with_units(tidy, rows):
    got = check(tidy, rows, "ehull=..0.05", lambda r: r["e_above_hull_dft_mp2020"] is not None and r["e_above_hull_dft_mp2020"] <= 0.05)
    assert keys(apply_filter(tidy, "ehull=..50meV")) == got
    assert keys(apply_filter(tidy, "ehull=..0.05eV/atom")) == got
    got = check(tidy, rows, "err:ehull>50meV", lambda r: r["d_e_above_hull"] is not None and abs(r["d_e_above_hull"]) > 0.05)
    assert got and all(abs(r["d_e_above_hull"]) > 0.05 for r in rows if (r["material_id"], r["model"]) in got)
    check(tidy, rows, "serr:eform<-10meV", lambda r: r["d_e_form_per_atom"] is not None and r["d_e_form_per_atom"] < -0.010)
    check(tidy, rows, "err:e=20meV..60meV", lambda r: r["d_e_per_atom"] is not None and 0.02 <= abs(r["d_e_per_atom"]) <= 0.06)


def test_failed_and_ok(tidy, rows):
    failed = check(tidy, rows, "failed", lambda r: r["status"] == "failed")
    assert len(failed) == 2
    check(tidy, rows, "ok", lambda r: r["status"] == "ok")
    assert keys(apply_filter(tidy, "status=failed")) == failed


def test_models_exact_wildcard_and_unknown(tidy, rows):
    check(tidy, rows, "model=chgnet-0.2.0", lambda r: r["model"] == "chgnet-0.2.0")
    assert keys(apply_filter(tidy, "model=chgnet*")) == keys(tidy)
    check(tidy, rows, "model=chgnet-0.?.0", lambda r: r["model"] in ("chgnet-0.2.0", "chgnet-0.3.0"))
    with pytest.raises(FilterError, match="no model 'mace' in this dataset; known: chgnet-0.2.0, chgnet-0.3.0"):
        parse_filter("model=mace", known_models=["chgnet-0.2.0", "chgnet-0.3.0"])


def test_combined_filter_and_canonical_round_trip(tidy, rows):
    text = "cs=hex,cub dof=1..4 model=chgnet-0.3.0 ehull=..0.06 err:ehull>10meV"
    got = check(
        tidy, rows, text,
        lambda r: r["crystal_system"] in ("hexagonal", "cubic") and 1 <= r["total_dof"] <= 4
        and r["model"] == "chgnet-0.3.0" and r["e_above_hull_dft_mp2020"] is not None
        and r["e_above_hull_dft_mp2020"] <= 0.06 and r["d_e_above_hull"] is not None and abs(r["d_e_above_hull"]) > 0.01,
    )
    assert got
    flt = parse_filter(text)
    assert flt.text == "cs=hexagonal,cubic dof=1..4 model=chgnet-0.3.0 ehull=..0.06 err:ehull>10meV"
    assert parse_filter(flt.text).text == flt.text
    assert "10 meV/atom" in flt.describe() and "total DOF 1–4" in flt.describe()


def test_mode_clause(tidy, rows):
    assert parse_filter("").mode == "static"
    assert parse_filter("mode=all").mode is None
    assert apply_filter(tidy, "mode=relax").height == 0  # the fixture has static evaluations only
    assert apply_filter(tidy, "mode=all").height == len(rows)


@pytest.mark.parametrize(
    "text, message",
    [
        ("sg=231", "1 to 230"),
        ("sg=Xyz", "unknown space-group symbol"),
        ("cs=tri", "ambiguous (triclinic, trigonal)"),
        ("dof=10..3", "empty range"),
        ("dof=a", "not an integer"),
        ("err:ehull>50", "write 50meV for meV/atom"),
        ("err:foo>1", "unknown metric 'foo'"),
        ("el=Xx", "not an element symbol"),
        ("el=Ti, O", "commas and no spaces, e.g. el=A,B"),
        ("banana=1", "unknown key 'banana'"),
        ("elmode=any", "needs an el= clause"),
        ("cs<cubic", "takes = or !="),
        ("mode=fast", "static, relax or all"),
        ("dof=", "missing value"),
    ],
)
def test_errors_are_clear(text, message):
    with pytest.raises(FilterError, match=None) as info:
        parse_filter(text)
    assert message in str(info.value)


def test_rebuilt_metric_missing_columns_is_explained(tidy):
    with pytest.raises(FilterError, match="rebuilt"):
        apply_filter(tidy, "err:ehull_rebuilt>10meV")


def test_with_text_replaces_same_key():
    flt = parse_filter("cs=cubic dof=1..3 el=Ti elmode=any")
    merged = flt.with_text("cs=hexagonal el=O")
    assert merged.text == "dof=1..3 cs=hexagonal el=O"
    assert flt.without("dof").text == "cs=cubic el=Ti elmode=any"


@pytest.mark.parametrize(
    "text",
    ["", "cs=cubic", "err:ehull>30meV", "model=chgnet-0.2.0", "failed", "dof=3..5 serr:ehull<0", "model=chgnet-0.3.0 ok el=O elmode=any"],
)
def test_wide_view_matches_tidy_filter(tui_cache, tidy, text):
    """The explorer's one-row-per-material view selects the same materials, and its summary
    gives the same per-model statistics as aggregate.per_model on the filtered tidy table."""
    data = load_dataset(tui_cache, DATASET)
    flt = parse_filter(text, known_models=data.models)
    view = compute_view(data, flt, "e_above_hull")
    long = apply_filter(tidy, flt)
    if flt.model_patterns is None and not flt.has_row_clauses:
        want = set(load_materials(tui_cache, DATASET).filter(flt.material_expr())["material_id"])
    else:
        want = set(long["material_id"])
    assert set(view.frame["material_id"]) == want
    expected = per_model(long, "e_above_hull")
    got = view.summary.filter(pl.col("n") > 0)
    assert got["model"].to_list() == expected["model"].to_list()
    for a, b in zip(got.iter_rows(named=True), expected.iter_rows(named=True)):
        assert a["n"] == b["n"]
        for k in ("mae", "mean_signed", "rmse", "frac_under"):
            assert a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-15)
    n_failed = long.filter(pl.col("status") == "failed").group_by("model").len()
    for m, n in n_failed.iter_rows():
        assert view.summary.filter(pl.col("model") == m)["n_failed"].item() == n


def test_view_sort_any_column(tui_cache):
    data = load_dataset(tui_cache, DATASET)
    for column, descending in (("d_e_above_hull@chgnet-0.3.0", True), ("formula", False), ("total_dof", False)):
        view = compute_view(data, "", "e_above_hull", sort=column, descending=descending)
        values = view.frame[column].drop_nulls().to_list()
        assert values == sorted(values, reverse=descending)
        assert view.frame[column].is_null().sum() == 0 or view.frame[column][-1] is None  # nulls last


def test_write_csv_refuses_overwrite_and_round_trips(tmp_path, tidy):
    frame = apply_filter(tidy, "cs=cubic")
    path = tmp_path / "cubic.csv"
    result = write_csv(frame, path)
    assert result.n_rows == frame.height > 0 and result.path == path.resolve()
    back = pl.read_csv(path)
    assert back["material_id"].to_list() == frame["material_id"].to_list()
    assert back["d_e_above_hull"].to_list() == pytest.approx(frame["d_e_above_hull"].to_list(), nan_ok=True)
    assert back["elements"][0] == " ".join(frame["elements"][0])  # lists become space-joined text
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="already exists"):
        write_csv(frame.head(1), path)
    assert path.read_bytes() == before
    write_csv(frame.head(1), path, overwrite=True)
    assert pl.read_csv(path).height == 1
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_csv(frame, tmp_path / "missing" / "x.csv")
    assert not list(tmp_path.glob(".*.tmp"))


def test_export_filtered_headless(tmp_path, tui_cache, tidy):
    out = export_filtered(tui_cache, DATASET, "err:ehull>50meV", tmp_path / "big.csv")
    back = pl.read_csv(out.path)
    assert back.height == out.n_rows == apply_filter(tidy, "err:ehull>50meV").height
    assert (back["d_e_above_hull"].abs() > 0.05).all()
    wide = export_filtered(tui_cache, DATASET, "cs=cubic", tmp_path / "wide.csv", layout="wide")
    wide_back = pl.read_csv(wide.path)
    materials = load_materials(tui_cache, DATASET)
    assert wide_back.height == materials.filter(pl.col("crystal_system") == "cubic").height
    assert {"e_above_hull_pred_fixed@chgnet-0.3.0", "d_e_above_hull@chgnet-0.2.0", "status@chgnet-0.3.0"} <= set(wide_back.columns)
    row = wide_back.filter(pl.col("status@chgnet-0.3.0") == "ok").row(0, named=True)
    assert row["e_above_hull_pred_fixed@chgnet-0.3.0"] == pytest.approx(row["e_above_hull_dft_mp2020"] + row["d_e_above_hull@chgnet-0.3.0"])
    some = materials["material_id"][:3].to_list()
    picked = export_filtered(tui_cache, DATASET, "", tmp_path / "picked.csv", material_ids=some)
    assert set(pl.read_csv(picked.path)["material_id"]) == set(some)
    path = default_export_path(DATASET, tmp_path, now=0)
    assert path.parent == tmp_path and path.name.startswith(f"mliap-{DATASET}-tidy-") and path.suffix == ".csv"


def test_filter_wide_direct(tui_cache, tidy):
    wide = wide_table(load_materials(tui_cache, DATASET), tidy)
    assert set(filter_wide(wide, "failed")["material_id"]) == set(tidy.filter(pl.col("status") == "failed")["material_id"])
    flt = parse_filter("model=chgnet-0.2.0")
    summary = summarize(filter_wide(wide, flt), flt, ["chgnet-0.2.0"], "e_per_atom")
    assert summary["n"].item() == tidy.filter((pl.col("model") == "chgnet-0.2.0") & (pl.col("status") == "ok")).height
