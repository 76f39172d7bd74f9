"""An mliap-tui model plug-in: ASE's EMT calculator (effective-medium theory, Jacobsen et al.).

mliap-tui finds it through the entry point ``emt = "mliap_emt_plugin:plugin"`` in the group
``mliap_tui.models`` (see pyproject.toml). The entry point gives a ``PluginModel``: the model's
``ModelSpec`` (id, energy convention, element coverage...) and a ``load`` function returning a
predictor. Here the predictor is mliap-tui's per-structure wrapper around an ASE calculator; a
plug-in for a GPU model would return a batched predictor instead (a subclass of
``mliap_tui.models.registry.BatchedPredictor`` with ``prepare``/``run``, as the built-in adapters).

EMT is not a DFT surrogate: its energies are not on the PBE scale. It is here because it is small,
real and ships with ASE, so the whole plug-in path can be run anywhere.
"""

from __future__ import annotations

from mliap_tui.models.ase_adapter import AsePredictor
from mliap_tui.models.base import ModelSpec, PluginModel

#: ASE's EMT has parameters for these metals (and rough ones for H, C, N, O, left out here)
EMT_ELEMENTS = frozenset({"Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt"})


def load(spec: ModelSpec, device: str = "cpu", dtype: str = "float32", checkpoint: str | None = None) -> AsePredictor:
    from ase.calculators.emt import EMT

    return AsePredictor(spec, EMT(), device=device, dtype=dtype)


def plugin() -> PluginModel:
    spec = ModelSpec(
        id="emt",
        family="emt",
        version="ase EMT",
        package="ase",
        pip_extra="",
        weights="EMT parameters (Jacobsen, Stoltze, Norskov 1996)",
        energy_convention="raw_pbe",
        weights_offline=True,
        default_batch_atoms=512,
        elements=EMT_ELEMENTS,
        description="ASE's effective-medium theory for fcc metals (an example plug-in, not a DFT surrogate)",
        citation="Jacobsen, Stoltze, Norskov, Surf. Sci. 366, 394 (1996)",
    )
    return PluginModel(spec=spec, load=load)
