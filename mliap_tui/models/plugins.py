"""Models from outside the package: entry-point plug-ins and ``ase:`` calculator references.

Two ways to put a model next to the built-in families without editing the registry:

1. **An entry point** in the group ``mliap_tui.models`` of any installed distribution. Its name is
   the model id; it points at a :class:`~mliap_tui.models.base.PluginModel` (a ``ModelSpec`` and a
   ``load(spec, device=, dtype=, checkpoint=)`` returning a predictor, batched or not), or at a
   callable without arguments that returns one. In the plug-in's ``pyproject.toml``::

       [project.entry-points."mliap_tui.models"]
       my-finetuned-chgnet = "my_package.mliap:plugin"

   See ``examples/emt_plugin/`` for a complete, installable example.

2. **An ASE calculator factory**, named on the command line::

       ase:package.module:factory[:kwargs-json]           e.g. ase:ase.calculators.emt:EMT
       NAME=ase:package.module:factory[:kwargs-json]      the same, stored under model id NAME
       ase[mp2020]:package.module:factory ...             energy convention (default raw_pbe)

   ``factory(**kwargs)`` is called once per worker. An ASE calculator is evaluated one structure
   at a time; if the factory returns one of mliap-tui's batched predictors (anything with
   ``prepare``/``run``/``predict``, e.g. :func:`batched`), the batched path is used. Without
   ``NAME=`` the model id is ``ase-<factory>`` (plus a hash of the kwargs when there are any).

Either way the model goes through the same engine, cache, canary check and explorer as the
built-in ones. Plug-ins declare their energy convention in their spec; ``ase:`` models are taken
as raw PBE total energies (the MP2020 correction is added before comparing) unless told otherwise.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import re
import warnings
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from mliap_tui.core.vocab import EnergyConvention
from mliap_tui.models.base import ModelSpec, PluginModel

ENTRY_POINT_GROUP = "mliap_tui.models"
ASE_PREFIX = "ase"
#: ``[NAME=]ase[ [convention] ]:module.path:factory[:kwargs-json]``
_ASE_REF = re.compile(
    r"^(?:(?P<name>[A-Za-z0-9][A-Za-z0-9._+-]*)=)?ase(?:\[(?P<conv>[a-z0-9_]+)\])?:"
    r"(?P<module>[A-Za-z_][\w.]*):(?P<factory>[A-Za-z_]\w*)(?::(?P<kwargs>.*))?$",
    re.S,
)


class PluginError(ValueError):
    """A plug-in or ``ase:`` reference that cannot be used; the message says what to fix."""


# ---- ase: references -------------------------------------------------------------------------


@dataclass(frozen=True)
class AseRef:
    name: str
    module: str
    factory: str
    kwargs: dict[str, Any]
    convention: str
    convention_given: bool = False  # ase[conv]: in the reference (else the default, raw_pbe)

    @property
    def canonical(self) -> str:
        """The reference without the name, kwargs in canonical JSON: what identifies the model."""
        kw = f":{json.dumps(self.kwargs, sort_keys=True, separators=(',', ':'))}" if self.kwargs else ""
        return f"ase[{self.convention}]:{self.module}:{self.factory}{kw}"


def is_ase_ref(text: str) -> bool:
    return _ASE_REF.match(text.strip()) is not None


def parse_ase_ref(text: str) -> AseRef:
    """Parse ``[NAME=]ase[conv]:module:factory[:kwargs-json]``; PluginError says what is wrong."""
    m = _ASE_REF.match(text.strip())
    if not m:
        raise PluginError(
            f"cannot read {text!r}: an ASE model is ase:package.module:factory[:kwargs-json], "
            "e.g. ase:ase.calculators.emt:EMT or NAME=ase:mypkg.calc:make:{\"device\":\"cpu\"}"
        )
    kwargs: dict[str, Any] = {}
    if m["kwargs"]:
        try:
            kwargs = json.loads(m["kwargs"])
        except json.JSONDecodeError as exc:
            raise PluginError(f"{text!r}: the keyword arguments are not valid JSON ({exc.msg})") from None
        if not isinstance(kwargs, dict):
            raise PluginError(f"{text!r}: the keyword arguments must be a JSON object, e.g. {{\"a\": 1}}")
    conv = m["conv"] or EnergyConvention.RAW_PBE.value
    if conv not in EnergyConvention._value2member_map_:
        known = ", ".join(e.value for e in EnergyConvention)
        raise PluginError(f"{text!r}: unknown energy convention {conv!r} (use one of {known})")
    name = m["name"]
    if not name:
        name = f"ase-{m['factory'].lower()}"
        if kwargs:
            digest = hashlib.sha256(json.dumps(kwargs, sort_keys=True).encode()).hexdigest()[:6]
            name += f"-{digest}"
    return AseRef(name, m["module"], m["factory"], kwargs, conv, m["conv"] is not None)


def _files_named_in(kwargs: dict[str, Any]) -> list[str]:
    """String values of ``kwargs`` (nested too) that name existing files: their content is identity."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
        elif isinstance(value, str) and len(value) < 4096:
            try:
                if Path(value).expanduser().is_file():
                    found.append(str(Path(value).expanduser()))
            except OSError:
                pass

    walk(kwargs)
    return found


def ase_spec(text: str) -> ModelSpec:
    """The ModelSpec of an ``ase:`` reference (family ``ase``)."""
    ref = parse_ase_ref(text)
    return ModelSpec(
        id=ref.name,
        family="ase",
        version=f"{ref.module}:{ref.factory}",
        package=ref.module.split(".", 1)[0],
        pip_extra="",
        weights=ref.canonical,
        energy_convention=EnergyConvention(ref.convention),
        weights_offline=True,
        default_batch_atoms=2048,
        elements=None,
        description=f"ASE calculator {ref.module}.{ref.factory}({', '.join(f'{k}={v!r}' for k, v in ref.kwargs.items())})",
        options={"ref": text.strip(), "identity": ref.canonical, "identity_files": _files_named_in(ref.kwargs)},
    )


# ---- entry points ----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _discover() -> tuple[dict[str, tuple[Any, str]], tuple[str, ...]]:
    """{model id: (entry point, distribution)} and the problems met (one line each)."""
    found: dict[str, tuple[Any, str]] = {}
    problems: list[str] = []
    try:
        eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception as exc:  # noqa: BLE001 - broken metadata somewhere on the path
        return {}, (f"reading entry points failed: {exc}",)
    for ep in eps:
        dist = getattr(getattr(ep, "dist", None), "name", None) or "?"
        if ep.name in found:
            problems.append(f"plug-in {ep.name!r} is declared twice ({found[ep.name][1]} and {dist}): the first wins")
            continue
        found[ep.name] = (ep, dist)
    return found, tuple(problems)


def refresh_plugins() -> None:
    """Forget what was discovered (after installing a plug-in in a running process, and in tests)."""
    _discover.cache_clear()
    _load_entry_point.cache_clear()


def plugin_ids() -> list[str]:
    return sorted(_discover()[0])


@lru_cache(maxsize=None)
def _load_entry_point(model_id: str) -> PluginModel:
    ep, dist = _discover()[0][model_id]
    try:
        obj = ep.load()
        if not isinstance(obj, PluginModel) and callable(obj):
            obj = obj()
    except Exception as exc:  # noqa: BLE001 - a broken plug-in must not break the app
        raise PluginError(f"plug-in {model_id!r} ({ep.value}, from {dist}) failed to load: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, PluginModel):
        raise PluginError(
            f"plug-in {model_id!r} ({ep.value}) returned {type(obj).__name__}, not a "
            "mliap_tui.models.base.PluginModel(spec=ModelSpec(...), load=...)"
        )
    spec = obj.spec
    if spec.id != model_id:
        spec = replace(spec, id=model_id)
    return PluginModel(replace(spec, options={**spec.options, "plugin": f"{ep.value} ({dist})"}), obj.load)


def plugin_model(model_id: str) -> PluginModel | None:
    """The entry-point plug-in ``model_id`` (None when no installed plug-in has that name)."""
    if model_id not in _discover()[0]:
        return None
    return _load_entry_point(model_id)


def plugin_specs() -> tuple[list[ModelSpec], list[str]]:
    """Specs of every installed plug-in that loads, and one line per plug-in that does not."""
    specs, problems = [], list(_discover()[1])
    for model_id in plugin_ids():
        try:
            specs.append(_load_entry_point(model_id).spec)
        except PluginError as exc:
            problems.append(str(exc))
    return specs, problems


# ---- loading -----------------------------------------------------------------------------------


def load_ase_model(spec: ModelSpec, device: str = "cpu", dtype: str = "float32", checkpoint: str | None = None) -> Any:
    """Call the factory of an ``ase:`` spec: a batched predictor is used as is, a calculator is wrapped."""
    from mliap_tui.models.ase_adapter import AsePredictor, is_batched_predictor

    if checkpoint is not None:
        raise PluginError(f"{spec.id}: --checkpoint does not apply to an ase: model; pass the file in its kwargs")
    ref = parse_ase_ref(spec.options["ref"])
    module = importlib.import_module(ref.module)
    factory = getattr(module, ref.factory, None)
    if factory is None or not callable(factory):
        raise PluginError(f"{spec.id}: {ref.module} has no callable {ref.factory!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        made = factory(**ref.kwargs)
    if is_batched_predictor(made):
        conv = spec.energy_convention if ref.convention_given else made.spec.energy_convention
        made.spec = replace(made.spec, id=spec.id, family="ase", energy_convention=conv, options=spec.options,
                            description=spec.description)
        return made
    if not hasattr(made, "get_potential_energy") and not hasattr(made, "calculate"):
        raise PluginError(f"{spec.id}: {ref.module}.{ref.factory}() returned {type(made).__name__}, not an ASE calculator")
    return AsePredictor(spec, made, device=device, dtype=dtype)


def batched(model: str, device: str = "cpu", dtype: str = "float32", checkpoint: str | None = None) -> Any:
    """A factory for ``ase:`` references that returns a registry model's *batched* predictor:
    ``ase:mliap_tui.models.plugins:batched:{"model": "chgnet-0.3.0"}``."""
    from mliap_tui.models.registry import load_predictor

    return load_predictor(model, device=device, dtype=dtype, checkpoint=checkpoint)


__all__ = [
    "ASE_PREFIX",
    "ENTRY_POINT_GROUP",
    "AseRef",
    "PluginError",
    "ase_spec",
    "batched",
    "is_ase_ref",
    "load_ase_model",
    "parse_ase_ref",
    "plugin_ids",
    "plugin_model",
    "plugin_specs",
    "refresh_plugins",
]
