"""The load-time sanity check ("canary"): before a model evaluates a dataset, it evaluates twelve
real Materials Project crystals shipped with the package and is compared with their DFT energies.

Why: a checkpoint can load without a single warning and still be wrong by eV/atom (a matgl 2.x
save under matgl >= 3, a checkpoint passed under the wrong model id, a wrong energy convention in
a plug-in's spec). Published universal potentials reach 20-60 meV/atom on such crystals (measured
here: SevenNet-l3i5 6, SevenNet-0 19, CHGNet 0.2.0 22, CHGNet 0.3.0 26); a model whose
canary MAE exceeds :data:`CANARY_MAE_LIMIT_EV_PER_ATOM` (150 meV/atom) is refused with a message
naming its worst crystals, unless the user passes ``--trust-model`` (recorded with the rows).

The crystals (``canary_crystals.json``, made by ``scripts/make_canary.py``): NaCl, Al2O3, TiO2
(anatase), SrZrO3, ZnS (wurtzite), CaGeN2, BaAg, TiFeSb, ScGaPd2, CaC2, MoCl5, CaPbF6: oxides,
intermetallics, halides, a nitride, a carbide, a sulfide and a fluoride across all seven crystal
systems, 81 atoms in all, every one computed by MP without +U. Several elements per cell matter:
the matgl 3.0 message-passing change leaves crystals with one kind of site (Si) almost right.

Conventions (the model's own, as the engine compares): ``mp2020`` models as they are, ``raw_pbe``
models plus each crystal's MP2020 correction, against the MP2020-corrected DFT energy.
``r2scan`` models: not judged. r2SCAN total energies sit several eV/atom away from PBE, by an
element-dependent amount, and no r2SCAN reference ships here; their canary energies are recorded
(so a change of weights shows) and the verdict is ``unchecked``.

The result is cached per (model, weights fingerprint, package version) in the cache's weights
records (:mod:`mliap_tui.cache.weights`): a model is checked once, not once per run.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Callable, Sequence

import numpy as np

from mliap_tui.cache import Cache
from mliap_tui.cache.weights import read_weights_record, write_weights_record
from mliap_tui.core.resources import package_file
from mliap_tui.core.units import MEV_PER_EV
from mliap_tui.core.vocab import CanaryVerdict, EnergyConvention
from mliap_tui.models.base import ModelUnavailable, mp2020_energy
from mliap_tui.models.identity import WeightsIdentity

#: A canary MAE above this (eV/atom) is far beyond any published universal potential.
CANARY_MAE_LIMIT_EV_PER_ATOM = 0.150
#: Fewer judged crystals than this (elements outside a model's coverage): not judged.
CANARY_MIN_JUDGED = 3
CANARY_FILE = "canary_crystals.json"
LIKELY_CAUSES = (
    "an incompatible package version (e.g. a checkpoint saved by an older release of the family's package), "
    "a checkpoint that is not this model's, or a wrong energy convention in the model's spec"
)


class ModelRefused(ModelUnavailable):
    """The load-time checks refused the model's weights; the message says why and what to do."""


@dataclass(frozen=True)
class CanaryCrystal:
    material_id: str
    formula: str
    chemistry: str
    crystal_system: str
    lattice_ang: tuple[float, ...]
    species: tuple[str, ...]
    frac_coords: tuple[float, ...]
    e_per_atom_dft_mp2020: float
    mp2020_correction_per_atom: float

    def atoms(self) -> Any:
        from ase import Atoms

        return Atoms(
            list(self.species),
            cell=np.asarray(self.lattice_ang, float).reshape(3, 3),
            scaled_positions=np.asarray(self.frac_coords, float).reshape(-1, 3),
            pbc=True,
        )


@lru_cache(maxsize=1)
def canary_crystals() -> tuple[CanaryCrystal, ...]:
    """The shipped canary crystals (``mliap_tui/models/canary_crystals.json``)."""
    doc = json.loads(package_file("models", CANARY_FILE).read_text())
    return tuple(
        CanaryCrystal(
            material_id=c["material_id"], formula=c["formula"], chemistry=c["chemistry"],
            crystal_system=c["crystal_system"], lattice_ang=tuple(c["lattice_ang"]), species=tuple(c["species"]),
            frac_coords=tuple(c["frac_coords"]), e_per_atom_dft_mp2020=float(c["e_per_atom_dft_mp2020"]),
            mp2020_correction_per_atom=float(c["mp2020_correction_per_atom"]),
        )
        for c in doc["crystals"]
    )


@dataclass
class CanaryItem:
    """One canary crystal's outcome (eV/atom)."""

    material_id: str
    formula: str
    e_dft_mp2020: float
    e_pred_native: float | None = None
    e_pred_mp2020: float | None = None  # on the DFT reference's convention (None: not comparable)
    error: float | None = None  # e_pred_mp2020 - e_dft_mp2020
    failure: str | None = None  # why it was not evaluated (elements outside the model, exception)


@dataclass
class CanaryResult:
    model: str
    verdict: str  # CanaryVerdict
    reason: str  # one line
    convention: str
    mae_ev_per_atom: float | None = None
    n_judged: int = 0
    n_total: int = 0
    limit_ev_per_atom: float = CANARY_MAE_LIMIT_EV_PER_ATOM
    fingerprint: str | None = None
    package_version: str | None = None
    dtype: str = ""
    seconds: float = 0.0
    created_unix_s: float = field(default_factory=time.time)
    items: list[CanaryItem] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.verdict == CanaryVerdict.PASSED

    @property
    def failed(self) -> bool:
        return self.verdict == CanaryVerdict.FAILED

    def worst(self, k: int = 3) -> list[CanaryItem]:
        judged = [i for i in self.items if i.error is not None]
        return sorted(judged, key=lambda i: -abs(i.error if math.isfinite(i.error) else 1e9))[:k]

    def summary(self) -> str:
        """One line: verdict and MAE (meV/atom)."""
        if self.mae_ev_per_atom is None:
            return f"{self.verdict}: {self.reason}"
        mae = f"{self.mae_ev_per_atom * MEV_PER_EV:.0f}" if math.isfinite(self.mae_ev_per_atom) else "inf"
        return f"{self.verdict}: MAE {mae} meV/atom on {self.n_judged} MP crystals (limit {self.limit_ev_per_atom * MEV_PER_EV:.0f})"

    def refusal_message(self) -> str:
        """What a user sees when the model is refused (one line, says what to do)."""
        worst = ", ".join(
            f"{i.formula} {i.material_id} {i.error * MEV_PER_EV:+.0f}" if math.isfinite(i.error or 0) else f"{i.formula} non-finite"
            for i in self.worst()
        )
        return (
            f"{self.model} refused by the canary check: {self.summary()}; far beyond any published universal "
            f"potential (20-60 meV/atom); worst (meV/atom): {worst}. Likely causes: {LIKELY_CAUSES}. "
            f"Fix the checkpoint or package, or pass --trust-model {self.model} to run it anyway (recorded with the rows)"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CanaryResult":
        items = [CanaryItem(**i) for i in data.get("items", [])]
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "items"}
        return cls(**known, items=items)


def _evaluate(predictor: Any, atoms: list[Any]) -> list[tuple[float | None, str | None]]:
    """(energy eV per cell, failure) per structure: one batch, or one at a time when the batch raises."""
    try:
        return [(float(p.energy_ev), None) for p in predictor.predict(atoms)]
    except Exception:  # noqa: BLE001 - find the structure(s) that make it raise
        out: list[tuple[float | None, str | None]] = []
        for a in atoms:
            try:
                out.append((float(predictor.predict([a])[0].energy_ev), None))
            except Exception as exc:  # noqa: BLE001
                text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                out.append((None, f"{type(exc).__name__}: {text}"[:160]))
        return out


def evaluate_canary(predictor: Any, identity: WeightsIdentity | None = None,
                    crystals: Sequence[CanaryCrystal] | None = None,
                    limit_ev_per_atom: float = CANARY_MAE_LIMIT_EV_PER_ATOM) -> CanaryResult:
    """Evaluate ``predictor`` on the canary crystals and judge it (see the module docstring)."""
    t0 = time.perf_counter()
    spec = predictor.spec
    crystals = list(crystals if crystals is not None else canary_crystals())
    convention = str(spec.energy_convention)
    items = [CanaryItem(c.material_id, c.formula, c.e_per_atom_dft_mp2020) for c in crystals]
    todo = []
    for item, c in zip(items, crystals):
        bad = spec.unsupported(c.species)
        if bad:
            item.failure = f"elements outside the model: {', '.join(bad)}"
        else:
            todo.append((item, c))
    results = _evaluate(predictor, [c.atoms() for _, c in todo]) if todo else []
    for (item, c), (energy, failure) in zip(todo, results):
        if failure is not None:
            item.failure = failure
            continue
        item.e_pred_native = energy / len(c.species)
        item.e_pred_mp2020 = mp2020_energy(item.e_pred_native, convention, c.mp2020_correction_per_atom)
        if item.e_pred_mp2020 is not None:
            item.error = item.e_pred_mp2020 - c.e_per_atom_dft_mp2020
    judged = [i for i in items if i.error is not None]
    result = CanaryResult(
        model=spec.id, verdict=CanaryVerdict.UNCHECKED.value, reason="", convention=convention,
        n_judged=len(judged), n_total=len(items), limit_ev_per_atom=limit_ev_per_atom,
        fingerprint=identity.fingerprint if identity else None,
        package_version=identity.package_version if identity else None,
        dtype=str(getattr(predictor, "dtype", "")), items=items,
    )
    nonfinite = [i for i in items if i.e_pred_native is not None and not math.isfinite(i.e_pred_native)]
    if nonfinite:
        result.verdict = CanaryVerdict.FAILED.value
        result.mae_ev_per_atom = math.inf
        result.reason = f"non-finite energy for {', '.join(i.formula for i in nonfinite)}"
    elif convention not in (EnergyConvention.MP2020, EnergyConvention.RAW_PBE):
        label = EnergyConvention(convention).label if convention in EnergyConvention._value2member_map_ else convention
        result.reason = (
            f"{label} energies are not on the PBE scale of the shipped DFT references: recorded, not judged"
        )
    elif len(judged) < CANARY_MIN_JUDGED:
        first = next((i.failure for i in items if i.failure), "")
        result.reason = (
            f"only {len(judged)} of {len(items)} canary crystals could be evaluated (need {CANARY_MIN_JUDGED})"
            + (f"; e.g. {first}" if first else "")
        )
    else:
        mae = float(np.mean([abs(i.error) for i in judged]))  # type: ignore[arg-type]
        result.mae_ev_per_atom = mae
        result.verdict = (CanaryVerdict.PASSED if mae <= limit_ev_per_atom else CanaryVerdict.FAILED).value
        result.reason = f"MAE {mae * MEV_PER_EV:.0f} meV/atom on {len(judged)} MP crystals"
    result.seconds = time.perf_counter() - t0
    return result


# ---- the check the engine runs ---------------------------------------------------------------


@dataclass
class ModelCheck:
    """What the load-time checks decided for one loaded model."""

    identity: WeightsIdentity
    canary: CanaryResult
    cached: bool  # the canary result came from the cache
    trust_override: bool  # it failed and runs only because of --trust-model

    def row_columns(self) -> dict[str, Any]:
        """The weights columns of every prediction row (``mliap_tui.cache.schema``)."""
        return {
            "weights_fingerprint": self.identity.fingerprint,
            "package_version": self.identity.package_version,
            "trust_override": self.trust_override,
        }


def cached_canary(cache: Cache, identity: WeightsIdentity) -> CanaryResult | None:
    """The canary result stored for these weights and this package version, if any."""
    if identity.fingerprint is None:
        return None
    record = read_weights_record(cache, identity.model, identity.fingerprint) or {}
    data = (record.get("canary") or {}).get(identity.package_version or "")
    return CanaryResult.from_dict(data) if isinstance(data, dict) else None


def record_weights(cache: Cache, identity: WeightsIdentity, canary: CanaryResult | None = None,
                   trust_override: bool | None = None) -> None:
    """Create or update the weights record of ``identity`` (source, files, canary per package version)."""
    if identity.fingerprint is None:
        return
    now = time.time()
    record = read_weights_record(cache, identity.model, identity.fingerprint) or {
        "model": identity.model, "fingerprint": identity.fingerprint, "first_seen_unix_s": now, "canary": {},
    }
    record.update(source=identity.source, files=list(identity.files), package_version=identity.package_version,
                  last_used_unix_s=now)
    if canary is not None:
        record.setdefault("canary", {})[identity.package_version or ""] = canary.to_dict()
    if trust_override:
        record["trusted_by_user"] = True
    write_weights_record(cache, identity.model, identity.fingerprint, record)


def check_model(cache: Cache, predictor: Any, identity: WeightsIdentity, trust: bool = False,
                log: Callable[[str, str], None] | None = None) -> ModelCheck:
    """Run (or reuse) the canary of ``predictor``'s weights; raise :class:`ModelRefused` if it fails
    and ``trust`` is False. ``log(level, message)`` hears what was decided."""
    result = cached_canary(cache, identity)
    cached = result is not None
    if result is None:
        result = evaluate_canary(predictor, identity)
    trust_override = result.failed and trust
    record_weights(cache, identity, None if cached else result, trust_override)
    say = log or (lambda level, message: None)
    where = "cached" if cached else f"{result.seconds:.1f} s"
    if result.failed and not trust:
        raise ModelRefused(result.refusal_message())
    if result.failed:
        say("warning", f"{identity.model} failed the canary check ({result.summary()}) and runs only because of "
                       "--trust-model: its rows record trust_override")
    elif result.verdict == CanaryVerdict.UNCHECKED:
        say("warning", f"{identity.model} canary not judged: {result.reason}")
    else:
        say("info", f"{identity.model} canary {result.summary()} [{where}]")
    return ModelCheck(identity, result, cached, trust_override)


__all__ = [
    "CANARY_MAE_LIMIT_EV_PER_ATOM",
    "CANARY_MIN_JUDGED",
    "CanaryCrystal",
    "CanaryItem",
    "CanaryResult",
    "ModelCheck",
    "ModelRefused",
    "cached_canary",
    "canary_crystals",
    "check_model",
    "evaluate_canary",
    "record_weights",
]
