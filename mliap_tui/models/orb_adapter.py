"""ORB adapter (orb-models): ``pretrained.orb_v3_conservative_inf_mpa()`` / ``pretrained.orb_v2()``
(weights fetched by cached_path into ~/.cache/cached_path) or a local checkpoint given as
``weights_path``; graphs built with ``ase_atoms_to_atom_graphs`` on the CPU, joined with
``batch_graphs``, one ``model.predict`` per batch.

orb-models pins rich<14 (through cached_path), which breaks textual: install it in its own venv and
point the engine at that interpreter. ORB energies are raw PBE, total per cell (eV); forces eV/Å;
stress (ASE order and sign) converted from eV/Å^3 to GPa. Conservative models (v3) take forces and
stress as gradients of the energy; direct models (v2) read them from their heads.

Precision: float32 loads with ``precision="float32-highest"`` (no TF32 matmuls, so numbers are
comparable across families); float64 uses orb's ``"float64"``, which, as orb-models does, leaves
torch's default dtype at float64 in this process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from mliap_tui.models.base import ModelSpec, ModelUnavailable, Prediction, split_batch
from mliap_tui.models.registry import (
    BatchedPredictor,
    check_elements,
    stress_ev_per_ang3_to_gpa,
)


@dataclass
class ORBBatch:
    batch: Any  # orb AtomGraphs (batched), on the CPU
    n_atoms: list[int]
    forces: bool
    stress: bool


class ORBPredictor(BatchedPredictor):
    def __init__(self, spec: ModelSpec, model: Any, device: str, dtype: str):
        self.model = model
        self.model.eval()
        self.conservative = hasattr(model, "grad_forces_name")
        self.system_config = model.system_config
        self.spec = spec  # ORB embeds Z = 1..118 and enforces no element list
        self.device = device
        self.dtype = dtype

    def _names(self) -> tuple[str, str]:
        if self.conservative:
            return self.model.grad_forces_name, self.model.grad_stress_name
        return "forces", "stress"

    def prepare(self, atoms_list: Sequence[Any], forces: bool = False, stress: bool = False) -> ORBBatch:
        import torch
        from orb_models.forcefield.atomic_system import ase_atoms_to_atom_graphs
        from orb_models.forcefield.base import batch_graphs

        check_elements(self.spec, atoms_list)
        graphs = [
            ase_atoms_to_atom_graphs(
                atoms,
                system_config=self.system_config,
                device=torch.device("cpu"),
                output_dtype=self.torch_dtype,
                graph_construction_dtype=self.torch_dtype,
            )
            for atoms in atoms_list
        ]
        return ORBBatch(batch_graphs(graphs), [len(a) for a in atoms_list], forces, stress)

    def run(self, prepared: ORBBatch) -> list[Prediction]:
        import torch

        batch = prepared.batch.to(self.device)
        # conservative models differentiate the energy even for energy-only calls
        grad_ctx = torch.enable_grad() if self.conservative else torch.no_grad()
        with grad_ctx:
            out = self.model.predict(batch)
        forces_name, stress_name = self._names()
        energies = out["energy"].detach().cpu().double().numpy().reshape(-1)
        forces = out[forces_name].detach().cpu().numpy().astype(float) if prepared.forces else None
        stresses = out[stress_name].detach().cpu().numpy().astype(float).reshape(-1, 6) if prepared.stress else None
        stress_gpa = None if stresses is None else np.array([stress_ev_per_ang3_to_gpa(s) for s in stresses])
        return split_batch(energies, prepared.n_atoms, forces, stress_gpa)

    def ase_calculator(self) -> Any:
        from orb_models.forcefield.calculator import ORBCalculator

        return ORBCalculator(self.model, device=self.device)


def load(spec: ModelSpec, device: str = "cpu", dtype: str = "float32", checkpoint: str | None = None) -> ORBPredictor:
    import warnings

    from orb_models.forcefield import pretrained

    loader = getattr(pretrained, spec.options["loader"], None)
    if loader is None:
        raise ModelUnavailable(
            f"{spec.id}: this orb-models has no pretrained.{spec.options['loader']}: pip install -U orb-models (in the orb venv)"
        )
    precision = "float64" if dtype == "float64" else "float32-highest"
    kwargs = dict(device=device, precision=precision, compile=False)
    if checkpoint is not None:
        kwargs["weights_path"] = checkpoint
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Setting global torch default dtype")
            warnings.filterwarnings("ignore", message="Consider passing 'precision=float32-high'")
            model = loader(**kwargs)
    except (ConnectionError, OSError) as exc:
        if checkpoint is not None:
            raise
        raise ModelUnavailable(
            f"{spec.id}: could not download {spec.options['url']} ({type(exc).__name__}): run once with network "
            "access (cached in ~/.cache/cached_path) or pass --checkpoint PATH"
        ) from exc
    return ORBPredictor(spec, model, device=device, dtype=dtype)
