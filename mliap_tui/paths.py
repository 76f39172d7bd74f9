"""Where the shipped files live."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
SAMPLE_DIR = REPO_DIR / "sample_data"
SAMPLE_MATERIALS = SAMPLE_DIR / "mp_sample_materials.csv.gz"
ELEMENTAL_REFS = SAMPLE_DIR / "mp_elemental_reference_entries_2023-02-07.json.gz"
SHARED_DATA_DIR = REPO_DIR.parent / "shared" / "data"
