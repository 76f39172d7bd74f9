"""Which matgl saved a model folder, read from its ``model.json`` (no matgl import).

matgl 3.0 corrected the message-passing convention of M3GNet, TensorNet and QET ("pre-trained
weights generated under the old convention are no longer numerically valid", matgl's changelog).
matgl >= 3 still loads an older save without a warning and returns energies that are eV/atom
wrong (the shared M3GNet-MP-2021.2.8 save: NaCl -1.25 eV/atom instead of about -3.6). So a
folder saved by matgl < 3 is refused before it is loaded.

matgl never writes its own version into ``model.json``; ``@model_version`` is the class version
(M3GNet stayed 2 across the fix). What does tell the eras apart (read from the matgl wheels 1.1.3 to
4.1.2 and real saves by 3.0.0 and 4.1.2):

* ``Potential`` gained the ``compile_model`` argument in 3.0.3: every ``Potential.save`` from
  3.0.3 on (all of 4.x) writes it into ``kwargs``; no earlier Potential had it;
* the inner model's ``@module`` ends in ``_m3gnet_pyg``, ``_m3gnet_dgl``, ``_qet_pyg``,
  ``_megnet_pyg`` or ``_megnet_dgl`` only in 3.x saves (3.0.0 - 3.0.2 included);
* TensorNet ``@model_version`` >= 2 was saved by matgl >= 2.2.0, which already had its fix.

Anything else is taken as saved by matgl < 3 and refused (a 3.x DGL-backend TensorNet/QET save
without ``compile_model`` is refused too: the safe side).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

POST_3_MODEL_MODULES = ("_m3gnet_pyg", "_m3gnet_dgl", "_qet_pyg", "_megnet_pyg", "_megnet_dgl")
#: architectures whose weights the 3.0 message-passing fix invalidated
AFFECTED_ARCHITECTURES = frozenset({"M3GNet", "TensorNet", "QET"})


@dataclass(frozen=True)
class MatglSave:
    folder: Path
    architecture: str  # "M3GNet", "TensorNet", ...
    saved_by_matgl_3_or_later: bool
    evidence: str  # one line: what in model.json decided it


def read_matgl_save(folder: str | Path) -> MatglSave:
    """Classify the matgl model folder ``folder`` (reads ``model.json`` only).

    Raises FileNotFoundError when there is no model.json, ValueError when it is not matgl's.
    """
    folder = Path(folder).expanduser()
    path = folder / "model.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder} has no model.json: not a matgl model folder") from None
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or "@class" not in doc:
        raise ValueError(f"{path} is not a matgl model.json (no @class)")
    kwargs = doc.get("kwargs") if isinstance(doc.get("kwargs"), dict) else {}
    inner = kwargs.get("model") if isinstance(kwargs.get("model"), dict) else doc
    arch = str(inner.get("@class", "?"))
    module = str(inner.get("@module", ""))
    version = inner.get("@model_version", 0)
    if doc.get("@class") == "Potential" and "compile_model" in kwargs:
        return MatglSave(folder, arch, True, "its Potential kwargs carry compile_model (matgl >= 3.0.3)")
    if module.endswith(POST_3_MODEL_MODULES):
        return MatglSave(folder, arch, True, f"model module {module} exists only in matgl 3.x")
    if arch == "TensorNet" and isinstance(version, int) and version >= 2:
        return MatglSave(folder, arch, True, "TensorNet @model_version >= 2 (matgl >= 2.2.0, after its fix)")
    return MatglSave(folder, arch, False, "no compile_model in its Potential kwargs and no matgl-3-only module name")


def pre_3_refusal(save: MatglSave, model_id: str, installed: str | None = None) -> str:
    """The one-line message that refuses a save made by matgl < 3."""
    under = f" under the installed {installed}" if installed else " under matgl >= 3"
    hit = "" if save.architecture in AFFECTED_ARCHITECTURES else " (its architecture was not changed, but no other check can vouch for it)"
    return (
        f"{model_id}: {save.folder} was saved by matgl < 3.0 ({save.evidence}){hit}; matgl 3.0 changed the "
        f"message-passing convention of M3GNet/TensorNet/QET, so these {save.architecture} weights give energies "
        f"eV/atom wrong{under}, silently. Use a model published for matgl >= 3 (e.g. the registry's "
        "m3gnet-matpes-pbe, hub M3GNet-PES-MatPES-PBE-2025.2) or a checkpoint you trained and saved with matgl >= 3 "
        "(--trust-model does not override this: no matgl >= 3 evaluates these weights correctly)"
    )


__all__ = ["AFFECTED_ARCHITECTURES", "MatglSave", "POST_3_MODEL_MODULES", "pre_3_refusal", "read_matgl_save"]
