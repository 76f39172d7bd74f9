"""Functional tests of the Textual app with the pilot (App.run_test) on a real cache.

Expected rows are computed from the cache with plain Python, independently of the filter code.
"""

from __future__ import annotations

import polars as pl
import pytest
from support_tui import DATASET, N_CHGNET_020, N_MATERIALS, settle

from mliap_tui.analysis.export import load_tidy
from mliap_tui.cache import Cache
from mliap_tui.tui.app import MliapTuiApp
from mliap_tui.tui.detail import DetailScreen
from mliap_tui.tui.explore import ExploreScreen
from mliap_tui.tui.export_screen import ExportScreen
from mliap_tui.tui.help_screen import HelpScreen
from mliap_tui.tui.keymap import load_keymap
from mliap_tui.tui.table import VirtualTable
from mliap_tui.tui.widgets import PlotView

SMALL, LARGE = (80, 24), (200, 60)


@pytest.fixture(scope="module")
def materials(tui_cache):
    return tui_cache.scan_materials(DATASET).collect().to_dicts()


@pytest.fixture(scope="module")
def predictions(tui_cache):
    return tui_cache.scan_predictions(DATASET).collect().to_dicts()


def explore(app) -> ExploreScreen:
    screen = app.screen_stack[1]
    assert isinstance(screen, ExploreScreen)
    return screen


async def apply_filter_keys(pilot, text: str, type_it: bool = False) -> None:
    """Focus the filter line with '/', enter ``text`` (typed key by key when ``type_it``), Enter."""
    await pilot.press("slash")
    inp = pilot.app.screen.query_one("#filter-input")
    assert inp.has_focus
    inp.value = ""
    if type_it:
        await pilot.press(*list(text))
    else:
        inp.value = text
    await pilot.press("enter")
    await settle(pilot)


def shown_ids(app) -> list[str]:
    return app.screen.query_one("#results", VirtualTable).frame["material_id"].to_list()


def screen_text(app) -> str:
    """The characters on screen. Textual has no public plain-text export of a screen (only the
    SVG screenshot), so this reads the compositor's strips."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


@pytest.mark.parametrize("size", [SMALL, LARGE])
async def test_startup_shows_all_materials_and_summary(tui_cache, size):
    app = MliapTuiApp(tui_cache)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#results", VirtualTable)
        assert table.row_count == N_MATERIALS + 1  # + the expanded cell both models failed on
        summary = explore(app).view.summary
        assert dict(zip(summary["model"], summary["n"])) == {"chgnet-0.2.0": N_CHGNET_020, "chgnet-0.3.0": N_MATERIALS}
        text = screen_text(app)
        assert "MAE" in text and "meV/atom" in text and "no filter" in text
        # the visible rows are rendered from the frame: the first id is on screen
        assert table.frame["material_id"][0] in text


@pytest.mark.parametrize("size", [SMALL, LARGE])
async def test_filter_by_spacegroup_dof_and_model(tui_cache, materials, predictions, size):
    sg = max({m["spacegroup_number"] for m in materials}, key=lambda n: sum(m["spacegroup_number"] == n for m in materials))
    app = MliapTuiApp(tui_cache)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await apply_filter_keys(pilot, f"sg={sg}", type_it=True)
        want = {m["material_id"] for m in materials if m["spacegroup_number"] == sg}
        assert set(shown_ids(app)) == want and len(want) > 1
        assert f"sg={sg}" in screen_text(app)

        await apply_filter_keys(pilot, "dof=3..5 model=chgnet-0.2.0")
        has_020 = {p["material_id"] for p in predictions if p["model"] == "chgnet-0.2.0"}
        want = {m["material_id"] for m in materials if 3 <= m["total_dof"] <= 5 and m["material_id"] in has_020}
        assert set(shown_ids(app)) == want and want
        screen = explore(app)
        assert screen.view.models == ["chgnet-0.2.0"]
        assert screen.view.summary["model"].to_list() == ["chgnet-0.2.0"]
        ok = [p for p in predictions if p["model"] == "chgnet-0.2.0" and p["status"] == "ok" and p["material_id"] in want]
        assert screen.view.summary["n"].item() == len(ok)
        keys = [c.key for c in app.screen.query_one("#results", VirtualTable).columns]
        assert "d_e_above_hull@chgnet-0.2.0" in keys and not any(k.endswith("@chgnet-0.3.0") for k in keys)

        await pilot.press("c")  # one key clears the filter
        await settle(pilot)
        assert len(shown_ids(app)) == N_MATERIALS + 1
        assert screen.filter.text == ""


async def test_bad_filter_keeps_previous_and_shows_error(tui_cache):
    app = MliapTuiApp(tui_cache)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await apply_filter_keys(pilot, "cs=cubic")
        cubic = shown_ids(app)
        await apply_filter_keys(pilot, "dof=9..2")
        assert shown_ids(app) == cubic
        assert "filter error" in screen_text(app) and "empty range" in screen_text(app)
        await apply_filter_keys(pilot, "err:ehull>50meV")
        screen = explore(app)
        d = screen.view.frame.select(pl.col("^d_e_above_hull@.*$")).to_numpy()
        import numpy as np

        assert screen.view.n_materials > 0
        assert (np.nan_to_num(np.abs(d), nan=0) > 0.05).any(axis=1).all()  # every row has one model over 50 meV/atom


async def test_sort_by_error_column(tui_cache):
    app = MliapTuiApp(tui_cache)
    async with app.run_test(size=LARGE) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#results", VirtualTable)
        target = [c.key for c in table.columns].index("d_e_above_hull@chgnet-0.3.0")
        for _ in range(target):
            await pilot.press("right")
        await pilot.press("s")
        await settle(pilot)
        values = table.frame["d_e_above_hull@chgnet-0.3.0"].drop_nulls().to_list()
        assert values == sorted(values) and len(values) == N_MATERIALS
        assert "Δ meV/atom▲" in screen_text(app)  # the whole unit, and the sort arrow
        await pilot.press("s")
        await settle(pilot)
        values = table.frame["d_e_above_hull@chgnet-0.3.0"].drop_nulls().to_list()
        assert values == sorted(values, reverse=True)
        # the most overpredicted material is now the first row on screen
        assert table.frame["material_id"][0] in screen_text(app)
        # a click on a column header sorts by that column too
        await pilot.click("#results", offset=(table.column_x("formula") + 1, 1))
        await settle(pilot)
        formulas = table.frame["formula"].to_list()
        assert formulas == sorted(formulas) and explore(app).sort == "formula"


@pytest.mark.parametrize("size", [SMALL, LARGE])
async def test_plots_follow_filter_and_model(tui_cache, size):
    app = MliapTuiApp(tui_cache)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await apply_filter_keys(pilot, "cs=cubic")
        await pilot.press("2")
        await settle(pilot)
        screen = explore(app)
        plot = app.screen.query_one("#plot-parity", PlotView)
        selected = screen.selected_model
        n = screen.view.summary.filter(pl.col("model") == selected)["n"].item()
        assert f"{selected}: Ehull (fixed DFT hull), predicted vs DFT (eV/atom), n={n}" in plot.last_plot
        assert "DFT (eV/atom)" in screen_text(app)
        await pilot.press("m")
        await settle(pilot)
        other = screen.selected_model
        assert other != selected and f"{other}: Ehull" in plot.last_plot
        await pilot.press("3")
        await settle(pilot)
        hist = app.screen.query_one("#plot-hist", PlotView)
        assert "prediction - DFT (meV/atom)" in hist.last_plot
        await pilot.press("4")
        await settle(pilot)
        dof = app.screen.query_one("#plot-dof", PlotView)
        assert "MAE by total DOF bin" in dof.last_plot
        for label in screen.view.by_group("dof")["group"].unique().to_list():
            assert label in dof.last_plot
        await pilot.press("5")
        await settle(pilot)
        assert "cubic" in app.screen.query_one("#plot-system", PlotView).last_plot
        await pilot.press("1")
        await settle(pilot)
        assert app.screen.query_one("#results", VirtualTable).has_focus


async def test_detail_view_symmetry_and_failures(tui_cache, materials, predictions):
    app = MliapTuiApp(tui_cache)
    async with app.run_test(size=LARGE) as pilot:
        await settle(pilot)
        first = shown_ids(app)[0]
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, DetailScreen)
        detail = app.screen.detail
        m = next(r for r in materials if r["material_id"] == first)
        assert detail.symmetry.spacegroup_number == m["spacegroup_number"]
        assert detail.symmetry.total_dof == m["total_dof"]
        assert sum(len(o.site_indices) for o in detail.symmetry.orbits) == m["n_sites"]
        text = screen_text(app)
        assert m["formula"] in text and "Wyckoff orbits" in text and "a (Å)" in text
        assert all(o.element in text for o in detail.symmetry.orbits)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ExploreScreen)

        await apply_filter_keys(pilot, "failed")
        failed_ids = {p["material_id"] for p in predictions if p["status"] == "failed"}
        assert set(shown_ids(app)) == failed_ids
        await pilot.press("enter")
        await settle(pilot)
        text = screen_text(app)
        assert "failure reasons" in text and "isolated atom" in text


async def test_export_modal_writes_and_never_overwrites_silently(tui_cache, tmp_path):
    app = MliapTuiApp(tui_cache)
    tidy = load_tidy(tui_cache, DATASET)
    notes: list[str] = []
    notify = app.notify
    app.notify = lambda message, *a, **kw: (notes.append(str(message)), notify(message, *a, **kw))[1]
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await apply_filter_keys(pilot, "cs=hexagonal")
        await pilot.press("e")
        await settle(pilot)
        assert isinstance(app.screen, ExportScreen)
        target = tmp_path / "hex.csv"
        app.screen.query_one("#export-path").value = str(target)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ExploreScreen)
        back = pl.read_csv(target)
        assert back.height == tidy.filter(pl.col("crystal_system") == "hexagonal").height > 0
        assert set(back["crystal_system"]) == {"hexagonal"}
        assert any(str(target) in m and f"{back.height:,} rows" in m for m in notes)

        # same path again: asks first, keeps the file, then overwrites on confirmation
        before = target.read_bytes()
        await pilot.press("space", "space")  # mark two materials
        await settle(pilot)
        marked = set(app.screen.query_one("#results", VirtualTable).marked)
        assert len(marked) == 2
        await pilot.press("e")
        await settle(pilot)
        app.screen.query_one("#layout-wide").value = True
        app.screen.query_one("#export-path").value = str(target)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ExportScreen)
        assert "hex.csv exists: Enter/Overwrite replaces it" in screen_text(app)
        assert target.read_bytes() == before
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ExploreScreen)
        wide = pl.read_csv(target)
        assert set(wide["material_id"]) == marked  # only the marked rows, one row per material
        assert "d_e_above_hull@chgnet-0.3.0" in wide.columns


async def test_help_screen_lists_binding_ids_and_grammar(tui_cache):
    app = MliapTuiApp(tui_cache)
    async with app.run_test(size=LARGE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        assert "explore.export" in text and "table.sort" in text and "err:ehull>50meV" in text
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ExploreScreen)


async def test_command_palette_adds_filter(tui_cache, materials):
    app = MliapTuiApp(tui_cache)
    async with app.run_test(size=LARGE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await settle(pilot)
        await pilot.press(*list("crystal system cubic"))
        await settle(pilot)
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot)
        assert explore(app).filter.text == "cs=cubic"
        assert set(shown_ids(app)) == {m["material_id"] for m in materials if m["crystal_system"] == "cubic"}


async def test_keymap_remaps_binding_by_id(tui_cache, tmp_path):
    path = tmp_path / "keymap.toml"
    path.write_text('[keymap]\n"explore.export" = "x"\n"no.such.binding" = "y"\n')
    keymap, warnings = load_keymap(path)
    assert keymap == {"explore.export": "x"}
    assert len(warnings) == 1 and "no.such.binding" in warnings[0]
    app = MliapTuiApp(tui_cache, keymap=keymap)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("x")
        await settle(pilot)
        assert isinstance(app.screen, ExportScreen)


async def test_empty_cache_says_how_to_import(tmp_path):
    app = MliapTuiApp(Cache(tmp_path / "nothing"))
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        text = screen_text(app)
        assert "No datasets in the cache" in text and "mliap-tui data import sample" in text


@pytest.mark.parametrize("size", [SMALL, LARGE])
async def test_layout_regions_do_not_overlap(tui_cache, size):
    app = MliapTuiApp(tui_cache)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        screen = app.screen
        ids = ["#filter-bar", "#filter-status", "#summary", "#views"]
        regions = [screen.query_one(i).region for i in ids] + [screen.query_one("Footer").region]
        w, h = size
        for r in regions:
            assert r.width > 0 and r.height > 0 and r.right <= w and r.bottom <= h
        for a, b in zip(regions, regions[1:]):
            assert a.bottom <= b.y, f"{a} overlaps {b}"
        table = screen.query_one("#results", VirtualTable)
        assert table.region.height >= (8 if size == SMALL else 40)


async def test_dataset_without_predictions(tui_cache, tmp_path):
    """A dataset imported but never run: every material is listed, errors are explained."""
    bare = Cache(tmp_path / "bare")
    bare.write_materials("fresh", tui_cache.scan_materials(DATASET).collect())
    app = MliapTuiApp(bare)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        assert len(shown_ids(app)) == N_MATERIALS + 1
        assert "no model results for this dataset yet" in screen_text(app)
        await apply_filter_keys(pilot, "err:ehull>50meV")
        assert "no model has been run on this dataset yet" in screen_text(app)
        await apply_filter_keys(pilot, "cs=cubic")
        assert set(shown_ids(app)) == set(bare.scan_materials("fresh").filter(pl.col("crystal_system") == "cubic").collect()["material_id"])
        await pilot.press("2")
        await settle(pilot)
        assert "no model selected" in app.screen.query_one("#plot-parity", PlotView).last_plot
