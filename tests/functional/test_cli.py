"""The command line as a user runs it: `python -m mliap_tui ...` in a subprocess, exit codes and
what is printed (parsing, one registration path per command, the rich tables, user errors)."""

from __future__ import annotations

import subprocess
import sys
import tempfile

from support import REPO_DIR

from mliap_tui.cli import COMMAND_MODULES, build_parser, main

# a HOME of its own: what a run writes there (the weights-hash memo, hub caches) stays out of the repo
_HOME = tempfile.mkdtemp(prefix="mliap-tui-home-")


def cli(*args: str, cache=None, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mliap_tui", *([f"--cache={cache}"] if cache else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO_DIR,
                          env={"COLUMNS": "80", "PATH": "/usr/bin:/bin", "HOME": _HOME})


def test_every_command_has_one_handler_and_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # argparse has no public accessor
    names = set(sub.choices)
    assert {"data", "models", "run", "summary", "export", "pes", "softening", "rare-events"} <= names
    assert len(COMMAND_MODULES) == 11 and {"doctor", "cache", "study", "figures", "report"} <= names
    for argv in (["models"], ["run"], ["summary"], ["export"], ["pes", "mp-1"], ["softening", "--data", "x"],
                 ["rare-events", "--data", "x"], ["data", "import", "sample"], ["data", "show"], ["doctor"],
                 ["cache", "check"], ["study", "dof"], ["figures"], ["report"], []):
        assert callable(parser.parse_args(argv).handler), argv


def test_help_teaches_with_examples():
    out = cli("run", "--help")
    assert out.returncode == 0
    assert "examples:" in out.stdout and "--models" in out.stdout and "--device" in out.stdout
    for command in ("summary", "models", "data"):
        assert "examples" in cli(command, "--help").stdout or command == "data"


def test_user_errors_exit_2_with_one_line(tmp_path):
    bad = cli("summary", "--data", "nosuch", cache=tmp_path)
    assert bad.returncode == 2 and "is not in the cache" in bad.stderr and "Traceback" not in bad.stderr
    bad = cli("run", "--models", "chgnet-0.3.0", "--checkpoint", "nonsense", cache=tmp_path)
    assert bad.returncode == 2 and "--checkpoint expects KEY=VALUE" in bad.stderr
    bad = cli("run", "--limit", "-5")
    assert bad.returncode == 2 and "must be at least 1" in bad.stderr
    bad = cli("run", "--mode", "relax", "--fmax", "0")
    assert bad.returncode == 2 and "--fmax: must be greater than 0" in bad.stderr
    bad = cli("run", "--mode", "relax", "--relax-engine", "fast")
    assert bad.returncode == 2 and "invalid choice: 'fast'" in bad.stderr and "batched" in bad.stderr
    bad = cli("pes", "mp-1", "--points", "20")  # an even grid has no centre: the DFT point would be off it
    assert bad.returncode == 2 and "must be odd" in bad.stderr and "try 21" in bad.stderr


def test_unknown_model_is_a_user_error(tmp_path):
    assert main(["--cache", str(tmp_path), "run", "--models", "nosuchmodel"]) == 2


def test_models_lists_the_registry_as_a_table():
    out = cli("models")
    assert out.returncode == 0
    assert "chgnet-0.3.0" in out.stdout and "sevennet-0" in out.stdout and "MP2020" in out.stdout


def test_app_import_errors_are_not_hidden(monkeypatch, tmp_path):
    """No command opens the app; if the app cannot be imported that is an error, not the help."""
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *a, **kw):
        if name == "mliap_tui.tui.app":
            raise ImportError("textual is broken here")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    assert main(["--cache", str(tmp_path)]) == 1


def test_doctor_reports_the_machine(tmp_path):
    out = cli("doctor", cache=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    for needle in ("python", "torch", "chgnet", "sevennet-0", "NVML", "free disk", "ready to run"):
        assert needle in out.stdout, needle
    import json

    data = json.loads(cli("doctor", "--json", cache=tmp_path).stdout)
    assert data["torch_version"].startswith("2.") and data["problems"] == []
    assert {f["family"] for f in data["families"]} == {"chgnet", "sevenn", "mace", "matgl", "orb"}


def test_run_imports_the_sample_or_a_path_on_first_use(tmp_path):
    from support import FIXTURES

    from mliap_tui.cache import Cache
    from mliap_tui.data.importer import resolve_dataset

    cache = Cache(tmp_path / "c")
    name, report = resolve_dataset(cache, "sample", limit=3, n_jobs=1)
    assert name == "sample" and report is not None and report.n_loaded == 3
    assert resolve_dataset(cache, "sample") == ("sample", None)  # cached now: no second import
    path = FIXTURES / "mpts52_test_head.csv"
    name, report = resolve_dataset(cache, str(path), n_jobs=1)
    assert name == "mpts52_test_head" and report.n_loaded == 4 and cache.has_materials(name)
    import pytest

    with pytest.raises(FileNotFoundError, match="known: mpts52_test_head, sample"):
        resolve_dataset(cache, "nosuch")


def test_run_on_a_new_cache_says_it_imports_first(tmp_path):
    """`run --data PATH` on an empty cache imports, says so, then evaluates (one real CHGNet run)."""
    from support import FIXTURES

    out = cli("run", "--data", str(FIXTURES / "mpts52_test_head.csv"), "--models", "chgnet-0.3.0", cache=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    text = " ".join(out.stdout.split())  # rich wraps at 80 columns
    assert "first (not a dataset in the cache yet)" in text and "4 loaded" in text
    assert "summary --data mpts52_test_head" in text
    bad = cli("run", "--data", "nosuch", "--models", "chgnet-0.3.0", cache=tmp_path)
    assert bad.returncode == 2 and "known: mpts52_test_head" in " ".join(bad.stderr.split())


def test_cache_info_and_compact_count_rows_on_disk(tmp_path):
    """Three chunks (one superseding a failed row) of two models: `cache info` shows them as rows on
    disk, `cache compact` merges each model's files into one, and the counts follow (80 columns)."""
    import polars as pl

    from mliap_tui.cache import Cache
    from mliap_tui.data.importer import import_dataset

    cache = Cache(tmp_path)
    import_dataset("sample", cache=cache, limit=12, n_jobs=1)
    ids = cache.scan_materials("sample").collect()["material_id"].to_list()

    def chunk(model, some, status="ok", t=1.0):
        return pl.DataFrame({"material_id": some, "model": model, "mode": "static", "status": status,
                             "e_per_atom_pred_native": -1.0, "created_unix_s": t})

    cache.write_prediction_chunk("sample", "chgnet-0.3.0", "static", chunk("chgnet-0.3.0", ids[:8], "failed"))
    cache.write_prediction_chunk("sample", "chgnet-0.3.0", "static", chunk("chgnet-0.3.0", ids[:4], t=2.0))
    cache.write_prediction_chunk("sample", "sevennet-0", "static", chunk("sevennet-0", ids))
    out = cli("cache", "info", cache=tmp_path)
    assert out.returncode == 0, out.stderr
    assert max(len(line) for line in out.stdout.splitlines()) <= 80
    lines = out.stdout.splitlines()
    row = next(line for line in lines if "chgnet-0.3.0" in line).split()
    assert row[:6] == ["chgnet-0.3.0", "static", "12", "8", "4", "2*"]  # rows, pairs, failed, files
    assert any("materials" in line and "12" in line for line in lines)
    assert "cache compact merges them" in out.stdout.replace("\n", " ")

    out = cli("cache", "compact", cache=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "2 -> 1" in out.stdout and "12 -> 8" in out.stdout
    after = cli("cache", "info", cache=tmp_path).stdout
    row = next(line for line in after.splitlines() if "chgnet-0.3.0" in line).split()
    assert row[:6] == ["chgnet-0.3.0", "static", "8", "8", "4", "1"]
    assert "cache compact merges them" not in after.replace("\n", " ")
    bad = cli("cache", "info", "--data", "nosuch", cache=tmp_path)
    assert bad.returncode == 2 and "is not in the cache" in bad.stderr


def test_data_import_takes_several_paths_as_one_dataset(tmp_path):
    from support import FIXTURES

    out = cli("data", "import", str(FIXTURES / "mp20_biternary_test_head.csv.gz"), str(FIXTURES / "mpts52_test_head.csv"),
              "--name", "both", "--jobs", "1", cache=tmp_path)
    assert out.returncode == 0, out.stderr
    from mliap_tui.cache import Cache

    df = Cache(tmp_path).scan_materials("both").collect()
    assert df.height == 12 and df["source"].n_unique() == 2
