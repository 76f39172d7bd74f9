"""``mliap-tui report``: one self-contained HTML file (or Markdown with the figures beside it) that a
researcher can send: the dataset, per-model error tables (static and relaxed), the breakdown by
DOF, the static-vs-relaxed study with bootstrap intervals and the DOF trend, the figures, and the provenance of every row (package and model versions, weights
fingerprints and where the weights came from, their canary verdict, devices, runs, dates).

The HTML embeds its figures as base64 PNG and its style inline: it opens offline, alone.
Everything here reads the cache; nothing is computed that ``summary``/``figures`` would not.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable, Sequence

import polars as pl

from mliap_tui import __version__
from mliap_tui.cache import Cache
from mliap_tui.core.files import write_bytes_atomic
from mliap_tui.core.units import MEV_PER_EV
from mliap_tui.core.vocab import METRIC_LABEL, METRIC_SHORT_LABEL, STUDY_VIEWS

REPORT_FORMATS = ("html", "md")
ENV_PACKAGES = ("torch", "chgnet", "sevenn", "mace-torch", "matgl", "orb-models", "pymatgen", "spglib", "ase",
                "polars", "numpy", "matplotlib")


@dataclass
class Table:
    """A plain table for either format: a title, column headers, rows of strings, a caption."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    left: tuple[int, ...] = (0,)  # text columns (left-aligned); numbers are right-aligned


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, bytes]] = field(default_factory=list)  # (caption, PNG bytes)


@dataclass
class Report:
    title: str
    subtitle: str
    sections: list[Section] = field(default_factory=list)


# ---- content ---------------------------------------------------------------------------------------


def _mev(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "–"
    x = v * MEV_PER_EV
    if abs(x) < 0.05:
        x = 0.0
    return f"{x:+.1f}" if signed else f"{x:.1f}"


def stats_rows(stats: pl.DataFrame) -> list[list[str]]:
    """per_model / per_group rows as strings: n, MAE, mean signed, RMSE (meV/atom), % under."""
    return [[f"{r['n']:,}", _mev(r["mae"]), _mev(r["mean_signed"], True), _mev(r["rmse"]),
             f"{100 * r['frac_under']:.0f}%" if r["frac_under"] is not None else "–"] for r in stats.iter_rows(named=True)]


STAT_COLUMNS = ["n", "MAE meV/atom", "mean signed meV/atom", "RMSE meV/atom", "under"]


def dof_bins(dof_counts: Sequence[tuple[int, int]]) -> dict[str, int]:
    """(total DOF, crystals) pairs -> crystals per DOF bin of the summaries (``aggregate.DOF_BIN_EDGES``)."""
    from mliap_tui.analysis.aggregate import dof_bin_label

    if not dof_counts:
        return {}
    df = pl.DataFrame(list(dof_counts), schema={"dof": pl.Int64, "n": pl.Int64}, orient="row")
    out = (df.with_columns(dof_bin_label(pl.col("dof")).alias("bin"))
           .group_by("bin").agg(pl.col("n").sum(), pl.col("dof").min().alias("lo")).sort("lo"))
    return dict(zip(out["bin"].to_list(), out["n"].to_list()))


def dataset_section(cache: Cache, dataset: str) -> Section:
    from mliap_tui.data.summary import DFT_ENERGY_LABELS, dataset_overview

    ov = dataset_overview(cache, dataset)
    src = cache.scan_materials(dataset).select("source").unique().head(3).collect()["source"].to_list()
    sec = Section("Dataset")
    sec.paragraphs.append(
        f"<b>{html.escape(dataset)}</b>: {ov.n_crystals:,} crystals, {ov.n_atoms:,} atoms "
        f"({ov.min_sites}–{ov.max_sites} per cell), {ov.n_elements} elements, {ov.n_spacegroups} space groups; "
        f"symmetry at symprec {ov.symprec_ang} Å. Source: {html.escape(', '.join(str(s) for s in src))}.")
    sec.tables.append(Table("DFT reference energies", ["quantity", "crystals", "median eV/atom"],
                            [[DFT_ENERGY_LABELS[c], f"{n:,}", f"{med:.4f}"] for c, (n, med) in ov.dft_energies.items()]))
    sec.tables.append(Table("crystal systems", ["crystal system", "crystals"],
                            [[cs, f"{n:,}"] for cs, n in ov.crystal_systems.items()]))
    bins = dof_bins(ov.dof_counts)
    top = max(bins.values(), default=1)
    sec.tables.append(Table("symmetry degrees of freedom (lattice DOF + free Wyckoff coordinates)",
                            ["total DOF", "crystals", ""],
                            [[label, f"{n:,}", "█" * max(1, round(30 * n / top))] for label, n in bins.items()],
                            left=(0, 2)))
    sec.tables.append(Table("predictions in the cache", ["model", "mode", "ok", "failed", "missing"],
                            [[m, mode, f"{ok:,}", f"{f:,}", f"{miss:,}"] for m, mode, ok, f, miss in ov.predictions],
                            left=(0, 1)))
    return sec


def errors_section(cache: Cache, dataset: str, mode: str) -> Section | None:
    from mliap_tui.analysis.summary import summarize

    s = summarize(cache, dataset, by="dof", mode=mode)
    if s.empty_reason and not s.blocks:
        if mode == "static":
            sec = Section(f"Errors ({mode})")
            sec.paragraphs.append(html.escape(s.empty_reason))
            return sec
        return None
    sec = Section(f"Errors vs DFT ({mode})")
    sec.paragraphs.extend(html.escape(n) for n in s.notes)
    for block in s.blocks:
        rows = []
        for metric in block.metrics:
            for r, cells in zip(block.stats[metric].iter_rows(named=True), stats_rows(block.stats[metric])):
                rows.append([r["model"], METRIC_SHORT_LABEL.get(metric, metric), *cells])
        sec.tables.append(Table(block.title, ["model", "metric", *STAT_COLUMNS], rows,
                                "signed error = prediction − DFT (negative = underpredicted). " + block.caption, (0, 1)))
    if s.grouped is not None and len(s.grouped):
        rows = [[r["group"], r["model"], *cells] for r, cells in zip(s.grouped.iter_rows(named=True), stats_rows(s.grouped))]
        sec.tables.append(Table(f"{METRIC_LABEL[s.metric]} error by total DOF bin ({mode})",
                                ["DOF", "model", *STAT_COLUMNS], rows, left=(0, 1)))
    if s.failures:
        sec.tables.append(Table("failed evaluations (not in the statistics)", ["model", "failed", "most common reasons"],
                                [[m, f"{n:,}", "; ".join(f"{r} (×{k})" for r, k in reasons)] for m, n, reasons in s.failures],
                                left=(0, 2)))
    for note in s.weights:
        sec.paragraphs.append(html.escape(note.text()))
    return sec


def _with_interval(value: float | None, lo: float | None, hi: float | None, signed: bool = False) -> str:
    from mliap_tui.core.units import format_interval

    return f"{_mev(value, signed)} {format_interval(lo, hi, scale=MEV_PER_EV)}".strip()


def study_rows(stats: pl.DataFrame, first: Sequence[str]) -> list[list[str]]:
    """``analysis.study.error_stats`` rows as strings: the ``first`` columns, then n, MAE and mean
    signed error in meV/atom, each with its bootstrap interval."""
    out = []
    for r in stats.iter_rows(named=True):
        head = [STUDY_VIEWS.get(r[c], r[c]) if c == "view" else METRIC_SHORT_LABEL.get(r[c], r[c]) if c == "metric"
                else str(r[c]) for c in first]
        out.append([*head, f"{r['n']:,}",
                    _with_interval(r["mae_ev_per_atom"], r["mae_lo_ev_per_atom"], r["mae_hi_ev_per_atom"]),
                    _with_interval(r["mean_signed_ev_per_atom"], r["mean_signed_lo_ev_per_atom"],
                                   r["mean_signed_hi_ev_per_atom"], True)])
    return out


STUDY_COLUMNS = ["n", "MAE meV/atom [95 % CI]", "mean signed meV/atom [95 % CI]"]


def study_section(cache: Cache, dataset: str, models: Sequence[str] | None, metric: str) -> Section | None:
    """Static vs relaxed (``mliap-tui study dof``): errors of every crystal and by DOF bin with
    bootstrap intervals, and the DOF trend. None when no model has relaxed rows."""
    from mliap_tui.analysis.study import run_study

    study = run_study(cache, dataset, models, metric=metric, by="dof", geometry=False)
    data = study.data
    if data.empty_reason or not data.relaxed_models or study.metric is None:
        return None
    sec = Section("Static vs relaxed: the symmetry study")
    sec.paragraphs.append(
        "Each model's errors at the DFT geometry (static), after the model relaxed the crystal (relaxed), and "
        "relaxed − static on the same crystals. " + html.escape(study.interval.rstrip(".")) +
        ". The same tables, with what the relaxation did (relaxation energy, RMSD, space group kept), come from "
        f"<code>mliap-tui study dof --data {html.escape(dataset)}</code>.")
    sec.paragraphs.extend(html.escape(n) for n in [*([data.fallback] if data.fallback else []), *data.notes, *study.notes])
    shown = [study.metric, *(["e_above_hull_rebuilt"] if "e_above_hull_rebuilt" in data.metrics else [])]
    sec.tables.append(Table("every crystal", ["model", "metric", "view", *STUDY_COLUMNS],
                            study_rows(study.headline.filter(pl.col("metric").is_in(shown)), ("model", "metric", "view")),
                            "signed error = prediction − DFT (negative = underpredicted); total-energy and formation-"
                            "energy errors equal the fixed-hull Ehull error (MP elemental references on both sides)",
                            (0, 1, 2)))
    sec.tables.append(Table(f"{METRIC_LABEL[study.metric]} error by total DOF bin", ["DOF", "model", "view", *STUDY_COLUMNS],
                            study_rows(study.grouped.sort("order", "model"), ("group", "model", "view")), left=(0, 1, 2)))
    trends = study.trends
    if trends.height:
        sec.tables.append(Table(f"DOF trend of the {METRIC_LABEL[study.metric]} error", ["model", "view", "trend"],
                                [[r["model"], STUDY_VIEWS.get(r["view"], r["view"]), r["sentence"]]
                                 for r in trends.iter_rows(named=True)], left=(0, 1, 2)))
    return sec


def provenance_section(cache: Cache, dataset: str) -> Section:
    from mliap_tui.analysis.weights import provenance

    sec = Section("Provenance")
    prov = provenance(cache, dataset)
    rows = []
    for r in prov.iter_rows(named=True):
        first = _dt.datetime.fromtimestamp(r["first_unix_s"]).strftime("%Y-%m-%d %H:%M") if r["first_unix_s"] else "–"
        last = _dt.datetime.fromtimestamp(r["last_unix_s"]).strftime("%Y-%m-%d %H:%M") if r["last_unix_s"] else "–"
        rows.append([r["model"], r["mode"], r["weights_fingerprint"] or "unrecorded (rows from before mliap-tui recorded weights)",
                     r["source"] or "–", r["package_versions"] or "–",
                     (r["canary"] or "–") + (" — ran with --trust-model" if r["trust_override"] else ""),
                     r["devices"] or "–", f"{r['runs']}", f"{first} – {last}", f"{r['ok']:,} / {r['failed']:,}"])
    sec.tables.append(Table("what made each row", ["model", "mode", "weights sha256", "weights from", "package",
                                                   "canary (12 MP crystals)", "devices", "runs", "committed",
                                                   "ok / failed"], rows, left=(0, 1, 2, 3, 4, 5, 6)))
    env = [["python", sys.version.split()[0]], ["platform", platform.platform()], ["mliap-tui", __version__]]
    for name in ENV_PACKAGES:
        try:
            env.append([name, metadata.version(name)])
        except metadata.PackageNotFoundError:
            continue
    sec.tables.append(Table("environment this report was made in", ["package", "version"], env,
                            "the package versions that made the rows are in the table above"))
    return sec


def figures_section(cache: Cache, dataset: str, mode: str, models: Sequence[str] | None, metric: str,
                    on_figure: Callable[[int, int, str], None] | None = None) -> Section:
    from mliap_tui.report.figure_set import dataset_figures, figure_bytes

    plan = dataset_figures(cache, dataset, mode, models, metric)
    sec = Section(f"Figures ({mode})")
    sec.paragraphs.extend(html.escape(n) for n in plan.notes)
    for k, job in enumerate(plan.jobs):
        if on_figure is not None:
            on_figure(k, len(plan.jobs), job.name)
        try:
            sec.figures.append((job.caption, figure_bytes(job.build(), "png", dpi=110)))
        except Exception as exc:  # noqa: BLE001 - one figure's failure is said, the report goes on
            sec.paragraphs.append(html.escape(f"{job.name}: not drawn ({type(exc).__name__}: {exc})"))
    return sec


def build_report(cache: Cache, dataset: str, models: Sequence[str] | None = None, metric: str = "e_above_hull",
                 figures: bool = True, on_figure: Callable[[int, int, str], None] | None = None) -> Report:
    """The report of ``dataset``: static and (when there are relaxed rows) relaxed sections."""
    modes = cache.scan_predictions(dataset).select("mode").unique().collect()["mode"].to_list()
    rep = Report(f"mliap-tui report: {dataset}",
                 f"made {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} with mliap-tui {__version__} from the cache "
                 f"{Path(cache.root).resolve()}")
    rep.sections.append(dataset_section(cache, dataset))
    for mode in ("static", "relax"):
        if mode == "static" or mode in modes:
            sec = errors_section(cache, dataset, mode)
            if sec is not None:
                rep.sections.append(sec)
    if "relax" in modes:
        sec = study_section(cache, dataset, models, metric)
        if sec is not None:
            rep.sections.append(sec)
    if figures:
        rep.sections.append(figures_section(cache, dataset, "static", models, metric, on_figure))
        if "relax" in modes:
            rep.sections.append(figures_section(cache, dataset, "relax", models, metric, on_figure))
    rep.sections.append(provenance_section(cache, dataset))
    return rep


# ---- writing --------------------------------------------------------------------------------------

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.1em; } h2 { border-bottom: 1px solid #ddd; margin-top: 2em; }
.sub { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; font-size: 0.86em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; vertical-align: top; }
th { background: #f5f5f5; } .l { text-align: left; } td.l { word-break: break-word; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 4px 0; }
.cap { color: #555; font-size: 0.85em; margin-top: -1em; margin-bottom: 1.2em; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.9em; }
"""


def to_html(rep: Report) -> str:
    out = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
           f"<title>{html.escape(rep.title)}</title><style>{CSS}</style></head><body>",
           f"<h1>{html.escape(rep.title)}</h1><p class='sub'>{html.escape(rep.subtitle)}</p>"]
    for sec in rep.sections:
        out.append(f"<h2>{html.escape(sec.title)}</h2>")
        out.extend(f"<p>{p}</p>" for p in sec.paragraphs)  # paragraphs are escaped where they are made
        for t in sec.tables:
            cls = ["l" if k in t.left else "" for k in range(len(t.columns))]
            out.append(f"<table><caption>{html.escape(t.title)}</caption><tr>"
                       + "".join(f"<th class='{c}'>{html.escape(h)}</th>" for c, h in zip(cls, t.columns)) + "</tr>")
            out.extend("<tr>" + "".join(f"<td class='{c}'>{html.escape(str(v))}</td>" for c, v in zip(cls, row)) + "</tr>"
                       for row in t.rows)
            out.append("</table>")
            if t.caption:
                out.append(f"<p class='cap'>{html.escape(t.caption)}</p>")
        for caption, png in sec.figures:
            data = base64.b64encode(png).decode()
            out.append(f"<figure><img alt='{html.escape(caption, quote=True)}' src='data:image/png;base64,{data}'>"
                       f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)


def _md_cell(v: str) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def to_markdown(rep: Report, figures_dir: Path, link_base: str) -> tuple[str, list[tuple[Path, bytes]]]:
    """Markdown text, and the PNG files to write under ``figures_dir`` (linked as ``link_base/name``)."""
    import re

    out = [f"# {rep.title}", "", f"_{rep.subtitle}_", ""]
    files: list[tuple[Path, bytes]] = []
    for sec in rep.sections:
        out += [f"## {sec.title}", ""]
        out += [re.sub(r"</?b>", "**", html.unescape(p)) + "\n" for p in sec.paragraphs]
        for t in sec.tables:
            out += [f"**{t.title}**", "", "| " + " | ".join(map(_md_cell, t.columns)) + " |",
                    "|" + "|".join("---" for _ in t.columns) + "|"]
            out += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in t.rows]
            out += ["", f"_{t.caption}_" if t.caption else "", ""]
        for k, (caption, png) in enumerate(sec.figures):
            name = f"{re.sub(r'[^A-Za-z0-9]+', '_', sec.title).strip('_').lower()}_{k:02d}.png"
            files.append((figures_dir / name, png))
            out += [f"![{caption}]({link_base}/{name})", "", f"_{caption}_", ""]
    return "\n".join(out), files


def write_report(rep: Report, out: Path, fmt: str = "html") -> list[Path]:
    """Write the report (atomically); the paths written."""
    if fmt not in REPORT_FORMATS:
        raise ValueError(f"unknown report format {fmt!r}: use html or md")
    if fmt == "html":
        return [write_bytes_atomic(to_html(rep).encode(), out)]
    figures_dir = out.with_name(out.stem + "_figures")
    text, files = to_markdown(rep, figures_dir, figures_dir.name)
    written = [write_bytes_atomic(data, path) for path, data in files]
    return [write_bytes_atomic(text.encode(), out), *written]


__all__ = ["REPORT_FORMATS", "Report", "Section", "Table", "build_report", "to_html", "to_markdown", "write_report"]
