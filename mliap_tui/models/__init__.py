"""Model layer: the adapter contract (``base``), the registry and one adapter per family.

Importing ``mliap_tui.models`` is cheap (no torch): adapters are imported by ``load_predictor``.

    from mliap_tui.models import REGISTRY, availability, load_predictor
    predictor = load_predictor("chgnet-0.3.0", device="auto")
    predictions = predictor.predict(atoms_list, forces=True, stress=True)
"""

from mliap_tui.models.base import (
    ModelSpec,
    ModelUnavailable,
    Prediction,
    Predictor,
    UnsupportedElements,
)
from mliap_tui.models.registry import (
    REGISTRY,
    Availability,
    availability,
    get_spec,
    load_predictor,
    resolve_device,
)

__all__ = [
    "REGISTRY",
    "Availability",
    "ModelSpec",
    "ModelUnavailable",
    "Prediction",
    "Predictor",
    "UnsupportedElements",
    "availability",
    "get_spec",
    "load_predictor",
    "resolve_device",
]
