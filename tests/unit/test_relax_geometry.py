"""Relaxed vs DFT cell: operations per cell, kept/lowered/raised, StructureMatcher RMSD in Å
(mliap_tui.symmetry, mliap_tui.analysis.relax_geometry), on real rutile with known answers."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from mliap_tui.analysis.aggregate import with_group
from mliap_tui.analysis.relax_geometry import compare_cells
from mliap_tui.core.vocab import SYMMETRY_CHANGES, SymmetryChange
from mliap_tui.symmetry import operations_per_cell, symmetry_change

A, C, U = 4.594, 2.959, 0.3048  # rutile TiO2 (P4_2/mnm, 136): a, c (Å) and the O x parameter
SPECIES = ["Ti", "Ti", "O", "O", "O", "O"]
LATTICE = np.diag([A, A, C])
FRAC = np.array([[0, 0, 0], [0.5, 0.5, 0.5], [U, U, 0], [1 - U, 1 - U, 0],
                 [0.5 + U, 0.5 - U, 0.5], [0.5 - U, 0.5 + U, 0.5]])


def test_operations_per_cell_counts_the_space_group_modulo_the_cell():
    assert operations_per_cell(LATTICE, SPECIES, FRAC) == (136, 16)  # 4/mmm: 16 operations
    # a 2x1x3 supercell: 6 times the cell, 6 times the operations (spglib's own list of the
    # supercell's rotations would miss the ones not integral in its basis)
    sc = np.vstack([(FRAC + [i, 0, k]) / [2, 1, 3] for i in range(2) for k in range(3)])
    assert operations_per_cell(LATTICE * [2, 1, 3], SPECIES * 6, sc) == (136, 96)
    # fcc Cu in its 4-atom conventional cell: m-3m (48) x 4 lattice points
    fcc = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    assert operations_per_cell(np.eye(3) * 3.61, ["Cu"] * 4, fcc) == (225, 192)
    # one Cu replaced by Au: Cu3Au (L1_2, Pm-3m): the translations are lost, 48 remain
    assert operations_per_cell(np.eye(3) * 3.75, ["Au", "Cu", "Cu", "Cu"], fcc) == (221, 48)


@pytest.mark.parametrize("before, after, expected", [
    ((136, 16), (136, 16), "kept"),
    ((136, 16), (58, 8), "lowered"),
    ((58, 8), (136, 16), "raised"),
    ((221, 48), (225, 48), "changed"),
    ((136, 16), (None, None), "unknown"),
])
def test_symmetry_change(before, after, expected):
    assert symmetry_change(before[0], before[1], after[0], after[1]) == expected
    assert expected in SYMMETRY_CHANGES and SymmetryChange(expected).label == expected


def test_rmsd_of_one_displaced_atom_is_the_known_value_in_angstrom():
    d = 0.05  # Å along x: within symprec 0.1 Å, so the space group is kept
    moved = FRAC.copy()
    moved[2, 0] += d / A
    got = compare_cells(LATTICE, FRAC, LATTICE, moved, SPECIES)
    # the matcher removes the mean translation: rms = d sqrt(N - 1) / N for one of N atoms moved
    assert got["matched"] is True
    assert got["rmsd_ang"] == pytest.approx(d * np.sqrt(5) / 6, rel=1e-6)
    assert got["max_dist_ang"] == pytest.approx(d * 5 / 6, rel=1e-6)
    assert got["volume_change_pct"] == pytest.approx(0.0)
    assert got["symmetry_change"] == "kept" and got["spacegroup_number_relaxed"] == 136


def test_a_scaled_cell_has_zero_rmsd_and_reports_the_volume_change():
    got = compare_cells(LATTICE, FRAC, LATTICE * 1.01, FRAC, SPECIES)
    assert got["matched"] is True and got["rmsd_ang"] == pytest.approx(0.0, abs=1e-9)
    assert got["volume_change_pct"] == pytest.approx(100 * (1.01**3 - 1))


def test_a_broken_crystal_is_no_match_and_lowered():
    broken = FRAC.copy()
    broken[2] = [0.5, 0.0, 0.25]  # an O atom moved far off its site
    got = compare_cells(LATTICE, FRAC, LATTICE, broken, SPECIES)
    assert got["matched"] is False and got["rmsd_ang"] is None  # no RMSD is made up
    assert got["symmetry_change"] == "lowered" and got["ops_per_cell_relaxed"] < got["ops_per_cell_dft"]


def test_an_unusable_relaxed_cell_is_reported_not_raised():
    got = compare_cells(LATTICE, FRAC, np.full(9, np.nan), FRAC, SPECIES)
    assert got["error"].startswith("unusable cell") and got["symmetry_change"] == "unknown"
    assert got["matched"] is None


def test_near_hull_grouping_splits_by_dft_ehull():
    table = pl.DataFrame({"e_above_hull_dft_mp2020": [0.0, 0.049, 0.05, 0.2, None]})
    out = with_group(table, "near_hull")
    assert out["group"].to_list() == ["near hull", "near hull", "above", "above"]  # no DFT Ehull: no group
    with pytest.raises(ValueError, match="unknown grouping"):
        with_group(table, "colour")
