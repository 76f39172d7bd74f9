"""The layer order and "no textual/rich below the app" (Harlequin's rule), checked two ways:
import-linter's contracts in pyproject.toml, and a fresh interpreter importing each module."""

import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO_DIR as REPO

CORE_MODULES = [
    "mliap_tui.core.units",
    "mliap_tui.core.vocab",
    "mliap_tui.core.geometry",
    "mliap_tui.core.resources",
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
    "mliap_tui.analysis.summary",
    "mliap_tui.analysis.force_audit",
    "mliap_tui.analysis.pes.slices",
    "mliap_tui.engine.devices",
    "mliap_tui.report.figures",
    "mliap_tui.report.figure_set",
    "mliap_tui.report.document",
]


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_does_not_load_textual_or_rich(module):
    code = f"import sys, {module}; print('textual' in sys.modules, 'rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False False", f"{module} pulled in textual or rich: {out.stdout}"


def test_import_linter_contract_holds():
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter not installed (pip install -e '.[test]')")
    out = subprocess.run([str(lint)], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Layers, top to bottom" in out.stdout and "0 broken" in out.stdout
