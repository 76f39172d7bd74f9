"""A real cache for the TUI and filter tests, built once and reused.

40 small MP-20 crystals (CIFs parsed with pymatgen) with
* structure columns from ``mliap_tui.data.structures.structure_columns``,
* symmetry columns from ``mliap_tui.symmetry.analyze_structure``,
* DFT formation energy and Ehull from the CSV, total energy rebuilt with
  ``mliap_tui.thermo.rebuild_total_energies`` (MP2020, origin 'rebuilt'), MP2020 correction
  from ``mliap_tui.thermo.mp2020_correction_per_atom``,
and REAL predictions: CHGNet 0.3.0 on all of them, CHGNet 0.2.0 on the first 30 (so coverage is
partial), each row with the fingerprint of the bundled weights that made it. One extra material is a real crystal with its cell scaled to 100x the volume: both
CHGNet versions reject it (isolated atoms) and the genuine error message is stored as a failed
row, so failure handling is exercised with real failures. Its DFT columns are null (it is not a
Materials Project entry).

The crystals are shipped in ``tests/fixtures/mp20_tui_40.csv.gz`` (the 40 MP-20 test rows that
``tests/fixtures/make_fixtures.py`` picks), so the app tests need nothing beside the repository.
The cache lives in ``$TMPDIR/mliap-tui-test-cache-v<N>-<uid>`` and is rebuilt only when missing
(a file lock keeps parallel test runs from building it twice). ``conftest.py`` serves it as the
session fixture ``tui_cache``.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import polars as pl
from support import FIXTURES, build_once

from mliap_tui.cache import Cache

FIXTURE_VERSION = 4  # 4: rows record the weights they were made with (cache schema 2)
DATASET = "t"
CSV = FIXTURES / "mp20_tui_40.csv.gz"
N_MATERIALS = 40
MAX_SITES = 10
PER_SYSTEM = 8
N_CHGNET_020 = 30


def cache_root() -> Path:
    return Path(tempfile.gettempdir()) / f"mliap-tui-test-cache-v{FIXTURE_VERSION}-{os.getuid()}"


def _pick_structures():
    from pymatgen.io.cif import CifParser

    from mliap_tui.symmetry import analyze_structure

    df = pl.read_csv(CSV).sort("material_id")
    picked, per_system = [], {}
    for row in df.iter_rows(named=True):
        structure = CifParser.from_str(row["cif"]).parse_structures(primitive=False)[0]
        if len(structure) > MAX_SITES:
            continue
        sym = analyze_structure(structure)
        if per_system.get(sym.crystal_system, 0) >= PER_SYSTEM:
            continue
        per_system[sym.crystal_system] = per_system.get(sym.crystal_system, 0) + 1
        picked.append((row, structure, sym))
        if len(picked) == N_MATERIALS:
            break
    return picked


def build_cache(root: Path) -> Cache:
    import torch
    from chgnet.model import CHGNet

    from mliap_tui.data.structures import structure_columns
    from mliap_tui.models.identity import resolve_identity
    from mliap_tui.models.registry import get_spec
    from mliap_tui.symmetry import analyze_structure
    from mliap_tui.thermo import (
        infer_mp_run_type,
        mp2020_correction_per_atom,
        rebuild_total_energies,
    )

    torch.set_num_threads(1)  # shared machine
    cache = Cache(root)
    picked = _pick_structures()
    rows = []
    for row, structure, sym in picked:
        e_form = float(row["formation_energy_per_atom"])
        e_mp2020 = rebuild_total_energies(e_form, structure.composition)
        corr = mp2020_correction_per_atom(structure)
        rows.append(
            {
                "material_id": row["material_id"],
                "dataset": DATASET,
                "source": CSV.name,
                **structure_columns(structure),
                "e_form_per_atom_dft_mp2020": e_form,
                "e_above_hull_dft_mp2020": float(row["e_above_hull"]),
                "e_per_atom_dft_mp2020": e_mp2020,
                "e_per_atom_dft_raw": e_mp2020 - corr,
                "e_per_atom_dft_origin": "rebuilt",
                "mp2020_correction_per_atom": corr,
                "mp2020_run_type": infer_mp_run_type(structure)[0],
                **sym.columns(),
            }
        )
    # one real crystal in a 100x-volume cell: CHGNet refuses it (isolated atoms)
    base_row, base_structure, _ = picked[0]
    expanded = base_structure.copy()
    expanded.scale_lattice(expanded.volume * 100)
    expanded_id = f"{base_row['material_id']}-expanded"
    rows.append(
        {
            "material_id": expanded_id,
            "dataset": DATASET,
            "source": f"test fixture: {base_row['material_id']} scaled to 100x volume",
            **structure_columns(expanded),
            **analyze_structure(expanded).columns(),
        }
    )
    cache.write_materials(DATASET, pl.DataFrame(rows, infer_schema_length=None))

    structures = [(r["material_id"], s) for r, s, _ in picked] + [(expanded_id, expanded)]
    for model_id, weights, subset in (("chgnet-0.3.0", "0.3.0", structures), ("chgnet-0.2.0", "0.2.0", structures[:N_CHGNET_020] + structures[-1:])):
        model = CHGNet.load(model_name=weights, use_device="cpu", verbose=False)
        identity = resolve_identity(get_spec(model_id))  # the bundled weights CHGNet.load just read
        preds = []
        for start in range(0, len(subset), 16):
            batch = subset[start : start + 16]
            t0 = time.perf_counter()
            try:
                outs = model.predict_structure([s for _, s in batch], batch_size=16)
                results = [(float(o["e"]), None) for o in outs]
            except Exception:  # retry one by one: keep each structure's own error
                results = []
                for _, s in batch:
                    try:
                        results.append((float(model.predict_structure(s)["e"]), None))
                    except Exception as exc:
                        results.append((None, f"{type(exc).__name__}: {exc}"))
            wall = (time.perf_counter() - t0) / len(batch)
            for (mid, s), (e, err) in zip(batch, results):
                preds.append(
                    {
                        "material_id": mid, "model": model_id, "mode": "static",
                        "status": "ok" if err is None else "failed", "error": err, "n_sites": len(s),
                        "e_per_atom_pred_native": e, "e_per_atom_pred_mp2020": e,  # CHGNet: MP2020 convention
                        "device": "cpu", "dtype": "float32", "wall_s": wall,
                        "weights_fingerprint": identity.fingerprint, "package_version": identity.package_version,
                        "run_id": f"test-fixture-v{FIXTURE_VERSION}", "created_unix_s": time.time(),
                    }
                )
        # two chunks, as an interrupted-and-resumed run would leave them
        half = len(preds) // 2
        cache.write_prediction_chunk(DATASET, model_id, "static", pl.DataFrame(preds[:half]))
        cache.write_prediction_chunk(DATASET, model_id, "static", pl.DataFrame(preds[half:]))
    return cache


async def settle(pilot) -> None:
    """In a pilot test: let the app's workers finish and their messages be handled."""
    for _ in range(4):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def get_cache() -> Cache:
    return Cache(build_once(cache_root(), build_cache))


if __name__ == "__main__":
    print(get_cache().root)
