"""Errors per element: every crystal counts for each element it holds, once or by fraction."""

from __future__ import annotations

import polars as pl
import pytest

from mliap_tui.analysis.elements import element_errors


def table():
    # NaCl +10 meV/atom, Na2O -30, MgO +20; one failed row that must not count
    return pl.DataFrame({
        "material_id": ["a", "b", "c", "d"],
        "model": ["m"] * 4,
        "status": ["ok", "ok", "ok", "failed"],
        "elements": [["Cl", "Na"], ["Na", "O"], ["Mg", "O"], ["Na"]],
        "species": [["Na", "Cl"], ["Na", "Na", "O"], ["Mg", "O"], ["Na"]],
        "d_e_above_hull": [0.010, -0.030, 0.020, None],
    })


def test_crystal_weighting():
    out = {r["element"]: r for r in element_errors(table(), "e_above_hull").iter_rows(named=True)}
    assert out["Na"]["n"] == 2
    assert out["Na"]["mae"] == pytest.approx(0.020) and out["Na"]["mean_signed"] == pytest.approx(-0.010)
    assert out["O"]["mae"] == pytest.approx(0.025) and out["O"]["frac_under"] == pytest.approx(0.5)
    assert out["Cl"]["n"] == 1 and out["Cl"]["z"] == 17
    assert set(out) == {"Na", "Cl", "O", "Mg"}


def test_fraction_weighting():
    out = {r["element"]: r for r in element_errors(table(), "e_above_hull", "fraction").iter_rows(named=True)}
    w_nacl, w_na2o = 0.5, 2 / 3
    assert out["Na"]["mae"] == pytest.approx((w_nacl * 0.010 + w_na2o * 0.030) / (w_nacl + w_na2o))
    assert out["Na"]["weight"] == pytest.approx(w_nacl + w_na2o)
    assert out["O"]["mean_signed"] == pytest.approx((1 / 3 * -0.030 + 0.5 * 0.020) / (1 / 3 + 0.5))
    with pytest.raises(ValueError, match="unknown weighting"):
        element_errors(table(), "e_above_hull", "atoms")
