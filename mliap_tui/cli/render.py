"""Every rich table the command line prints, in one place.

Each function takes the result of one library call (an ImportReport, a DatasetOverview, a
Summary, ...) and returns a rich renderable. Numbers are stored in eV/atom and shown in meV/atom;
tables fit 80 columns (units go in titles when a header would not fit).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import polars as pl
from rich import box
from rich.columns import Columns
from rich.console import Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from mliap_tui.core.units import (
    format_bytes,
    format_duration,
    format_mev,
    format_mev_interval,
    format_signed,
    plural,
)
from mliap_tui.core.vocab import (
    CRYSTAL_SYSTEMS,
    GROUPINGS,
    METRIC_LABEL,
    METRIC_SHORT_LABEL,
    METRIC_SYMBOL,
    CrystalSystem,
)

#: How many rejected/warning rows the import report lists (all of them are in the JSON report).
RENDER_MAX_ROWS = 15


# ---- small cells ---------------------------------------------------------------------------------


def _signed_mev(value_ev: float | None) -> str:
    if value_ev is None:
        return "-"
    text = format_mev(value_ev, signed=True)
    colour = "red" if text.startswith("-") else "green"
    return f"[{colour}]{text}[/{colour}]"


def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}f}"


def _pct(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{100 * x:.1f}"


def _short(model: str, n: int = 12) -> str:
    return model if len(model) <= n else model[: n - 1] + "…"


# ---- data import / data show -----------------------------------------------------------------------


def import_report(report: Any) -> Panel:
    """An ImportReport: totals, conventions, crystal systems, DOF histogram, rejections."""
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("sources", "\n".join(report.sources) or "-")
    head.add_row(
        "crystals",
        f"{report.n_read:,} read, [green]{report.n_loaded:,} loaded[/green] ({report.n_atoms:,} atoms), "
        f"[{'red' if report.rejected else 'green'}]{report.n_rejected:,} rejected[/]",
    )
    if report.n_in_dataset != report.n_loaded:
        head.add_row("dataset", f"{report.n_in_dataset:,} crystals after appending")
    head.add_row("symmetry", f"spglib symprec {report.symprec_ang:g} Å, {plural(len(report.spacegroup_counts), 'space group')}")
    labels = {
        "e_form_per_atom_dft_mp2020": "e_form MP2020",
        "e_above_hull_dft_mp2020": "Ehull MP2020",
        "e_per_atom_dft_mp2020": "E MP2020",
        "e_per_atom_dft_raw": "E raw",
        "forces_dft_ev_per_ang": "forces",
    }
    present = {k: v for k, v in report.dft_value_counts.items() if v}
    if present:
        head.add_row(
            "DFT values",
            ", ".join(f"{labels.get(k, k)}: {v:,}" for k, v in present.items()) + "  (energies eV/atom, forces eV/Å)",
        )
    elif report.n_loaded:
        head.add_row("DFT values", "none in the source (structures only)")
    if report.energy_origin_counts:
        head.add_row("total energies", ", ".join(f"{k}: {v:,}" for k, v in report.energy_origin_counts.items()))
    if report.warnings:
        head.add_row("warnings", f"[yellow]{len(report.warnings):,}[/yellow] (rows kept; see import_report.json)")
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in report.phase_seconds.items())
    head.add_row("time", f"{report.seconds:.1f} s" + (f" ({phases})" if phases else ""))
    parts: list[Any] = [head]

    if report.n_loaded:
        systems = Table(title="crystal systems", box=None, pad_edge=False)
        systems.add_column("system")
        systems.add_column("crystals", justify="right")
        for cs in CRYSTAL_SYSTEMS:
            systems.add_row(cs, f"{report.crystal_system_counts.get(cs, 0):,}")
        dof = Table(title="total DOF (lattice + Wyckoff)", box=None, pad_edge=False)
        dof.add_column("DOF", justify="right")
        dof.add_column("crystals", justify="right")
        dof.add_column("")
        # imported here: the importer pulls in pymatgen, needed only for import reports
        from mliap_tui.data.importer import binned_histogram

        bins = binned_histogram(report.dof_histogram)
        peak = max((n for _, n in bins), default=1)
        for label, n in bins:
            dof.add_row(label, f"{n:,}", "█" * max(1 if n else 0, round(20 * n / peak)))
        top = Table(title="most common space groups", box=None, pad_edge=False)
        top.add_column("number", justify="right")
        top.add_column("crystals", justify="right")
        for number, n in sorted(report.spacegroup_counts.items(), key=lambda kv: (-kv[1], kv[0]))[:8]:
            top.add_row(str(number), f"{n:,}")
        parts += ["", Columns([systems, top, dof], padding=(0, 4))]

    for title, rows, style in (("rejected", report.rejected, "red"), ("warnings", report.warnings, "yellow")):
        if not rows:
            continue
        table = Table(title=f"{title} ({len(rows):,})", title_style=style, box=None, pad_edge=False)
        table.add_column("material_id / file", overflow="fold")
        table.add_column("source", overflow="fold", style="dim")
        table.add_column("reason", overflow="fold")
        for source, mid, reason in rows[:RENDER_MAX_ROWS]:
            table.add_row(mid, Path(source).name or source, reason)
        if len(rows) > RENDER_MAX_ROWS:
            table.add_row(f"... {len(rows) - RENDER_MAX_ROWS:,} more", "", "all of them are in import_report.json")
        parts += ["", table]
    return Panel(Group(*parts), title=f"import [bold]{report.dataset}[/bold]", expand=False)



def dof_histogram(dof_counts: list[tuple[int, int]], width: int = 30) -> Table:
    """Counts of crystals per total DOF value, with a bar."""
    table = Table(title="total DOF (lattice + Wyckoff)", box=None, pad_edge=False)
    table.add_column("DOF", justify="right")
    table.add_column("crystals", justify="right")
    table.add_column("")
    peak = max([n for _, n in dof_counts] or [1])
    for dof, n in dof_counts:
        table.add_row(str(dof), str(n), "█" * max(1, round(width * n / peak)))
    return table


def dataset_overview(ov: Any) -> Panel:
    """A DatasetOverview (``mliap-tui data show``)."""
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("crystals", f"{ov.n_crystals:,}  ({ov.n_atoms:,} atoms, {ov.min_sites}-{ov.max_sites} per cell)")
    head.add_row("elements", str(ov.n_elements))
    head.add_row("space groups", f"{ov.n_spacegroups:,} (symprec {ov.symprec_ang} Å)")
    from mliap_tui.data.summary import DFT_ENERGY_LABELS

    for col, (n, median) in ov.dft_energies.items():
        head.add_row(DFT_ENERGY_LABELS[col], f"{n:,} values, median {median:.3f} eV/atom")
    if ov.energy_origins:
        head.add_row("energy origin", ", ".join(f"{o}: {n:,}" for o, n in ov.energy_origins.items()))
    systems = Table(title="crystal systems", box=None, pad_edge=False)
    systems.add_column("system")
    systems.add_column("crystals", justify="right")
    for cs, n in ov.crystal_systems.items():
        systems.add_row(cs, str(n))
    models = Table(title="predictions in cache", box=None, pad_edge=False)
    for col in ("model", "mode", "ok", "failed", "missing"):
        models.add_column(col, justify="left" if col in ("model", "mode") else "right")
    for model, mode, ok, failed, missing in ov.predictions:
        models.add_row(model, mode, f"{ok:,}", f"{failed:,}", f"{missing:,}")
    if not ov.predictions:
        models.add_row("none yet", "", "", "", f"run: mliap-tui run --data {ov.dataset}")
    body = Group(head, "", systems, "", dof_histogram(ov.dof_counts), "", models)
    return Panel(body, title=f"dataset [bold]{ov.dataset}[/bold]", subtitle=ov.path, expand=False)


# ---- models ------------------------------------------------------------------------------------------

CONVENTION_NOTE = (
    "energy convention: MP2020 = trained on MP2020-corrected energies, compared as is; raw PBE = "
    "the structure's MP2020 correction is added before comparing; r2SCAN = not compared with the PBE hull"
)


def models_table(rows: list[dict], seen: list[dict] | None = None, problems: list[str] | None = None) -> Group:
    """The registry and plug-ins (``models.listing.models_rows``), how each was verified here, what
    to do for each model not ready, and the weights the cache has seen."""
    from mliap_tui.models.identity import short_source

    table = Table(title="models", caption="ready = package installed and weights on this machine; "
                  "verified: see below", caption_justify="left")
    table.add_column("model", no_wrap=True)
    table.add_column("energy", no_wrap=True)
    table.add_column("elem", justify="right", no_wrap=True)
    table.add_column("ready", no_wrap=True)
    table.add_column("verified here", no_wrap=True)
    for row in rows:
        conv = row["energy_convention"]
        table.add_row(
            escape(row["id"]) + (" [dim](plug-in)[/]" if row.get("plugin") else ""),
            _CONVENTION_SHORT.get(conv, conv),
            "any" if row["n_elements"] is None else str(row["n_elements"]),
            "[green]yes[/green]" if row["ready"] else "[red]no[/red]",
            _verified_cell(row),
        )
    notes = [f"[bold]{escape(row['id'])}[/bold]: {escape(row['message'])}" for row in rows if not row["ready"]]
    parts: list = [table, f"[dim]{CONVENTION_NOTE}[/dim]", f"[dim]{VERIFIED_NOTE}[/dim]"]
    if notes:
        parts += ["", "[bold]not ready here, and what to do:[/bold]", *notes]
    if seen:
        parts += ["", "[bold]weights in this cache[/bold] (rows of other weights under one id are kept apart):"]
        for w in seen:
            mae = w.get("canary_mae_ev_per_atom")
            verdict = w.get("canary_verdict") or "no canary"
            canary = f"{verdict} {1000 * mae:.0f} meV/atom" if mae is not None and mae != float("inf") else verdict
            trusted = ", run with --trust-model" if w.get("trusted_by_user") else ""
            parts.append(f"  {escape(w['model'])}~{(w['weights_fingerprint'] or '')[:7]}  {escape(canary)}{trusted}  "
                         f"[dim]{escape(short_source(w.get('source', '')))} ({escape(w.get('package_version') or '?')})[/]")
    if problems:
        parts += ["", "[bold red]plug-ins that failed to load:[/]", *(escape(p) for p in problems)]
    return Group(*parts)


_CONVENTION_SHORT = {"mp2020": "MP2020", "raw_pbe": "raw PBE", "r2scan": "r2SCAN"}
VERIFIED_NOTE = (
    "verified here: real N = the published weights passed the canary check on this machine (MAE N "
    "meV/atom on 12 MP crystals, limit 150); refused = they failed it; structural = only the adapter is "
    "checked, against the family's own calculator (tests; MACE/matgl/ORB on small models built in CI); "
    "none = not checked yet. r2SCAN models are not judged by the canary."
)


def _verified_cell(row: dict) -> str:
    verified, mae = row.get("verified"), row.get("canary_mae_ev_per_atom")
    if verified == "real weights":
        return f"[green]real {1000 * mae:.0f}[/]" if mae is not None else "[green]real[/]"
    if verified == "refused":
        return "[red]refused[/]"
    return {"structural": "structural", "none": "[dim]none[/]"}.get(verified or "", verified or "")


# ---- run -------------------------------------------------------------------------------------------------


def short_error(message: str, model: str = "", limit: int = 90) -> str:
    """The first clause of a worker error (the full text was printed when it happened)."""
    text = message.split("; ", 1)[0]
    for prefix in (f"{model}: ", f"{model} "):
        if model and text.startswith(prefix):
            text = text[len(prefix):]
            break
    return text if len(text) <= limit else text[: limit - 1] + "…"


#: the status cell of a model whose worker stopped, by WorkerErrorKind
_ERROR_STATUS = {"model_refused": "refused", "model_unavailable": "unavailable", "bad_job": "bad job",
                 "systematic_failure": "stopped", "crashed": "crashed"}


def run_summary(summary: Any) -> Table:
    """A RunSummary as a rich table that fits 80 columns (the errors were printed as they came)."""
    title = f"run {summary.run_id} on {summary.dataset} ({summary.mode}, {summary.device})"
    if summary.cancelled:
        title += " [yellow]cancelled: run again to resume[/]"
    table = Table(title=title, title_justify="left")
    table.add_column("model", no_wrap=True)
    for col in ("cached", "new ok", "failed", "struct/s", "time"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for m in summary.models:
        # the error itself was printed once above the table (one line per model)
        if m.error:
            status = f"[red]{_ERROR_STATUS.get(getattr(m, 'error_kind', None) or '', 'error')}[/]"
        else:
            status = "[yellow]cancelled[/]" if m.cancelled else "[green]ok[/]"
        if getattr(m, "elsewhere", 0):
            status += f" [dim]({m.elsewhere:,} done by another run)[/]"
        weights = getattr(m, "weights_fingerprint", None)
        table.add_row(
            escape(m.model) + (f"\n[dim]weights {weights[:7]}[/]" if weights else ""),
            f"{m.already_done:,}",
            f"{m.ok:,}",
            f"[red]{m.failed:,}[/]" if m.failed else "0",
            f"{m.structures_per_s:.1f}" if m.structures_per_s else "-",
            format_duration(m.wall_s),
            status,
        )
    return table


# ---- cache ---------------------------------------------------------------------------------------------


def cache_info(infos: list, root: Any) -> Group:
    """``cache info``: per dataset its crystals, and per model and mode the rows on disk."""
    table = Table(title=f"cache {root}", title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    table.add_column("dataset", no_wrap=True, max_width=14)
    table.add_column("model", no_wrap=True, max_width=18)
    table.add_column("mode", no_wrap=True)
    for col in ("rows", "pairs", "failed", "files", "size"):
        table.add_column(col, justify="right", no_wrap=True)
    notes = []
    for info in infos:
        table.add_row(f"[bold]{escape(info.dataset)}[/]", "[dim]materials[/]", "", f"{info.materials:,}", "", "", "1",
                      format_bytes(info.materials_bytes))
        for f in info.folders:
            files = f"{f.files}" + ("" if f.compacted == f.files == 1 else "*")
            table.add_row("", escape(f.model), f.mode, f"{f.rows:,}", f"{f.pairs:,}",
                          f"[red]{f.failed:,}[/]" if f.failed else "0", files, format_bytes(f.bytes))
            if f.claims:
                notes.append(f"{info.dataset}/{f.model}/{f.mode}: a run is evaluating it now ({f.claims} shard(s) claimed)")
        if info.derived_files:
            table.add_row("", "[dim]derived[/]", "", "", "", "", f"{info.derived_files}", format_bytes(info.derived_bytes))
    if not infos:
        table.add_row("[dim]no dataset yet: mliap-tui data import sample[/]", "", "", "", "", "", "", "")
    superseded = sum(f.rows - f.pairs for i in infos for f in i.folders)
    uncompacted = sum(1 for i in infos for f in i.folders if f.files > 1 or f.compacted != f.files)
    caption = ["rows: committed rows on disk; pairs: (material, model, mode) after newest-wins; "
               "failed: pairs whose newest row failed; derived: stored rebuilt-hull tables."]
    if superseded or uncompacted:
        caption.append(f"*: {uncompacted} folder(s) with chunk files not compacted yet, {superseded:,} superseded "
                       "rows: mliap-tui cache compact merges them.")
    table.caption, table.caption_justify = " ".join(caption), "left"
    return Group(table, *[f"[yellow]{escape(n)}[/]" for n in notes])


def compaction(results: list) -> Table:
    """``cache compact``: what each folder became."""
    table = Table(title="compaction", title_justify="left")
    table.add_column("dataset/model/mode", overflow="fold")
    table.add_column("files", justify="right", no_wrap=True)
    table.add_column("rows", justify="right", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    for r in results:
        name = escape(f"{r.dataset}/{r.model}/{r.mode}")
        if not r.changed:
            table.add_row(name, f"{r.files_before}", "", "", f"[dim]{escape(r.skipped or '')}[/]")
            continue
        table.add_row(name, f"{r.files_merged} -> 1", f"{r.rows_before:,} -> {r.rows_after:,}",
                      f"{format_bytes(r.bytes_before)} -> {format_bytes(r.bytes_after)}", f"{r.seconds:.1f} s")
    if not results:
        table.add_row("[dim]no predictions in this cache yet[/]", "", "", "", "")
    table.caption = "rows: rows on disk; fewer after when superseded rows (an older result of a pair) were dropped."
    table.caption_justify = "left"
    return table


# ---- summary ---------------------------------------------------------------------------------------------


def _stat_columns(table: Table) -> None:
    # units live in the table titles (meV/atom) so the columns fit 80 characters
    table.add_column("n", justify="right", no_wrap=True)
    table.add_column("MAE", justify="right", no_wrap=True)
    table.add_column("mean\nsigned", justify="right", no_wrap=True)
    table.add_column("RMSE", justify="right", no_wrap=True)
    table.add_column("% under", justify="right", no_wrap=True)


def _stat_cells(row: dict) -> list[str]:
    return [
        f"{row['n']:,}",
        format_mev(row["mae"]),
        _signed_mev(row["mean_signed"]),
        format_mev(row["rmse"]),
        f"{100 * row['frac_under']:.0f}%",
    ]


def stats_block(block: Any) -> Table:
    """One StatsBlock of a Summary: a row per (model, metric)."""
    from mliap_tui.analysis.summary import SAME_ERROR_LABEL

    caption = "signed error = prediction - DFT (negative = underpredicted). " + block.caption
    out = Table(title=block.title, caption=caption.strip(), caption_justify="left")
    out.add_column("model", no_wrap=True)
    out.add_column("metric", no_wrap=True)
    _stat_columns(out)
    same = getattr(block, "same_error", True)
    labels = {**METRIC_SHORT_LABEL, "e_per_atom": SAME_ERROR_LABEL if same else "E (total)"}
    for metric in block.metrics:
        for row in block.stats[metric].iter_rows(named=True):
            out.add_row(model_cell(row["model"]), labels[metric], *_stat_cells(row))
        out.add_section()
    return out


def failures_table(failures: list[tuple[str, int, list[tuple[str, int]]]]) -> Table | None:
    if not failures:
        return None
    out = Table(title="failed evaluations (not in the error statistics)")
    out.add_column("model")
    out.add_column("failed", justify="right")
    out.add_column("most common reasons", overflow="fold")
    for model, n, reasons in failures:
        out.add_row(model_cell(model), str(n), "; ".join(f"{escape(r)} (x{k})" for r, k in reasons))
    return out


def group_table(grouped: pl.DataFrame, metric: str, by: str, weighting: str = "crystal") -> Table:
    label = GROUPINGS[by]
    title = f"{METRIC_LABEL[metric]} error by {label}, meV/atom"
    if by == "element":
        title += (" (each crystal counts for every element it holds)" if weighting == "crystal"
                  else " (each crystal weighted by the element's atomic fraction)")
    out = Table(title=title)
    out.add_column(label, no_wrap=True)
    out.add_column("model", no_wrap=True)
    _stat_columns(out)
    previous = None
    for row in grouped.iter_rows(named=True):
        if previous is not None and row["group"] != previous:
            out.add_section()
        out.add_row(row["group"] if row["group"] != previous else "", model_cell(row["model"]), *_stat_cells(row))
        previous = row["group"]
    return out


def model_cell(label: str) -> str:
    """A model label for a table cell: a weights variant (``id~fingerprint``) on two lines."""
    from mliap_tui.cache.weights import VARIANT_SEP

    base, sep, variant = label.partition(VARIANT_SEP)
    return escape(base) + (f"\n[dim]{VARIANT_SEP}{escape(variant)}[/]" if sep else "")


def weights_notes(notes: list) -> list[str]:
    """What each ``model~fingerprint`` label stands for (``analysis.weights.WeightsNote``)."""
    if not notes:
        return []
    return ["[bold]weights[/] (a model id run with other weights is shown per weights):",
            *(f"  {escape(n.text())}" for n in notes)]


def summary(s: Any) -> list:
    """Every table of a Summary (``mliap-tui summary``)."""
    if s.empty_reason:
        return [s.empty_reason]
    out: list = [stats_block(b) for b in s.blocks]
    out[1:1] = [f"[yellow]{escape(note)}[/yellow]" for note in s.notes]  # right under the main table
    out += weights_notes(getattr(s, "weights", []))
    failures = failures_table(s.failures)
    if failures is not None:
        out.append(failures)
    if s.by and s.grouped is not None:
        out.append(group_table(s.grouped, s.metric, s.by, s.weighting))
    return out


# ---- study dof -------------------------------------------------------------------------------------


def _mev_ci(value: float | None, lo: float | None, hi: float | None, *, signed: bool = False, colour: bool = False) -> str:
    """``'25.3 [21.0,30.2]'`` from eV/atom values (meV/atom shown, the interval dim); ``'-'`` when missing."""
    text = format_mev_interval(value, lo, hi, signed=signed)
    head, sep, interval = text.partition(" ")
    if colour and signed and head != "-":
        head = _signed_mev(value)
    return f"{head} [dim]{interval}[/]" if sep else head


def _study_table(title: str, caption: str | None = None) -> Table:
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False,
                 caption=caption, caption_justify="left")


def _group_header(by: str) -> str:
    return {"dof": "DOF", "crystal_system": "system", "near_hull": "Ehull", "all": ""}.get(by, by)


def _group_cell(group: str, by: str) -> str:
    if by == "crystal_system" and group in CRYSTAL_SYSTEMS:
        return CrystalSystem(group).abbrev
    return group


_VIEW_TITLE = {"static": "static (model at the DFT structure)", "relax": "relaxed (model-relaxed energy vs DFT)",
               "difference": "relaxed - static, same crystals"}


def study_view_table(frame: pl.DataFrame, view: str, metric: str, by: str, models: list[str]) -> Table:
    """One view (static / relax / difference) of ``error_stats`` rows by group, meV/atom."""
    what = ("change of MAE and mean signed error" if view == "difference" else "MAE and mean signed error")
    out = _study_table(f"{_VIEW_TITLE[view]}: {METRIC_LABEL[metric]}, {what} by {GROUPINGS[by]}, meV/atom")
    out.add_column(_group_header(by), no_wrap=True)
    out.add_column("model", no_wrap=True)
    out.add_column("n", justify="right", no_wrap=True)
    out.add_column("ΔMAE [95%]" if view == "difference" else "MAE [95%]", justify="right", no_wrap=True)
    out.add_column("Δ signed [95%]" if view == "difference" else "signed [95%]", justify="right", no_wrap=True)
    rows = frame.filter(pl.col("view") == view).sort("order", "group", "model")
    previous = None
    for row in rows.iter_rows(named=True):
        if previous is not None and row["group"] != previous:
            out.add_section()
        out.add_row(
            _group_cell(row["group"], by) if row["group"] != previous else "",
            _short(row["model"], 12), f"{row['n']:,}",
            _mev_ci(row["mae_ev_per_atom"], row["mae_lo_ev_per_atom"], row["mae_hi_ev_per_atom"],
                    signed=view == "difference"),
            _mev_ci(row["mean_signed_ev_per_atom"], row["mean_signed_lo_ev_per_atom"],
                    row["mean_signed_hi_ev_per_atom"], signed=True, colour=True),
        )
        previous = row["group"]
    return out


def study_headline(headline: pl.DataFrame, metrics: list[str], models: list[str],
                   rebuilt_note: str | None = None) -> Table:
    """MAE of every metric over every crystal per model: static, relaxed and relaxed - static rows
    (meV/atom). E, Eform and the fixed-hull Ehull share one error per crystal: one column for the three."""
    from mliap_tui.analysis.summary import SAME_ERROR_LABEL

    same = {"e_per_atom", "e_form_per_atom", "e_above_hull"} <= set(metrics)
    shown = [m for m in metrics if not (same and m in ("e_form_per_atom", "e_above_hull"))]
    labels = {**METRIC_SYMBOL, "e_per_atom": SAME_ERROR_LABEL.replace(" ", "") if same else "E (total)"}
    notes = ["E=Eform=Ehull: one error per crystal (the same elemental references and DFT hull enter both sides)"
             if same else "", "Ehull(b) = " + (rebuilt_note or "Ehull on hulls rebuilt from this dataset")
             if "e_above_hull_rebuilt" in shown else ""]
    out = _study_table("MAE over all crystals, meV/atom [95%]", "; ".join(n for n in notes if n) or None)
    out.add_column("model", no_wrap=True)
    out.add_column("", no_wrap=True)
    for metric in shown:
        out.add_column(labels[metric], justify="right", no_wrap=True)
    for model in models:
        mine = headline.filter(pl.col("model") == model)
        views = [v for v in ("static", "relax", "difference") if mine.filter(pl.col("view") == v).height]
        n_of = {v: int(mine.filter(pl.col("view") == v)["n"].max()) for v in views}
        apart = len(set(n_of.values())) > 1  # --unpaired: each view has its own crystals
        first = [_short(model, 12), "" if apart or not mine.height else f"[dim]n={mine['n'].max():,}[/]"]
        for i, view in enumerate(views):
            cells = []
            for metric in shown:
                row = mine.filter((pl.col("metric") == metric) & (pl.col("view") == view))
                r = row.row(0, named=True) if row.height else None
                cells.append(_mev_ci(r["mae_ev_per_atom"], r["mae_lo_ev_per_atom"], r["mae_hi_ev_per_atom"],
                                     signed=view == "difference") if r else "[dim]-[/]")
            label = {"static": "static", "relax": "relaxed", "difference": "Δ relax"}[view]
            if apart:
                label += f" [dim]n={n_of[view]:,}[/]"
            out.add_row(first[i] if i < 2 else "", label, *cells)
        if len(views) < 2:
            out.add_row(first[1], "[dim]not relaxed[/]", *("" for _ in shown))
        out.add_section()
    return out


def study_relaxation_table(relax: pl.DataFrame, by: str) -> Table:
    """What relaxing did, by group: relaxation energy, RMSD to DFT, space-group changes."""
    caption = ("Erelax = E_relaxed - E_static (meV/atom, mean [95%]); RMSD: median over the crystals "
               "StructureMatcher matched (Å, both cells at their common volume), 'no m.' = no match found "
               "(not in the RMSD); k/l/r = space group kept / lowered / raised (fewer / more symmetry "
               "operations per cell)")
    out = _study_table(f"what relaxing did, by {GROUPINGS[by]}", caption)
    out.add_column(_group_header(by), no_wrap=True)
    out.add_column("model", no_wrap=True)
    out.add_column("n", justify="right", no_wrap=True)
    out.add_column("Erelax [95%]", justify="right", no_wrap=True)
    out.add_column("RMSD Å", justify="right", no_wrap=True)
    out.add_column("no m.", justify="right", no_wrap=True)
    out.add_column("k/l/r", justify="right", no_wrap=True)
    previous = None
    for row in relax.filter(pl.col("grouping") == by).sort("order", "group", "model").iter_rows(named=True):
        if previous is not None and row["group"] != previous:
            out.add_section()
        out.add_row(_group_cell(row["group"], by) if row["group"] != previous else "", _short(row["model"], 12),
                    f"{row['n']:,}", *_relax_cells(row))
        previous = row["group"]
    return out


def _relax_cells(row: dict) -> list[str]:
    rmsd = row["rmsd_median_ang"]
    return [
        _mev_ci(row["e_relax_ev_per_atom"], row["e_relax_lo_ev_per_atom"], row["e_relax_hi_ev_per_atom"], signed=True),
        "-" if rmsd is None else f"{rmsd:.3f}",
        f"{row['n_compared'] - row['n_matched']:,}" if row["n_compared"] else "-",
        f"{row['n_kept']}/{row['n_lowered']}/{row['n_raised']}",
    ]


def study_relaxation_line(row: dict) -> str:
    """One model's relaxation over every crystal, in a sentence with units."""
    rmsd = row["rmsd_median_ang"]
    other = row["n_changed"] + row["n_unknown"]
    parts = [
        f"Erelax mean {_mev_ci(row['e_relax_ev_per_atom'], row['e_relax_lo_ev_per_atom'], row['e_relax_hi_ev_per_atom'], signed=True)} meV/atom",
        f"RMSD median {'-' if rmsd is None else f'{rmsd:.3f}'} Å ({row['n_matched']:,} of {row['n_compared']:,} matched)",
        f"space group kept {row['n_kept']:,}, lowered {row['n_lowered']:,}, raised {row['n_raised']:,}"
        + (f", other {other:,}" if other else ""),
    ]
    if row["volume_change_mean_pct"] is not None:
        parts.append(f"volume {format_signed(row['volume_change_mean_pct'], 2)} %")
    if row["relax_steps_median"] is not None:
        parts.append(f"median {row['relax_steps_median']:.0f} FIRE steps")
    return f"[bold]{escape(row['model'])}[/] relaxed {row['n']:,} crystals: " + ", ".join(parts)


def trend_lines(trends: pl.DataFrame, view: str) -> Table:
    """The DOF-trend sentences of one view, a row per model and quantity (wrapped in their column)."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for row in trends.filter(pl.col("view") == view).iter_rows(named=True):
        style = "bold" if row["significant"] else "dim"
        grid.add_row(f"[{style}]{escape(_short(row['model'], 12))}[/]", escape(row["sentence"]))
    return grid


def study(s: Any) -> list:
    """Every table of a Study (``mliap-tui study dof``)."""
    data = s.data
    if data.empty_reason:
        return [escape(data.empty_reason)]
    n_crystals = data.rows["material_id"].n_unique() if data.rows.height else 0
    scope = f"{data.dataset}" + (", DFT Ehull < 50 meV/atom" if data.near_hull_only else "")
    out: list = [
        f"[bold]study dof[/]: {escape(scope)} ({plural(n_crystals, 'crystal')}), models {escape(', '.join(data.models))}",
        f"[dim]n = crystals per row; {escape(s.interval)}; energies meV/atom, signed error = prediction - DFT "
        "(negative = underpredicted), MP2020 convention[/]",
    ]
    if data.fallback:
        out.append(f"[yellow]{escape(data.fallback)}[/]")
    out += [f"[yellow]{escape(n)}[/]" for n in [*s.notes, *data.notes]]
    if s.metric is not None and s.headline.height:
        out += ["", study_headline(s.headline, data.metrics, data.models, data.rebuilt_hull_note)]
        for view in ("static", "relax", "difference"):
            if not s.grouped.filter(pl.col("view") == view).height:
                continue
            out += ["", study_view_table(s.grouped, view, s.metric, s.by, data.models),
                    f"DOF trend of the {METRIC_LABEL[s.metric]} error over every crystal (total DOF of the DFT "
                    "structure; |error|, then signed):",
                    trend_lines(s.trends, view)]
    all_rows = s.relax.filter(pl.col("grouping") == "all")
    if all_rows.height:
        out += ["", *(study_relaxation_line(r) for r in all_rows.iter_rows(named=True)),
                "", study_relaxation_table(s.relax, s.by)]
    if data.missing_relax:
        what = "no relaxed rows" if not data.relaxed_models else f"no relaxed rows for {', '.join(data.missing_relax)}"
        out += ["", f"[yellow]{escape(what)}: the relaxed half of the study needs them:[/]",
                f"  {escape(data.relax_command or '')}"]
    return out


# ---- softening, rare events, E-V ---------------------------------------------------------------------


def _table(title: str) -> Table:
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False,
                 caption_justify="left")


def softening_summary(agg, dataset: str) -> Table:
    t = _table(f"{dataset}: force softening (slope of MLIP on DFT force components; eV/Å)")
    for name, j in (("model", "left"), ("cells", "right"), ("slope", "right"),
                    ("<1 %", "right"), ("slope+b", "right"), ("MAE", "right"), ("cMAE", "right"), ("pooled", "right")):
        t.add_column(name, justify=j, no_wrap=True)
    for r in agg.filter(agg["dataset"] == dataset).iter_rows(named=True):
        t.add_row(_short(r["model"], 14), str(r["n_structures"]), _f(r["slope_median"]),
                  _pct(r["frac_slope_below_1"]), _f(r["slope_intercept_median"]), _f(r["mae_ev_per_ang"]),
                  _f(r["cmae_ev_per_ang"]), _f(r["slope_pooled"]))
    t.caption = ("slope: median per-structure slope through 0; <1 %: structures with slope < 1; "
                 "slope+b: median slope of the fit with intercept; cMAE: MAE of predictions / slope; "
                 "pooled: one fit over all components")
    return t


def softening_per_structure(per: Any, limit: int = 40) -> Table:
    t = _table(f"Per structure (lowest slopes first, {min(limit, len(per))} of {len(per)})")
    for name, j in (("material", "left"), ("model", "left"), ("N", "right"), ("slope", "right"),
                    ("b", "right"), ("R²", "right"), ("MAE", "right"), ("cMAE", "right")):
        t.add_column(name, justify=j, no_wrap=True)
    for r in per.sort("slope_origin", nulls_last=True).head(limit).iter_rows(named=True):
        t.add_row(r["material_id"][-18:], _short(r["model"], 12), str(r["n_sites"]), _f(r["slope_origin"]),
                  _f(r["intercept_ev_per_ang"]), _f(r["r2"]), _f(r["mae_ev_per_ang"]), _f(r["cmae_ev_per_ang"]))
    return t


def eos_fits(table: Any) -> Table:
    t = _table("E-V scan, Birch-Murnaghan fit per model")
    for name, j in (("crystal", "left"), ("model", "left"), ("B0 GPa", "right"), ("B0'", "right"),
                    ("V0 Å³/at", "right"), ("RMS meV/at", "right"), ("R²", "right")):
        t.add_column(name, justify=j, no_wrap=True)
    for r in table.sort("base_id", "model").iter_rows(named=True):
        flag = "" if r["v0_inside_scan"] else " *"
        t.add_row(r["base_id"], _short(r["model"]), _f(r["b0_gpa"], 1) + flag, _f(r["b0_prime"], 2),
                  _f(r["v0_ang3_per_atom"], 2), _f(r["rms_residual_mev_per_atom"], 3), _f(r["r2"], 5))
    t.caption = "* minimum outside the scanned volumes (extrapolated). Lower B0 = softer PES."
    return t


_RE_COLS = (("n", "right"), ("mean|dF|", "right"), ("|dF|>.5%", "right"), ("dθ med", "right"),
            (">15°%", "right"), (">30°%", "right"))


def rare_event_summary(summary: Any, dataset: str) -> Table:
    t = _table(f"{dataset}: force errors, dF = |F_ML|-|F_DFT| (eV/Å), angle dθ (°)")
    for name, j in (("model", "left"), ("atoms", "left"), *_RE_COLS):
        t.add_column(name, justify=j, no_wrap=True)
    for r in summary.filter(summary["dataset"] == dataset).iter_rows(named=True):
        t.add_row(_short(r["model"], 14), r["atoms"].replace(" atoms", ""), str(r["n_atoms"]),
                  _f(r["mean_abs_df_ev_per_ang"]), _pct(r["frac_abs_df_gt_0.5"]), _f(r["median_dtheta_deg"], 1),
                  _pct(r["frac_dtheta_gt_15"]), _pct(r["frac_dtheta_gt_30"]))
    t.caption = "RE = migrating atoms (r == 0); all = every atom of the set."
    return t


def rare_events_by_distance(binned: Any, dataset: str) -> Table:
    t = _table(f"{dataset}: by distance r to the migrating atom (Å)")
    for name, j in (("model", "left"), ("r Å", "left"), *_RE_COLS):
        t.add_column(name, justify=j, no_wrap=True)
    for r in binned.filter(binned["dataset"] == dataset).sort("model", "bin_index").iter_rows(named=True):
        t.add_row(_short(r["model"], 14), r["r_bin_ang"], str(r["n_atoms"]),
                  _f(r["mean_abs_df_ev_per_ang"]), _pct(r["frac_abs_df_gt_0.5"]), _f(r["median_dtheta_deg"], 1),
                  _pct(r["frac_dtheta_gt_15"]), _pct(r["frac_dtheta_gt_30"]))
    return t




# ---- doctor ---------------------------------------------------------------------------------------


def environment_report(r: Any) -> Group:
    """An EnvironmentReport (``mliap-tui doctor``)."""
    from mliap_tui.core.units import format_bytes

    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("mliap-tui", r.mliap_tui_version)
    head.add_row("python", f"{r.python} ({r.executable})")
    head.add_row("platform", f"{r.platform}, {r.cores} usable cores")
    head.add_row("torch", f"{r.torch_version or 'missing'}: {r.torch_note}")
    if r.cuda_devices:
        head.add_row("CUDA devices", "\n".join(r.cuda_devices))
    head.add_row("NVML", ", ".join(r.nvml_gpus) if r.nvml_gpus else r.nvml_note)
    head.add_row("cache", f"{r.cache_root} ({'exists' if r.cache_exists else 'not created yet'}; "
                 f"datasets: {', '.join(r.datasets) or 'none'})")
    head.add_row("free disk", format_bytes(r.free_disk_bytes))
    head.add_row("packages", ", ".join(f"{k} {v or 'missing'}" for k, v in r.packages.items()))
    models = Table(title="model families", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    models.add_column("family", no_wrap=True)
    models.add_column("package", no_wrap=True)
    models.add_column("model", no_wrap=True)
    models.add_column("ready", no_wrap=True)
    notes: dict[str, list[str]] = {}  # message -> models (one line per distinct reason)
    for f in r.families:
        pkg = f"{f.package} {f.version}" if f.version else f"[red]{f.package} missing[/red]"
        for i, (model, ready, message) in enumerate(f.models):
            models.add_row(f.family if i == 0 else "", pkg if i == 0 else "", model,
                           "[green]yes[/green]" if ready else "[red]no[/red]")
            if not ready:
                notes.setdefault(message, []).append(model)
        models.add_section()
    parts: list = [head, models]
    if notes:
        parts += ["[bold]not ready, and what to do:[/bold]",
                  *(f"[bold]{', '.join(ms)}[/bold]: {escape(msg)}" for msg, ms in notes.items())]
    problems = r.problems
    parts.append("")
    parts.append("[green]ready to run[/green]" if not problems else
                 "[red]blocking:[/red] " + "; ".join(escape(p) for p in problems))
    return Group(*parts)
