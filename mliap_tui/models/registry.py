"""The model registry: one ``ModelSpec`` per model, cheap availability checks, and the loader.

Importing this module is cheap: no torch, no model package. ``availability`` only looks for the
package (``importlib.util.find_spec``) and for weight files (bundled in a wheel or in the family's
download cache); ``load_predictor`` imports the family adapter and builds the model.

Energy conventions (see docs/ARCHITECTURE.md): ``mp2020`` = trained on MP2020-corrected energies
(CHGNet), ``raw_pbe`` = trained on uncorrected PBE/PBE+U energies (the engine adds the structure's
MP2020 correction before comparing with DFT), ``r2scan`` = r2SCAN energies (not comparable with
the PBE hull).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlsplit

import numpy as np
from ase.data import chemical_symbols

from mliap_tui.core.units import GPA_PER_EV_PER_ANG3
from mliap_tui.core.vocab import DTYPES
from mliap_tui.models.base import (
    ModelSpec,
    ModelUnavailable,
    Prediction,
    UnsupportedElements,
)

# ---- element sets --------------------------------------------------------------------------

#: element symbols by atomic number (index 0 is "X", ase's placeholder)
ELEMENTS_BY_Z: tuple[str, ...] = tuple(chemical_symbols)
#: Z = 1..94 (H..Pu): CHGNet's atom embedding has exactly 94 rows.
ELEMENTS_Z1_94 = frozenset(chemical_symbols[1:95])
#: The 89 elements of MPtrj (H..Pu without Po, At, Rn, Fr, Ra): the species list of SevenNet-0,
#: SevenNet-l3i5 and MACE-MP-0/MPA-0 ("89 elements").
ELEMENTS_MPTRJ_89 = ELEMENTS_Z1_94 - {"Po", "At", "Rn", "Fr", "Ra"}

# ---- download locations of the weights that are not bundled ----------------------------------

MACE_MP_URLS = {
    "medium": "https://github.com/ACEsuit/mace-mp/releases/download/mace_mp_0/2023-12-03-mace-128-L1_epoch-199.model",
    "medium-mpa-0": "https://github.com/ACEsuit/mace-mp/releases/download/mace_mpa_0/mace-mpa-0-medium.model",
}
MATGL_HF_ORG = "materialyze"  # matgl>=3 downloads pretrained models from this Hugging Face org
#: What is known (read offline, matgl 4.1.2) about the classic M3GNet under matgl >= 3
MATGL_MPF_NOTE = (
    "matgl >= 3 publishes no M3GNet-MP-2021.2.8-PES: the old weights were deleted from the hub after the 3.0 "
    "message-passing fix (they evaluate wrongly under matgl >= 3) and the matgl maintainers announced a refit; "
    "until it appears, pass --checkpoint DIR with a refit saved by matgl >= 3 (a pre-3.0 folder is refused)"
)
ORB_URLS = {
    "orb_v3_conservative_inf_mpa": "https://orbitalmaterials-public-models.s3.us-west-1.amazonaws.com/forcefields/orb-v3/orb-v3-conservative-inf-mpa-20250404.ckpt",
    "orb_v2": "https://orbitalmaterials-public-models.s3.us-west-1.amazonaws.com/forcefields/orb-v2-20241011.ckpt",
}

_MP2020_NOTE = "trained on MPtrj MP2020-corrected energies"
_RAW_NOTE = "trained on uncorrected PBE(+U) energies; the MP2020 correction is added before comparing"

_SPECS: list[ModelSpec] = [
    ModelSpec(
        id="chgnet-0.3.0",
        family="chgnet",
        version="0.3.0",
        package="chgnet",
        pip_extra="chgnet",
        weights="0.3.0",
        energy_convention="mp2020",
        weights_offline=True,
        default_batch_atoms=4096,
        elements=ELEMENTS_Z1_94,
        description=f"CHGNet 0.3.0 (412k params), {_MP2020_NOTE}",
        citation="Deng et al., Nat. Mach. Intell. 5, 1031 (2023)",
        options={"bundled_file": "pretrained/0.3.0/chgnet_0.3.0_e29f68s314m37.pth.tar"},
    ),
    ModelSpec(
        id="chgnet-0.2.0",
        family="chgnet",
        version="0.2.0",
        package="chgnet",
        pip_extra="chgnet",
        weights="0.2.0",
        energy_convention="mp2020",
        weights_offline=True,
        default_batch_atoms=4096,
        elements=ELEMENTS_Z1_94,
        description=f"CHGNet 0.2.0 (deprecated release, kept for comparison), {_MP2020_NOTE}",
        citation="Deng et al., Nat. Mach. Intell. 5, 1031 (2023)",
        options={"bundled_file": "pretrained/0.2.0/chgnet_0.2.0_e30f77s348m32.pth.tar"},
    ),
    ModelSpec(
        id="chgnet-r2scan",
        family="chgnet",
        version="r2scan",
        package="chgnet",
        pip_extra="chgnet",
        weights="r2scan",
        energy_convention="r2scan",
        weights_offline=True,
        default_batch_atoms=4096,
        elements=ELEMENTS_Z1_94,
        description="CHGNet transfer-learned on MP r2SCAN energies (not comparable with the PBE hull)",
        citation="Huang et al., Phys. Rev. B (2025), CHGNet r2SCAN transfer learning",
        options={"bundled_file": "pretrained/r2scan/chgnet_r2scan_transfer_learning_e15f36s161m23.pth.tar"},
    ),
    ModelSpec(
        id="sevennet-0",
        family="sevenn",
        version="SevenNet-0 (11Jul2024)",
        package="sevenn",
        pip_extra="sevenn",
        weights="7net-0",
        energy_convention="raw_pbe",
        weights_offline=True,
        default_batch_atoms=8192,
        elements=ELEMENTS_MPTRJ_89,
        description=f"SevenNet-0 (NequIP-type, 5 layers, 0.84M params), {_RAW_NOTE}",
        citation="Park et al., J. Chem. Theory Comput. 20, 4857 (2024)",
        options={"bundled_file": "pretrained_potentials/SevenNet_0__11Jul2024/checkpoint_sevennet_0.pth"},
    ),
    ModelSpec(
        id="sevennet-l3i5",
        family="sevenn",
        version="SevenNet-l3i5",
        package="sevenn",
        pip_extra="sevenn",
        weights="7net-l3i5",
        energy_convention="raw_pbe",
        weights_offline=True,
        default_batch_atoms=4096,
        elements=ELEMENTS_MPTRJ_89,
        description=f"SevenNet-l3i5 (lmax=3, 5 layers), {_RAW_NOTE}",
        citation="Park et al., J. Chem. Theory Comput. 20, 4857 (2024)",
        options={"bundled_file": "pretrained_potentials/SevenNet_l3i5/checkpoint_l3i5.pth"},
    ),
    ModelSpec(
        id="mace-mp-0-medium",
        family="mace",
        version="MACE-MP-0 medium (2023-12-03)",
        package="mace",
        pip_extra="mace",
        weights="medium",
        energy_convention="raw_pbe",
        weights_offline=False,
        default_batch_atoms=8192,
        elements=ELEMENTS_MPTRJ_89,
        description=f"MACE-MP-0 medium (128x0e+128x1o, L=1), {_RAW_NOTE}",
        citation="Batatia et al., arXiv:2401.00096",
        options={"url": MACE_MP_URLS["medium"]},
    ),
    ModelSpec(
        id="mace-mpa-0-medium",
        family="mace",
        version="MACE-MPA-0 medium",
        package="mace",
        pip_extra="mace",
        weights="medium-mpa-0",
        energy_convention="raw_pbe",
        weights_offline=False,
        default_batch_atoms=8192,
        elements=ELEMENTS_MPTRJ_89,
        description=f"MACE-MPA-0 medium (MPtrj + sAlex), {_RAW_NOTE}",
        citation="Batatia et al., arXiv:2401.00096",
        options={"url": MACE_MP_URLS["medium-mpa-0"], "bundled_file": "calculators/foundations_models/mace-mpa-0-medium.model"},
    ),
    ModelSpec(
        id="m3gnet-matpes-pbe",
        family="matgl",
        version="M3GNet-PES-MatPES-PBE-2025.2",
        package="matgl",
        pip_extra="matgl",
        weights="M3GNet-PES-MatPES-PBE-2025.2",
        energy_convention="raw_pbe",
        weights_offline=False,
        default_batch_atoms=16384,
        elements=None,  # read from model.element_types when loaded
        description="M3GNet trained on MatPES-PBE (PBE without +U, 680 eV cutoff; not the MP GGA/GGA+U mix: expect offsets, largest for transition-metal oxides and fluorides), raw PBE",
        citation="Kaplan et al., arXiv:2503.04070 (MatPES); Chen & Ong, Nat. Comput. Sci. 2, 718 (2022)",
    ),
    ModelSpec(
        id="tensornet-matpes-pbe",
        family="matgl",
        version="TensorNet-PES-MatPES-PBE-2025.2",
        package="matgl",
        pip_extra="matgl",
        weights="TensorNet-PES-MatPES-PBE-2025.2",
        energy_convention="raw_pbe",
        weights_offline=False,
        default_batch_atoms=16384,
        elements=None,  # read from model.element_types when loaded
        description="TensorNet trained on MatPES-PBE (PBE without +U, 680 eV cutoff; not the MP GGA/GGA+U mix: expect offsets, largest for transition-metal oxides and fluorides), raw PBE",
        citation="Kaplan et al., arXiv:2503.04070 (MatPES); Simeon & De Fabritiis, NeurIPS 2023 (TensorNet)",
    ),
    ModelSpec(
        id="m3gnet-mp-2021.2.8-pes",
        family="matgl",
        version="M3GNet-MP-2021.2.8-PES",
        package="matgl",
        pip_extra="matgl",
        weights="M3GNet-MP-2021.2.8-PES",
        energy_convention="raw_pbe",
        weights_offline=False,
        default_batch_atoms=16384,
        elements=None,  # 89 elements; read from model.element_types when loaded
        description="The classic M3GNet universal potential (Chen & Ong 2022; matbench-discovery's M3GNet), "
        "trained on MPF.2021.2.8 (MP relaxation trajectories, uncorrected GGA/GGA+U energies), raw PBE. "
        "Not published for matgl >= 3 yet: its pre-3.0 weights were withdrawn from the hub after the 3.0 "
        "message-passing fix and a refit was announced",
        citation="Chen & Ong, Nat. Comput. Sci. 2, 718 (2022)",
        options={"hub_note": MATGL_MPF_NOTE},
    ),
    ModelSpec(
        id="orb-v3-conservative-inf-mpa",
        family="orb",
        version="orb-v3-conservative-inf-mpa-20250404",
        package="orb_models",
        pip_extra="orb",
        weights="orb_v3_conservative_inf_mpa",
        energy_convention="raw_pbe",
        weights_offline=False,
        default_batch_atoms=16384,
        elements=None,  # embeds Z=1..118; no restriction enforced by the model
        description=f"ORB v3 conservative, unlimited neighbours, MPtrj + Alexandria, {_RAW_NOTE}",
        citation="Rhodes et al., arXiv:2504.06231",
        options={"url": ORB_URLS["orb_v3_conservative_inf_mpa"], "loader": "orb_v3_conservative_inf_mpa"},
    ),
    ModelSpec(
        id="orb-v2",
        family="orb",
        version="orb-v2-20241011",
        package="orb_models",
        pip_extra="orb",
        weights="orb_v2",
        energy_convention="raw_pbe",
        weights_offline=False,
        default_batch_atoms=32768,
        elements=None,
        description=f"ORB v2 (direct forces/stress, 20 neighbours), MPtrj + Alexandria, {_RAW_NOTE}",
        citation="Neumann et al., arXiv:2410.22570",
        options={"url": ORB_URLS["orb_v2"], "loader": "orb_v2"},
    ),
]

REGISTRY: dict[str, ModelSpec] = {spec.id: spec for spec in _SPECS}

FAMILY_MODULES = {
    "chgnet": "mliap_tui.models.chgnet_adapter",
    "sevenn": "mliap_tui.models.sevenn_adapter",
    "mace": "mliap_tui.models.mace_adapter",
    "matgl": "mliap_tui.models.matgl_adapter",
    "orb": "mliap_tui.models.orb_adapter",
}
#: What `pip install` needs for each family (the optional extra is the preferred route).
FAMILY_PIP = {
    "chgnet": "chgnet",
    "sevenn": "sevenn",
    "mace": "mace-torch",
    "matgl": "matgl",
    "orb": "orb-models",
}


#: Families whose adapter is checked, in the test suite, against the family's own ASE calculator
#: (energies, forces, stress): chgnet/sevenn on their bundled weights, mace/matgl/orb on small
#: models built at test time (tests/functional/test_family_adapters.py, run by .ci/run in each
#: family's own venv).
STRUCTURALLY_CHECKED_FAMILIES = frozenset({"chgnet", "sevenn", "mace", "matgl", "orb"})


def get_spec(model_id: str) -> ModelSpec:
    """The spec of ``model_id``: a registry id, an installed plug-in (entry point group
    ``mliap_tui.models``) or an ``ase:`` reference; a KeyError listing the known ids otherwise.
    """
    if model_id in REGISTRY:
        return REGISTRY[model_id]
    from mliap_tui.models import plugins

    if plugins.is_ase_ref(model_id):
        try:
            return plugins.ase_spec(model_id)
        except plugins.PluginError as exc:
            raise KeyError(str(exc)) from None
    if model_id in plugins.plugin_ids():
        try:
            return plugins.plugin_model(model_id).spec  # type: ignore[union-attr]
        except plugins.PluginError as exc:
            raise KeyError(str(exc)) from None
    if model_id.startswith("ase") and ":" in model_id:
        try:
            plugins.parse_ase_ref(model_id)
        except plugins.PluginError as exc:
            raise KeyError(str(exc)) from None
    known = [*REGISTRY, *plugins.plugin_ids()]
    raise KeyError(
        f"unknown model {model_id!r}: known models are {', '.join(known)} (or an ASE calculator: "
        "ase:package.module:factory)"
    )


def all_specs() -> list[ModelSpec]:
    """The registry's specs, then those of the installed plug-ins that load."""
    from mliap_tui.models.plugins import plugin_specs

    return [*REGISTRY.values(), *plugin_specs()[0]]


# ---- availability (cheap: no torch, no model load) ------------------------------------------


@dataclass(frozen=True)
class Availability:
    installed: bool
    weights_available: bool
    message: str  # what to do when not ready; where the weights are when ready

    @property
    def ready(self) -> bool:
        return self.installed and self.weights_available


def package_dir(package: str) -> Path | None:
    """Folder of an installed package, found without importing it (None if not installed)."""
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if found is None:
        return None
    locations = list(found.submodule_search_locations or [])
    if locations:
        return Path(locations[0])
    return Path(found.origin).parent if found.origin else None


def _cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))


def mace_cached_path(url: str) -> Path:
    """Where ``mace.calculators.mace_mp`` caches a downloaded checkpoint (~/.cache/mace/<name>)."""
    name = "".join(c for c in os.path.basename(url) if c.isalnum() or c == "_")
    return _cache_home() / "mace" / name


def mace_legacy_cached_path(url: str) -> Path:
    """The cache name used by mace-torch < 0.3.10 (plain basename)."""
    return Path.home() / ".cache" / "mace" / os.path.basename(url)


def matgl_cached_dirs(name: str) -> list[Path]:
    """Folders that hold a cached matgl model (model.pt, state.pt, model.json), newest layout first."""
    root = Path.home() / ".cache" / "matgl"
    hub = root / f"models--{MATGL_HF_ORG}--{name}" / "snapshots"
    found = sorted(hub.glob("*/model.pt")) if hub.is_dir() else []
    dirs = [p.parent for p in found]
    legacy = root / name  # matgl < 2 (GitHub mirror)
    if (legacy / "model.pt").is_file():
        dirs.append(legacy)
    return dirs


def orb_cached_files(url: str) -> list[Path]:
    """Files that cached_path (orb-models' downloader) stored for ``url``."""
    root = Path(os.environ.get("CACHED_PATH_CACHE_ROOT", Path.home() / ".cache" / "cached_path"))
    if not root.is_dir():
        return []
    stem = hashlib.sha256(url.encode("utf-8")).hexdigest()
    return [p for p in root.glob(stem + "*") if p.suffix not in (".json", ".lock") and p.is_file()]


def _install_hint(spec: ModelSpec) -> str:
    if spec.family == "orb":
        return (
            "orb-models is not installed: it pins rich<14, so install it in its own venv "
            "(python -m venv orb-venv && orb-venv/bin/pip install orb-models polars pyarrow pymatgen spglib ase) "
            "and run with "
            "--python-for orb=orb-venv/bin/python"
        )
    return f"{spec.package} is not installed: pip install 'mliap-tui[{spec.pip_extra}]' (or pip install {FAMILY_PIP[spec.family]})"


def weight_files(spec: ModelSpec) -> list[Path]:
    """Weight files of ``spec`` present on this machine (bundled or cached); [] if none."""
    pkg = package_dir(spec.package)
    files: list[Path] = []
    bundled = spec.options.get("bundled_file")
    if pkg is not None and bundled:
        if (pkg / bundled).is_file():
            files.append(pkg / bundled)
    if spec.family == "sevenn":
        # sevenn also looks in ~/.cache/sevennet for checkpoints it downloaded
        rel = spec.options.get("bundled_file", "").replace("pretrained_potentials/", "", 1)
        cached = Path.home() / ".cache" / "sevennet" / rel
        if rel and cached.is_file():
            files.append(cached)
    elif spec.family == "mace":
        url = spec.options["url"]
        files += [p for p in (mace_cached_path(url), mace_legacy_cached_path(url)) if p.is_file()]
    elif spec.family == "matgl":
        files += [d / "model.pt" for d in matgl_cached_dirs(spec.weights)]
    elif spec.family == "orb":
        files += orb_cached_files(spec.options["url"])
    return files


def _weights_hint(spec: ModelSpec) -> str:
    if spec.family == "mace":
        where = f"{spec.options['url']} into {mace_cached_path(spec.options['url']).parent}"
    elif spec.family == "matgl":
        if spec.options.get("hub_note"):
            return spec.options["hub_note"]
        where = f"Hugging Face {MATGL_HF_ORG}/{spec.weights} into ~/.cache/matgl"
    elif spec.family == "orb":
        where = f"{spec.options['url']} into ~/.cache/cached_path"
    else:
        where = f"the {spec.package} wheel (reinstall: pip install --force-reinstall {FAMILY_PIP[spec.family]})"
    return f"weights not found here: run once with network access to fetch {where}, or pass --checkpoint PATH"


def availability(spec: ModelSpec) -> Availability:
    """Is the package installed and are the weights on this machine? Cheap: no import, no load."""
    if spec.family not in FAMILY_MODULES:  # a plug-in or an ase: model
        if spec.package and package_dir(spec.package) is None:
            return Availability(False, False, f"{spec.package} is not importable here: install the package that provides it")
        missing = [p for p in spec.options.get("weights_files", ()) if not Path(p).expanduser().exists()]
        if missing:
            return Availability(True, False, f"weights file {missing[0]} not found")
        where = spec.options.get("plugin") or spec.options.get("ref") or spec.package
        return Availability(True, True, f"plug-in: {where}")
    installed = package_dir(spec.package) is not None
    files = weight_files(spec) if installed else []
    if not installed:
        return Availability(False, False, _install_hint(spec))
    if not files:
        return Availability(True, False, _weights_hint(spec))
    if spec.weights_offline:
        return Availability(True, True, f"weights bundled in the {spec.package} wheel")
    return Availability(True, True, f"weights cached: {files[0]}")


# ---- loading ---------------------------------------------------------------------------------


def download_host(spec: ModelSpec) -> str | None:
    """Host the family loader downloads ``spec``'s weights from (None: bundled in the wheel)."""
    if spec.weights_offline:
        return None
    if spec.family == "matgl":
        return "huggingface.co"
    url = spec.options.get("url", "")
    return urlsplit(url).hostname if url else None


def host_reachable(host: str, port: int = 443, timeout_s: float = 3.0) -> bool:
    """Can a TCP connection to ``host`` be opened? (DNS failure or timeout -> False.)"""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; other names are checked and returned."""
    import torch

    device = (device or "auto").strip().lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelUnavailable(f"device {device!r} requested but torch sees no CUDA GPU here: use --device cpu (or auto)")
    if device != "cpu" and not device.startswith(("cuda", "mps", "xpu")):
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")
    return device


def load_predictor(model_id: str, device: str = "cpu", dtype: str = "float32", checkpoint: str | None = None):
    """Build the family adapter of ``model_id`` on ``device`` in ``dtype`` (float32 or float64).

    ``checkpoint`` replaces the default weights with a local file (or folder for matgl).
    Raises ModelUnavailable (one line, says what to do) when it cannot run here.
    """
    spec = get_spec(model_id)
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: use float32 or float64")
    if checkpoint is not None:
        checkpoint = os.path.expanduser(str(checkpoint))
        if not os.path.exists(checkpoint):
            raise ModelUnavailable(f"{model_id}: checkpoint {checkpoint} does not exist: pass an existing file to --checkpoint")
        if spec.family == "matgl":
            refuse_pre_3_matgl_save(spec, checkpoint)  # before anything is imported: the file decides
    avail = availability(spec)
    if not avail.installed:
        raise ModelUnavailable(f"{model_id}: {avail.message}")
    if spec.family not in FAMILY_MODULES:
        return _load_plugin(spec, device, dtype, checkpoint)
    if checkpoint is None and not avail.weights_available:
        host = download_host(spec)
        if host is not None and not host_reachable(host):
            # fail fast instead of letting the family downloader retry for half a minute
            raise ModelUnavailable(f"{model_id}: no network ({host} unreachable) and {avail.message}")
    device = resolve_device(device)
    module = importlib.import_module(FAMILY_MODULES[spec.family])
    try:
        return module.load(spec, device=device, dtype=dtype, checkpoint=checkpoint)
    except (ModelUnavailable, UnsupportedElements):
        raise
    except ImportError as exc:
        raise ModelUnavailable(
            f"{model_id}: importing {spec.package} failed ({exc}): reinstall it with pip install 'mliap-tui[{spec.pip_extra}]'"
        ) from exc
    except Exception as exc:  # the family loader failed: usually no network and no cached weights
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if checkpoint is not None:
            hint = f"check that {checkpoint} is a {spec.family} checkpoint"
        elif not avail.weights_available:
            hint = _weights_hint(spec)
        else:
            hint = f"the installed weights or package look broken: pip install --force-reinstall {FAMILY_PIP[spec.family]}"
        raise ModelUnavailable(f"{model_id}: loading failed ({type(exc).__name__}: {first_line}); {hint}") from exc


def refuse_pre_3_matgl_save(spec: ModelSpec, folder: str | Path) -> None:
    """Raise ModelRefused when the matgl model folder ``folder`` was saved by matgl < 3."""
    from mliap_tui.models.canary import ModelRefused
    from mliap_tui.models.identity import distribution_version
    from mliap_tui.models.matgl_saves import pre_3_refusal, read_matgl_save

    if not Path(folder).is_dir():
        return  # not a model folder: matgl's loader says what is wrong
    try:
        save = read_matgl_save(folder)
    except (FileNotFoundError, ValueError):
        return
    if not save.saved_by_matgl_3_or_later:
        raise ModelRefused(pre_3_refusal(save, spec.id, distribution_version(["matgl"])))


def _load_plugin(spec: ModelSpec, device: str, dtype: str, checkpoint: str | None):
    """Load an entry-point plug-in or an ``ase:`` model (their errors become ModelUnavailable)."""
    from mliap_tui.models import plugins

    device = resolve_device(device) if importlib.util.find_spec("torch") is not None else device
    try:
        if spec.family == "ase":
            return plugins.load_ase_model(spec, device=device, dtype=dtype, checkpoint=checkpoint)
        found = plugins.plugin_model(spec.id)
        if found is None:
            raise ModelUnavailable(f"{spec.id}: no installed plug-in provides it any more")
        predictor = found.load(found.spec, device=device, dtype=dtype, checkpoint=checkpoint)
    except (ModelUnavailable, UnsupportedElements):
        raise
    except Exception as exc:  # noqa: BLE001 - a plug-in's own error, made one line
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelUnavailable(f"{spec.id}: loading failed ({type(exc).__name__}: {text})") from exc
    if not hasattr(predictor, "spec"):
        from mliap_tui.models.ase_adapter import AsePredictor

        predictor = AsePredictor(spec, predictor, device=device, dtype=dtype)  # a plug-in that returned a calculator
    return predictor


# ---- helpers shared by the adapters (pure numpy) -------------------------------------------

def stress_ev_per_ang3_to_gpa(stress_ev_per_ang3: np.ndarray) -> np.ndarray:
    return np.asarray(stress_ev_per_ang3, dtype=float) * GPA_PER_EV_PER_ANG3


def voigt6_from_3x3(stress_3x3: np.ndarray) -> np.ndarray:
    """(3, 3) tensor -> Voigt (xx, yy, zz, yz, xz, xy), the ASE order (symmetrised)."""
    s = np.asarray(stress_3x3, dtype=float).reshape(3, 3)
    return np.array([s[0, 0], s[1, 1], s[2, 2], 0.5 * (s[1, 2] + s[2, 1]), 0.5 * (s[0, 2] + s[2, 0]), 0.5 * (s[0, 1] + s[1, 0])])


def voigt6_to_3x3(stress_voigt6: np.ndarray) -> np.ndarray:
    """Voigt (..., 6) in ASE order (xx, yy, zz, yz, xz, xy) -> symmetric (..., 3, 3) tensors."""
    s = np.asarray(stress_voigt6, dtype=float)
    xx, yy, zz, yz, xz, xy = (s[..., i] for i in range(6))
    return np.stack([np.stack([xx, xy, xz], -1), np.stack([xy, yy, yz], -1), np.stack([xz, yz, zz], -1)], -2)


def check_elements(spec: ModelSpec, atoms_list: Sequence[Any]) -> None:
    """Raise UnsupportedElements naming the elements of the first structure outside coverage."""
    if spec.elements is None:
        return
    for index, atoms in enumerate(atoms_list):
        bad = spec.unsupported(atoms.get_chemical_symbols())
        if bad:
            raise UnsupportedElements(
                f"{atoms.get_chemical_formula()} (structure {index} of the batch) holds {', '.join(bad)}, "
                f"outside the {len(spec.elements)} elements {spec.id} was trained on"
            )


def with_elements(spec: ModelSpec, elements: Sequence[str] | None) -> ModelSpec:
    """The spec with the element coverage read from the loaded model."""
    return replace(spec, elements=frozenset(elements) if elements is not None else None)


def allow_e3nn_slice_unpickling() -> None:
    """Let e3nn 0.4.x import on torch>=2.6 (weights_only loads reject the ``slice`` it pickles).

    Allow-lists ``slice`` (harmless) before sevenn/mace import e3nn, so users never have to set
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD themselves.
    """
    import torch

    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is not None:
        add_safe_globals([slice])


class BatchedPredictor:
    """Common part of the adapters: ``predict = run(prepare(...))`` and the spec/device/dtype fields."""

    spec: ModelSpec
    device: str
    dtype: str

    def prepare(self, atoms_list: Sequence[Any], forces: bool = False, stress: bool = False) -> Any:
        raise NotImplementedError

    def run(self, prepared: Any) -> list[Prediction]:
        raise NotImplementedError

    def predict(self, atoms_list: Sequence[Any], forces: bool = False, stress: bool = False) -> list[Prediction]:
        if len(atoms_list) == 0:
            return []
        return self.run(self.prepare(atoms_list, forces=forces, stress=stress))

    @property
    def torch_dtype(self):
        import torch

        return torch.float64 if self.dtype == "float64" else torch.float32

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.id!r}, device={self.device!r}, dtype={self.dtype!r})"


__all__ = [
    "REGISTRY",
    "STRUCTURALLY_CHECKED_FAMILIES",
    "all_specs",
    "refuse_pre_3_matgl_save",
    "Availability",
    "BatchedPredictor",
    "ELEMENTS_MPTRJ_89",
    "ELEMENTS_Z1_94",
    "allow_e3nn_slice_unpickling",
    "availability",
    "get_spec",
    "load_predictor",
    "resolve_device",
    "voigt6_from_3x3",
    "voigt6_to_3x3",
    "weight_files",
]
