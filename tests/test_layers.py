"""The data and compute layers never import textual (Harlequin's rule), checked two ways."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE_MODULES = [
    "mliap_tui.cache",
    "mliap_tui.data.structures",
    "mliap_tui.data.importer",
    "mliap_tui.symmetry",
    "mliap_tui.thermo",
    "mliap_tui.models.registry",
    "mliap_tui.engine.runner",
    "mliap_tui.engine.worker",
    "mliap_tui.analysis.errors",
    "mliap_tui.analysis.aggregate",
    "mliap_tui.analysis.filters",
    "mliap_tui.analysis.export",
]


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_does_not_load_textual(module):
    code = f"import sys, {module}; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False", f"{module} pulled in textual"


def test_import_linter_contract_holds():
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter not installed (pip install -e '.[test]')")
    out = subprocess.run([str(lint)], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "KEPT" in out.stdout
