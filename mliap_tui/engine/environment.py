"""What this machine offers mliap-tui (``mliap-tui doctor``): the first thing to paste into an
issue. Python, torch and CUDA, each model family's package and version, which weights are found,
GPU visibility through NVML, the cache folder and the free disk under it.

Plain data (rendered by ``mliap_tui.cli.render.environment_report``). Importing torch is the only
slow part; every probe that fails says why instead of raising.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from mliap_tui import __version__
from mliap_tui.cache import Cache
from mliap_tui.core.host import free_disk_bytes, usable_cores


@dataclass
class FamilyReport:
    family: str
    package: str  # distribution name on PyPI
    version: str | None  # installed version, None when missing
    models: list[tuple[str, bool, str]] = field(default_factory=list)  # (model id, ready, message)


@dataclass
class EnvironmentReport:
    mliap_tui_version: str
    python: str
    executable: str
    platform: str
    cores: int
    torch_version: str | None
    torch_note: str  # CUDA build / devices, or why torch is unusable
    cuda_devices: list[str]
    nvml_gpus: list[str]
    nvml_note: str
    families: list[FamilyReport]
    cache_root: str
    cache_exists: bool
    datasets: list[str]
    free_disk_bytes: int | None
    packages: dict[str, str | None]  # other key dependencies -> version

    @property
    def problems(self) -> list[str]:
        """Things a user should fix before a run (empty: all good)."""
        out = []
        if self.torch_version is None:
            out.append(f"torch: {self.torch_note}")
        if not any(ready for f in self.families for _, ready, _ in f.models):
            out.append("no model can run here: install a family, e.g. pip install 'mliap-tui[chgnet]'")
        if self.free_disk_bytes is not None and self.free_disk_bytes < 1 << 30:
            out.append(f"less than 1 GiB free under {self.cache_root}")
        return out


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _torch() -> tuple[str | None, str, list[str]]:
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - not installed, or a broken build
        return None, f"not importable ({type(exc).__name__}: {exc}); pip install torch", []
    cuda = getattr(torch.version, "cuda", None)
    devices: list[str] = []
    try:
        if torch.cuda.is_available():
            devices = [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    except Exception as exc:  # noqa: BLE001
        return torch.__version__, f"CUDA build {cuda}, but CUDA failed: {exc}", []
    if cuda is None:
        note = "CPU build (no CUDA)"
    elif devices:
        note = f"CUDA {cuda}, {len(devices)} GPU(s)"
    else:
        note = f"CUDA {cuda} build, but torch sees no GPU (driver? CUDA_VISIBLE_DEVICES?)"
    return torch.__version__, note, devices


def _nvml() -> tuple[list[str], str]:
    from mliap_tui.engine.devices import DeviceMonitor

    with DeviceMonitor() as monitor:
        sample = monitor.sample()
    gpus = [f"{g.index}: {g.name}" for g in sample.gpus]
    return gpus, sample.gpu_note or f"{len(gpus)} GPU(s)"


def environment_report(cache: Cache, *, probe_torch: bool = True) -> EnvironmentReport:
    from mliap_tui.models.registry import FAMILY_PIP, REGISTRY, availability

    families = []
    for family, dist in FAMILY_PIP.items():
        report = FamilyReport(family, dist, _version(dist))
        for spec in REGISTRY.values():
            if spec.family == family:
                avail = availability(spec)
                report.models.append((spec.id, avail.ready, avail.message))
        families.append(report)
    torch_version, torch_note, cuda_devices = _torch() if probe_torch else (_version("torch"), "not probed", [])
    nvml_gpus, nvml_note = _nvml()
    root = Path(cache.root)
    return EnvironmentReport(
        mliap_tui_version=__version__,
        python=platform.python_version(),
        executable=sys.executable,
        platform=platform.platform(),
        cores=usable_cores(),
        torch_version=torch_version,
        torch_note=torch_note,
        cuda_devices=cuda_devices,
        nvml_gpus=nvml_gpus,
        nvml_note=nvml_note,
        families=families,
        cache_root=str(root.resolve()),
        cache_exists=root.is_dir(),
        datasets=cache.datasets(),
        free_disk_bytes=free_disk_bytes(root),
        packages={d: _version(d) for d in ("polars", "pymatgen", "spglib", "ase", "textual", "rich", "nvidia-ml-py")},
    )


__all__ = ["EnvironmentReport", "FamilyReport", "environment_report"]
