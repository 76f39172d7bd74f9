"""Any ASE calculator as a predictor: evaluated one structure at a time.

The per-structure path of plug-in and ``ase:`` models (``models/plugins.py``). Energies are the
calculator's total energy (eV per cell); forces eV/Å; stress converted from ASE's eV/Å^3 (Voigt
xx yy zz yz xz xy, ASE sign) to GPa, the units of every other adapter.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mliap_tui.core.units import GPA_PER_EV_PER_ANG3
from mliap_tui.models.base import ModelSpec, Prediction
from mliap_tui.models.registry import BatchedPredictor, check_elements


def is_batched_predictor(obj: Any) -> bool:
    """Does ``obj`` follow mliap-tui's predictor contract (``prepare``/``run``/``predict`` and a spec)?"""
    return all(callable(getattr(obj, name, None)) for name in ("prepare", "run", "predict")) and hasattr(obj, "spec")


class AsePredictor(BatchedPredictor):
    """Wraps one ASE calculator. ``prepare`` copies the structures; ``run`` evaluates them in turn."""

    def __init__(self, spec: ModelSpec, calculator: Any, device: str = "cpu", dtype: str = "float32"):
        self.spec = spec
        self.calc = calculator
        self.device = device
        self.dtype = dtype

    def prepare(self, atoms_list: Sequence[Any], forces: bool = False, stress: bool = False) -> Any:
        check_elements(self.spec, atoms_list)
        return [a.copy() for a in atoms_list], forces, stress

    def run(self, prepared: Any) -> list[Prediction]:
        atoms_list, forces, stress = prepared
        out = []
        for atoms in atoms_list:
            atoms.calc = self.calc
            try:
                pred = Prediction(energy_ev=float(atoms.get_potential_energy()))
                if forces:
                    pred.forces_ev_per_ang = np.asarray(atoms.get_forces(), dtype=float)
                if stress:
                    pred.stress_gpa = np.asarray(atoms.get_stress(voigt=True), dtype=float) * GPA_PER_EV_PER_ANG3
            finally:
                atoms.calc = None
            out.append(pred)
        return out

    def ase_calculator(self) -> Any:
        return self.calc


__all__ = ["AsePredictor", "is_batched_predictor"]
