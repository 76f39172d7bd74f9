"""Functional tests of the Run screen with the pilot: a REAL CHGNet 0.3.0 run in the engine's
worker subprocess on 6 crystals of the shipped sample, followed to completion, cancelled, resumed.

Each test builds its own small cache (import of 6 sample crystals, ~5 s) so the runs do not see
each other's results. torch_threads=1: the test machine is shared.
"""

from __future__ import annotations

import time

import polars as pl
import pytest
from textual.widgets import ProgressBar, SelectionList, Static

from mliap_tui.cache import Cache
from mliap_tui.models.registry import REGISTRY, availability
from mliap_tui.tui.app import MliapTuiApp
from mliap_tui.tui.explore import ExploreScreen
from mliap_tui.tui.help_screen import help_renderable
from mliap_tui.tui.run_screen import FailuresScreen, PaneState, RunScreen

MODEL = "chgnet-0.3.0"
N = 6
RUN_OPTIONS = {"torch_threads": 1}

needs_chgnet = pytest.mark.skipif(not availability(REGISTRY[MODEL]).ready, reason=f"{MODEL} cannot run here")


@pytest.fixture
def small_cache(tmp_path) -> Cache:
    from mliap_tui.data.importer import import_dataset

    cache = Cache(tmp_path / "cache")
    report = import_dataset("sample", cache=cache, limit=N)
    assert report.n_loaded == N
    return cache


def text_of(widget) -> str:
    return str(widget.render())


async def wait_for(pilot, predicate, timeout_s: float, what: str) -> None:
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await pilot.pause(0.2)


async def open_run_screen(pilot) -> RunScreen:
    await pilot.pause()
    await pilot.press("r")
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, RunScreen)
    return screen


async def test_setup_lists_models_and_greys_out_the_unavailable(small_cache):
    app = MliapTuiApp(small_cache, run_options=RUN_OPTIONS, device_poll_s=None)
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await open_run_screen(pilot)
        sl = screen.query_one("#run-models", SelectionList)
        info = text_of(screen.query_one("#run-model-info", Static))
        assert sl.option_count == len(REGISTRY)
        for i in range(sl.option_count):
            option = sl.get_option_at_index(i)
            av = availability(REGISTRY[option.value])
            assert option.disabled == (not av.ready), option.value
            if not av.ready:
                assert option.value in info and av.message.split(":")[0] in info
        # a model that cannot run here is refused
        not_ready = [m for m, s in REGISTRY.items() if not availability(s).ready]
        if not_ready:
            with pytest.raises(ValueError, match="cannot run here"):
                screen.set_models([not_ready[0]])
        # escape goes back to the explorer; r returns to the same screen instance
        await pilot.press("escape")
        assert isinstance(app.screen, ExploreScreen)
        await pilot.press("r")
        assert app.screen is screen


async def test_empty_cache_says_how_to_import(tmp_path):
    app = MliapTuiApp(Cache(tmp_path / "empty"), device_poll_s=None)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_run_screen(pilot)
        plan = text_of(screen.query_one("#run-plan", Static))
        assert "mliap-tui data import sample" in plan and "Press i" in plan
        await pilot.press("s")  # nothing to run on: refused, no run started
        assert not screen.running


@needs_chgnet
async def test_run_to_completion_fills_the_cache_and_reloads_explore(small_cache):
    app = MliapTuiApp(small_cache, run_options=RUN_OPTIONS, device_poll_s=1.0)
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await open_run_screen(pilot)
        screen.set_models([MODEL])
        await wait_for(pilot, lambda: getattr(screen, "plan", None), 30, "the plan")
        assert [(m.model, m.total, m.already_done, m.todo) for m in screen.plan] == [(MODEL, N, 0, N)]
        await pilot.press("s")
        assert screen.running
        await wait_for(pilot, lambda: MODEL in screen.panes, 30, "RunPlanned")
        pane = screen.panes[MODEL]
        seen_running = []
        t0 = time.monotonic()
        while screen.running:
            seen_running.append(pane.state)
            assert time.monotonic() - t0 < 300, "run did not finish in 300 s"
            await pilot.pause(0.2)
        summary = screen.last_summary
        assert summary is not None and summary.ok and not summary.cancelled
        assert pane.todo == N and pane.done == N and pane.ok + pane.failed == N
        bar = pane.query_one(ProgressBar)
        assert bar.total == N and bar.progress == N
        assert pane.state is PaneState.DONE and pane.status_text.startswith("done: ")
        assert PaneState.LOADING in seen_running
        assert "structures/s" in pane.stats and "atoms/s" in pane.stats
        # the worker wrote the rows to the cache
        rows = small_cache.scan_predictions("sample", [MODEL], "static").collect()
        assert rows.height == N and set(rows["status"]) <= {"ok", "failed"}
        assert rows.filter(pl.col("status") == "ok")["e_per_atom_pred_native"].is_not_null().all()
        # the explorer reloaded and now shows the model
        explore = next(s for s in app.screen_stack if isinstance(s, ExploreScreen))
        await wait_for(pilot, lambda: explore.data is not None and MODEL in explore.data.models, 30, "explore reload")
        # the failures modal opens on the pane and reads the cache
        pane.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, FailuresScreen)
        await wait_for(pilot, lambda: app.screen.rows is not None, 30, "failures")
        assert len(app.screen.rows) == rows.filter(pl.col("status") == "failed").height
        await pilot.press("escape")
        # back to the setup: the plan now counts everything as cached
        await pilot.press("n")
        await wait_for(pilot, lambda: screen.plan and screen.plan[0].already_done == N, 30, "re-plan")
        assert screen.plan[0].todo == 0


@needs_chgnet
async def test_cancel_keeps_what_was_computed_and_start_again_resumes(small_cache):
    app = MliapTuiApp(small_cache, run_options={**RUN_OPTIONS, "chunk_rows": 1}, device_poll_s=None)
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await open_run_screen(pilot)
        screen.set_models([MODEL])
        await pilot.press("s")
        await wait_for(pilot, lambda: MODEL in screen.panes, 30, "RunPlanned")
        await pilot.press("x")  # while the worker loads the model
        assert screen.cancelling
        await wait_for(pilot, lambda: not screen.running, 120, "the cancelled run to end")
        first = screen.last_summary
        assert first.cancelled
        kept = small_cache.scan_predictions("sample", [MODEL], "static").collect().height
        assert kept == first.models[0].done < N
        assert screen.panes[MODEL].state is PaneState.CANCELLED
        # start again: only what is missing is computed
        await pilot.press("s")
        await wait_for(pilot, lambda: MODEL in screen.panes and screen.panes[MODEL].cached == kept, 30, "RunPlanned")
        await wait_for(pilot, lambda: not screen.running, 300, "the resumed run to end")
        second = screen.last_summary
        assert second.ok and second.models[0].already_done == kept and second.models[0].done == N - kept
        rows = small_cache.scan_predictions("sample", [MODEL], "static").collect()
        assert rows.height == N and rows["material_id"].n_unique() == N


@needs_chgnet
async def test_relax_mode_choices_pick_the_engine(small_cache):
    """The mode select offers relax with the batched engine and with ASE's (the reference); the
    run's rows say which engine relaxed them."""
    from textual.widgets import Input, Select

    app = MliapTuiApp(small_cache, run_options=RUN_OPTIONS, device_poll_s=None)
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await open_run_screen(pilot)
        screen.set_models([MODEL])
        assert (screen.mode, screen.relax_engine) == ("static", "batched")
        screen.set_option("mode", "relax")
        assert (screen.mode, screen.relax_engine) == ("relax", "batched")
        screen.set_option("mode", "relax-ase")
        screen.query_one("#run-limit", Input).value = "2"
        await pilot.pause()
        assert (screen.mode, screen.relax_engine) == ("relax", "ase")
        assert screen.query_one("#run-mode", Select).value == "relax-ase"
        await pilot.press("s")
        assert screen.running
        await wait_for(pilot, lambda: not screen.running, 300, "the relax run to end")
        assert screen.last_summary is not None and screen.last_summary.ok
        rows = small_cache.scan_predictions("sample", [MODEL], "relax").collect()
        assert rows.height == 2 and (rows["relax_engine"] == "ase").all() and (rows["status"] == "ok").all()


def test_help_lists_the_run_bindings():
    text = str(list(help_renderable({}).renderables[2].columns[3].cells))
    for binding_id in ("app.run_screen", "run.start", "run.cancel", "run.setup", "run.pane_failures", "failures.close"):
        assert binding_id in text
