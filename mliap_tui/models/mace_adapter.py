"""MACE adapter: ``mace_mp(model=...)`` loads the foundation model (or a local checkpoint); the batch
is built with MACE's own ``AtomicData.from_config`` per structure and collated with MACE's
torch_geometric ``Batch``, then one forward per batch.

MACE-MP-0 / MPA-0 were trained on uncorrected PBE(+U) energies (raw_pbe). Output energies are
total (eV per cell), forces eV/Å, stress (ASE sign) converted from eV/Å^3 to GPa.
"""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from mliap_tui.models.base import ModelSpec, ModelUnavailable, Prediction, split_batch
from mliap_tui.models.registry import (
    BatchedPredictor,
    allow_e3nn_slice_unpickling,
    check_elements,
    stress_ev_per_ang3_to_gpa,
    voigt6_from_3x3,
    with_elements,
)


@dataclass
class MACEBatch:
    batch: Any  # mace.tools.torch_geometric.Batch, on the CPU
    n_atoms: list[int]
    forces: bool
    stress: bool


def _config_from_atoms(atoms: Any, head: str) -> Any:
    """mace's Configuration of ``atoms`` (API of mace-torch >= 0.3.10, with a fallback for older)."""
    from mace import data as mace_data

    key_spec_cls = getattr(mace_data, "KeySpecification", None)
    if key_spec_cls is not None:
        return mace_data.config_from_atoms(atoms, key_specification=key_spec_cls(info_keys={}, arrays_keys={}), head_name=head)
    return mace_data.config_from_atoms(atoms, head_name=head)


class MACEPredictor(BatchedPredictor):
    def __init__(self, spec: ModelSpec, calculator: Any, device: str, dtype: str):
        from ase.data import chemical_symbols

        self.calc = calculator
        self.model = calculator.models[0]
        self.model.eval()
        self.z_table = calculator.z_table
        self.r_max_ang = float(calculator.r_max)
        self.heads = list(getattr(calculator, "available_heads", ["Default"]))
        head = getattr(calculator, "head", self.heads[0])
        self.head = head if isinstance(head, str) else head[0]
        self.spec = with_elements(spec, [chemical_symbols[int(z)] for z in self.z_table.zs])
        self.device = device
        self.dtype = dtype

    def prepare(self, atoms_list: Sequence[Any], forces: bool = False, stress: bool = False) -> MACEBatch:
        from mace import data as mace_data
        from mace.tools import torch_geometric, torch_tools

        check_elements(self.spec, atoms_list)
        graphs = []
        with torch_tools.default_dtype(self.dtype):
            for atoms in atoms_list:
                config = _config_from_atoms(atoms, self.head)
                graphs.append(
                    mace_data.AtomicData.from_config(config, z_table=self.z_table, cutoff=self.r_max_ang, heads=self.heads)
                )
        batch = torch_geometric.Batch.from_data_list(graphs)
        return MACEBatch(batch, [len(a) for a in atoms_list], forces, stress)

    def run(self, prepared: MACEBatch) -> list[Prediction]:
        import torch

        batch = copy.copy(prepared.batch).to(self.device)  # keep `prepared` on the CPU and reusable
        batch_dict = batch.to_dict()
        need_grad = prepared.forces or prepared.stress
        with torch.enable_grad() if need_grad else torch.no_grad():
            out = self.model(
                batch_dict,
                compute_force=prepared.forces,
                compute_stress=prepared.stress,
                training=False,
            )
        energies = out["energy"].detach().cpu().double().numpy().reshape(-1)
        forces = out["forces"].detach().cpu().numpy().astype(float) if prepared.forces else None
        stresses = out["stress"].detach().cpu().numpy().astype(float) if prepared.stress else None
        stress_gpa = None if stresses is None else np.array([stress_ev_per_ang3_to_gpa(voigt6_from_3x3(s)) for s in stresses])
        return split_batch(energies, prepared.n_atoms, forces, stress_gpa)

    def ase_calculator(self) -> Any:
        """The MACECalculator that ``mace_mp`` built (same model object)."""
        return self.calc


def load(spec: ModelSpec, device: str = "cpu", dtype: str = "float32", checkpoint: str | None = None) -> MACEPredictor:
    allow_e3nn_slice_unpickling()
    from mace.calculators import mace_mp

    quiet = io.StringIO()  # mace_mp prints which model and dtype it uses
    try:
        with contextlib.redirect_stdout(quiet):
            calc = mace_mp(model=checkpoint or spec.weights, device=device, default_dtype=dtype)
    except RuntimeError as exc:  # "Model download failed and no local model found"
        cause = exc.__cause__ or exc
        raise ModelUnavailable(
            f"{spec.id}: could not download or find {spec.options['url']} ({type(cause).__name__}: "
            f"{str(cause).splitlines()[0] if str(cause) else ''}): run once with network access or pass --checkpoint PATH"
        ) from exc
    return MACEPredictor(spec, calc, device=device, dtype=dtype)
