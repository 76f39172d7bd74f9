"""What the machine is doing while models run: GPUs through NVML, the CPU and memory through psutil.

Textual-free (the run screen's device pane polls it from a thread). ``DeviceMonitor.sample()``
returns a :class:`DeviceSample`; NVML (nvidia-ml-py's ``pynvml``) is initialised once and every
query that a GPU or driver does not support is left as ``None`` instead of failing the sample.
Without NVML (no driver, no nvidia-ml-py, no GPU) the sample says why in ``gpu_note``.

Units: bytes, percent, degrees Celsius, watts.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from mliap_tui.core.host import usable_cores


@dataclass(frozen=True)
class GpuSample:
    index: int
    name: str
    util_percent: float | None  # NVML "GPU utilisation": % of the last sample period a kernel ran
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    temperature_c: float | None
    power_w: float | None
    power_limit_w: float | None


@dataclass(frozen=True)
class HostSample:
    cpu_count: int  # cores this process may use (sched_getaffinity)
    cpu_percent: float | None  # whole machine, since the previous sample (psutil)
    load_avg_1min: float | None
    memory_used_bytes: int | None  # whole machine
    memory_total_bytes: int | None
    app_rss_bytes: int | None  # this process
    children_rss_bytes: int | None  # its child processes (the engine's workers)
    n_children: int = 0


@dataclass(frozen=True)
class DeviceSample:
    t: float
    gpus: list[GpuSample] = field(default_factory=list)
    host: HostSample | None = None
    gpu_note: str = ""  # why there is no GPU line (no NVML, no device...)

    @property
    def has_gpu(self) -> bool:
        return bool(self.gpus)


class DeviceMonitor:
    """Samples GPUs (NVML) and the host (psutil, when installed). Use from one thread at a time."""

    def __init__(self, use_nvml: bool = True) -> None:
        self._nvml: Any = None
        self._handles: list[Any] = []
        self._names: list[str] = []
        self.gpu_note = ""
        if use_nvml:
            self._init_nvml()
        else:
            self.gpu_note = "GPU monitoring off"
        try:
            import psutil
        except ImportError:
            psutil = None
        self._psutil = psutil
        self._proc = psutil.Process() if psutil is not None else None
        if psutil is not None:
            psutil.cpu_percent(interval=None)  # prime: the next call measures since now

    def _init_nvml(self) -> None:
        try:
            import pynvml
        except ImportError:
            self.gpu_note = "nvidia-ml-py not installed"
            return
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded...
            self.gpu_note = f"NVML unavailable ({type(exc).__name__.replace('NVMLError_', '')})"
            return
        self._nvml = pynvml
        try:
            count = pynvml.nvmlDeviceGetCount()
            for i in range(count):
                handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                name = pynvml.nvmlDeviceGetName(handle)
                self._handles.append(handle)
                self._names.append(name.decode() if isinstance(name, bytes) else str(name))
        except Exception as exc:  # noqa: BLE001
            self.gpu_note = f"NVML error: {exc}"
        if not self._handles and not self.gpu_note:
            self.gpu_note = "NVML found no GPU"

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass
            self._nvml = None
            self._handles = []

    def __enter__(self) -> "DeviceMonitor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _try(fn, *args):
        try:
            return fn(*args)
        except Exception:  # noqa: BLE001 - unsupported query on this GPU/driver
            return None

    def _gpu(self, i: int) -> GpuSample:
        nv, h = self._nvml, self._handles[i]
        util = self._try(nv.nvmlDeviceGetUtilizationRates, h)
        mem = self._try(nv.nvmlDeviceGetMemoryInfo, h)
        temp = self._try(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU)
        power_mw = self._try(nv.nvmlDeviceGetPowerUsage, h)
        limit_mw = self._try(nv.nvmlDeviceGetEnforcedPowerLimit, h)
        return GpuSample(
            index=i,
            name=self._names[i],
            util_percent=float(util.gpu) if util is not None else None,
            memory_used_bytes=int(mem.used) if mem is not None else None,
            memory_total_bytes=int(mem.total) if mem is not None else None,
            temperature_c=float(temp) if temp is not None else None,
            power_w=power_mw / 1000.0 if power_mw is not None else None,
            power_limit_w=limit_mw / 1000.0 if limit_mw is not None else None,
        )

    def _host(self) -> HostSample:
        cores = usable_cores()
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = None
        ps = self._psutil
        if ps is None:
            return HostSample(cores, None, load, None, None, None, None)
        vm = ps.virtual_memory()
        app_rss = children_rss = None
        n_children = 0
        try:
            app_rss = self._proc.memory_info().rss
            children_rss = 0
            for child in self._proc.children(recursive=True):
                try:
                    children_rss += child.memory_info().rss
                    n_children += 1
                except (ps.NoSuchProcess, ps.AccessDenied):
                    pass
        except (ps.NoSuchProcess, ps.AccessDenied):
            pass
        return HostSample(cores, ps.cpu_percent(interval=None), load, int(vm.total - vm.available), int(vm.total),
                          app_rss, children_rss, n_children)

    def sample(self) -> DeviceSample:
        gpus = [self._gpu(i) for i in range(len(self._handles))] if self._nvml is not None else []
        return DeviceSample(t=time.time(), gpus=gpus, host=self._host(), gpu_note=self.gpu_note)


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float | None], lo: float = 0.0, hi: float = 100.0) -> str:
    """One character per value on a fixed scale (percent by default); None is a blank."""
    out = []
    span = max(hi - lo, 1e-9)
    for v in values:
        if v is None:
            out.append(" ")
            continue
        k = int(round((min(max(v, lo), hi) - lo) / span * (len(SPARK) - 1)))
        out.append(SPARK[k])
    return "".join(out)


__all__ = ["DeviceMonitor", "DeviceSample", "GpuSample", "HostSample", "sparkline"]
