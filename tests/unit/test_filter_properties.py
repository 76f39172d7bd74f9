"""Property-based tests of the filter language (hypothesis): no input string crashes the parser,
every rejection is a FilterError that points at a clause, and what parses round-trips."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from mliap_tui.analysis.filters import FilterError, parse_filter

# pieces the language is made of, so random strings often come close to valid filters
KEYS = ["sg", "cs", "dof", "ldof", "wdof", "pdof", "nsites", "el", "elmode", "chemsys", "formula", "id", "ehull",
        "eform", "model", "mode", "status", "err:ehull", "serr:e", "err:bogus", "slope", "mae", "data", "xyz"]
OPS = ["=", "!=", "<", "<=", ">", ">=", "", "=="]
VALUES = ["1", "230", "0", "-5", "3..10", "..2", "1..", "..", "10..3", "50meV", "0.05eV", "1e3", "nan", "inf",
          "cubic", "cub", "tri", "Ti,O", "Xx", "P4_2/mnm", "Fm-3m", "all", "any", "only", "static", "relax",
          "chgnet-*", "a,,b", "", "ok", "failed", "O-Ti"]

clause = st.one_of(
    st.builds(lambda k, o, v: f"{k}{o}{v}", st.sampled_from(KEYS), st.sampled_from(OPS), st.sampled_from(VALUES)),
    st.sampled_from(["failed", "ok", "FAILED", "=", "..", ":", "err:", "el=", "sg=999"]),
    st.text(min_size=1, max_size=12),
)
filters = st.lists(clause, max_size=6).map(" ".join)

# a small table with every column the language can refer to
TABLE = pl.DataFrame({
    "material_id": ["a", "b"], "formula": ["TiO2", "NaCl"], "elements": [["O", "Ti"], ["Cl", "Na"]],
    "chemsys": ["O-Ti", "Cl-Na"], "n_sites": [6, 2], "spacegroup_number": [136, 225],
    "crystal_system": ["tetragonal", "cubic"], "lattice_dof": [2, 1], "wyckoff_dof": [1, 0], "total_dof": [3, 1],
    "polar_dof": [0, 0], "e_above_hull_dft_mp2020": [0.0, 0.01], "e_form_per_atom_dft_mp2020": [-3.3, -2.1],
    "model": ["m1", "m2"], "mode": ["static", "static"], "status": ["ok", "failed"],
    "d_e_per_atom": [0.01, None], "d_e_form_per_atom": [0.01, None], "d_e_above_hull": [0.01, None],
})


@settings(max_examples=400, deadline=None)
@given(filters)
def test_no_input_crashes_and_every_rejection_points_at_a_clause(text):
    try:
        flt = parse_filter(text)
    except FilterError as exc:
        assert str(exc)
        assert 0 <= exc.position <= len(text)
        if exc.length:
            token = text[exc.position: exc.position + exc.length]
            assert token and not token.isspace() and token in text.split()
        return
    # what parses applies to a table with the columns it names, and its canonical text re-parses
    assert parse_filter(flt.text).text == flt.text
    needed = flt.required_columns()
    if needed <= set(TABLE.columns):
        TABLE.filter(flt.expr())


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_text_never_raises_anything_but_filter_error(text):
    try:
        parse_filter(text)
    except FilterError:
        pass


def test_position_names_the_offending_clause():
    text = "cs=cubic dof=3..10 sg=999 el=Ti"
    try:
        parse_filter(text)
    except FilterError as exc:
        assert text[exc.position: exc.position + exc.length] == "sg=999"
    else:  # pragma: no cover
        raise AssertionError("sg=999 must be rejected")
