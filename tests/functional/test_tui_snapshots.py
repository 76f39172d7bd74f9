"""Snapshot tests (pytest-textual-snapshot) of the main screens on the fixed test cache.

The data are fixed (the real CHGNet cache of support_tui, built once); what varies from
run to run is hidden: the filter-to-redraw timing is blanked, the device pane does not poll and
shows one fixed sample, no clock in the header. Update after an intended UI change with
``pytest tests/test_tui_snapshots.py --snapshot-update`` and review the SVGs in the report.
"""

from __future__ import annotations

import pytest
from support_tui import settle

from mliap_tui.engine.devices import DeviceSample, HostSample
from mliap_tui.tui.app import MliapTuiApp
from mliap_tui.tui.widgets import FilterStatus

pytest.importorskip("pytest_textual_snapshot")

GIB = 1024**3
FIXED_SAMPLE = DeviceSample(
    t=0.0,
    gpus=[],
    host=HostSample(cpu_count=2, cpu_percent=50.0, load_avg_1min=1.0, memory_used_bytes=4 * GIB,
                    memory_total_bytes=16 * GIB, app_rss_bytes=GIB // 4, children_rss_bytes=0),
    gpu_note="NVML unavailable (LibraryNotFound)",
)


def hide_timing(app) -> None:
    """Redraw the filter status line without the measured filter time."""
    screen = app.screen_stack[1]
    screen.query_one(FilterStatus).show(screen.filter.text, screen.filter.describe(), None, screen.filter_error)


def make_app(cache) -> MliapTuiApp:
    return MliapTuiApp(cache, device_poll_s=None)


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
def test_explore(snap_compare, tui_cache, size):
    async def run_before(pilot):
        await settle(pilot)
        hide_timing(pilot.app)

    assert snap_compare(make_app(tui_cache), terminal_size=size, run_before=run_before)


def test_explore_parity_plot(snap_compare, tui_cache):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        hide_timing(pilot.app)

    assert snap_compare(make_app(tui_cache), terminal_size=(120, 40), run_before=run_before)


def test_detail(snap_compare, tui_cache):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)

    assert snap_compare(make_app(tui_cache), terminal_size=(120, 40), run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
def test_run_screen_before_start(snap_compare, tui_cache, size):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        pilot.app.screen.query_one("#device-pane").show(FIXED_SAMPLE)
        await pilot.pause()

    assert snap_compare(make_app(tui_cache), terminal_size=size, run_before=run_before)


def test_help(snap_compare, tui_cache, monkeypatch):
    monkeypatch.setenv("MLIAP_TUI_KEYMAP", "/nonexistent/keymap.toml")  # the path is shown

    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)

    assert snap_compare(make_app(tui_cache), terminal_size=(120, 50), run_before=run_before)


def test_explore_sorted_by_error_at_80_columns(snap_compare, tui_cache):
    """Issue 15.1: after a sort by the selected model's Δ column the first rows of the new order show."""
    async def run_before(pilot):
        await settle(pilot)
        table = pilot.app.screen.query_one("#results")
        model = pilot.app.explore.selected_model
        table.cursor_col = [c.key for c in table.columns].index(f"d_e_above_hull@{model}")
        await pilot.press("s")
        await settle(pilot)
        hide_timing(pilot.app)

    assert snap_compare(make_app(tui_cache), terminal_size=(80, 24), run_before=run_before)


def test_explore_filter_error_keeps_the_applied_filter(snap_compare, tui_cache):
    """Issue 15.4: the error (wrapped) and the filter still applied, both on screen."""
    async def run_before(pilot):
        await settle(pilot)
        for text in ("cs=cubic", "cs=cubic sg=999"):
            await pilot.press("slash")
            pilot.app.screen.query_one("#filter-input").value = text
            await pilot.press("enter")
            await settle(pilot)
        hide_timing(pilot.app)

    assert snap_compare(make_app(tui_cache), terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_periodic_table(snap_compare, tui_cache, size):
    """Issue 16: the periodic-table heat map, compact at 80x24, with the MAE under each symbol when tall."""
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("6")
        await settle(pilot)
        hide_timing(pilot.app)

    assert snap_compare(make_app(tui_cache), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size, view", [((80, 24), "1"), ((160, 48), "2")])
def test_study(snap_compare, study_cache, size, view):
    """Issue 11: the Study screen (S from the explorer): static view at 80x24, relaxed view at 160x48."""
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("S")
        await settle(pilot)
        await settle(pilot)
        await pilot.press(view)
        await settle(pilot)

    assert snap_compare(make_app(study_cache), terminal_size=size, run_before=run_before)
