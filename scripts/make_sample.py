"""Build sample_data/ from the real reference data in ../shared/data (run once; output is committed).

Picks a stratified subset of Materials Project crystals (MP-20 biternary test/val and MPTS-52)
so the sample covers all seven crystal systems, many space groups and total DOF from 1 to 20+,
keeping cells small enough (<= 40 sites) for a CPU run in a few minutes.

    python scripts/make_sample.py [--n 400] [--seed 0]
"""

from __future__ import annotations

import argparse
import gzip
import random
import shutil
import warnings
from collections import Counter, defaultdict

import polars as pl
from mliap_tui.paths import ELEMENTAL_REFS, SAMPLE_MATERIALS, SHARED_DATA_DIR
from pymatgen.io.cif import CifParser

from mliap_tui.symmetry import analyze_structure

SOURCES = {
    "mp20_biternary_test": SHARED_DATA_DIR / "mp" / "mp20_biternary_test.csv.gz",
    "mp20_biternary_val": SHARED_DATA_DIR / "mp" / "mp20_biternary_val.csv.gz",
    "mpts52_test": SHARED_DATA_DIR / "mp" / "mpts52_test.csv.gz",
}
MUST_HAVE = ["mp-560588", "mp-22862", "mp-390", "mp-1143"]  # wurtzite ZnS, rock salt NaCl, anatase, corundum
MAX_SITES = 40


def load_candidates() -> pl.DataFrame:
    frames = []
    for name, path in SOURCES.items():
        df = pl.read_csv(path)
        df = df.rename({"energy_above_hull": "e_above_hull"}) if "energy_above_hull" in df.columns else df
        frames.append(
            df.select(
                "material_id",
                pl.col("formation_energy_per_atom").cast(pl.Float64),
                pl.col("e_above_hull").cast(pl.Float64),
                "cif",
                pl.lit(name).alias("source"),
            )
        )
    return pl.concat(frames).unique("material_id", keep="first")


def analyse(rows: list[dict]) -> list[dict]:
    out = []
    for row in rows:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                structure = CifParser.from_str(row["cif"]).parse_structures(primitive=False)[0]
            except Exception:
                continue
        if len(structure) > MAX_SITES or not structure.is_ordered:
            continue
        info = analyze_structure(structure)
        out.append({**row, "formula": structure.composition.reduced_formula, "n_sites": len(structure),
                    "sg": info.spacegroup_number, "cs": info.crystal_system, "dof": info.total_dof,
                    "wyckoff": info.wyckoff_string()})
    return out


def select(cands: list[dict], n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rng.shuffle(cands)
    chosen: dict[str, dict] = {}

    def take(row: dict) -> None:
        chosen.setdefault(row["material_id"], row)

    by_id = {r["material_id"]: r for r in cands}
    for mid in MUST_HAVE:
        if mid in by_id:
            take(by_id[mid])
    # one rutile-type (P4_2/mnm, 2a + 4f) crystal for the PES-slice examples
    for r in cands:
        if r["sg"] == 136 and r["wyckoff"].count(":") == 2 and "2a" in r["wyckoff"] and "4f" in r["wyckoff"]:
            take(r)
            break
    groups: dict[tuple[str, object], list[dict]] = defaultdict(list)
    for r in cands:
        groups[("sg", r["sg"])].append(r)
        groups[("dof", min(r["dof"], 30))].append(r)
        groups[("cs", r["cs"])].append(r)
    # every crystal system (3 each), every DOF value up to 30 (2 each), as many space groups as fit
    for key, rows in sorted(groups.items(), key=lambda kv: str(kv[0])):
        want = {"cs": 3, "dof": 2, "sg": 1}[key[0]]
        for r in rows[:want]:
            take(r)
    for r in cands:
        if len(chosen) >= n:
            break
        take(r)
    return list(chosen.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pool", type=int, default=6000, help="candidates to analyse (random subset)")
    args = ap.parse_args()

    df = load_candidates()
    rng = random.Random(args.seed)
    ids = df["material_id"].to_list()
    pool = set(rng.sample(ids, min(args.pool, len(ids)))) | set(MUST_HAVE)
    rows = df.filter(pl.col("material_id").is_in(list(pool))).to_dicts()
    cands = analyse(rows)
    picked = select(cands, args.n, args.seed)
    out = pl.DataFrame(picked).select(
        "material_id", "formation_energy_per_atom", "e_above_hull", "formula", "source", "cif"
    ).sort("material_id")
    SAMPLE_MATERIALS.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(SAMPLE_MATERIALS, "wb", compresslevel=9) as fh:
        out.write_csv(fh)
    shutil.copyfile(SHARED_DATA_DIR / "mp" / ELEMENTAL_REFS.name, ELEMENTAL_REFS)
    cs = Counter(r["cs"] for r in picked)
    sgs = {r["sg"] for r in picked}
    dofs = Counter(r["dof"] for r in picked)
    print(f"{len(picked)} crystals, {len(sgs)} space groups, crystal systems {dict(cs)}")
    print(f"total DOF range {min(dofs)}..{max(dofs)}; histogram {dict(sorted(dofs.items()))}")


if __name__ == "__main__":
    main()
