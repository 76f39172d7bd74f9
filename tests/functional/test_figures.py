"""``mliap-tui figures`` / ``report`` and the app's w key, on real caches: the shared TUI cache
(real CHGNet predictions on 40 MP-20 crystals), a real PES slice and the shipped force sample run
through CHGNet with forces. Files are checked for content (model ids, axis labels with units,
n, headline numbers), not only for existence; the report is opened in headless Chromium (slow)."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from support import REPO_DIR
from support_tui import DATASET, settle

from mliap_tui.cache import Cache
from mliap_tui.cli import main

pytest.importorskip("matplotlib")


def _svg_text(path: Path) -> str:
    """The visible text of a matplotlib SVG (it keeps text as <!-- comments --> next to glyph paths)."""
    raw = path.read_text()
    return " ".join(re.findall(r"<!-- (.*?) -->", raw)) + " " + raw


def _mae(cache: Cache, model: str, metric: str = "e_above_hull") -> str:
    """MAE (meV/atom, one decimal) of ``model`` on the TUI dataset, as the summary computes it."""
    from mliap_tui.analysis.aggregate import per_model
    from mliap_tui.analysis.errors import error_table

    row = per_model(error_table(cache, DATASET), metric).filter(pl.col("model") == model).row(0, named=True)
    return f"{1000 * row['mae']:.1f}"


def test_figures_cli_writes_labelled_svgs(tui_cache, tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["--cache", str(tui_cache.root), "figures", "--data", DATASET, "--out", str(out), "--format", "svg",
                 "--no-pes"]) == 0
    files = sorted(p.name for p in out.iterdir())
    for model in ("chgnet-0.3.0", "chgnet-0.2.0"):
        assert f"parity_e_above_hull_{model}.svg" in files and f"ptable_e_above_hull_{model}.svg" in files
    assert {"error_histogram_e_above_hull.svg", "errors_by_dof_e_above_hull.svg",
            "errors_by_crystal_system_e_above_hull.svg"} <= set(files)
    printed = " ".join(capsys.readouterr().out.split())  # rich wraps long paths
    assert f"{len(files)} figures -> {out}" in printed
    for name in files:
        assert 20_000 < (out / name).stat().st_size < 3_000_000, name
    parity = _svg_text(out / "parity_e_above_hull_chgnet-0.3.0.svg")
    weights = tui_cache.scan_predictions(DATASET, ["chgnet-0.3.0"]).select("weights_fingerprint").collect()[0, 0]
    assert "chgnet-0.3.0" in parity and f"weights {weights[:7]}" in parity and "(eV/atom)" in parity
    n_ok = tui_cache.scan_predictions(DATASET, ["chgnet-0.3.0"]).filter(pl.col("status") == "ok").collect().height
    assert f"n = {n_ok}" in parity and "dataset t" in parity  # the n behind it, and the dataset
    assert f"MAE {_mae(tui_cache, 'chgnet-0.3.0')} meV/atom" in parity  # the figure's MAE is the summary's
    dof = _svg_text(out / "errors_by_dof_e_above_hull.svg")
    assert "MAE (meV/atom)" in dof and "total DOF bin" in dof and "chgnet-0.2.0" in dof
    hist = _svg_text(out / "error_histogram_e_above_hull.svg")
    assert "prediction − DFT (meV/atom)" in hist


def test_figures_formats_and_bad_input(tui_cache, tmp_path, capsys):
    for fmt, magic in (("png", b"\x89PNG"), ("pdf", b"%PDF"), ("html", b"<!DOCTYPE html>")):
        out = tmp_path / fmt
        assert main(["--cache", str(tui_cache.root), "figures", "--data", DATASET, "--out", str(out), "--format", fmt,
                     "--no-pes", "--models", "chgnet-0.3.0"]) == 0
        files = list(out.iterdir())
        assert files and all(p.read_bytes().startswith(magic) for p in files)
    html = (tmp_path / "html" / "parity_e_above_hull_chgnet-0.3.0.html").read_text()
    assert "<svg" in html and "chgnet-0.3.0" in html
    assert main(["--cache", str(tui_cache.root), "figures", "--data", "nosuch", "--out", str(tmp_path / "x")]) == 2
    assert "is not in the cache" in capsys.readouterr().err


def test_figures_without_matplotlib_say_how_to_get_it(tui_cache, tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None; from mliap_tui.cli import main; "
            f"sys.exit(main(['--cache', {str(tui_cache.root)!r}, 'figures', '--data', 't', '--out', {str(tmp_path)!r}]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_DIR,
                         env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert out.returncode == 3 and "pip install 'mliap-tui[figures]'" in out.stdout + out.stderr


def test_report_html_and_markdown(tui_cache, tmp_path, capsys):
    report = tmp_path / "r.html"
    assert main(["--cache", str(tui_cache.root), "report", "--data", DATASET, "--out", str(report)]) == 0
    html = report.read_text()
    assert html.startswith("<!DOCTYPE html>") and "src='http" not in html and "<link" not in html  # one file
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(images) >= 7 and all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    for text in ("chgnet-0.3.0", "chgnet-0.2.0", "Provenance", "weights sha256", "Dataset", "by total DOF bin"):
        assert text in html, text
    mae = _mae(tui_cache, "chgnet-0.3.0", "e_per_atom")  # the report's first table: E = Eform = Ehull error
    assert re.search(rf"<td class='l'>chgnet-0\.3\.0</td><td class='l'>E</td><td class=''>\d+</td><td class=''>{mae}</td>", html)
    fp = tui_cache.scan_predictions(DATASET, ["chgnet-0.3.0"]).select("weights_fingerprint").collect()[0, 0]
    assert fp in html  # the full sha256 of the weights behind the rows
    assert main(["--cache", str(tui_cache.root), "report", "--data", DATASET, "--out", str(report)]) == 2  # exists
    md = tmp_path / "notes" / "r.md"
    assert main(["--cache", str(tui_cache.root), "report", "--data", DATASET, "--out", str(md), "--no-figures"]) == 0
    assert "| chgnet-0.3.0 |" in md.read_text()
    md2 = tmp_path / "r2.md"
    assert main(["--cache", str(tui_cache.root), "report", "--data", DATASET, "--out", str(md2)]) == 0
    linked = re.findall(r"\]\((r2_figures/[^)]+\.png)\)", md2.read_text())
    assert len(linked) >= 7 and all((tmp_path / p).is_file() for p in linked)


def test_study_in_figures_and_report(study_cache, tmp_path):
    """With relaxed rows, the DOF figure carries the study's bootstrap intervals, a static-vs-relaxed
    figure is drawn, and the report holds the study tables with the same numbers as `study dof`."""
    from mliap_tui.analysis.study import run_study
    from mliap_tui.core.units import format_interval

    out = tmp_path / "figs"
    args = ["--cache", str(study_cache.root), "figures", "--data", "study", "--out", str(out), "--format", "svg",
            "--no-pes"]
    assert main(args) == 0
    both = _svg_text(out / "static_vs_relaxed_by_dof_e_above_hull.svg")
    assert "chgnet-0.3.0 · relaxed" in both and "chgnet-0.3.0 · at DFT geometry" in both
    assert "95 % bootstrap intervals" in _svg_text(out / "errors_by_dof_e_above_hull.svg")
    md = tmp_path / "r.md"
    assert main(["--cache", str(study_cache.root), "report", "--data", "study", "--out", str(md), "--no-figures"]) == 0
    text = md.read_text()
    assert "## Static vs relaxed: the symmetry study" in text and "DOF trend" in text
    study = run_study(study_cache, "study", metric="e_above_hull", geometry=False)
    row = study.headline.filter((pl.col("metric") == "e_above_hull") & (pl.col("view") == "relax")).row(0, named=True)
    mae = f"{1000 * row['mae_ev_per_atom']:.1f} {format_interval(row['mae_lo_ev_per_atom'], row['mae_hi_ev_per_atom'], scale=1000)}"
    assert f"| chgnet-0.3.0 | Ehull (DFT hull) | relaxed by the model | {row['n']} | {mae} |" in text


@pytest.fixture(scope="module")
def force_cache(tmp_path_factory) -> Cache:
    """The shipped force sample with real CHGNet forces (8 Si vacancy cells + 5 MPtrj frames)."""
    from mliap_tui.data.importer import import_force_sample
    from mliap_tui.engine.runner import run_evaluation

    cache = Cache(tmp_path_factory.mktemp("forces"))
    import_force_sample(cache, n_jobs=1)
    for dataset in ("si-vacancy-sample", "mptrj-sample"):
        s = run_evaluation(cache, dataset, ["chgnet-0.3.0"], device="cpu", forces=True, stress=True, torch_threads=1)
        assert s.models[0].error is None and s.models[0].ok > 0
    return cache


def test_force_figures(force_cache, tmp_path):
    from mliap_tui.report.figure_set import dataset_figures, write_plan

    plan = dataset_figures(force_cache, "si-vacancy-sample")
    assert [j.name for j in plan.jobs] == ["force_parity", "rare_event_cdf"]
    written, errors = write_plan(plan, tmp_path, "svg")
    assert not errors and len(written) == 2
    parity = _svg_text(tmp_path / "force_parity.svg")
    assert "DFT force component (eV/Å)" in parity and "chgnet-0.3.0" in parity and "slope 0." in parity
    cdf = _svg_text(tmp_path / "rare_event_cdf.svg")
    assert "rare-event atoms" in cdf and "(eV/Å)" in cdf and "Δθ (°)" in cdf
    mptrj = dataset_figures(force_cache, "mptrj-sample")
    assert "force_parity" in [j.name for j in mptrj.jobs]
    assert any("total energy" in n for n in mptrj.notes)  # no Ehull in MPtrj frames: says so, draws E


def test_pes_slice_figure(tui_cache, tmp_path):
    """A real 1D slice (CHGNet, 5 points) in a copy of the TUI cache is found and drawn."""
    from mliap_tui.analysis.pes.slices import cached_slices, compute_slice, slice_axes
    from mliap_tui.report.figure_set import dataset_figures, write_plan

    cache = Cache(tmp_path / "c")
    shutil.copytree(tui_cache.root, cache.root)
    row = cache.scan_materials(DATASET).filter(pl.col("total_dof") >= 2).collect().row(0, named=True)
    axis = next(a for a in slice_axes(row) if a.kind == "coord")
    compute_slice(cache, DATASET, row["material_id"], [axis.name], points=5, models=["chgnet-0.3.0"], device="cpu",
                  torch_threads=1)
    found = cached_slices(cache, DATASET)
    assert len(found) == 1 and found[0].material_id == row["material_id"] and found[0].models == ("chgnet-0.3.0",)
    plan = dataset_figures(cache, DATASET, models=["chgnet-0.3.0"])
    pes_jobs = [j for j in plan.jobs if j.section == "pes"]
    assert len(pes_jobs) == 1
    plan.jobs = pes_jobs
    written, errors = write_plan(plan, tmp_path / "figs", "svg")
    assert not errors
    text = _svg_text(written[0].path)
    assert row["material_id"] in text and "E − E(DFT structure) (meV/atom)" in text and "DFT structure" in text


async def test_w_writes_the_current_plot(tui_cache, tmp_path, monkeypatch):
    from mliap_tui.tui.app import MliapTuiApp

    monkeypatch.setenv("MLIAP_TUI_FIGURES", str(tmp_path / "figs"))
    app = MliapTuiApp(tui_cache, DATASET, device_poll_s=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("w")  # on the table: nothing to draw, says so
        await settle(pilot)
        assert not (tmp_path / "figs").exists()
        await pilot.press("2", "w")  # the parity tab of the selected model
        await settle(pilot)
        await pilot.press("4", "w")
        await settle(pilot)
        written = sorted(p.name for p in (tmp_path / "figs").iterdir())
        model = app.explore.selected_model
        assert written == ["t_static_dof_e_above_hull.png", f"t_static_parity_e_above_hull_{model}.png"]
        await pilot.press("slash")
        await pilot.press(*"cs=cubic", "enter")
        await settle(pilot)
        await pilot.press("4", "w")
        await settle(pilot)
    assert (tmp_path / "figs" / "t_static_dof_e_above_hull.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tui_cache, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        pytest.skip("no chromium here (Debian: apt install chromium)")
    report = tmp_path / "r.html"
    assert main(["--cache", str(tui_cache.root), "report", "--data", DATASET, "--out", str(report)]) == 0
    flags = ["--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, *flags, "--window-size=1200,2400", f"--screenshot={shot}", report.as_uri()],
                   capture_output=True, timeout=120, check=False)
    assert shot.is_file() and shot.stat().st_size > 50_000  # a page with tables and figures, not a blank one
    dom = subprocess.run([chromium, *flags, "--virtual-time-budget=5000", "--dump-dom", report.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert "mliap-tui report: t" in dom and "chgnet-0.3.0" in dom
    assert f">{_mae(tui_cache, 'chgnet-0.3.0', 'e_per_atom')}<" in dom  # the headline MAE in a table cell
    assert dom.count("<img") >= 7 and "Provenance" in dom
