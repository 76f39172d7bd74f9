"""Rare-event force metrics (dF in eV/Å, angle in degrees) and the Si rare-event reader."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from support import needs_shared, shared_path

from mliap_tui.analysis.rare_events import (
    atom_errors,
    cdf,
    distance_binned,
    force_angle_deg,
    magnitude_error,
    rare_event_summary,
)

SI_INT_REL = "si_re/Interstitial-RE_Testing_Set"
SI_INT = shared_path(*SI_INT_REL.split("/"))


def _rotation(axis, angle_deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = np.radians(angle_deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


@pytest.mark.parametrize("angle", [0.0, 10.0, 15.0, 30.0, 90.0, 150.0, 180.0])
def test_rotated_forces_give_the_angle_back(angle):
    rng = np.random.default_rng(0)
    f = rng.normal(size=(20, 3))
    rotated = []
    for v in f:
        axis = np.cross(v, rng.normal(size=3))  # any axis perpendicular to the force
        rotated.append(_rotation(axis, angle) @ v)
    got = force_angle_deg(np.array(rotated), f)
    assert got == pytest.approx(np.full(20, angle), abs=1e-6)
    # a pure rotation keeps the magnitude
    assert magnitude_error(np.array(rotated), f) == pytest.approx(np.zeros(20), abs=1e-12)


def test_magnitude_error_sign_and_zero_force_angle():
    f = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]])
    pred = np.array([[0.3, 0.4, 0.0], [1.0, 0.0, 0.0]])
    assert magnitude_error(pred, f) == pytest.approx([-4.5, 1.0])
    angles = force_angle_deg(pred, f)
    assert angles[0] == pytest.approx(0.0) and np.isnan(angles[1])


def test_summary_fractions_and_distance_bins():
    dft = np.tile([[1.0, 0.0, 0.0]], (4, 1))
    pred = np.array([[2.0, 0.0, 0.0], [np.cos(np.radians(20)), np.sin(np.radians(20)), 0.0],
                     [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    pairs = pl.DataFrame([{"dataset": "d", "material_id": "m", "model": "x", "n_sites": 4,
                           "forces_dft_ev_per_ang": dft.ravel().tolist(), "forces_pred_ev_per_ang": pred.ravel().tolist()}])
    props = pl.DataFrame({"material_id": ["m"] * 4, "atom_index": [0, 1, 2, 3], "r_ang": [0.0, 0.0, 2.6, 5.5]},
                         schema_overrides={"atom_index": pl.Int32}).with_columns(is_rare_event=pl.col("r_ang") == 0.0)
    atoms = atom_errors(pairs, props)
    s = {r["atoms"]: r for r in rare_event_summary(atoms).iter_rows(named=True)}
    assert s["RE atoms"]["n_atoms"] == 2 and s["all atoms"]["n_atoms"] == 4
    assert s["RE atoms"]["frac_abs_df_gt_0.5"] == pytest.approx(0.5)  # atom 0: |dF| = 1
    assert s["RE atoms"]["frac_dtheta_gt_15"] == pytest.approx(0.5)  # atom 1: 20°
    assert s["RE atoms"]["frac_dtheta_gt_30"] == pytest.approx(0.0)
    assert s["all atoms"]["frac_dtheta_gt_30"] == pytest.approx(0.25)  # atom 2: 90°
    bins = distance_binned(atoms)
    assert bins["r_bin_ang"].to_list() == ["0 (RE)", "2.5-3", ">=5.5"]
    assert bins["n_atoms"].to_list() == [2, 1, 1]


def test_cdf():
    assert cdf([1.0, 2.0, 3.0, np.nan], [0.5, 1.0, 2.5, 10.0]).tolist() == [0.0, 1 / 3, 2 / 3, 1.0]


@needs_shared(SI_INT_REL)
def test_si_reader_reads_k4_forces_and_distances():
    import json

    from mliap_tui.data.readers import detect_format
    from mliap_tui.data.readers.si_rare_events import (
        atom_properties_frame,
        read_si_rare_events,
    )

    assert detect_format(SI_INT) == "si_rare_events"
    recs = list(read_si_rare_events(SI_INT))
    assert len(recs) == 100 and all(r.ok for r in recs)
    data = json.loads((SI_INT / "DATA.json").read_text())
    r7 = recs[7]
    assert r7.material_id == "si-int-007" and len(r7.structure) == 65
    assert r7.dft["forces_dft_ev_per_ang"] == pytest.approx(np.ravel(data["Forces"]["DFT_K4"][7]).tolist())
    assert r7.dft["e_per_atom_dft_raw"] == pytest.approx(data["Energies"]["DFT_K4"][7] / 65)
    # DFT forces on a periodic cell sum to ~0
    assert np.abs(np.reshape(r7.dft["forces_dft_ev_per_ang"], (-1, 3)).sum(0)).max() < 1e-3
    props = atom_properties_frame(SI_INT)
    assert len(props) == 6500
    assert props.filter(pl.col("material_id") == "si-int-007")["r_ang"].to_list() == pytest.approx(data["r"][7])
    assert int(props["is_rare_event"].sum()) == sum(1 for r in data["r"] for x in r if x == 0)
