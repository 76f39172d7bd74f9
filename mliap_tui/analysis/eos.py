"""Energy curvature from a uniform strain scan: E(V) -> Birch-Murnaghan bulk modulus per model.

Softening shows in forces where DFT forces exist; where they do not (relaxed MP crystals), the
curvature of the energy around the minimum does: a softer PES gives a smaller bulk modulus.

* :func:`make_eos_dataset` writes a derived cached dataset of isotropically strained copies of a few
  crystals (volume V0 * s for s in ``VOLUME_SCALES``, fractional coordinates kept), ids
  ``<material_id>@v<s:.3f>``, plus ``eos_scan.parquet`` next to it (material_id, base_id,
  volume_scale, volume_ang3_per_atom). The engine then evaluates it like any dataset
  (``run_evaluation(cache, 'eos-scan', models)``: batched, resumable, cached).
* :func:`birch_murnaghan_fit` fits the 3rd-order Birch-Murnaghan E(V):
  E0 (eV/atom), V0 (Å^3/atom), B0 (GPa), B0' and the fit quality (RMS residual in meV/atom, R^2).
* :func:`eos_table` gives the fit per (crystal, model), :func:`bulk_modulus_matrix` one row per
  crystal with each model's B0 side by side.

No DFT energies of strained cells exist here: the comparison is between models (and with DFT
bulk moduli where the user knows them), on the energies each model predicts (native convention;
a constant offset does not change the curvature).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import polars as pl

from mliap_tui.cache import Cache, write_parquet_atomic
from mliap_tui.cache.weights import label_weight_variants
from mliap_tui.core.units import GPA_PER_EV_PER_ANG3, MEV_PER_EV

#: Volume ratios V/V0 of the scan (±6 %, i.e. about ±2 % linear strain).
VOLUME_SCALES = tuple(float(x) for x in np.round(np.linspace(0.94, 1.06, 9), 4))
#: Simple crystals of the shipped MP sample used by default.
DEFAULT_EOS_IDS = (
    "mp-22862",  # NaCl, rock salt
    "mp-1143",  # Al2O3, corundum
    "mp-390",  # TiO2, anatase
    "mp-23227",  # CuBr
    "mp-10026",  # ScTe
    "mp-11274",  # BePd
    "mp-1039124",  # MgCd
    "mp-1100166",  # YMg3
)
EOS_SCAN_FILE = "eos_scan.parquet"


def strained_structures(structure, volume_scales: Sequence[float] = VOLUME_SCALES):
    """[(volume_scale, Structure)] with the lattice scaled isotropically to V0 * scale."""
    out = []
    for s in volume_scales:
        st = structure.copy()
        st.scale_lattice(structure.volume * float(s))
        out.append((float(s), st))
    return out


def make_eos_dataset(
    cache: Cache,
    structures: Mapping[str, object],
    dataset: str = "eos-scan",
    volume_scales: Sequence[float] = VOLUME_SCALES,
):
    """Write the strained cells of ``structures`` ({material_id: pymatgen Structure}) as ``dataset``.

    Returns the ImportReport of the derived dataset. Existing predictions of the same ids stay
    valid (same cells), so re-running the engine only evaluates what is new.
    """
    from mliap_tui.cache import write_json_atomic
    from mliap_tui.data.importer import build_materials_table
    from mliap_tui.data.readers import RawRecord

    records, scan = [], []
    for base_id, structure in structures.items():
        for s, st in strained_structures(structure, volume_scales):
            mid = f"{base_id}@v{s:.3f}"
            records.append(RawRecord(material_id=mid, source=f"strain scan of {base_id}", structure=st))
            scan.append({"material_id": mid, "base_id": base_id, "volume_scale": s,
                         "volume_ang3_per_atom": st.volume / len(st)})
    df, report = build_materials_table(records, dataset, n_jobs=1)
    cache.write_materials(dataset, df)
    write_json_atomic(report.to_dict(), cache.report_path(dataset))
    write_parquet_atomic(pl.DataFrame(scan), cache.dataset_dir(dataset) / EOS_SCAN_FILE)
    return report


def structures_from_dataset(cache: Cache, dataset: str, material_ids: Iterable[str]) -> dict[str, object]:
    """{material_id: Structure} of the given ids from a cached dataset (missing ids are skipped)."""
    from mliap_tui.data.structures import row_to_structure

    ids = list(material_ids)
    rows = cache.scan_materials(dataset).filter(pl.col("material_id").is_in(ids)).collect()
    by_id = {r["material_id"]: row_to_structure(r) for r in rows.iter_rows(named=True)}
    return {m: by_id[m] for m in ids if m in by_id}


def structures_from_sample(material_ids: Iterable[str] = DEFAULT_EOS_IDS) -> dict[str, object]:
    """{material_id: Structure} from the shipped MP sample (read directly, no import needed)."""
    from mliap_tui.data.importer import sample_path
    from mliap_tui.data.readers import read_records

    ids = list(material_ids)
    found = {r.material_id: r.structure for r in read_records(sample_path(), "mp_csv") if r.ok and r.material_id in ids}
    return {m: found[m] for m in ids if m in found}


# --------------------------------------------------------------------------------------------
# Birch-Murnaghan
# --------------------------------------------------------------------------------------------


def birch_murnaghan_fit(volumes_ang3: Sequence[float], energies_ev: Sequence[float]) -> dict[str, float]:
    """Fit E(V) (per atom or per cell, consistently) with 3rd-order Birch-Murnaghan
    (``pymatgen.analysis.eos.BirchMurnaghan``).

    Returns e0_ev, v0_ang3, b0_gpa, b0_prime, rms_residual_mev (same per-atom/cell basis as the
    input), r2, n_points, and v0_inside_scan (whether the minimum lies inside the scanned range).
    NaN values with an ``error`` when fewer than 5 points or the fit fails.
    """
    import warnings

    from pymatgen.analysis.eos import BirchMurnaghan

    v = np.asarray(volumes_ang3, dtype=float)
    e = np.asarray(energies_ev, dtype=float)
    ok = np.isfinite(v) & np.isfinite(e)
    v, e = v[ok], e[ok]
    nan = float("nan")
    out = {"e0_ev": nan, "v0_ang3": nan, "b0_gpa": nan, "b0_prime": nan, "rms_residual_mev": nan,
           "r2": nan, "n_points": int(v.size), "v0_inside_scan": False, "error": None}
    if v.size < 5:
        out["error"] = f"{v.size} points, need >= 5"
        return out
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen warns when the minimum lies outside the scan
            eos = BirchMurnaghan(v, e)
            eos.fit()
    except Exception as exc:  # noqa: BLE001 - a failed fit is a result, not a crash
        out["error"] = f"fit failed ({type(exc).__name__}: {exc})"
        return out
    resid = e - np.asarray(eos.func(v), dtype=float)
    sst = float(np.sum((e - e.mean()) ** 2))
    out.update(
        e0_ev=float(eos.e0), v0_ang3=float(eos.v0), b0_gpa=float(eos.b0 * GPA_PER_EV_PER_ANG3),
        b0_prime=float(eos.b1), rms_residual_mev=float(np.sqrt(np.mean(resid**2)) * MEV_PER_EV),
        r2=float(1.0 - np.sum(resid**2) / sst) if sst > 0 else nan,
        v0_inside_scan=bool(v.min() <= eos.v0 <= v.max()),
    )
    return out


def load_eos_points(cache: Cache, dataset: str, models: Iterable[str] | None = None) -> pl.DataFrame:
    """base_id, model, volume_scale, volume_ang3_per_atom, e_per_atom_pred_native (eV/atom)."""
    path = cache.dataset_dir(dataset) / EOS_SCAN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{dataset!r} is not a strain-scan dataset (no {EOS_SCAN_FILE}); make it with make_eos_dataset")
    scan = pl.read_parquet(path)
    preds = (
        label_weight_variants(cache.scan_predictions(dataset, list(models) if models is not None else None, "static"))
        .filter(pl.col("status") == "ok")
        .select("material_id", "model", "e_per_atom_pred_native")
        .collect()
    )
    return scan.join(preds, on="material_id", how="inner").sort("base_id", "model", "volume_scale")


def is_eos_dataset(cache: Cache, dataset: str) -> bool:
    return (cache.dataset_dir(dataset) / EOS_SCAN_FILE).is_file()


def eos_table(cache: Cache, dataset: str, models: Iterable[str] | None = None) -> pl.DataFrame:
    """Birch-Murnaghan fit per (base_id, model): B0 (GPa), B0', V0 (Å^3/atom), RMS residual
    (meV/atom), R^2, points, whether V0 is inside the scan."""
    pts = load_eos_points(cache, dataset, models)
    rows = []
    for (base_id, model), grp in pts.group_by(["base_id", "model"], maintain_order=True):
        fit = birch_murnaghan_fit(grp["volume_ang3_per_atom"].to_numpy(), grp["e_per_atom_pred_native"].to_numpy())
        rows.append({
            "base_id": base_id, "model": model, "b0_gpa": fit["b0_gpa"], "b0_prime": fit["b0_prime"],
            "v0_ang3_per_atom": fit["v0_ang3"], "rms_residual_mev_per_atom": fit["rms_residual_mev"],
            "r2": fit["r2"], "n_points": fit["n_points"], "v0_inside_scan": fit["v0_inside_scan"],
            "error": fit["error"],
        })
    return pl.DataFrame(rows) if rows else pl.DataFrame()


def bulk_modulus_matrix(table: pl.DataFrame, formulas: Mapping[str, str] | None = None) -> pl.DataFrame:
    """One row per crystal, a ``B0 <model> (GPa)`` column per model (and the formula if given)."""
    if not len(table):
        return table
    wide = table.pivot(on="model", index="base_id", values="b0_gpa").sort("base_id")
    wide = wide.rename({c: f"B0 {c} (GPa)" for c in wide.columns if c != "base_id"})
    if formulas:
        wide = wide.with_columns(pl.col("base_id").replace_strict(dict(formulas), default="").alias("formula"))
    return wide
