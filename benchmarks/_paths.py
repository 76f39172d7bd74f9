"""Where the benchmarks find the shared reference data (``../shared/data`` beside the checkout,
or ``$MLIAP_TUI_SHARED_DATA``). Benchmarks need more real data than the repository ships."""

from __future__ import annotations

import os
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[1]
SHARED_DATA_DIR = Path(os.environ.get("MLIAP_TUI_SHARED_DATA") or REPO_DIR.parent / "shared" / "data")
