"""The ``w`` key: write the figure of the current plot (explorer tabs, PES slice, Forces screen) as a
publication PNG through :mod:`mliap_tui.report.figures`, in a thread (drawing takes about a second).

Files go to ``$MLIAP_TUI_FIGURES`` or ``./figures``; the notification names the path. The figure
shows what the screen shows: the filtered rows, the selected model, the current slice; its footer
names the filter.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from textual.screen import Screen


def figures_dir() -> Path:
    return Path(os.environ.get("MLIAP_TUI_FIGURES") or "figures")


def explorer_figure(screen) -> tuple[str, Callable[[], Figure]] | str:
    """(file stem, builder) of the explorer's current tab, or why there is nothing to write."""
    from mliap_tui.analysis.aggregate import per_group
    from mliap_tui.analysis.elements import element_errors
    from mliap_tui.report import figures as F
    from mliap_tui.report.figure_set import prediction_labels, safe_stem

    view, model = screen.view, screen.selected_model
    tab = screen.query_one("TabbedContent").active
    if view is None or screen.data is None:
        return "nothing loaded yet"
    if tab == "table":
        return "the table is not a figure: switch to a plot (p, or 2-6) and press w"
    rows = view.plot_rows()
    metric = view.metric
    ctx = F.Context(screen.data.dataset, screen.data.mode, prediction_labels(screen.cache, screen.data.dataset, screen.data.mode))
    scope = f"filter: {view.filter.text}" if view.filter.text else ""
    if scope:
        ctx = F.Context(ctx.dataset, f"{ctx.mode}, {scope}", ctx.labels)
    stem = f"{safe_stem(screen.data.dataset)}_{screen.data.mode}_{tab}_{metric}"
    if tab in ("parity", "hist", "elements") and model is None:
        return "no model selected (m)"
    if tab == "parity":
        return f"{stem}_{safe_stem(model)}", lambda: F.parity(rows, model, metric, ctx)
    if tab == "hist":
        return f"{stem}_{safe_stem(model)}", lambda: F.error_histogram(rows, metric, ctx, [model])
    if tab == "dof":
        return stem, lambda: F.grouped_errors(per_group(rows, metric, "dof"), metric, "total DOF bin", ctx)
    if tab == "system":
        return stem, lambda: F.crystal_system(rows, metric, ctx)
    if tab == "elements":
        with_elements = rows.join(view.frame.select("material_id", "elements"), on="material_id", how="left")
        return f"{stem}_{safe_stem(model)}", lambda: F.periodic_table(element_errors(with_elements, metric), model, metric, ctx)
    return f"no figure for the {tab} tab"


def pes_figure(screen) -> tuple[str, Callable[[], Figure]] | str:
    from mliap_tui.report import figures as F
    from mliap_tui.report.figure_set import prediction_labels, safe_stem

    s = screen.pes_slice
    if s is None:
        return "no slice yet"
    source = screen.model
    if source == "reference" or source not in s.energies:
        return "the figure is drawn for a model: press m to show one"
    ctx = F.Context(screen.dataset, "PES slice", prediction_labels(screen.cache, s.dataset))
    rng = "_".join(f"{r:.4g}" for r in s.spec.ranges)
    stem = f"pes_{safe_stem(s.crystal.material_id)}_{'_'.join(safe_stem(a) for a in s.spec.axes)}_{rng}_{safe_stem(source)}"
    return stem, lambda: F.pes_slice(s, source, ctx)


def forces_figure(screen) -> tuple[str, Callable[[], Figure]] | str:
    from mliap_tui.report import figures as F

    audit = screen.audit
    if audit is None or audit.empty:
        return "no predicted forces yet"
    tab = screen.query_one("#forces-tabs").active
    name = "_".join(screen.datasets)
    ctx = F.Context(", ".join(screen.datasets), "static", {m: m for m in audit.models})
    if tab == "tab-parity":
        return f"force_parity_{name}", lambda: F.force_parity(audit, ctx)
    if tab in ("tab-df", "tab-dtheta"):
        if not len(audit.atoms):
            return "no per-atom force errors"
        return f"rare_event_cdf_{name}", lambda: F.rare_event_cdf(audit, ctx)
    return "switch to the parity or a CDF tab (1-3) and press w"


def write_current_figure(screen: Screen, pick: Callable[[Screen], tuple[str, Callable[[], Figure]] | str]) -> None:
    """Build the figure the screen shows and write it in a thread worker; notify the path or why not."""
    try:
        from mliap_tui.report.figures import FiguresUnavailable, require_matplotlib

        require_matplotlib()
    except FiguresUnavailable as exc:
        screen.notify(str(exc), severity="error", timeout=10)
        return
    choice = pick(screen)
    if isinstance(choice, str):
        screen.notify(choice, severity="warning")
        return
    stem, build = choice
    out = figures_dir()

    def work() -> None:
        from mliap_tui.report.figure_set import save

        t0 = time.perf_counter()
        try:
            path = save(build(), out, stem, "png")
        except Exception as exc:  # noqa: BLE001 - the user sees why, the app goes on
            screen.app.call_from_thread(screen.notify, f"figure not written: {type(exc).__name__}: {exc}",
                                        severity="error", timeout=10)
            return
        screen.app.call_from_thread(screen.notify, f"figure written: {path.resolve()} "
                                    f"({time.perf_counter() - t0:.1f} s)", timeout=8)

    screen.notify(f"drawing {stem}.png …", timeout=3)
    screen.run_worker(work, thread=True, group="figure", exclusive=True)


__all__ = ["explorer_figure", "figures_dir", "forces_figure", "pes_figure", "write_current_figure"]
