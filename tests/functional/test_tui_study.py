"""The Study screen (tui/study_screen.py) with the pilot, on the real static + relaxed CHGNet cache
of support_study. Expected numbers come from analysis.study, computed here independently."""

from __future__ import annotations

import shutil

import polars as pl
import pytest
from support_study import DATASET, MODEL, copy_cache
from support_tui import settle

from mliap_tui.analysis.study import ALL, error_stats, load_study
from mliap_tui.core.units import format_mev_interval
from mliap_tui.tui.app import MliapTuiApp
from mliap_tui.tui.commands import ExploreCommands, StudyCommands
from mliap_tui.tui.explore import ExploreScreen
from mliap_tui.tui.keymap import all_bindings, binding_clashes
from mliap_tui.tui.study_screen import StudyScreen, table_rows

SMALL, LARGE = (80, 24), (160, 48)


def make_app(cache) -> MliapTuiApp:
    return MliapTuiApp(cache, DATASET, device_poll_s=None)


def cells(app) -> list[list[str]]:
    table = app.screen.query_one("#study-table")
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def columns(app) -> list[str]:
    return [str(c.label) for c in app.screen.query_one("#study-table").columns.values()]


async def open_study(pilot) -> StudyScreen:
    await settle(pilot)
    await pilot.press("S")
    await settle(pilot)
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, StudyScreen)
    return screen


@pytest.mark.parametrize("size", [SMALL, LARGE])
async def test_study_opens_from_the_explorer_with_intervals(study_cache, size):
    data = load_study(study_cache, DATASET)
    expected = error_stats(data, "e_above_hull", ALL, n_boot=1000, seed=0).filter(pl.col("view") == "static").row(0, named=True)
    app = make_app(study_cache)
    async with app.run_test(size=size) as pilot:
        screen = await open_study(pilot)
        assert screen.model == MODEL and screen.view == "static" and screen.grouping == "dof"
        rows = cells(app)
        assert rows[0][0] == "all"
        assert rows[0][1] == f"{expected['n']:,}"
        assert rows[0][2] == format_mev_interval(expected["mae_ev_per_atom"], expected["mae_lo_ev_per_atom"],
                                                 expected["mae_hi_ev_per_atom"])
        n_bins = data.rows.filter(pl.col("mode") == "static").select(pl.col("total_dof")).to_series()
        assert len(rows) > 1 and sum(int(r[1]) for r in rows[1:]) == len(n_bins)
        trend = str(screen.query_one("#study-trend").render())
        assert "DOF trend |error|" in trend and "Spearman rho=" in trend and "meV/atom per DOF" in trend
        await pilot.press("escape")
        assert isinstance(app.screen, ExploreScreen)


async def test_views_groupings_and_metrics_switch(study_cache):
    app = make_app(study_cache)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_study(pilot)
        await pilot.press("2")
        await settle(pilot)
        assert screen.view == "relax"
        assert columns(app)[-3:] == ["Erelax", "RMSD Å", "k/l/r"]  # what relaxing did, in 80 columns
        kept = cells(app)[0][-1]
        assert kept.count("/") == 2 and int(kept.split("/")[0]) > 0
        await pilot.press("v")
        await settle(pilot)
        assert screen.view == "difference" and columns(app)[2].startswith("ΔMAE")
        await pilot.press("b")
        await settle(pilot)
        assert screen.grouping == "crystal_system" and columns(app)[0] == "system"
        await pilot.press("b")
        await settle(pilot)
        assert screen.grouping == "near_hull"
        assert {r[0] for r in cells(app)[1:]} <= {"near hull", "above"}
        metric = screen.metric
        await pilot.press("t")
        await settle(pilot)
        assert screen.metric != metric and screen.metric in screen.data.metrics
        await pilot.press("m")  # one model here: stays on it
        await settle(pilot)
        assert screen.model == MODEL


async def test_relaxed_view_is_wide_with_intervals_at_160_columns(study_cache):
    app = make_app(study_cache)
    async with app.run_test(size=LARGE) as pilot:
        await open_study(pilot)
        await pilot.press("2")
        await settle(pilot)
        assert columns(app)[4:] == ["Erelax meV/atom", "RMSD Å", "no match", "k/l/r", "ΔV %", "steps"]
        assert "[" in cells(app)[0][4]  # the relaxation energy with its interval


async def test_without_relaxed_rows_the_screen_says_how_to_get_them(study_cache, tmp_path):
    cache = copy_cache(tmp_path / "c")
    shutil.rmtree(cache.predictions_dir(DATASET, MODEL, "relax"))
    app = make_app(cache)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_study(pilot)
        await pilot.press("2")
        await settle(pilot)
        notes = " ".join(str(screen.query_one("#study-notes").render()).split())
        assert f"mliap-tui run --data {DATASET} --models {MODEL} --mode relax" in notes
        assert "r opens the Run screen" in notes


async def test_command_palette_reaches_the_study(study_cache):
    app = make_app(study_cache)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        provider = ExploreCommands(app.screen)
        names = [name for name, _, _ in provider.commands()]
        study = next(cb for name, cb, _ in provider.commands() if name.startswith("Study:"))
        assert any(n.startswith("Study: static vs relaxed") for n in names)
        study()
        await settle(pilot)
        await settle(pilot)
        assert isinstance(app.screen, StudyScreen)
        names = [name for name, _, _ in StudyCommands(app.screen).commands()]
        assert "Study view: relaxed by the model" in names and f"Study model: {MODEL}" in names


def test_study_keys_have_ids_and_clash_with_nothing():
    assert binding_clashes() == []
    ids = all_bindings()
    assert "explore.study" in ids and ids["explore.study"][0] == "S"
    assert {"study.back", "study.next_view", "study.next_model", "study.next_grouping", "study.next_metric"} <= set(ids)


def test_table_rows_put_every_crystal_first_then_the_groups(study_cache):
    data = load_study(study_cache, DATASET)
    errors = pl.concat([error_stats(data, "e_per_atom", ALL, n_boot=50), error_stats(data, "e_per_atom", "dof", n_boot=50)])
    cols, rows = table_rows(errors, errors.clear(), MODEL, "static", "dof")
    assert cols[:2] == ["DOF", "n"] and str(rows[0][0]) == "all"
    orders = errors.filter((pl.col("view") == "static") & (pl.col("grouping") == "dof")).sort("order")["group"].to_list()
    assert [str(r[0]) for r in rows[1:]] == orders
