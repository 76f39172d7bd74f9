"""The MACE, matgl and ORB adapters against each family's own ASE calculator, offline.

Their published weights are downloads this machine may not have, so each test builds a small,
randomly initialised model of the family at test time, saves it the family's way, loads it
through mliap-tui's registry loader (``load_predictor(..., checkpoint=...)``, the path users take)
and compares the batched adapter with the family's own ASE calculator (``MACECalculator``,
matgl's ``PESCalculator``, ``ORBCalculator``) on a batch of rattled, strained crystals:
energies, forces and stress within 1e-5 relative. That checks the adapters' batching, units and
sign conventions (structurally); whether the published weights give the published numbers is the
canary's job, where they are available (``mliap-tui models`` says which were checked how).

Each family needs its own venv (mace-torch pins e3nn 0.4.4, which makes pip pick an old sevenn;
orb-models pins rich<14, which breaks the app): the tests skip, naming the reason, where the
package is missing. ``.ci/run`` runs this module in one venv per family (pass 4).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from mliap_tui.core.units import GPA_PER_EV_PER_ANG3

REL = 1e-5  # relative tolerance of the adapter against the family's calculator


def _skip_unless(module: str, family: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed here: the {family} adapter check runs in its own venv (.ci/run, pass 4)")


def _rattled(atoms: Atoms, seed: int, amplitude_ang: float = 0.08, strain: float = 0.02) -> Atoms:
    rng = np.random.default_rng(seed)
    out = atoms.copy()
    out.set_cell(out.cell.array @ (np.eye(3) + strain * rng.standard_normal((3, 3))), scale_atoms=True)
    out.positions += amplitude_ang * rng.standard_normal(out.positions.shape)
    return out


def _assert_close(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    """Within REL of the largest magnitude of the quantity over the batch (near-zero components,
    e.g. forces fixed by symmetry, are compared on that scale, not on their own)."""
    got, ref = np.asarray(got, float), np.asarray(ref, float)
    scale = max(float(np.abs(ref).max()), 1e-12)
    err = float(np.abs(got - ref).max())
    assert err <= REL * scale, f"{what}: max |adapter - calculator| = {err:.3g}, {err / scale:.2g} of the largest value (limit {REL:g})"


def _compare(predictor, calc, structures: list[Atoms], stress_to_gpa: float = GPA_PER_EV_PER_ANG3) -> None:
    """Adapter (one batch) against the family's calculator (one structure at a time)."""
    preds = predictor.predict(structures, forces=True, stress=True)
    ref_e, ref_f, ref_s = [], [], []
    for atoms in structures:
        a = atoms.copy()
        a.calc = calc
        ref_e.append(a.get_potential_energy() / len(a))
        ref_f.append(a.get_forces())
        ref_s.append(a.get_stress(voigt=True) * stress_to_gpa)
    _assert_close([p.energy_ev / len(a) for p, a in zip(preds, structures)], ref_e, "energies (eV/atom)")
    _assert_close(np.vstack([p.forces_ev_per_ang for p in preds]), np.vstack(ref_f), "forces (eV/Å)")
    _assert_close(np.vstack([p.stress_gpa for p in preds]), np.vstack(ref_s), "stress (GPa)")
    assert np.abs(np.vstack(ref_f)).max() > 1e-4, "the structures must be off equilibrium for the forces to say anything"


# ---- MACE ------------------------------------------------------------------------------------


def test_mace_adapter_matches_mace_calculator(tmp_path):
    _skip_unless("mace", "MACE")
    import torch

    from mliap_tui.models.registry import allow_e3nn_slice_unpickling, load_predictor

    allow_e3nn_slice_unpickling()
    from e3nn import o3
    from mace import modules
    from mace.calculators import MACECalculator

    default = torch.get_default_dtype()
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)
    try:
        zs = [3, 8, 26]  # Li, O, Fe
        model = modules.ScaleShiftMACE(
            r_max=4.0, num_bessel=4, num_polynomial_cutoff=5, max_ell=2,
            interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            num_interactions=2, num_elements=len(zs), hidden_irreps=o3.Irreps("8x0e + 8x1o"),
            MLP_irreps=o3.Irreps("8x0e"), gate=torch.nn.functional.silu,
            atomic_energies=np.array([-1.9, -4.9, -8.3]), avg_num_neighbors=8.0, atomic_numbers=zs,
            correlation=2, radial_type="bessel", atomic_inter_scale=1.0, atomic_inter_shift=0.0,
        )
        path = tmp_path / "tiny.model"
        torch.save(model, path)  # a whole-module pickle, like MACE's own .model files
        predictor = load_predictor("mace-mp-0-medium", device="cpu", dtype="float64", checkpoint=str(path))
        assert predictor.spec.elements == frozenset({"Li", "O", "Fe"})  # read from the model's z table
        calc = MACECalculator(model_paths=str(path), device="cpu", default_dtype="float64")
        structures = [
            _rattled(bulk("FeO", "rocksalt", a=4.3), 1),
            _rattled(bulk("Li", "bcc", a=3.45, cubic=True), 2),
            _rattled(bulk("FeO", "rocksalt", a=4.3).repeat((2, 1, 1)), 3),
            _rattled(Atoms("Li2O", scaled_positions=[[0.25] * 3, [0.75] * 3, [0, 0, 0]], cell=bulk("Ne", "fcc", a=4.6).cell, pbc=True), 4),
        ]
        _compare(predictor, calc, structures)
    finally:
        torch.set_default_dtype(default)


# ---- matgl -----------------------------------------------------------------------------------


@pytest.mark.parametrize("architecture", ["M3GNet", "TensorNet"])
def test_matgl_adapter_matches_pes_calculator(tmp_path, architecture):
    _skip_unless("matgl", "matgl")
    import matgl
    import torch
    from matgl.apps.pes import Potential
    from matgl.ext.ase import PESCalculator

    from mliap_tui.models.matgl_saves import read_matgl_save
    from mliap_tui.models.registry import load_predictor

    torch.manual_seed(0)
    elements = ("Li", "Fe", "P", "O", "Na", "Cl")
    if architecture == "M3GNet":
        from matgl.models import M3GNet

        model = M3GNet(element_types=elements, is_intensive=False, nblocks=1, units=16, dim_node_embedding=16,
                       dim_edge_embedding=16, max_n=2, max_l=2)
        with torch.no_grad():  # freshly initialised M3GNet is almost flat (forces ~1e-5 eV/Å): x3 gives O(1)
            for p in model.parameters():
                p.mul_(3.0)
    else:
        from matgl.models import TensorNet

        model = TensorNet(element_types=elements, is_intensive=False, units=16, nblocks=1)
    folder = tmp_path / f"tiny-{architecture}"
    Potential(model=model, element_refs=torch.linspace(-3, -1, len(elements)), calc_stresses=True).save(str(folder))
    assert read_matgl_save(folder).saved_by_matgl_3_or_later  # what this matgl writes passes the pre-3.0 rule
    predictor = load_predictor("m3gnet-matpes-pbe", device="cpu", checkpoint=str(folder))
    assert predictor.spec.elements == frozenset(elements)
    calc = PESCalculator(matgl.load_model(str(folder)), stress_unit="eV/A3")
    structures = [
        _rattled(bulk("NaCl", "rocksalt", a=5.64), 1),
        _rattled(bulk("NaCl", "rocksalt", a=5.64).repeat((2, 1, 1)), 2),
        _rattled(bulk("Li", "bcc", a=3.45, cubic=True), 3),
        _rattled(bulk("Fe", "bcc", a=2.87, cubic=True).repeat((1, 1, 2)), 4),
    ]
    _compare(predictor, calc, structures)


# ---- ORB -------------------------------------------------------------------------------------


def test_orb_adapter_matches_orb_calculator(tmp_path):
    _skip_unless("orb_models", "ORB")
    import torch
    from orb_models.forcefield import pretrained
    from orb_models.forcefield.atomic_system import SystemConfig
    from orb_models.forcefield.calculator import ORBCalculator

    from mliap_tui.models.registry import load_predictor

    default = torch.get_default_dtype()
    torch.manual_seed(0)
    try:
        # the full-size orb-v3 conservative network with random weights, saved as orb's .ckpt files are,
        # then loaded by the registry's own named loader (orb_v3_conservative_inf_mpa, compile=False)
        src = pretrained.orb_v3_conservative_architecture(device="cpu", system_config=SystemConfig(6.0, 120))
        ckpt = tmp_path / "random-orb-v3.ckpt"
        torch.save(src.state_dict(), ckpt)
        del src
        predictor = load_predictor("orb-v3-conservative-inf-mpa", device="cpu", checkpoint=str(ckpt))
        assert predictor.conservative
        calc = ORBCalculator(predictor.model, device="cpu")
        structures = [
            _rattled(bulk("NaCl", "rocksalt", a=5.64), 1),
            _rattled(bulk("Si", "diamond", a=5.43), 2),
            _rattled(bulk("NaCl", "rocksalt", a=5.64).repeat((2, 1, 1)), 3),
        ]
        _compare(predictor, calc, structures)
    finally:
        torch.set_default_dtype(default)
