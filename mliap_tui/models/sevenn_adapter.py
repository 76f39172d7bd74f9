"""SevenNet adapter: sevenn's own graph building per structure, torch_geometric batching, one
batched forward (``set_is_batch_data(True)``, the path of ``sevenn inference``) per batch.

SevenNet-0 and SevenNet-l3i5 ship inside the sevenn wheel. Energies are total (eV per cell) on the
raw PBE scale; sevenn's stress output (-virial/V, order xx yy zz xy yz zx, eV/Å^3) is converted to
ASE sign and order and to GPa, exactly as ``SevenNetCalculator`` does before the unit change.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from mliap_tui.models.base import ModelSpec, Prediction, split_batch
from mliap_tui.models.registry import (
    BatchedPredictor,
    allow_e3nn_slice_unpickling,
    check_elements,
    stress_ev_per_ang3_to_gpa,
    with_elements,
)

# sevenn's (xx, yy, zz, xy, yz, zx) -> ASE Voigt (xx, yy, zz, yz, xz, xy)
_SEVENN_TO_ASE_VOIGT = [0, 1, 2, 4, 5, 3]


@dataclass
class SevenNetBatch:
    batch: Any  # torch_geometric Batch of sevenn AtomGraphData, on the CPU
    n_atoms: list[int]
    forces: bool
    stress: bool


def _energy_only_model(model: Any) -> Any:
    """A view of ``model`` without its force/stress output module (shares all parameters).

    SevenNet always differentiates the energy w.r.t. the edge vectors; for energy-only batches
    that autograd pass is wasted work, so the last module is skipped and no graph is recorded.
    """
    view = copy.copy(model)  # new attribute dict, same submodules and parameters
    view._modules = OrderedDict((k, m) for k, m in model._modules.items() if k != "force_output")
    view.key_grad = None
    return view


def _make_float64(model: Any) -> None:
    """Convert ``model`` to float64, including the one-hot node features sevenn builds as float32."""
    import torch

    model.to(torch.float64)

    def _onehot_to_float64(module: Any, inputs: Any, data: Any) -> Any:
        for key in {module.key_output, module.key_additional_output} - {None}:
            data[key] = data[key].to(torch.float64)
        return data

    for module in model:
        if type(module).__name__ == "OnehotEmbedding":
            module.register_forward_hook(_onehot_to_float64)


class SevenNetPredictor(BatchedPredictor):
    def __init__(self, spec: ModelSpec, checkpoint_ref: str, device: str, dtype: str):
        import sevenn._keys as KEY
        import torch
        from sevenn.util import load_checkpoint

        cp = load_checkpoint(checkpoint_ref)
        model = cp.build_model()
        if getattr(model, "modal_map", None):
            raise ValueError(
                f"{checkpoint_ref} is a multi-fidelity SevenNet model (modals {list(model.modal_map)}); "
                "only single-fidelity checkpoints are supported"
            )
        model.set_is_batch_data(True)
        model.to(device)
        if dtype == "float64":
            _make_float64(model)
        model.eval()
        self.model = model
        self._energy_model = _energy_only_model(model) if "force_output" in model._modules else None
        self.cutoff_ang = float(cp.config[KEY.CUTOFF])
        self.spec = with_elements(spec, cp.config[KEY.CHEMICAL_SPECIES])
        self.checkpoint_ref = checkpoint_ref
        self.device = device
        self.dtype = dtype
        self._KEY = KEY
        self._torch = torch

    def prepare(self, atoms_list: Sequence[Any], forces: bool = False, stress: bool = False) -> SevenNetBatch:
        from sevenn.atom_graph_data import AtomGraphData
        from sevenn.train.dataload import unlabeled_atoms_to_graph
        from torch_geometric.loader.dataloader import Collater

        check_elements(self.spec, atoms_list)
        graphs = [AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(a, self.cutoff_ang)) for a in atoms_list]
        batch = Collater([], None, None)(graphs)
        if self.dtype == "float64":
            for key in batch.keys():
                value = batch[key]
                if isinstance(value, self._torch.Tensor) and value.is_floating_point():
                    batch[key] = value.to(self._torch.float64)
        return SevenNetBatch(batch, [len(a) for a in atoms_list], forces, stress)

    def run(self, prepared: SevenNetBatch) -> list[Prediction]:
        torch, KEY = self._torch, self._KEY
        batch = copy.copy(prepared.batch).to(self.device)  # the model writes into its input: keep `prepared` clean
        if prepared.forces or prepared.stress or self._energy_model is None:
            with torch.enable_grad():
                out = self.model(batch)
        else:
            with torch.no_grad():
                out = self._energy_model(batch)
        energies = out[KEY.PRED_TOTAL_ENERGY].detach().cpu().double().numpy().reshape(-1)
        forces = out[KEY.PRED_FORCE].detach().cpu().numpy().astype(float) if prepared.forces else None
        stresses = out[KEY.PRED_STRESS].detach().cpu().numpy().astype(float) if prepared.stress else None
        stress_gpa = None if stresses is None else np.array([stress_ev_per_ang3_to_gpa(-s[_SEVENN_TO_ASE_VOIGT]) for s in stresses])
        return split_batch(energies, prepared.n_atoms, forces, stress_gpa)

    def ase_calculator(self) -> Any:
        """sevenn's SevenNetCalculator on the same checkpoint (it runs in float32 only)."""
        from sevenn.calculator import SevenNetCalculator

        return SevenNetCalculator(self.checkpoint_ref, device=self.device)


def load(spec: ModelSpec, device: str = "cpu", dtype: str = "float32", checkpoint: str | None = None) -> SevenNetPredictor:
    allow_e3nn_slice_unpickling()
    import warnings

    with warnings.catch_warnings():
        # sevenn warns that no tensor-product accelerator (cuEquivariance/FlashTP) is enabled
        warnings.filterwarnings("ignore", message="No tensor product accelerator")
        return SevenNetPredictor(spec, checkpoint or spec.weights, device=device, dtype=dtype)
