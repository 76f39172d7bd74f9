"""Benchmark mliap_tui.symmetry.symmetry_columns on real Materials Project crystals.

Reads the CIFs of the shared MP CSVs (MP-20 biternary test + val, MPTS-52 test: ~22k crystals),
parses them with pymatgen's CifParser (in parallel; not timed), turns them into materials rows
and times ``symmetry_columns`` with one process and with all cores. Prints structures/s, the
extrapolated time for 150k structures, and how often the space group agrees with the one stored
in the MP-20 files.

    python benchmarks/bench_symmetry.py              # all ~22k rows
    python benchmarks/bench_symmetry.py --limit 2000
"""

from __future__ import annotations

import argparse
import csv
import gzip
import multiprocessing
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor

from _paths import SHARED_DATA_DIR

CSV_FILES = ("mp20_biternary_test.csv.gz", "mp20_biternary_val.csv.gz", "mpts52_test.csv.gz")


def read_csv_rows(limit: int | None) -> list[dict]:
    """material_id, cif and (MP-20 only) spacegroup.number of the shared MP CSVs."""
    csv.field_size_limit(sys.maxsize)
    rows: list[dict] = []
    for name in CSV_FILES:
        path = SHARED_DATA_DIR / "mp" / name
        if not path.is_file():
            raise SystemExit(f"missing {path}: the shared MP data is needed for this benchmark")
        with gzip.open(path, "rt", newline="") as fh:
            for rec in csv.DictReader(fh):
                sg = rec.get("spacegroup.number")
                rows.append({"material_id": rec["material_id"], "cif": rec["cif"], "mp_sg": int(sg) if sg else None})
                if limit is not None and len(rows) >= limit:
                    return rows
    return rows


def _parse_chunk(cifs: list[str]) -> list[dict | None]:
    from pymatgen.io.cif import CifParser

    from mliap_tui.data.structures import structure_columns

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cif in cifs:
            try:
                structure = CifParser.from_str(cif).parse_structures(primitive=False)[0]
                out.append(structure_columns(structure))
            except Exception:  # a CIF pymatgen cannot read is skipped and counted
                out.append(None)
    return out


def parse_rows(records: list[dict], jobs: int) -> list[dict | None]:
    cifs = [r["cif"] for r in records]
    chunks = [cifs[i : i + 500] for i in range(0, len(cifs), 500)]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        return [row for part in pool.map(_parse_chunk, chunks) for row in part]


def timed(rows: list[dict], jobs: int, symprec_ang: float) -> tuple[list[dict], float]:
    """symmetry_columns wall time from a cold start: no letter table known in this process."""
    from mliap_tui import symmetry

    symmetry._LETTER_TABLES.clear()
    t0 = time.perf_counter()
    cols = symmetry.symmetry_columns(rows, symprec_ang=symprec_ang, n_jobs=jobs)
    return cols, time.perf_counter() - t0


def letter_table_seconds(cols: list[dict]) -> tuple[float, int]:
    """Seconds to build the Wyckoff-letter tables of the space groups met (one process), and
    how many groups that is: a fixed cost per process and group, paid once however many rows."""
    from mliap_tui import symmetry

    groups = sorted({c["spacegroup_number"] for c in cols if "error" not in c})
    t0 = time.perf_counter()
    for sg in groups:
        symmetry._compute_letter_symmetry(symmetry._default_hall_number(sg))
    return time.perf_counter() - t0, len(groups)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="use only the first N crystals")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes for the parallel run")
    parser.add_argument("--symprec", type=float, default=0.1, help="spglib tolerance (Å)")
    parser.add_argument("--target", type=int, default=150_000, help="extrapolate to this many crystals")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    records = read_csv_rows(args.limit)
    parsed = parse_rows(records, args.jobs)
    keep = [i for i, row in enumerate(parsed) if row is not None]
    rows = [parsed[i] for i in keep]
    n = len(rows)
    print(f"parsed {n} of {len(records)} CIFs in {time.perf_counter() - t0:.1f} s (not timed below)")

    results = {}
    for jobs in (1, args.jobs) if args.jobs > 1 else (1,):
        results[jobs] = timed(rows, jobs, args.symprec)
    table_s, n_groups = letter_table_seconds(results[1][0])
    all_tables_s = table_s * 230 / max(n_groups, 1)  # every group, at this mean cost per group
    print(f"Wyckoff-letter tables of the {n_groups} groups met: {table_s:.1f} s in one process "
          f"(all 230 groups: ~{all_tables_s:.0f} s, once per run, shared by the workers)")
    for jobs, (_, seconds) in results.items():
        per_row_s = max(seconds - table_s / jobs, 1e-9) / n
        target_s = all_tables_s / jobs + args.target * per_row_s
        print(
            f"{jobs} process{'es' if jobs > 1 else ''}: {n} structures in {seconds:.1f} s "
            f"= {n / seconds:.0f} structures/s cold, {1 / per_row_s:.0f} structures/s once the tables "
            f"are built -> {args.target:,} structures in ~{target_s / 60:.1f} min"
        )
    cols = results[1][0]
    if args.jobs > 1:
        assert results[args.jobs][0] == cols, "parallel and serial results differ"
    errors = [c["error"] for c in cols if "error" in c]
    groups = {c["spacegroup_number"] for c in cols if "error" not in c}
    print(f"{len(errors)} rows could not be analysed; {len(groups)} distinct space groups")
    pairs = [(records[i]["mp_sg"], c.get("spacegroup_number")) for i, c in zip(keep, cols) if records[i]["mp_sg"]]
    if pairs:
        agree = sum(a == b for a, b in pairs) / len(pairs)
        print(f"space group equal to the MP-20 file's for {agree:.2%} of {len(pairs)} crystals")
    dofs = sorted(c["total_dof"] for c in cols if "error" not in c)
    if dofs:
        print(f"total DOF: median {dofs[len(dofs) // 2]}, max {dofs[-1]}")


if __name__ == "__main__":
    main()
