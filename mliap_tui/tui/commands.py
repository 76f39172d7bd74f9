"""Command-palette providers (ctrl+p): screens, filters, models, metrics, datasets, export, runs."""

from __future__ import annotations

from functools import partial
from typing import Callable

from textual.command import DiscoveryHit, Hit, Hits, Provider

from mliap_tui.core.vocab import CRYSTAL_SYSTEMS, METRIC_LABEL
from mliap_tui.tui import plots


class ListProvider(Provider):
    """A provider whose commands are a list of (name, callback, help) built by ``commands()``."""

    def commands(self) -> list[tuple[str, Callable[[], object], str]]:
        raise NotImplementedError

    async def discover(self) -> Hits:
        for name, callback, help_text in self.commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self.commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)


class ExploreCommands(ListProvider):
    """Commands of the Explore screen."""

    def commands(self) -> list[tuple[str, Callable[[], object], str]]:
        from mliap_tui.tui.explore import ExploreScreen

        screen = self.screen
        if not isinstance(screen, ExploreScreen):
            return []
        out: list[tuple[str, Callable[[], object], str]] = [
            ("Export filtered table to CSV", screen.action_export, "asks for the path; never overwrites silently"),
            ("Write the current plot as a PNG figure", screen.action_write_figure,
             "publication figure of the plot tab on screen, into ./figures (also w)"),
            ("Clear filter", screen.action_clear_filter, "show every material"),
            ("Help: keys and filter language", self.app.action_help, "also on ?"),
            ("Run models (run screen)", self.app.action_run_screen, "evaluate models on a dataset (also r)"),
            ("Study: static vs relaxed errors by DOF, with intervals and the trend", screen.action_study,
             "the symmetry study of this dataset (also S)"),
            ("Show: table", partial(screen.action_show_tab, "table"), "virtual table of the filtered materials"),
        ]
        for kind in plots.PLOT_KINDS:
            out.append((f"Show: {plots.PLOT_TITLES[kind]} plot", partial(screen.action_show_tab, kind), "follows the filter and selected model"))
        out += [
            ("Filter: failed evaluations only", partial(screen.add_filter, "failed"), "adds 'failed'"),
            ("Filter: near hull (DFT Ehull ≤ 50 meV/atom)", partial(screen.add_filter, "ehull=..50meV"), "adds 'ehull=..50meV'"),
            ("Filter: |ΔEhull| > 50 meV/atom", partial(screen.add_filter, "err:ehull>50meV"), "adds 'err:ehull>50meV'"),
            ("Filter: high DOF (≥ 10)", partial(screen.add_filter, "dof=10.."), "adds 'dof=10..'"),
        ]
        for cs in CRYSTAL_SYSTEMS:
            out.append((f"Filter: crystal system {cs}", partial(screen.add_filter, f"cs={cs}"), f"adds 'cs={cs}'"))
        models = screen.data.models if screen.data is not None else []
        for m in models:
            out.append((f"Filter: model {m}", partial(screen.add_filter, f"model={m}"), f"adds 'model={m}'"))
            out.append((f"Select model for plots: {m}", partial(screen.select_model, m), "also m cycles"))
        for metric in screen.metrics:
            out.append((f"Metric: {METRIC_LABEL[metric]}", partial(screen.set_metric, metric), "also t cycles"))
        for dataset in screen.cache.datasets():
            out.append((f"Dataset: {dataset}", partial(screen.set_dataset, dataset), "load another dataset of the cache"))
        out.append(("Reload cache", screen.action_reload, "re-read predictions written since the app started"))
        return out


class RunCommands(ListProvider):
    """Commands of the Run screen: start/cancel, models, mode, device, dataset, import."""

    def commands(self) -> list[tuple[str, Callable[[], object], str]]:
        from mliap_tui.tui.run_screen import DEVICES, MODE_CHOICES, RunScreen

        screen = self.screen
        if not isinstance(screen, RunScreen):
            return []
        out: list[tuple[str, Callable[[], object], str]] = [
            ("Run: start", screen.action_start, "evaluate what is not cached yet (also s)"),
            ("Run: cancel", screen.action_cancel_run, "workers commit what they evaluated (also x)"),
            ("Run: setup", screen.action_setup, "dataset, models, mode, device (also n)"),
            ("Run: progress", screen.action_show_progress, "per-model progress panes (also v)"),
            ("Run: import the shipped sample", screen.action_import_sample, "same as mliap-tui data import sample (also i)"),
            ("Back to the explorer", screen.action_back, "the run goes on (also escape)"),
            ("Help: keys", self.app.action_help, "also on ?"),
        ]
        for label, value in MODE_CHOICES:
            help_text = {"static": "single point on the DFT structure", "relax": "FIRE relaxation, batched engine",
                         "relax-ase": "FIRE relaxation, ASE one crystal at a time (the reference)"}[value]
            out.append((f"Run mode: {label}", partial(screen.set_option, "mode", value), help_text))
        for device in DEVICES:
            out.append((f"Run device: {device}", partial(screen.set_option, "device", device), "auto = GPUs if any, else CPU"))
        for dataset in screen.cache.datasets():
            out.append((f"Run dataset: {dataset}", partial(screen.set_option, "dataset", dataset), "dataset of the cache"))
        for model_id, ready, message in screen.choices:
            if ready:
                out.append((f"Run only model: {model_id}", partial(screen.set_models, [model_id]), message))
        return out


class StudyCommands(ListProvider):
    """Commands of the Study screen: views, models, groupings, metrics."""

    def commands(self) -> list[tuple[str, Callable[[], object], str]]:
        from mliap_tui.core.vocab import GROUPINGS, STUDY_VIEWS
        from mliap_tui.tui.study_screen import StudyScreen

        screen = self.screen
        if not isinstance(screen, StudyScreen):
            return []
        out: list[tuple[str, Callable[[], object], str]] = [
            (f"Study view: {label}", partial(screen.action_show_view, view), "also v cycles, 1 2 3")
            for view, label in STUDY_VIEWS.items()
        ]
        data = screen.data
        for model in data.models if data else []:
            out.append((f"Study model: {model}", partial(screen.select_model, model), "also m cycles"))
        for grouping in data.groupings if data else []:
            out.append((f"Study by: {GROUPINGS[grouping]}", partial(screen.set_grouping, grouping), "also b cycles"))
        for metric in data.metrics if data else []:
            out.append((f"Study metric: {METRIC_LABEL[metric]}", partial(screen.set_metric, metric), "also t cycles"))
        out += [("Study: reload", screen.action_reload, "re-read the cache (after a run; also R)"),
                ("Back to the explorer", screen.action_back, "also escape"),
                ("Help: keys", self.app.action_help, "also on ?")]
        return out
