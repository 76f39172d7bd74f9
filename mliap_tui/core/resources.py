"""Files shipped inside the package, found through ``importlib.resources``.

The shipped sample lives in the repository's top-level ``sample_data/`` folder; the package
reaches it as ``mliap_tui/sample_data`` (a link in the source tree, real files in the wheel), so
an editable install, a plain ``pip install .`` and a wheel all read the same files and no code
depends on where a checkout sits.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SAMPLE_MATERIALS_FILE = "mp_sample_materials.csv.gz"
ELEMENTAL_REFS_FILE = "mp_elemental_reference_entries_2023-02-07.json.gz"


class ResourceMissing(FileNotFoundError):
    """A file that should ship with the package is not there (a broken or partial install)."""


#: The shipped force sample: dataset name -> path under sample_data/ (real DFT forces).
FORCE_SAMPLE = {
    "mptrj-sample": ("forces", "mptrj_5_frames.extxyz"),
    "si-vacancy-sample": ("forces", "Vacancy-RE_sample"),
}


def package_file(*parts: str, folder: bool = False) -> Path:
    """Path of a file (or, with ``folder``, a folder) shipped in the ``mliap_tui`` package,
    e.g. ``package_file("sample_data", name)``."""
    ref = resources.files("mliap_tui").joinpath(*parts)
    path = Path(str(ref))
    if not (path.is_dir() if folder else path.is_file()):
        raise ResourceMissing(
            f"{'/'.join(parts)} is missing from the installed mliap_tui package ({path}): reinstall it "
            "(pip install --force-reinstall mliap-tui, or pip install -e . in a clone)"
        )
    return path


def sample_materials_path() -> Path:
    """The shipped 400-crystal Materials Project sample (CSV, gzip)."""
    return package_file("sample_data", SAMPLE_MATERIALS_FILE)


def force_sample_paths() -> dict[str, Path]:
    """The shipped force sample: 5 MPtrj frames (DFT energies and forces) and 8 Si
    vacancy-migration cells (DFT forces, distances to the migrating atom), by dataset name."""
    return {name: package_file("sample_data", *parts, folder=not parts[-1].endswith(".extxyz"))
            for name, parts in FORCE_SAMPLE.items()}


def elemental_refs_path() -> Path:
    """MP elemental reference entries (2023-02-07, GGA/GGA+U, MP2020), used for formation energies."""
    return package_file("sample_data", ELEMENTAL_REFS_FILE)


__all__ = ["ELEMENTAL_REFS_FILE", "FORCE_SAMPLE", "SAMPLE_MATERIALS_FILE", "ResourceMissing", "elemental_refs_path",
           "force_sample_paths", "package_file", "sample_materials_path"]
