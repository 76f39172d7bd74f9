"""PES slice geometry and statistics without a model: ranges in physical units, the closest-approach
mask on a hand-built crystal (checked against pymatgen's distance matrix), minima that skip masked
and collapsed points, the honest colour scale, critical points with their positions."""

from __future__ import annotations

import numpy as np
import pytest

from mliap_tui.analysis.pes import slices as pes
from mliap_tui.analysis.pes import stats as pa

# Hand-built P4mm chain: Na at z = 0 and Cl at z = 0.4 on the four-fold axis of a 3 x 3 x 4 Å cell
# (polar: both z free). Moving Cl along z brings it within 4 * (0.4 + t) Å of Na (below) and
# 4 * (0.6 - t) Å of the Na above. ASE covalent radii: Na 1.66, Cl 1.02 Å.
CHAIN = {"material_id": "hand-NaCl-chain", "lattice_ang": [3.0, 0, 0, 0, 3.0, 0, 0, 0, 4.0],
         "species": ["Na", "Cl"], "frac_coords": [0, 0, 0, 0, 0, 0.4]}


@pytest.fixture(scope="module")
def chain():
    return pes.prepare(CHAIN)


def test_hand_built_chain_axes_and_physical_ranges(chain):
    assert chain.spacegroup_number == 99  # P4mm
    names = [a.name for a in chain.axes]
    assert sorted(names) == ["Cl:1a:z", "Na:1a:z", "lattice:a", "lattice:c/a"]
    cl = chain.axis("Cl:1a:z")
    assert cl.ang_per_unit == pytest.approx(4.0)
    assert cl.default_range == pytest.approx(0.3 / 4.0)  # ±0.3 Å by default
    assert pes.parse_range("0.8A", cl) == pytest.approx(0.2)
    assert pes.parse_range("0.8 Å", cl) == pytest.approx(0.2)
    assert pes.parse_range("0.05", cl) == 0.05  # a bare number is fractional on a coordinate axis
    lat = chain.axis("lattice:c/a")
    assert pes.parse_range("5%", lat) == pytest.approx(0.05)
    assert pes.parse_range("0.4A", lat) == pytest.approx(0.1)  # Å change of c = 4 Å
    assert lat.dft_label == "c/a = 1.3333 (c = 4.0000 Å)"
    for bad, axis in (("5%", cl), ("2deg", lat), ("-1A", cl), ("0.3 furlongs", cl)):
        with pytest.raises(pes.PesError):
            pes.parse_range(bad, axis)
    assert pes.parse_ranges("0.8A,5%", [cl, lat]) == pytest.approx([0.2, 0.05])
    with pytest.raises(pes.PesError, match="one per axis"):
        pes.parse_ranges("1A,2A,3A", [cl, lat])
    assert cl.describe_range(0.2) == "±0.800 Å (±0.2 frac)"
    assert lat.describe_range(0.05) == "±5.0 % (±0.2 Å)"


def test_closest_approach_masks_exactly_the_impossible_points(chain):
    from pymatgen.core import Lattice, Structure

    spec = pes.make_spec(chain, ["Cl:1a:z"], "0.8A", points=41)
    assert spec.ranges == (0.2,)
    points = pes.grid_points(chain, spec, closest_approach=0.5)
    limit = 0.5 * (pes.covalent_radius_ang("Na") + pes.covalent_radius_ang("Cl"))
    assert limit == pytest.approx(1.34)
    n_masked = 0
    for p in points:
        s = Structure(Lattice(p.lattice_ang), p.species, p.frac)
        dm = s.distance_matrix  # pymatgen: minimum-image distances, independent of our code
        na = [k for k, e in enumerate(p.species) if e == "Na"]
        cl = [k for k, e in enumerate(p.species) if e == "Cl"]
        na_cl = min(dm[i, j] for i in na for j in cl)
        assert p.masked == (na_cl < limit), (p.values, na_cl)
        assert p.evaluate  # nothing closer than the 0.5 Å floor in this range
        if p.masked:
            n_masked += 1
            assert p.contact.pair in ("Na–Cl", "Cl–Na")
            assert p.contact.distance_ang == pytest.approx(na_cl)
            assert p.contact.limit_ang == pytest.approx(limit)
    assert 5 <= n_masked <= 36  # one side of the scan runs into the Na below
    # the DFT point is never masked, and a stricter rule masks more
    assert not points[20].masked
    stricter = sum(p.masked for p in pes.grid_points(chain, spec, closest_approach=0.7))
    assert stricter > n_masked
    assert sum(p.masked for p in pes.grid_points(chain, spec, closest_approach=0.0)) == 0


def test_points_closer_than_the_floor_are_not_evaluated(chain):
    spec = pes.make_spec(chain, ["Cl:1a:z"], "1.9A", points=21)  # Cl reaches within 0.1 Å of Na
    points = pes.grid_points(chain, spec)
    skipped = [p for p in points if not p.evaluate]
    assert skipped and all(p.masked for p in skipped)
    for p in skipped:
        assert p.contact.distance_ang < pes.EVALUATION_FLOOR_ANG


def test_minimum_skips_masked_and_collapsed_points_and_flags_the_collapse():
    x = np.linspace(-1, 1, 11)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    e = -5.0 + 0.01 * ((xx - 0.2) ** 2 + yy**2)  # eV/atom; smooth minimum at (+0.2, 0)
    mask = np.zeros(e.shape, bool)
    mask[0, 0] = True
    e[0, 0] = -5.5  # impossible geometry, 500 meV/atom below: masked, not a collapse
    e[10, 10] = -25.0  # 20 eV/atom below: a model collapse (not masked)
    e[9, 0] = -5.0009  # 1.3 meV/atom below the centre (-4.9996): the real minimum of this made-up surface
    pairs = {(10, 10): ("S–S", 0.763)}
    st = pa.analyze_energies("m", e, [0.2, 0.2], (5, 5), [1.0, 1.0], mask=mask, collapse_ev_per_atom=1.0,
                             closest_pair=lambda idx: pairs.get(idx, ("?", 9.9)))
    assert st.min_index == (9, 0) and st.min_e_rel_mev_per_atom == pytest.approx(-1.3)
    assert st.n_masked == 1 and st.n_valid == 121 - 2
    assert [c.index for c in st.collapses] == [(10, 10)]
    c = st.collapses[0]
    assert c.e_rel_mev_per_atom == pytest.approx(-20000.4) and (c.pair, c.closest_ang) == ("S–S", 0.763)
    assert not c.masked
    # a stricter threshold turns the masked point into a collapse too (listed deepest first)
    st2 = pa.analyze_energies("m", e, [0.2, 0.2], (5, 5), [1.0, 1.0], mask=mask, collapse_ev_per_atom=0.4)
    assert [c.index for c in st2.collapses] == [(10, 10), (0, 0)] and st2.collapses[1].masked


def test_colour_scale_is_set_by_valid_points_and_states_its_clip():
    rng = np.random.default_rng(1)
    values = rng.normal(0.0, 10.0, (21, 21))
    values[0, :5] = 30000.0  # repulsive wall
    values[20, 20] = -111186.6  # collapse
    valid = pa.valid_points(values, collapse_ev_per_atom=1.0)
    assert not valid[20, 20] and valid[0, 0]
    scale = pa.colour_scale(values, valid)
    used = values[valid]
    assert scale.lo == pytest.approx(np.percentile(used, 1)) and scale.hi == pytest.approx(np.percentile(used, 95))
    assert -50 < scale.lo < 0 < scale.hi < 50  # neither the wall nor the collapse sets the scale
    assert scale.n_used == 440 and scale.n_above == int((used > scale.hi).sum()) >= 5
    assert scale.clip_text.startswith("1st–95th percentile of 440 valid points (")
    assert scale.fraction(1e9) == 1.0 and scale.fraction(-1e9) == 0.0 and np.isnan(scale.fraction(np.nan))
    d = pa.colour_scale(values, valid, diverging=True)
    assert d.lo == -d.hi and d.diverging and "|Δ|" in d.clip_text
    empty = pa.colour_scale(values, np.zeros_like(valid))
    assert empty.n_used == 0 and empty.clip_text == "no valid points"


def test_critical_points_have_positions():
    g = np.linspace(-1.5 * np.pi, 1.5 * np.pi, 41)
    gx, gy = np.meshgrid(g, g, indexing="ij")
    e = np.cos(gx) * np.cos(gy) + 1e-3 * gx
    minima, saddles = pa.critical_points(e)
    assert len(minima) == 4 and len(saddles) == 4
    for i, j in minima:  # at (±π, 0) and (0, ±π)
        assert min(abs(abs(g[i]) - np.pi), abs(g[i])) < 0.12 and min(abs(abs(g[j]) - np.pi), abs(g[j])) < 0.12
    for i, j in saddles:  # at (±π/2, ±π/2)
        assert abs(abs(g[i]) - np.pi / 2) < 0.25 and abs(abs(g[j]) - np.pi / 2) < 0.25
    assert pa.count_critical_points(e) == (4, 4)
    # a NaN (masked) neighbourhood is never a critical point
    e2 = e.copy()
    i, j = minima[0]
    e2[i + 1, j] = np.nan
    assert (i, j) not in pa.critical_points(e2)[0]
