"""matgl adapter (M3GNet, TensorNet): ``matgl.load_model(name)`` (Hugging Face hub, cached in
~/.cache/matgl) or a local model folder; graphs built with matgl's ``Atoms2Graph``, batched with
torch_geometric ``Batch``, one ``Potential`` forward per batch.

Saves made by matgl < 3 are refused before loading (``models/matgl_saves.py``): matgl >= 3 loads
them silently but evaluates them with another message-passing convention. MatPES-PBE and
MPF.2021.2.8 models are trained on raw PBE energies. ``Potential`` returns total energies (eV),
forces (eV/Å) and stress (1/V dE/dε, ASE sign) already in GPa.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from mliap_tui.models.base import ModelSpec, ModelUnavailable, Prediction, split_batch
from mliap_tui.models.registry import (
    BatchedPredictor,
    check_elements,
    voigt6_from_3x3,
    with_elements,
)


@dataclass
class MatglBatch:
    graph: Any  # torch_geometric Batch
    lattice: Any  # (B, 3, 3) Å
    state_attr: Any  # (B, n_state) or None
    n_atoms: list[int]
    forces: bool
    stress: bool


def _potential_variant(potential: Any, forces: bool, stress: bool) -> Any:
    """A shallow copy of ``potential`` (shared weights) that computes only what is asked.

    matgl's Potential derives stress from the same autograd call as forces, so stress implies it.
    """
    variant = copy.copy(potential)
    variant.calc_forces = bool(forces or stress)
    variant.calc_stresses = bool(stress)
    variant.calc_hessian = False
    return variant


class MatglPredictor(BatchedPredictor):
    def __init__(self, spec: ModelSpec, potential: Any, device: str, dtype: str):
        from matgl.ext.ase import Atoms2Graph

        potential = potential.to(device)
        if dtype == "float64":
            potential = potential.double()
        potential.eval()
        self.potential = potential
        self.element_types = tuple(potential.model.element_types)
        self.cutoff_ang = float(potential.model.cutoff)
        self._converter = Atoms2Graph(self.element_types, self.cutoff_ang)
        self._variants = {
            (f, s): _potential_variant(potential, f, s) for f in (False, True) for s in (False, True)
        }
        self.spec = with_elements(spec, self.element_types)
        self.device = device
        self.dtype = dtype

    def prepare(self, atoms_list: Sequence[Any], forces: bool = False, stress: bool = False) -> MatglBatch:
        import torch
        from torch_geometric.data import Batch

        check_elements(self.spec, atoms_list)
        graphs, lattices, states = [], [], []
        for atoms in atoms_list:
            if not atoms.pbc.all():
                raise ValueError(f"{atoms.get_chemical_formula()}: only fully periodic crystals are supported")
            graph, lattice, state_attr = self._converter.get_graph(atoms)
            graphs.append(graph)
            lattices.append(torch.as_tensor(lattice).reshape(1, 3, 3))
            states.append(None if state_attr is None else torch.as_tensor(state_attr).reshape(1, -1))
        batch = Batch.from_data_list(graphs)
        lattice = torch.cat(lattices, dim=0)
        state_attr = None if any(s is None for s in states) else torch.cat(states, dim=0)
        return MatglBatch(batch, lattice, state_attr, [len(a) for a in atoms_list], forces, stress)

    def run(self, prepared: MatglBatch) -> list[Prediction]:
        import torch

        potential = self._variants[(prepared.forces, prepared.stress)]
        graph = prepared.graph.to(self.device)
        lattice = prepared.lattice.to(self.device)
        state_attr = prepared.state_attr.to(self.device) if prepared.state_attr is not None else None
        with torch.enable_grad() if (prepared.forces or prepared.stress) else torch.no_grad():
            out = potential(graph, lattice, state_attr)
        energies = out[0].detach().cpu().double().numpy().reshape(-1)
        forces = out[1].detach().cpu().numpy().astype(float) if prepared.forces else None
        stresses = out[2].detach().cpu().numpy().astype(float).reshape(-1, 3, 3) if prepared.stress else None
        stress_gpa = None if stresses is None else np.array([voigt6_from_3x3(s) for s in stresses])
        return split_batch(energies, prepared.n_atoms, forces, stress_gpa)

    def ase_calculator(self) -> Any:
        """matgl's PESCalculator, with stress in eV/Å^3 as ASE optimisers expect."""
        from matgl.ext.ase import PESCalculator

        return PESCalculator(self.potential, stress_unit="eV/A3")


def load(spec: ModelSpec, device: str = "cpu", dtype: str = "float32", checkpoint: str | None = None) -> MatglPredictor:
    import matgl

    from mliap_tui.models.registry import matgl_cached_dirs, refuse_pre_3_matgl_save

    for folder in [checkpoint] if checkpoint is not None else matgl_cached_dirs(spec.weights):
        refuse_pre_3_matgl_save(spec, folder)  # a folder saved by matgl < 3 evaluates wrongly, silently
    try:
        potential = matgl.load_model(checkpoint or spec.weights)
    except (RuntimeError, ValueError, OSError) as exc:
        if checkpoint is not None:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        why = spec.options.get("hub_note") or (
            "no cached copy in ~/.cache/matgl and the Hugging Face hub is unreachable: run once with network "
            "access or pass --checkpoint MODEL_DIR"
        )
        raise ModelUnavailable(f"{spec.id}: matgl could not load {spec.weights} ({first[:120]}); {why}") from exc
    if not hasattr(potential, "calc_forces"):
        raise ModelUnavailable(f"{spec.id}: {checkpoint or spec.weights} is not a matgl Potential (PES) model: pass a *-PES model")
    return MatglPredictor(spec, potential, device=device, dtype=dtype)
