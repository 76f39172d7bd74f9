"""Symmetry-restricted PES slices (mliap_tui.analysis.pes.slices) on real sample crystals, with real spglib and the
real CHGNet 0.3.0 / SevenNet-0 models through the engine's cached path."""

from __future__ import annotations

import gzip
import itertools
import warnings

import numpy as np
import polars as pl
import pytest

from mliap_tui.analysis.pes import slices as pes
from mliap_tui.analysis.pes import stats as pa
from mliap_tui.cache import Cache
from mliap_tui.symmetry import analyze_cell

IDS = {"anatase": "mp-390", "wurtzite": "mp-560588", "rutile_type": "mp-1183892"}  # EuCl2 P4_2/mnm
EXPECTED_AXES = {
    "mp-390": ["O:8e:z", "lattice:a", "lattice:c/a"],
    "mp-560588": ["S:2b:z", "Zn:2b:z", "lattice:a", "lattice:c/a"],
    "mp-1183892": ["Cl:4f:x", "lattice:a", "lattice:c/a"],
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from mliap_tui.data.importer import import_dataset, sample_path

    root = tmp_path_factory.mktemp("pes-cache")
    with gzip.open(sample_path(), "rt") as fh:
        df = pl.read_csv(fh.read().encode())
    sub = root / "three.csv"
    df.filter(pl.col("material_id").is_in(list(IDS.values()))).write_csv(sub)
    c = Cache(root / "cache")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = import_dataset(str(sub), dataset="sample", cache=c, n_jobs=1)
    assert report.n_in_dataset == 3
    return c


def row_of(cache, mid):
    return cache.scan_materials("sample").filter(pl.col("material_id") == mid).collect().row(0, named=True)


@pytest.mark.parametrize("mid", list(EXPECTED_AXES))
def test_axes_and_symmetry_preserved_on_every_grid_point(cache, mid):
    row = row_of(cache, mid)
    crystal = pes.prepare(row)
    assert [a.name for a in crystal.axes] == EXPECTED_AXES[mid]
    assert crystal.wyckoff == row["wyckoff"]
    coord = [a for a in crystal.axes if a.kind == "coord"]
    assert len(coord) == row["wyckoff_dof"]
    assert len(crystal.axes) - len(coord) == row["lattice_dof"]
    lattice0, species0, frac0 = crystal.structure_at({})
    base = analyze_cell(lattice0, species0, frac0, 1e-3)
    assert base.spacegroup_number == row["spacegroup_number"] and base.wyckoff_string() == row["wyckoff"]
    for pair in itertools.combinations([a.name for a in crystal.axes], 2):
        spec = pes.make_spec(crystal, pair, points=5)
        for idx, values, lat, species, frac, ok in pes.grid_structures(crystal, spec):
            info = analyze_cell(lat, species, frac, 1e-3)
            assert info.spacegroup_number == row["spacegroup_number"], (pair, values)
            assert info.wyckoff_string() == row["wyckoff"], (pair, values, info.wyckoff_string())


def test_orbit_moves_together_and_only_it(cache):
    crystal = pes.prepare(row_of(cache, IDS["rutile_type"]))
    lat, species, f0 = crystal.structure_at({})
    _, _, f1 = crystal.structure_at({"Cl:4f:x": 0.03})
    disp = np.linalg.norm((f1 - f0) @ lat, axis=1)
    cl = np.array([s == "Cl" for s in species])
    assert np.allclose(disp[~cl], 0.0)
    assert np.allclose(disp[cl], 0.03 * crystal.axis("Cl:4f:x").ang_per_unit)  # every Cl by the same Å
    assert crystal.axis("Cl:4f:x").direction_frac == (1.0, 1.0, 0.0)  # 4f = (x, x, 0)
    # the lattice axis a scales every length, c/a only c
    la, _, _ = crystal.structure_at({"lattice:a": 0.05})
    lc, _, _ = crystal.structure_at({"lattice:c/a": -0.05})
    assert np.allclose(np.linalg.norm(la, axis=1), 1.05 * np.linalg.norm(lat, axis=1))
    assert np.allclose(np.linalg.norm(lc, axis=1), np.linalg.norm(lat, axis=1) * [1, 1, 0.95])


def test_range_is_clipped_at_the_minimum_distance(cache):
    crystal = pes.prepare(row_of(cache, IDS["wurtzite"]))
    spec = pes.make_spec(crystal, ["Zn:2b:z"], range_=0.6, points=11, min_dist_ang=1.5)
    assert spec.ranges[0] < 0.6
    for *_, lat, _sp, frac, ok in pes.grid_structures(crystal, spec, min_dist_ang=1.5):
        assert ok and pes.min_distance_ang(lat, frac) >= 1.5
    unclipped = pes.make_spec(crystal, ["Zn:2b:z"], range_=0.05, points=10)
    assert unclipped.ranges == (0.05,) and unclipped.points == 11  # odd: DFT point at the centre
    with pytest.raises(pes.PesError, match="unknown axis"):
        pes.make_spec(crystal, ["Zn:2b:x"])
    assert pes.resolve_axis(crystal, "zn:b:z").name == "Zn:2b:z"


# ---- analysis on known surfaces -------------------------------------------------------------


def test_analysis_recovers_known_minimum_curvature_and_critical_points(tmp_path):
    x = np.linspace(-0.1, 0.1, 21)
    h = x[1] - x[0]
    xx, yy = np.meshgrid(x, x, indexing="ij")
    e = 3.0 * (xx - 0.023) ** 2 + 1.5 * (yy + 0.04) ** 2 - 5.0
    st = pa.analyze_energies("q", e, [h, h], (10, 10), [4.0, None])
    assert st.min_offset[0] == pytest.approx(0.023, abs=1e-9)
    assert st.min_offset[1] == pytest.approx(-0.04, abs=1e-9)
    assert st.min_offset_ang[0] == pytest.approx(0.092, abs=1e-8) and st.min_offset_ang[1] is None
    assert st.curvature_ev_per_atom_per_unit2 == pytest.approx((6.0, 3.0))
    assert st.curvature_ev_per_atom_per_ang2[0] == pytest.approx(6.0 / 16)
    assert (st.n_local_minima, st.n_saddles) == (1, 0) and not st.min_at_dft
    # cos x cos y on [-1.5π, 1.5π]²: minima at (±π, 0), (0, ±π); saddles at (±π/2, ±π/2)
    g = np.linspace(-1.5 * np.pi, 1.5 * np.pi, 41)
    gx, gy = np.meshgrid(g, g, indexing="ij")
    n_min, n_saddle = pa.count_critical_points(np.cos(gx) * np.cos(gy) + 1e-3 * gx)
    assert n_min == 4 and n_saddle == 4


# ---- real models --------------------------------------------------------------------------------

MODELS = ["chgnet-0.3.0", "sevennet-0"]


@pytest.fixture(scope="module")
def wurtzite_scan(cache):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pes.compute_slice(cache, "sample", IDS["wurtzite"], ["Zn:2b:z"], MODELS, range_=0.02, points=11,
                                 forces=True, device="cpu")


@pytest.fixture(scope="module")
def rutile_map(cache):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pes.compute_slice(cache, "sample", IDS["rutile_type"], ["Cl:4f:x", "lattice:a"], ["chgnet-0.3.0"],
                                 range_=[0.03, 0.03], points=7, device="cpu")


@pytest.mark.slow  # two model workers start (~30-40 s on 2 cores)
def test_1d_scan_reports_each_model_minimum_and_offset(cache, wurtzite_scan, tmp_path):
    s = wurtzite_scan
    assert s.run_summary.ok
    stats = {st.source: st for st in pa.analyze_slice(s)}
    assert set(stats) == set(MODELS)
    ax = s.axes[0]
    for model, st in stats.items():
        assert st.n_finite == 11, s.failures[model]
        e = s.energies[model]
        assert np.nanmin(e) == e[st.min_index]
        assert abs(st.min_offset[0]) <= 0.02 + 1e-12
        assert st.min_offset_ang[0] == pytest.approx(st.min_offset[0] * ax.ang_per_unit)
        assert st.curvature_ev_per_atom_per_unit2[0] > 0  # the DFT structure is near a minimum of both
    assert not np.allclose(s.energies["chgnet-0.3.0"], s.energies["sevennet-0"])
    # cached: asking again evaluates nothing
    again = pes.compute_slice(cache, "sample", IDS["wurtzite"], ["Zn:2b:z"], MODELS, range_=0.02, points=11,
                              forces=True, device="cpu")
    assert all(m.todo == 0 for m in again.run_summary.models)
    np.testing.assert_array_equal(again.energies["sevennet-0"], s.energies["sevennet-0"])
    # grid CSV and a user reference (here: SevenNet's grid) give the same analysis as the model
    frame = pes.slice_to_frame(s)
    ref_csv = tmp_path / "ref.csv"
    frame.select(pl.col("Zn:2b:z"), pl.col("e_per_atom_ev[sevennet-0]").alias("e_per_atom_ev")).write_csv(ref_csv)
    ref = pa.load_reference_csv(ref_csv, s)
    np.testing.assert_allclose(ref, s.energies["sevennet-0"])
    assert np.allclose(pa.difference_map(s, "sevennet-0", "reference", reference=ref), 0.0)


@pytest.mark.slow  # shares the two-model scan above
def test_curvature_matches_finite_difference_of_model_forces(wurtzite_scan):
    s = wurtzite_scan
    crystal, spec = s.crystal, s.spec
    v = crystal.velocities_ang("Zn:2b:z")  # Å per unit of the axis, each atom
    h = spec.values(0)[1] - spec.values(0)[0]
    c = spec.center[0]
    for model in MODELS:
        f = s.forces[model]
        n = len(v)
        # generalised force along the collective coordinate, eV/atom per unit: G = sum F.v / N = -dE/dt
        g = {i: float((f[(i,)] * v).sum() / n) for i in (c - 1, c, c + 1)}
        curv_forces = -(g[c + 1] - g[c - 1]) / (2 * h)
        e = s.energies[model]
        curv_energy = pa.curvature_at(e, spec.center, 0, h)
        assert curv_energy == pytest.approx(curv_forces, rel=0.05), model
        # and along the whole scan the slope of E matches the projected force (first derivative)
        g_all = np.array([float((f[(i,)] * v).sum() / n) for i in range(spec.points)])
        slope_e = np.diff(e) / h
        minus_g_mid = -(g_all[:-1] + g_all[1:]) / 2
        np.testing.assert_allclose(slope_e, minus_g_mid, atol=0.03 * np.abs(minus_g_mid).max())
        assert np.abs(f[(c,)].sum(axis=0)).max() < 1e-4  # no net force


def test_2d_map_has_grid_minimum_and_analysis(rutile_map):
    s = rutile_map
    e = s.energies["chgnet-0.3.0"]
    assert e.shape == (7, 7) and np.isfinite(e).all()
    st = pa.analyze_slice(s)[0]
    assert st.n_local_minima is not None and st.n_local_minima <= 1
    assert all(c > 0 for c in st.curvature_ev_per_atom_per_unit2)


async def test_pes_screen_renders_heatmap(cache, rutile_map):
    from textual.app import App

    from mliap_tui.tui.pes_screen import PesScreen

    screen = PesScreen(cache, "sample", IDS["rutile_type"], models=["chgnet-0.3.0"],
                       axes=("Cl:4f:x", "lattice:a"), points=7, device="cpu")

    class Host(App):
        def on_mount(self) -> None:
            self.push_screen(screen)

    # the screen computes with the default ranges: reuse the fixture's by pinning them
    orig = pes.compute_slice

    def cached(*args, **kw):
        kw["range_"] = [0.03, 0.03]
        return orig(*args, **kw)

    pes.compute_slice = cached
    try:
        async with Host().run_test(size=(120, 50)) as pilot:
            for _ in range(200):
                await pilot.pause(0.05)
                if screen.pes_slice is not None or screen.error:
                    break
            assert screen.error is None and screen.pes_slice is not None
            plot = str(screen.query_one("#pes-plot").render())
            assert "▀" in plot and "meV/atom" in plot and "Cl:4f:x" in plot and "lattice:a" in plot
            assert any(m in plot for m in "+×⊕")
            from rich.console import Console

            from mliap_tui.tui.pes_screen import stats_renderable

            console = Console(width=200, record=True, file=open("/dev/null", "w"))
            console.print(stats_renderable(screen.pes_slice, pa.analyze_slice(screen.pes_slice)))
            text = console.export_text()
            assert "chgnet-0.3.0" in text and "eV/atom/Å²" in text
            await pilot.press("m", "d")  # one model: difference mode stays off, nothing breaks
            await pilot.pause(0.1)
            assert screen.diff is False and "▀" in str(screen.query_one("#pes-plot").render())
    finally:
        pes.compute_slice = orig
