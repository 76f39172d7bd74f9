"""Build mliap_tui/models/canary_crystals.json: the load-time sanity-check crystals (output committed).

Twelve real Materials Project crystals from the shipped sample, chosen across chemistries and the
seven crystal systems, all small (<= 12 sites) and all computed by MP without +U (``GGA``), so
the same set is fair to models trained on PBE without +U (MatPES). Their structures and DFT
energies are taken through the import pipeline, exactly as ``mliap-tui data import sample``
stores them (MP2020-corrected total energies rebuilt from the formation energies and MP's
elemental references; the MP2020 correction per atom beside them).

    python scripts/make_canary.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import polars as pl

from mliap_tui.cache import Cache
from mliap_tui.data.importer import import_dataset

#: material_id -> chemistry label (what the crystal stands for in the set)
CANARY = {
    "mp-22862": "halide (rock salt)",
    "mp-1143": "oxide (corundum)",
    "mp-390": "oxide (anatase)",
    "mp-1080575": "oxide (perovskite)",
    "mp-560588": "sulfide (wurtzite)",
    "mp-7801": "nitride",
    "mp-11840": "intermetallic",
    "mp-10755": "intermetallic (half-Heusler)",
    "mp-30661": "intermetallic (Heusler)",
    "mp-917": "carbide",
    "mp-569436": "halide (molecular)",
    "mp-20463": "fluoride",
}
OUT = Path(__file__).resolve().parents[1] / "mliap_tui" / "models" / "canary_crystals.json"
KEEP = [
    "material_id", "formula", "crystal_system", "spacegroup_number", "spacegroup_symbol", "n_sites",
    "lattice_ang", "species", "frac_coords", "e_per_atom_dft_mp2020", "mp2020_correction_per_atom",
    "e_form_per_atom_dft_mp2020", "e_above_hull_dft_mp2020", "mp2020_run_type", "e_per_atom_dft_origin",
]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cache = Cache(Path(tmp))
        import_dataset("sample", cache=cache)
        df = cache.scan_materials("sample").filter(pl.col("material_id").is_in(list(CANARY))).collect()
    missing = set(CANARY) - set(df["material_id"].to_list())
    if missing:
        raise SystemExit(f"not in the sample: {sorted(missing)}")
    rows = {r["material_id"]: r for r in df.select(KEEP).to_dicts()}
    crystals = []
    for mid, label in CANARY.items():
        row = rows[mid]
        if row["mp2020_run_type"] != "GGA":
            raise SystemExit(f"{mid} is {row['mp2020_run_type']}: the canary keeps GGA (no +U) crystals only")
        crystals.append({**row, "chemistry": label})
    doc = {
        "description": "Load-time sanity check of mliap-tui (mliap_tui.models.canary): real MP crystals with "
        "their DFT energies, eV/atom. Made by scripts/make_canary.py from sample_data/mp_sample_materials.csv.gz.",
        "source": "Materials Project via the MP-20 / MPTS-52 splits (CC-BY-4.0); energies as the sample import "
        "stores them: e_per_atom_dft_mp2020 rebuilt from the formation energy and MP's 2023-02-07 elemental "
        "references, mp2020_correction_per_atom from pymatgen's MaterialsProject2020Compatibility",
        "units": {"energies": "eV/atom", "lengths": "Angstrom"},
        "crystals": crystals,
    }
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{len(crystals)} crystals -> {OUT}")
    for c in crystals:
        print(f"  {c['material_id']:11} {c['formula']:8} {c['crystal_system']:12} {c['n_sites']:>2} sites  "
              f"E_mp2020 {c['e_per_atom_dft_mp2020']:8.4f} eV/atom  {c['chemistry']}")


if __name__ == "__main__":
    main()
