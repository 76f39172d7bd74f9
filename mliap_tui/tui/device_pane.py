"""The device pane of the run screen: per-GPU utilisation (with a sparkline of recent samples),
memory, temperature and power from NVML; otherwise says plainly that the run is on the CPU.

Sampling (``mliap_tui.engine.devices.DeviceMonitor``) runs in a thread worker about once a second and
posts ``DeviceSampled``; the pane only formats.
"""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual import work
from textual.widget import Widget

from mliap_tui.core.units import format_bytes
from mliap_tui.engine.devices import DeviceMonitor, DeviceSample, sparkline
from mliap_tui.tui.messages import DeviceSampled

HISTORY = 30  # samples kept for the sparklines (~30 s)


def _num(value: float | None, fmt: str, unit: str) -> str:
    return "?" if value is None else f"{value:{fmt}}{unit}"


def device_text(sample: DeviceSample | None, history: dict[str, deque]) -> Text:
    """The pane's text: one line per GPU, or the no-GPU line, then the host line."""
    if sample is None:
        return Text("sampling devices…", style="dim")
    out = Text()
    if sample.gpus:
        for g in sample.gpus:
            spark = sparkline(list(history.get(f"gpu{g.index}", [])))
            mem = (f"{format_bytes(g.memory_used_bytes)}/{format_bytes(g.memory_total_bytes)}"
                   if g.memory_total_bytes else "?")
            power = _num(g.power_w, ".0f", "")
            if g.power_limit_w:
                power += f"/{g.power_limit_w:.0f}"
            out.append(f"GPU{g.index} ", style="bold")
            out.append(f"{g.name[:22]:<22} ", style="cyan")
            out.append(f"util {_num(g.util_percent, '3.0f', ' %')} ")
            out.append(f"{spark:<{min(HISTORY, 12)}} ", style="green")
            out.append(f"mem {mem} · {_num(g.temperature_c, '.0f', ' °C')} · {power} W\n")
    else:
        cores = sample.host.cpu_count if sample.host else "?"
        out.append(f"no GPU: running on CPU ({cores} cores)", style="bold yellow")
        if sample.gpu_note:
            out.append(f"  ({sample.gpu_note})", style="dim")
        out.append("\n")
    h = sample.host
    if h is not None:
        out.append("CPU ", style="bold")
        out.append(f"{_num(h.cpu_percent, '3.0f', ' %')} ")
        out.append(f"{sparkline(list(history.get('cpu', []))[-12:]):<12} ", style="green")
        if h.load_avg_1min is not None:
            out.append(f"load {h.load_avg_1min:.1f} · ")
        if h.memory_total_bytes:
            out.append(f"RAM {format_bytes(h.memory_used_bytes)}/{format_bytes(h.memory_total_bytes)} · ")
        if h.app_rss_bytes is not None:
            out.append(f"app RSS {format_bytes(h.app_rss_bytes)}")
        if h.n_children:
            out.append(f" · workers RSS {format_bytes(h.children_rss_bytes)}")
        elif h.cpu_percent is None and h.app_rss_bytes is None:
            out.append("(install psutil for CPU load and memory)", style="dim")
    return out


class DevicePane(Widget):
    """GPU/CPU monitor. ``poll_s=None`` does not poll (tests/snapshots feed samples with ``show``)."""

    DEFAULT_CSS = """
    DevicePane { height: auto; }
    """

    def __init__(self, poll_s: float | None = 1.0, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.poll_s = poll_s
        self.sample: DeviceSample | None = None
        self.history: dict[str, deque] = {}
        self._monitor: DeviceMonitor | None = None
        self._busy = False

    def on_mount(self) -> None:
        self.border_title = "devices"
        if self.poll_s:
            self._poll()
            self.set_interval(self.poll_s, self._poll)

    def on_unmount(self) -> None:
        if self._monitor is not None:
            self._monitor.close()

    def _poll(self) -> None:
        if not self._busy:
            self._busy = True
            self._sample_worker()

    @work(thread=True, exclusive=True, group="device-sample")
    def _sample_worker(self) -> None:
        try:
            if self._monitor is None:
                self._monitor = DeviceMonitor()
            sample = self._monitor.sample()
        except Exception:  # noqa: BLE001 - a monitor failure must not stop the run screen
            sample = None
        self.post_message(DeviceSampled(sample))

    def on_device_sampled(self, message: DeviceSampled) -> None:
        self._busy = False
        if message.sample is not None:
            self.show(message.sample)

    def show(self, sample: DeviceSample) -> None:
        self.sample = sample
        for g in sample.gpus:
            self.history.setdefault(f"gpu{g.index}", deque(maxlen=HISTORY)).append(g.util_percent)
        if sample.host is not None:
            self.history.setdefault("cpu", deque(maxlen=HISTORY)).append(sample.host.cpu_percent)
        self.refresh(layout=True)

    def render(self) -> Text:
        return device_text(self.sample, self.history)
