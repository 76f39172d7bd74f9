"""The contract every model adapter implements.

An adapter turns a list of ASE ``Atoms`` into total energies (and, when asked, forces and stress)
with its family's own *batched* path. Work is split in two so the engine can overlap them:

* ``prepare(atoms_list)`` runs on the CPU (neighbour lists, graph building) and returns an opaque
  batch object; it is called from a prefetch thread while the previous batch is on the device.
* ``run(prepared)`` moves the batch to the device, runs the model and returns one ``Prediction``
  per structure, in order.

``predict(atoms_list)`` is simply ``run(prepare(atoms_list))``.
Units: energies in eV (total, per cell), forces in eV/Å, stress in GPa (Voigt xx yy zz yz xz xy,
positive = tensile, ASE sign convention).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from mliap_tui.core.vocab import EnergyConvention


class ModelUnavailable(RuntimeError):
    """The model cannot be used here; the message says what to do (one line, actionable)."""


class UnsupportedElements(ValueError):
    """A structure holds elements outside the model's coverage."""


@dataclass(frozen=True)
class ModelSpec:
    id: str  # registry id, e.g. "chgnet-0.3.0"
    family: str  # chgnet | sevenn | mace | matgl | orb
    version: str  # model/weights version as the family names it
    package: str  # importable module that must be installed, e.g. "chgnet"
    pip_extra: str  # `pip install 'mliap-tui[<extra>]'`
    weights: str  # what the family's loader is given by default (a name, or a URL/hub id)
    energy_convention: EnergyConvention
    weights_offline: bool  # True when the weights ship inside the package wheel
    default_batch_atoms: int  # atoms per batch on a GPU; CPU uses a fraction
    elements: frozenset[str] | None = None  # None = not restricted / unknown
    description: str = ""
    citation: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def unsupported(self, species: Sequence[str]) -> list[str]:
        if self.elements is None:
            return []
        return sorted(set(species) - self.elements)


@dataclass
class Prediction:
    energy_ev: float
    forces_ev_per_ang: np.ndarray | None = None  # (n_atoms, 3)
    stress_gpa: np.ndarray | None = None  # (6,) Voigt


@dataclass
class RelaxedPrediction(Prediction):
    """A prediction at the end of a relaxation: the relaxed cell, its symmetry and the steps taken."""

    lattice_ang: np.ndarray | None = None  # (3, 3) row vectors
    frac_coords: np.ndarray | None = None  # (n_atoms, 3)
    steps: int = 0
    spacegroup_number: int | None = None
    total_dof: int | None = None
    engine: str | None = None  # vocab.RelaxEngine
    converged: bool | None = None  # False: stopped at the step cap
    fmax_ev_per_ang: float | None = None  # the convergence measure at the final geometry

    def relaxed_columns(self) -> dict[str, Any]:
        """The relax-mode columns of a prediction row (``mliap_tui.cache.schema``)."""
        return {
            "relaxed_lattice_ang": None if self.lattice_ang is None else np.asarray(self.lattice_ang, float).ravel().tolist(),
            "relaxed_frac_coords": None if self.frac_coords is None else np.asarray(self.frac_coords, float).ravel().tolist(),
            "relax_steps": int(self.steps),
            "relaxed_spacegroup_number": self.spacegroup_number,
            "relaxed_total_dof": self.total_dof,
            "relax_engine": self.engine,
            "relax_converged": self.converged,
            "relax_fmax_ev_per_ang": self.fmax_ev_per_ang,
        }


def mp2020_energy(native: float | None, convention: str, correction: float | None) -> float | None:
    """A model energy (eV/atom) on the MP2020-corrected scale of the DFT reference.

    ``mp2020`` models (CHGNet) as they are; ``raw_pbe`` models plus the structure's MP2020
    correction (None when it is unknown); ``r2scan`` (or unknown) conventions: None, not on the
    PBE scale at all. See docs/ENGINE_PROTOCOL.md, "Energies".
    """
    if native is None:
        return None
    if convention == EnergyConvention.MP2020:
        return native
    if convention == EnergyConvention.RAW_PBE:
        if correction is None or not np.isfinite(correction):
            return None
        return native + float(correction)
    return None


class Predictor(Protocol):
    spec: ModelSpec
    device: str
    dtype: str

    def prepare(self, atoms_list: Sequence[Any], forces: bool = False, stress: bool = False) -> Any: ...

    def run(self, prepared: Any) -> list[Prediction]: ...

    def predict(self, atoms_list: Sequence[Any], forces: bool = False, stress: bool = False) -> list[Prediction]: ...

    def ase_calculator(self) -> Any:
        """The family's own ASE calculator, for relaxations and for the naive-loop benchmark."""
        ...


@dataclass(frozen=True)
class PluginModel:
    """What an entry point of the ``mliap_tui.models`` group provides (``models/plugins.py``).

    ``load(spec, device=..., dtype=..., checkpoint=...)`` returns a predictor: a batched one
    (``prepare``/``run``/``predict``, e.g. a :class:`mliap_tui.models.registry.BatchedPredictor`
    subclass), or :class:`mliap_tui.models.ase_adapter.AsePredictor` around an ASE calculator.
    ``spec.options["weights_files"]`` (paths) names the weights, for the cache's fingerprint.
    """

    spec: ModelSpec
    load: Callable[..., Any]


def split_batch(
    energies_ev: np.ndarray,
    n_atoms: Sequence[int],
    forces_ev_per_ang: np.ndarray | None = None,
    stress_gpa: np.ndarray | None = None,
) -> list[Prediction]:
    """One Prediction per structure from a batch's outputs.

    ``energies_ev``: (B,) total energies; ``forces_ev_per_ang``: (sum n_atoms, 3) stacked in
    structure order; ``stress_gpa``: (B, 6) Voigt in ASE order and sign.
    """
    energies = np.asarray(energies_ev, dtype=float).reshape(-1)
    results, start = [], 0
    for i, n in enumerate(n_atoms):
        pred = Prediction(energy_ev=float(energies[i]))
        if forces_ev_per_ang is not None:
            pred.forces_ev_per_ang = np.array(forces_ev_per_ang[start : start + n], dtype=float)
        if stress_gpa is not None:
            pred.stress_gpa = np.array(stress_gpa[i], dtype=float)
        results.append(pred)
        start += n
    return results
