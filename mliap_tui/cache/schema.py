"""The one cache schema, with its version: every column, its dtype, its unit and meaning.

Energies are in eV/atom unless a column name says otherwise; forces in eV/Å; stress in GPa;
lengths in Å. Conventions are in the names too: ``mp2020`` = MP2020-corrected GGA/GGA+U,
``raw`` = uncorrected VASP energy, ``pred`` = a model's prediction, ``dft`` = the reference.
"""

from __future__ import annotations

import polars as pl

#: 2: prediction rows record the weights they were made with (``weights_fingerprint``,
#: ``package_version``, ``trust_override``). Rows written by version 1 read with these null: their
#: weights are unknown, so they are kept and shown apart, never counted as the current weights'.
#: 3: relax-mode rows record how the relaxation ran and ended (``relax_engine``,
#: ``relax_converged``, ``relax_fmax_ev_per_ang``). Rows written before read these as null.
SCHEMA_VERSION = 3

#: Column -> (dtype, description with unit). The single source of truth for the materials table.
MATERIALS_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "material_id": (pl.Utf8, "unique id, e.g. mp-149 or wbm-1-2"),
    "dataset": (pl.Utf8, "name of the dataset this row was imported into"),
    "source": (pl.Utf8, "file or service the row came from"),
    "formula": (pl.Utf8, "reduced formula"),
    "elements": (pl.List(pl.Utf8), "sorted element symbols"),
    "chemsys": (pl.Utf8, "chemical system, elements joined by '-' in alphabetical order"),
    "n_sites": (pl.Int32, "number of sites in the stored cell"),
    "lattice_ang": (pl.List(pl.Float64), "3x3 lattice matrix, row vectors, flattened (Å)"),
    "species": (pl.List(pl.Utf8), "element symbol of each site"),
    "frac_coords": (pl.List(pl.Float64), "fractional coordinates, n_sites x 3 flattened"),
    # DFT reference values. Conventions are in the names: mp2020 = MP2020-corrected GGA/GGA+U,
    # raw = uncorrected VASP energy.
    "e_form_per_atom_dft_mp2020": (pl.Float64, "DFT formation energy, MP2020-corrected (eV/atom)"),
    "e_above_hull_dft_mp2020": (pl.Float64, "DFT energy above the MP convex hull, MP2020 (eV/atom)"),
    "e_per_atom_dft_mp2020": (pl.Float64, "DFT total energy, MP2020-corrected (eV/atom)"),
    "e_per_atom_dft_raw": (pl.Float64, "DFT total energy, uncorrected (eV/atom)"),
    "e_per_atom_dft_origin": (
        pl.Utf8,
        "how the total energies were obtained: 'reported' or 'rebuilt' (e_form + MP elemental refs)",
    ),
    "mp2020_correction_per_atom": (
        pl.Float64,
        "MP2020 energy correction of this composition/structure (eV/atom); mp2020 = raw + this",
    ),
    "mp2020_run_type": (pl.Utf8, "GGA or GGA+U, as the Materials Project would have run it"),
    "forces_dft_ev_per_ang": (pl.List(pl.Float64), "DFT forces, n_sites x 3 flattened (eV/Å)"),
    # Symmetry (mliap_tui.symmetry), computed at import with `symprec_ang`.
    "symprec_ang": (pl.Float64, "spglib distance tolerance used for the symmetry columns (Å; angle tolerance 5°)"),
    "spacegroup_number": (pl.Int16, "international space-group number (1-230)"),
    "spacegroup_symbol": (pl.Utf8, "Hermann-Mauguin symbol"),
    "crystal_system": (pl.Utf8, "triclinic ... cubic"),
    "wyckoff": (pl.Utf8, "occupied orbits as 'mult+letter:element' joined by spaces, e.g. '2a:Ti 4f:O'"),
    "lattice_dof": (pl.Int16, "free lattice parameters of the crystal system"),
    "wyckoff_dof": (pl.Int16, "free coordinates summed over occupied Wyckoff orbits"),
    "total_dof": (pl.Int16, "lattice_dof + wyckoff_dof"),
    "polar_dof": (pl.Int16, "floating-origin directions of a polar group (subtract to remove them)"),
}

#: Column -> (dtype, description). One row per (material, model, weights, mode) evaluation.
PREDICTION_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "material_id": (pl.Utf8, "material this prediction is for"),
    "model": (pl.Utf8, "model id from the registry, e.g. chgnet-0.3.0 (or a plug-in's id)"),
    "weights_fingerprint": (
        pl.Utf8,
        "sha256 of the weights the row was made with (content of the checkpoint file(s)); null in "
        "rows written before schema 2 (weights unrecorded)",
    ),
    "package_version": (pl.Utf8, "version of the model family's package that made the row, e.g. chgnet 0.4.2"),
    "trust_override": (
        pl.Boolean,
        "true when the model failed (or could not take) the load-time canary check and ran anyway "
        "because of --trust-model",
    ),
    "mode": (pl.Utf8, "'static' (single point on the DFT structure) or 'relax'"),
    "status": (pl.Utf8, "'ok' or 'failed'"),
    "error": (pl.Utf8, "failure reason when status == 'failed'"),
    "n_sites": (pl.Int32, "atoms in the evaluated cell"),
    "e_per_atom_pred_native": (pl.Float64, "model energy in the model's own convention (eV/atom)"),
    "e_per_atom_pred_mp2020": (pl.Float64, "model energy on the MP2020-corrected convention (eV/atom)"),
    "forces_pred_ev_per_ang": (pl.List(pl.Float64), "predicted forces, n_sites x 3 flattened (eV/Å)"),
    "stress_pred_gpa": (pl.List(pl.Float64), "predicted stress, Voigt 6 (GPa)"),
    "relaxed_lattice_ang": (pl.List(pl.Float64), "relax mode: final lattice, flattened (Å)"),
    "relaxed_frac_coords": (pl.List(pl.Float64), "relax mode: final fractional coordinates"),
    "relaxed_spacegroup_number": (pl.Int16, "relax mode: space group of the relaxed cell"),
    "relaxed_total_dof": (pl.Int16, "relax mode: total DOF of the relaxed cell"),
    "relax_steps": (pl.Int32, "relax mode: optimiser steps taken"),
    "relax_engine": (
        pl.Utf8,
        "relax mode: 'batched' (in-flight batched FIRE) or 'ase' (ASE FIRE one structure at a time); "
        "null before schema 3",
    ),
    "relax_converged": (
        pl.Boolean,
        "relax mode: true when the max force (atoms and cell) fell below fmax; false when the step "
        "cap stopped it (the row is still ok); null before schema 3",
    ),
    "relax_fmax_ev_per_ang": (
        pl.Float64,
        "relax mode: ASE's convergence measure at the final geometry, the largest row of the "
        "Fréchet-filter forces, atoms and cell (eV/Å); null before schema 3",
    ),
    "device": (pl.Utf8, "cpu, cuda:0, ..."),
    "dtype": (pl.Utf8, "float32 or float64"),
    "wall_s": (pl.Float64, "seconds of model time attributed to this structure (batch time / batch size)"),
    "run_id": (pl.Utf8, "id of the run that produced the row"),
    "created_unix_s": (pl.Float64, "when the row was committed (Unix seconds)"),
}

#: Column -> (dtype, description). Derived per relaxed prediction row: how the model-relaxed cell
#: compares with the DFT one (``mliap_tui.analysis.relax_geometry``). Computed once per relaxed
#: row (StructureMatcher is too slow to repeat over a full study) and kept under
#: ``datasets/<dataset>/derived/relax_geometry/<model>/``.
RELAX_GEOMETRY_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "material_id": (pl.Utf8, "material of the relaxed prediction"),
    "model": (pl.Utf8, "model id of the relaxed prediction"),
    "weights_fingerprint": (pl.Utf8, "weights of the relaxed prediction (null: unrecorded)"),
    "pred_created_unix_s": (pl.Float64, "created_unix_s of the prediction row compared (a newer row is compared again)"),
    "method": (pl.Utf8, "matcher and symmetry settings the row was computed with"),
    "matched": (pl.Boolean, "StructureMatcher matched the relaxed cell to the DFT structure"),
    "rmsd_ang": (pl.Float64, "RMS displacement relaxed vs DFT after scaling both to their common volume (Å); null: no match"),
    "rmsd_norm": (pl.Float64, "the same as pymatgen reports it: divided by (volume per atom)^(1/3); null: no match"),
    "max_dist_ang": (pl.Float64, "largest displacement of a matched site (Å); null: no match"),
    "volume_change_pct": (pl.Float64, "relaxed cell volume / DFT cell volume - 1 (%)"),
    "ops_per_cell_dft": (pl.Int32, "space-group operations per cell of the DFT structure (spglib)"),
    "spacegroup_number_relaxed": (pl.Int16, "space group of the relaxed cell (spglib, same tolerances)"),
    "ops_per_cell_relaxed": (pl.Int32, "space-group operations per cell of the relaxed cell"),
    "symmetry_change": (pl.Utf8, "kept | lowered | raised | changed | unknown (core.vocab.SymmetryChange)"),
    "error": (pl.Utf8, "why a value is missing (unreadable cell, spglib failure)"),
}

MATERIALS_SCHEMA = pl.Schema({name: dtype for name, (dtype, _) in MATERIALS_COLUMNS.items()})
PREDICTIONS_SCHEMA = pl.Schema({name: dtype for name, (dtype, _) in PREDICTION_COLUMNS.items()})
RELAX_GEOMETRY_SCHEMA = pl.Schema({name: dtype for name, (dtype, _) in RELAX_GEOMETRY_COLUMNS.items()})
#: What makes two rows the same evaluation: the newest row per key wins. Rows made with other
#: weights (another fingerprint) under the same model id are another evaluation, kept beside it.
PREDICTION_KEY = ("material_id", "model", "weights_fingerprint", "mode")

#: What makes two relax-geometry rows the same comparison (the newest wins).
RELAX_GEOMETRY_KEY = ("material_id", "model", "weights_fingerprint", "pred_created_unix_s", "method")

__all__ = ["MATERIALS_COLUMNS", "MATERIALS_SCHEMA", "PREDICTIONS_SCHEMA", "PREDICTION_COLUMNS", "PREDICTION_KEY",
           "RELAX_GEOMETRY_COLUMNS", "RELAX_GEOMETRY_KEY", "RELAX_GEOMETRY_SCHEMA", "SCHEMA_VERSION"]
