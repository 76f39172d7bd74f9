"""Model registry and adapters, with the real weights bundled in the chgnet and sevenn wheels.

The batched adapters are checked against each family's own single-structure reference path
(CHGNet ``predict_structure``, SevenNet's ASE calculator) on real crystals, slightly rattled so
forces and stresses are not zero by symmetry.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor
from support import sample_structures

from mliap_tui.models import (
    REGISTRY,
    ModelUnavailable,
    UnsupportedElements,
    availability,
    get_spec,
    load_predictor,
    resolve_device,
)
from mliap_tui.models.registry import (
    ELEMENTS_MPTRJ_89,
    ELEMENTS_Z1_94,
    stress_ev_per_ang3_to_gpa,
    voigt6_from_3x3,
)

REQUIRED_IDS = [
    "chgnet-0.3.0", "chgnet-0.2.0", "chgnet-r2scan", "sevennet-0", "sevennet-l3i5", "mace-mp-0-medium",
    "mace-mpa-0-medium", "m3gnet-matpes-pbe", "tensornet-matpes-pbe", "m3gnet-mp-2021.2.8-pes",
    "orb-v3-conservative-inf-mpa", "orb-v2",
]
UNBUNDLED_IDS = [i for i in REQUIRED_IDS if REGISTRY[i].family in ("mace", "matgl", "orb")]


# ---- structures ------------------------------------------------------------------------------


def _rattled(atoms: Atoms, seed: int, amplitude_ang: float = 0.03, strain: float = 0.01) -> Atoms:
    atoms = atoms.copy()
    rng = np.random.default_rng(seed)
    atoms.set_cell(atoms.cell[:] @ (np.eye(3) + strain * rng.uniform(-1, 1, (3, 3))), scale_atoms=True)
    atoms.positions += amplitude_ang * rng.standard_normal(atoms.positions.shape)
    return atoms


def _handmade_crystals() -> list[Atoms]:
    si = bulk("Si", "diamond", a=5.43)
    nacl = bulk("NaCl", "rocksalt", a=5.69)
    rutile = AseAtomsAdaptor.get_atoms(
        Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"], [[0, 0, 0], [0.3048, 0.3048, 0]])
    )
    zno = bulk("ZnO", "wurtzite", a=3.25, c=5.21)
    return [si, nacl, rutile, zno]


def _mp20_crystals(n: int = 5, max_sites: int = 12) -> list[Atoms]:
    out = []
    for mid, structure in sample_structures(n, max_sites):
        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.info["material_id"] = mid
        out.append(atoms)
    return out


@pytest.fixture(scope="module")
def crystals() -> list[Atoms]:
    """4 hand-built + 5 MP-20 crystals (different sizes in one batch), rattled and strained."""
    return [_rattled(a, seed) for seed, a in enumerate(_handmade_crystals() + _mp20_crystals())]


@pytest.fixture(scope="module")
def chgnet():
    return load_predictor("chgnet-0.3.0", device="cpu")


@pytest.fixture(scope="module")
def sevennet():
    return load_predictor("sevennet-0", device="cpu")


# ---- registry --------------------------------------------------------------------------------


def test_registry_holds_every_model_with_its_energy_convention():
    assert list(REGISTRY)[: len(REQUIRED_IDS)] == REQUIRED_IDS
    conventions = {mid: spec.energy_convention for mid, spec in REGISTRY.items()}
    assert conventions["chgnet-0.3.0"] == conventions["chgnet-0.2.0"] == "mp2020"
    assert conventions["chgnet-r2scan"] == "r2scan"
    assert all(conventions[m] == "raw_pbe" for m in REQUIRED_IDS if m.startswith(("sevennet", "mace", "m3gnet", "tensornet", "orb")))
    assert {s.family for s in REGISTRY.values()} == {"chgnet", "sevenn", "mace", "matgl", "orb"}
    assert all(s.default_batch_atoms > 0 for s in REGISTRY.values())


def test_get_spec_unknown_id_lists_known_ids():
    with pytest.raises(KeyError, match="chgnet-0.3.0.*sevennet-0"):
        get_spec("chgnet-9")


def test_element_sets():
    assert len(ELEMENTS_Z1_94) == 94 and {"H", "Pu"} <= ELEMENTS_Z1_94 and "Am" not in ELEMENTS_Z1_94
    assert len(ELEMENTS_MPTRJ_89) == 89 and not {"Po", "At", "Rn", "Fr", "Ra"} & ELEMENTS_MPTRJ_89


@pytest.mark.parametrize("model_id", ["chgnet-0.3.0", "chgnet-0.2.0", "chgnet-r2scan", "sevennet-0", "sevennet-l3i5"])
def test_bundled_models_are_available(model_id):
    avail = availability(get_spec(model_id))
    assert avail.installed and avail.weights_available, avail.message
    assert "bundled" in avail.message


@pytest.mark.parametrize("model_id", UNBUNDLED_IDS)
def test_unbundled_models_say_what_to_do(model_id):
    spec = get_spec(model_id)
    avail = availability(spec)
    if importlib.util.find_spec(spec.package) is not None:
        pytest.skip(f"{spec.package} is installed here")
    assert not avail.installed and not avail.weights_available
    assert "\n" not in avail.message
    if spec.family == "orb":  # orb-models pins rich<14: it must go into its own venv
        assert "venv" in avail.message and "--python-for orb=" in avail.message
    else:
        assert f"pip install 'mliap-tui[{spec.pip_extra}]'" in avail.message
    with pytest.raises(ModelUnavailable, match=model_id) as info:
        load_predictor(model_id)
    assert "\n" not in str(info.value) and "install" in str(info.value)


def test_load_predictor_refuses_bad_arguments():
    with pytest.raises(ValueError, match="float32 or float64"):
        load_predictor("chgnet-0.3.0", dtype="float16")
    with pytest.raises(ModelUnavailable, match="does not exist"):
        load_predictor("chgnet-0.3.0", checkpoint="/nonexistent/chgnet.pth.tar")


def test_resolve_device():
    import torch

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ModelUnavailable, match="--device cpu"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")


def test_voigt_and_units():
    s = np.array([[1.0, 6.0, 5.0], [6.0, 2.0, 4.0], [5.0, 4.0, 3.0]])
    np.testing.assert_allclose(voigt6_from_3x3(s), [1, 2, 3, 4, 5, 6])
    np.testing.assert_allclose(stress_ev_per_ang3_to_gpa(1.0), 160.21766208)


# ---- CHGNet ------------------------------------------------------------------------------------


def test_chgnet_batched_matches_predict_structure(chgnet, crystals):
    preds = chgnet.predict(crystals, forces=True, stress=True)
    assert len(preds) == len(crystals)
    for atoms, pred in zip(crystals, preds):
        ref = chgnet.model.predict_structure(AseAtomsAdaptor.get_structure(atoms), task="efs")
        n = len(atoms)
        assert pred.energy_ev / n == pytest.approx(float(ref["e"]), abs=1e-4)
        assert pred.forces_ev_per_ang.shape == (n, 3)
        np.testing.assert_allclose(pred.forces_ev_per_ang, ref["f"], atol=1e-3)
        np.testing.assert_allclose(pred.stress_gpa, voigt6_from_3x3(ref["s"]), atol=1e-3)
    # the rattled cells are not at equilibrium: the comparison above is not trivially 0 == 0
    assert max(np.abs(p.forces_ev_per_ang).max() for p in preds) > 0.05
    assert max(np.abs(p.stress_gpa).max() for p in preds) > 0.05


def test_chgnet_energy_only_and_prepare_run_split(chgnet, crystals):
    full = chgnet.predict(crystals[:4], forces=True, stress=True)
    prepared = chgnet.prepare(crystals[:4])
    energy_only = chgnet.run(prepared)
    assert [p.forces_ev_per_ang for p in energy_only] == [None] * 4
    assert [p.stress_gpa for p in energy_only] == [None] * 4
    np.testing.assert_allclose([p.energy_ev for p in energy_only], [p.energy_ev for p in full], atol=1e-4)
    assert chgnet.predict([]) == []


@pytest.mark.parametrize("task", ["ef", "es", "efs"])
def test_chgnet_one_backward_pass_is_chgnets_forward(chgnet, crystals, task):
    """The adapter's forces/stress path (one backward pass, no double-backward graph) against
    CHGNet's own forward on the same batch: energies bit-identical, forces and stress to float32
    rounding (CHGNet's float32 forces are ~1e-5 eV/Å from a float64 evaluation either way)."""
    import torch

    assert chgnet.single_backward
    prepared = chgnet.prepare(crystals, forces="f" in task, stress="s" in task)
    ours = chgnet.run(prepared)
    with torch.enable_grad():
        ref = chgnet.model([g.to(chgnet.device) for g in prepared.graphs], task=task)
    e_ref = ref["e"].detach().double().numpy()
    for i, (atoms, pred) in enumerate(zip(crystals, ours)):
        assert pred.energy_ev == float(e_ref[i] * len(atoms))  # bit for bit
        if "f" in task:
            np.testing.assert_allclose(pred.forces_ev_per_ang, ref["f"][i].detach().numpy(), atol=2e-4)
        else:
            assert pred.forces_ev_per_ang is None
        if "s" in task:
            np.testing.assert_allclose(pred.stress_gpa, voigt6_from_3x3(ref["s"][i].detach().numpy()), atol=2e-3)
        else:
            assert pred.stress_gpa is None


def test_chgnet_ase_calculator_agrees(chgnet, crystals):
    from chgnet.model.dynamics import CHGNetCalculator

    calc = chgnet.ase_calculator()
    assert isinstance(calc, CHGNetCalculator)
    atoms = crystals[2].copy()
    atoms.calc = calc
    pred = chgnet.predict([crystals[2]], stress=True)[0]
    assert atoms.get_potential_energy() == pytest.approx(pred.energy_ev, abs=1e-4 * len(atoms))
    np.testing.assert_allclose(stress_ev_per_ang3_to_gpa(atoms.get_stress()), pred.stress_gpa, atol=1e-3)


def test_chgnet_coverage_read_from_model_and_enforced(chgnet):
    assert chgnet.spec.elements == ELEMENTS_Z1_94  # 94-row atom embedding
    americium = Atoms("AmO2", scaled_positions=[[0, 0, 0], [0.25, 0.25, 0.25], [0.75, 0.75, 0.75]], cell=np.eye(3) * 5.4, pbc=True)
    with pytest.raises(UnsupportedElements, match="Am"):
        chgnet.prepare([bulk("Si", "diamond", a=5.43), americium])


def test_chgnet_local_checkpoint_gives_same_energies(chgnet, crystals):
    from mliap_tui.models.registry import weight_files

    path = weight_files(get_spec("chgnet-0.3.0"))[0]
    local = load_predictor("chgnet-0.3.0", checkpoint=str(path))
    np.testing.assert_allclose(
        [p.energy_ev for p in local.predict(crystals[:3])], [p.energy_ev for p in chgnet.predict(crystals[:3])], atol=1e-5
    )


def test_chgnet_float64_matches_float32(chgnet, crystals):
    p64 = load_predictor("chgnet-0.3.0", dtype="float64")
    assert p64.model.atom_embedding.embedding.weight.dtype.itemsize == 8
    e64 = p64.predict(crystals, forces=True)
    e32 = chgnet.predict(crystals, forces=True)
    for atoms, a, b in zip(crystals, e64, e32):
        assert a.energy_ev / len(atoms) == pytest.approx(b.energy_ev / len(atoms), abs=1e-3)
        np.testing.assert_allclose(a.forces_ev_per_ang, b.forces_ev_per_ang, atol=1e-3)


def test_chgnet_versions_differ():
    """0.2.0 and r2SCAN are different weights, not aliases of 0.3.0."""
    si = [bulk("Si", "diamond", a=5.43)]
    energies = {mid: load_predictor(mid).predict(si)[0].energy_ev / 2 for mid in ("chgnet-0.3.0", "chgnet-0.2.0", "chgnet-r2scan")}
    assert -6.0 < energies["chgnet-0.3.0"] < -5.0  # MP: Si about -5.4 eV/atom
    assert abs(energies["chgnet-0.2.0"] - energies["chgnet-0.3.0"]) > 1e-3
    assert abs(energies["chgnet-r2scan"] - energies["chgnet-0.3.0"]) > 0.1  # r2SCAN total energies are far off PBE


# ---- SevenNet ----------------------------------------------------------------------------------


def test_sevennet_batched_matches_its_ase_calculator(sevennet, crystals):
    from sevenn.calculator import SevenNetCalculator

    preds = sevennet.predict(crystals, forces=True, stress=True)
    energy_only = sevennet.predict(crystals)
    calc = SevenNetCalculator("7net-0", device="cpu")
    for atoms, pred, e_pred in zip(crystals, preds, energy_only):
        ref = atoms.copy()
        ref.calc = calc
        n = len(atoms)
        assert pred.energy_ev / n == pytest.approx(ref.get_potential_energy() / n, abs=1e-4)
        assert e_pred.energy_ev / n == pytest.approx(ref.get_potential_energy() / n, abs=1e-4)
        np.testing.assert_allclose(pred.forces_ev_per_ang, ref.get_forces(), atol=1e-3)
        np.testing.assert_allclose(pred.stress_gpa, stress_ev_per_ang3_to_gpa(ref.get_stress()), atol=1e-3)
    assert max(np.abs(p.forces_ev_per_ang).max() for p in preds) > 0.05


def test_sevennet_coverage_read_from_checkpoint(sevennet):
    assert sevennet.spec.elements == get_spec("sevennet-0").elements == ELEMENTS_MPTRJ_89
    radon = Atoms("Rn", cell=np.eye(3) * 4.5, pbc=True)
    with pytest.raises(UnsupportedElements, match="Rn"):
        sevennet.prepare([bulk("Cu", "fcc", a=3.6), radon])


def test_sevennet_ase_calculator_is_sevennets(sevennet):
    from sevenn.calculator import SevenNetCalculator

    assert isinstance(sevennet.ase_calculator(), SevenNetCalculator)


def test_sevennet_float64_matches_float32(sevennet, crystals):
    p64 = load_predictor("sevennet-0", dtype="float64")
    e64 = p64.predict(crystals, forces=True, stress=True)
    e32 = sevennet.predict(crystals, forces=True, stress=True)
    for atoms, a, b in zip(crystals, e64, e32):
        assert a.energy_ev / len(atoms) == pytest.approx(b.energy_ev / len(atoms), abs=1e-3)
        np.testing.assert_allclose(a.forces_ev_per_ang, b.forces_ev_per_ang, atol=1e-3)
        np.testing.assert_allclose(a.stress_gpa, b.stress_gpa, atol=1e-2)


@pytest.mark.slow
def test_sevennet_l3i5_batched_matches_its_ase_calculator(crystals):
    from sevenn.calculator import SevenNetCalculator

    predictor = load_predictor("sevennet-l3i5")
    assert predictor.spec.elements == ELEMENTS_MPTRJ_89
    calc = SevenNetCalculator("7net-l3i5", device="cpu")
    for atoms, pred in zip(crystals, predictor.predict(crystals, forces=True)):
        ref = atoms.copy()
        ref.calc = calc
        assert pred.energy_ev / len(atoms) == pytest.approx(ref.get_potential_energy() / len(atoms), abs=1e-4)
        np.testing.assert_allclose(pred.forces_ev_per_ang, ref.get_forces(), atol=1e-3)
