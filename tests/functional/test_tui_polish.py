"""What a user misread or tripped over (issue 15), replayed with the pilot on the real test cache:
sorting shows the top of the new order, model-row filters say how they decide (any / all /
selected model) and the table shows what `m` selects, a rejected filter leaves the applied one
on screen, one key map across screens."""

from __future__ import annotations

import polars as pl
from support_tui import DATASET, settle

from mliap_tui.analysis.export import export_filtered, load_tidy
from mliap_tui.analysis.filters import apply_filter
from mliap_tui.tui.app import MliapTuiApp
from mliap_tui.tui.explore import ExploreScreen
from mliap_tui.tui.keymap import binding_clashes
from mliap_tui.tui.table import VirtualTable
from mliap_tui.tui.widgets import FilterStatus

SMALL = (80, 24)
ERR = "d_e_above_hull"


def explore(app) -> ExploreScreen:
    return app.explore


def status_text(app) -> str:
    return str(app.screen.query_one(FilterStatus).render())


async def set_filter(pilot, text: str) -> None:
    await pilot.press("slash")
    pilot.app.screen.query_one("#filter-input").value = text
    await pilot.press("enter")
    await settle(pilot)


async def test_sorting_shows_the_first_rows_of_the_new_order(tui_cache):
    """Sort by a model's Δ column (ascending, then descending): the cursor goes to the first row of
    the new order and it is on screen, whatever row the cursor was on before."""
    tidy = load_tidy(tui_cache, DATASET)
    app = MliapTuiApp(tui_cache, device_poll_s=None)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#results", VirtualTable)
        await pilot.press("end")  # the cursor far down first
        await settle(pilot)
        model = explore(app).selected_model
        col = [c.key for c in table.columns].index(f"{ERR}@{model}")
        table.cursor_col = col
        for descending in (False, True):
            await pilot.press("s")
            await settle(pilot)
            errors = tidy.filter(pl.col("model") == model)[ERR].drop_nulls()
            expected = errors.max() if descending else errors.min()
            assert table.cursor_row == 0 and table.scroll_offset.y == 0
            assert table.row(0)[f"{ERR}@{model}"] == expected


async def test_model_row_filters_say_how_they_decide_and_match_is_switchable(tui_cache):
    tidy = load_tidy(tui_cache, DATASET)
    under = tidy.filter(pl.col(ERR) < 0)
    by_material = under.group_by("material_id").agg(pl.col("model"))
    n_models = tidy.filter(pl.col("status") == "ok").group_by("material_id").agg(pl.col("model").n_unique())
    any_ids = set(by_material["material_id"])
    all_ids = set(n_models.join(by_material.with_columns(k=pl.col("model").list.len()), on="material_id")
                  .filter(pl.col("model") == pl.col("k"))["material_id"])
    app = MliapTuiApp(tui_cache, device_poll_s=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await set_filter(pilot, "serr:ehull<0")
        assert set(explore(app).view.frame["material_id"]) == any_ids
        assert "kept if any model matches" in status_text(app)
        await set_filter(pilot, "serr:ehull<0 match=all")
        assert set(explore(app).view.frame["material_id"]) == all_ids and all_ids < any_ids
        assert "kept if every model matches" in status_text(app)
        await set_filter(pilot, "serr:ehull<0 match=selected")
        for _ in range(2):  # the selected model decides, and follows m
            sel = explore(app).selected_model
            assert set(explore(app).view.frame["material_id"]) == set(under.filter(pl.col("model") == sel)["material_id"])
            assert "kept if the selected model matches" in status_text(app)
            await pilot.press("m")
            await settle(pilot)
    # export --filter: the same semantics on the tidy table (rows of the kept materials that match)
    assert set(apply_filter(tidy, "serr:ehull<0 match=all")["material_id"]) == all_ids
    assert set(apply_filter(tidy, "serr:ehull<0")["material_id"]) == any_ids


def test_export_filter_match_all_wide(tmp_path, tui_cache):
    res = export_filtered(tui_cache, DATASET, "serr:ehull<0 match=all", tmp_path / "w.csv", layout="wide")
    res_any = export_filtered(tui_cache, DATASET, "serr:ehull<0", tmp_path / "a.csv", layout="wide")
    assert 0 < res.n_rows < res_any.n_rows


async def test_m_at_80_columns_brings_the_selected_models_columns_on_screen(tui_cache):
    app = MliapTuiApp(tui_cache, device_poll_s=None)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#results", VirtualTable)
        for _ in range(2):
            await pilot.press("m")
            await settle(pilot)
            sel = explore(app).selected_model
            first_model_col = next(c for c in table.columns if "@" in c.key)
            assert first_model_col.group == sel
            assert table.column_x(first_model_col.key) + first_model_col.width <= SMALL[0]


async def test_a_rejected_filter_shows_the_error_and_what_is_still_applied(tui_cache):
    app = MliapTuiApp(tui_cache, device_poll_s=None)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await set_filter(pilot, "cs=cubic")
        n = explore(app).view.n_materials
        await set_filter(pilot, "cs=cubic el=Xx")
        text = status_text(app)
        assert "filter error" in text and "'Xx' is not an element symbol" in text
        assert "still applied: cs=cubic" in text  # the count on screen is the applied filter's
        assert explore(app).view.n_materials == n and explore(app).filter.text == "cs=cubic"
        long_error = "model=" + "x" * 60
        await set_filter(pilot, long_error)
        assert "known:" in status_text(app) and "chgnet-0.3.0" in status_text(app)  # wrapped, not cut


def test_one_key_map_across_screens():
    assert binding_clashes() == []


async def test_a_filter_on_a_plot_tab_stays_on_the_plot(tui_cache):
    app = MliapTuiApp(tui_cache, device_poll_s=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        await set_filter(pilot, "cs=cubic")
        from textual.widgets import TabbedContent

        assert app.screen.query_one(TabbedContent).active == "hist"


async def test_forces_screen_tabs_and_empty_state(tmp_path):
    """1-5 switch the Forces screen's tabs as in the explorer; with no force data the screen says
    how to import the shipped force sample (no path outside the package)."""
    from textual.widgets import Static, TabbedContent

    from mliap_tui.cache import Cache
    from mliap_tui.tui.forces_screen import ForcesScreen

    app = MliapTuiApp(Cache(tmp_path), device_poll_s=None)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("f")
        await settle(pilot)
        assert isinstance(app.screen, ForcesScreen)
        text = str(app.screen.query_one("#forces-summary", Static).render())
        assert "Press i to import the shipped force sample" in text and "shared" not in text
        for key, tab in (("2", "tab-df"), ("5", "tab-structures"), ("1", "tab-parity")):
            await pilot.press(key)
            assert app.screen.query_one(TabbedContent).active == tab


async def test_periodic_table_tab_shows_element_errors_and_filters_to_an_element(tui_cache):
    """Issue 16: the periodic-table heat map (tab 6) holds the selected model's per-element MAE of
    the filtered rows, the same numbers as summary --by element; Enter filters to the element."""
    from textual.widgets import TabbedContent

    from mliap_tui.analysis.elements import element_table
    from mliap_tui.tui.ptable import PeriodicTable

    app = MliapTuiApp(tui_cache, device_poll_s=None)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("6")
        await settle(pilot)
        pt = app.screen.query_one(PeriodicTable)
        assert pt.has_focus and pt.model == explore(app).selected_model
        expected = element_table(tui_cache, DATASET, metric="e_above_hull").filter(pl.col("model") == pt.model)
        assert {r["element"]: (r["n"], round(r["mae"], 9)) for r in expected.iter_rows(named=True)} == {
            el: (r["n"], round(r["mae"], 9)) for el, r in pt.stats.items()}
        pt.cursor = "Ga"
        await pilot.press("right")  # Ge
        await pilot.press("enter")
        await settle(pilot)
        assert explore(app).filter.text == "el=Ge"
        assert app.screen.query_one(TabbedContent).active == "table"
        ids = set(explore(app).view.frame["material_id"])
        elements = dict(tui_cache.scan_materials(DATASET).select("material_id", "elements").collect().iter_rows())
        assert ids and all("Ge" in elements[m] for m in ids)
