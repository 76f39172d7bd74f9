"""The command line as a user runs it: `python -m mliap_tui ...` in a subprocess, exit codes and
what is printed (parsing, one registration path per command, the rich tables, user errors)."""

from __future__ import annotations

import subprocess
import sys

from mliap_tui.cli import COMMAND_MODULES, build_parser, main
from support import REPO_DIR


def cli(*args: str, cache=None, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mliap_tui", *([f"--cache={cache}"] if cache else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO_DIR,
                          env={"COLUMNS": "80", "PATH": "/usr/bin:/bin", "HOME": str(REPO_DIR)})


def test_every_command_has_one_handler_and_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # argparse has no public accessor
    names = set(sub.choices)
    assert {"data", "models", "run", "summary", "export", "pes", "softening", "rare-events"} <= names
    assert len(COMMAND_MODULES) == 7
    for argv in (["models"], ["run"], ["summary"], ["export"], ["pes", "mp-1"], ["softening", "--data", "x"],
                 ["rare-events", "--data", "x"], ["data", "import", "sample"], ["data", "show"], []):
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
