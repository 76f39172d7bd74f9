"""How far a model's relaxation moved each crystal from its DFT structure, computed once per row.

For every ok relaxed prediction row: the RMS displacement to the DFT structure (pymatgen
``StructureMatcher``), the volume change, and what happened to the space group (kept / lowered /
raised / changed, by operations per cell: :func:`mliap_tui.symmetry.symmetry_change`).

Matching: ``StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5, primitive_cell=True, scale=True)``
(pymatgen's defaults, the ones matbench-discovery's geometry metrics use). ``scale=True`` brings
both cells to their common (geometric-mean) volume first, so the RMSD measures shape and atomic
positions, and the volume change is reported beside it. pymatgen returns the RMSD divided by
``(volume per atom)^(1/3)`` (``rmsd_norm``); ``rmsd_ang`` multiplies that back, in Å. When the
matcher finds no match within its tolerances (the relaxation moved the crystal too far, or into
another structure) the row says ``matched = False`` and has no RMSD: the study counts these rows
and leaves them out of the RMSD statistics, never as zero or as a guess.

Cost and caching: one comparison is ~5-50 ms (StructureMatcher dominates; spglib is ~1 ms), so
400 crystals take seconds but a full study (150k crystals x 9 models) takes CPU-hours. Rows are
computed only once per relaxed prediction row (keyed by its ``created_unix_s``, so a re-relaxed
row is compared again) and committed in chunks to the cache (``Cache.write_relax_geometry_chunk``):
an interrupted study resumes, and the next one reads them back in milliseconds. Large batches run
in a process pool.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import polars as pl

from mliap_tui.cache import Cache
from mliap_tui.cache.schema import RELAX_GEOMETRY_SCHEMA
from mliap_tui.core.vocab import DEFAULT_ANGLE_TOLERANCE_DEG, DEFAULT_SYMPREC_ANG

#: StructureMatcher settings (pymatgen's defaults); part of every row's ``method``.
MATCHER_KWARGS: dict[str, Any] = {"ltol": 0.2, "stol": 0.3, "angle_tol": 5.0, "primitive_cell": True, "scale": True}
#: Bump when the computation changes: rows of another method are computed again.
METHOD = "v1 matcher(ltol=0.2,stol=0.3,angle_tol=5,scale) spglib(angle_tol=5)"
#: Rows per committed chunk (and per pool task batch).
CHUNK_ROWS = 500
#: Below this many rows a process pool costs more than it saves.
MIN_ROWS_FOR_POOL = 200

_MATERIAL_COLS = ("material_id", "lattice_ang", "species", "frac_coords", "symprec_ang", "spacegroup_number")
_PRED_COLS = ("material_id", "model", "weights_fingerprint", "created_unix_s", "relaxed_lattice_ang",
              "relaxed_frac_coords")


def compare_cells(lattice_dft, frac_dft, lattice_relaxed, frac_relaxed, species: Sequence[str],
                  symprec_ang: float = DEFAULT_SYMPREC_ANG) -> dict[str, Any]:
    """The comparison columns (RELAX_GEOMETRY_COLUMNS less the key) of one DFT / relaxed pair.

    Lattices are 3x3 row vectors or 9 floats (Å); coordinates fractional (n x 3 or 3n floats).
    Never raises: what cannot be computed is null, with the reason in ``error``.
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Lattice, Structure

    from mliap_tui.symmetry import operations_per_cell, symmetry_change

    out: dict[str, Any] = {"method": METHOD, "matched": None, "rmsd_ang": None, "rmsd_norm": None,
                           "max_dist_ang": None, "volume_change_pct": None, "ops_per_cell_dft": None,
                           "spacegroup_number_relaxed": None, "ops_per_cell_relaxed": None, "error": None}
    errors = []
    try:
        lat_d = np.asarray(lattice_dft, dtype=float).reshape(3, 3)
        lat_r = np.asarray(lattice_relaxed, dtype=float).reshape(3, 3)
        f_d = np.asarray(frac_dft, dtype=float).reshape(-1, 3)
        f_r = np.asarray(frac_relaxed, dtype=float).reshape(-1, 3)
        species = [str(s) for s in species]
        if not (len(species) == len(f_d) == len(f_r)):
            raise ValueError(f"{len(species)} species, {len(f_d)} DFT sites, {len(f_r)} relaxed sites")
        if not (np.isfinite(lat_r).all() and np.isfinite(f_r).all()):
            raise ValueError("non-finite relaxed cell")
    except (TypeError, ValueError) as exc:
        out["error"] = f"unusable cell: {exc}"
        out["symmetry_change"] = symmetry_change(None, None, None, None)
        return out
    v_d, v_r = abs(float(np.linalg.det(lat_d))), abs(float(np.linalg.det(lat_r)))
    if v_d > 0:
        out["volume_change_pct"] = 100.0 * (v_r / v_d - 1.0)
    numbers = {}
    for key, lat, frac in (("dft", lat_d, f_d), ("relaxed", lat_r, f_r)):
        try:
            numbers[key] = operations_per_cell(lat, species, frac, symprec_ang, angle_tolerance_deg=DEFAULT_ANGLE_TOLERANCE_DEG)
        except Exception as exc:  # noqa: BLE001 - SymmetryError and spglib's own
            errors.append(f"spglib ({key}): {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    number_d, ops_d = numbers.get("dft", (None, None))
    number_r, ops_r = numbers.get("relaxed", (None, None))
    out.update(ops_per_cell_dft=ops_d, spacegroup_number_relaxed=number_r, ops_per_cell_relaxed=ops_r,
               symmetry_change=symmetry_change(number_d, ops_d, number_r, ops_r))
    try:
        s_d = Structure(Lattice(lat_d), species, f_d)
        s_r = Structure(Lattice(lat_r), species, f_r)
        result = StructureMatcher(**MATCHER_KWARGS).get_rms_dist(s_d, s_r)
    except Exception as exc:  # noqa: BLE001 - one odd cell never stops the study
        errors.append(f"StructureMatcher: {type(exc).__name__}: {exc}")
        result = None
    else:
        out["matched"] = result is not None
    if result is not None:
        rms_norm, max_norm = float(result[0]), float(result[1])
        # pymatgen divides by (V/n)^(1/3) of the common volume sqrt(V_dft * V_relaxed)
        length = (math.sqrt(v_d * v_r) / len(species)) ** (1 / 3)
        out.update(rmsd_norm=rms_norm, rmsd_ang=rms_norm * length, max_dist_ang=max_norm * length)
    out["error"] = "; ".join(errors) or None
    return out


def _compare_chunk(chunk: list[dict]) -> list[dict]:
    """Pool task: :func:`compare_cells` of joined rows (key columns kept)."""
    out = []
    for row in chunk:
        cols = compare_cells(row["lattice_ang"], row["frac_coords"], row["relaxed_lattice_ang"],
                             row["relaxed_frac_coords"], row["species"], row["symprec_ang"] or DEFAULT_SYMPREC_ANG)
        out.append({"material_id": row["material_id"], "model": row["model"],
                    "weights_fingerprint": row["weights_fingerprint"], "pred_created_unix_s": row["created_unix_s"],
                    **cols})
    return out


def pending_rows(cache: Cache, dataset: str, models: Iterable[str] | None = None) -> pl.DataFrame:
    """Ok relaxed prediction rows (joined with their DFT cell) that have no comparison yet."""
    models = list(models) if models is not None else None
    preds = (cache.scan_predictions(dataset, models, "relax")
             .filter((pl.col("status") == "ok") & pl.col("relaxed_lattice_ang").is_not_null())
             .select(_PRED_COLS))
    done = (cache.scan_relax_geometry(dataset, models).filter(pl.col("method") == METHOD)
            .select("material_id", "model", "weights_fingerprint", pl.col("pred_created_unix_s").alias("created_unix_s")))
    todo = preds.join(done, on=["material_id", "model", "weights_fingerprint", "created_unix_s"], how="anti", nulls_equal=True)
    mats = cache.scan_materials(dataset).select(_MATERIAL_COLS)
    return todo.join(mats, on="material_id", how="inner").collect()


def update_relax_geometry(cache: Cache, dataset: str, models: Iterable[str] | None = None, *,
                          n_jobs: int | None = None, on_progress: Callable[[int, int], None] | None = None,
                          should_stop: Callable[[], bool] | None = None) -> int:
    """Compare every relaxed row of ``dataset`` not compared yet; commit in chunks. Returns how
    many rows were computed (and committed). ``n_jobs``: processes (None: every usable core when
    the batch is big enough; 1: in this process); ``on_progress(done, total)`` after each chunk;
    ``should_stop()`` true ends the work after the chunk in hand (what is committed stays)."""
    from mliap_tui.core.host import usable_cores

    todo = pending_rows(cache, dataset, models)
    total = todo.height
    if not total:
        return 0
    rows = todo.to_dicts()
    jobs = usable_cores() if n_jobs is None else max(1, int(n_jobs))
    stop = should_stop or (lambda: False)
    done = 0

    def commit(part: list[dict]) -> None:
        nonlocal done
        frame = pl.DataFrame(part, schema=RELAX_GEOMETRY_SCHEMA)
        for (model,), group in frame.group_by("model", maintain_order=True):
            cache.write_relax_geometry_chunk(dataset, str(model), group)
        done += len(part)
        if on_progress is not None:
            on_progress(done, total)

    if jobs == 1 or total < MIN_ROWS_FOR_POOL:
        step = min(CHUNK_ROWS, 50) if should_stop is not None else CHUNK_ROWS  # stop promptly when asked
        for i in range(0, total, step):
            if stop():
                break
            commit(_compare_chunk(rows[i : i + step]))
        return done
    # spawn, not fork: the caller may hold threads (polars, the app) that fork would copy locked
    ctx = multiprocessing.get_context("spawn")
    small = [rows[i : i + 50] for i in range(0, total, 50)]  # even load across workers
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(small), os.cpu_count() or 1), mp_context=ctx)
    try:
        futures = [pool.submit(_compare_chunk, chunk) for chunk in small]
        pending: list[dict] = []
        for future in futures:
            if stop():
                break
            pending += future.result()
            if len(pending) >= CHUNK_ROWS:
                commit(pending)
                pending = []
        if pending:
            commit(pending)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return done


def relax_geometry(cache: Cache, dataset: str, models: Iterable[str] | None = None, *, compute: bool = True,
                   n_jobs: int | None = None, on_progress: Callable[[int, int], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> pl.DataFrame:
    """The comparison of every ok relaxed row of ``dataset`` with its DFT structure, keyed like the
    prediction row it was made from (``material_id``, ``model``, ``weights_fingerprint``,
    ``pred_created_unix_s``); computes the missing ones first unless ``compute=False``."""
    models = list(models) if models is not None else None
    if compute:
        update_relax_geometry(cache, dataset, models, n_jobs=n_jobs, on_progress=on_progress, should_stop=should_stop)
    return cache.scan_relax_geometry(dataset, models).filter(pl.col("method") == METHOD).collect()


__all__ = ["CHUNK_ROWS", "MATCHER_KWARGS", "METHOD", "compare_cells", "pending_rows", "relax_geometry",
           "update_relax_geometry"]
