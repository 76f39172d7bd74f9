"""Progress bookkeeping: windowed rates, ETA, peak memory, and summing workers' progress.

Pure standard library (torch only if the process already imported it), so the worker can use it
in any venv, and the TUI/CLI can use it without torch.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from dataclasses import replace
from typing import Iterable

from mliap_tui.core.units import format_bytes, format_duration
from mliap_tui.engine.protocol import Progress

LAST_FAILURES = 5


class RateWindow:
    """Structures/s and atoms/s over the last ``window_s`` seconds.

    Feed it cumulative counts with :meth:`add`; the rate is measured between the newest sample
    and the oldest one still inside the window (keeping one sample at or before the window's
    start, so a slow batch that straddles it still counts).
    """

    def __init__(self, window_s: float = 30.0, t0: float | None = None):
        self.window_s = float(window_s)
        self._samples: deque[tuple[float, int, int]] = deque()
        self._samples.append((time.monotonic() if t0 is None else t0, 0, 0))

    def add(self, done: int, atoms_done: int, t: float | None = None) -> None:
        t = time.monotonic() if t is None else t
        self._samples.append((t, done, atoms_done))
        start = t - self.window_s
        while len(self._samples) > 2 and self._samples[1][0] <= start:
            self._samples.popleft()

    def rates(self) -> tuple[float | None, float | None]:
        """(structures/s, atoms/s), or (None, None) before any progress."""
        (t0, d0, a0), (t1, d1, a1) = self._samples[0], self._samples[-1]
        dt = t1 - t0
        if dt <= 0 or d1 == d0:
            return None, None
        return (d1 - d0) / dt, (a1 - a0) / dt


def eta_seconds(
    atoms_left: int, structures_left: int, atoms_per_s: float | None, structures_per_s: float | None
) -> float | None:
    """Seconds left: by atoms (cost scales with atoms), else by structures; None without a rate."""
    if structures_left <= 0:
        return 0.0
    if atoms_per_s and atoms_per_s > 0 and atoms_left > 0:
        return atoms_left / atoms_per_s
    if structures_per_s and structures_per_s > 0:
        return structures_left / structures_per_s
    return None


def peak_memory(device: str) -> tuple[int | None, str]:
    """(bytes, kind): ``torch.cuda.max_memory_allocated`` on a GPU, peak RSS of this process on CPU."""
    if device.startswith("cuda"):
        torch = sys.modules.get("torch")
        if torch is not None:
            try:
                return int(torch.cuda.max_memory_allocated()), "cuda_max_allocated"
            except Exception:  # noqa: BLE001 - memory stats are best effort
                pass
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # Linux reports KiB, macOS bytes
        return int(rss if sys.platform == "darwin" else rss * 1024), "cpu_peak_rss"
    except Exception:  # noqa: BLE001 - not available on this platform
        return None, "cpu_peak_rss"


class ProgressTracker:
    """Counts what a worker has done and makes :class:`Progress` events (throttled)."""

    def __init__(
        self,
        *,
        model: str,
        mode: str,
        total: int,
        atoms_total: int,
        device: str,
        worker: int = 0,
        window_s: float = 30.0,
        interval_s: float = 0.5,
        memory_device: str | None = None,
    ):
        self.model, self.mode, self.worker = model, mode, worker
        self.total, self.atoms_total = total, atoms_total
        self.device = device
        self.memory_device = memory_device or device
        self.interval_s = interval_s
        self.window = RateWindow(window_s)
        self.window_s = window_s
        self.t0 = time.monotonic()
        self.done = self.atoms_done = self.ok = self.failed = 0
        self.batch_atoms = 0
        self.skipped = 0  # materials another run committed first (taken out of the totals)
        self.last_failures: deque[list[str]] = deque(maxlen=LAST_FAILURES)
        self._last_emit = 0.0
        self.emitted_done = -1  # ``done`` at the last event made

    def record(self, ok: int = 0, failed: int = 0, atoms: int = 0, failures: Iterable[tuple[str, str]] = ()) -> None:
        self.ok += ok
        self.failed += failed
        self.done += ok + failed
        self.atoms_done += atoms
        for material_id, reason in failures:
            self.last_failures.append([material_id, reason])
        self.window.add(self.done, self.atoms_done)

    def skip(self, n: int, atoms: int) -> None:
        """``n`` materials (``atoms`` atoms) of the job were committed by another run: not ours to do."""
        self.skipped += n
        self.total -= n
        self.atoms_total -= atoms

    def due(self) -> bool:
        """True when the last event is older than the throttle interval (or everything is done)."""
        return self.done >= self.total or time.monotonic() - self._last_emit >= self.interval_s

    def event(self) -> Progress:
        self._last_emit = time.monotonic()
        self.emitted_done = self.done
        sps, aps = self.window.rates()
        mem, kind = peak_memory(self.memory_device)
        return Progress(
            model=self.model,
            mode=self.mode,
            worker=self.worker,
            done=self.done,
            total=self.total,
            atoms_done=self.atoms_done,
            atoms_total=self.atoms_total,
            ok=self.ok,
            failed=self.failed,
            structures_per_s=sps,
            atoms_per_s=aps,
            window_s=self.window_s,
            eta_s=eta_seconds(self.atoms_total - self.atoms_done, self.total - self.done, aps, sps),
            elapsed_s=time.monotonic() - self.t0,
            device=self.device,
            peak_memory_bytes=mem,
            memory_kind=kind,
            batch_atoms=self.batch_atoms,
            last_failures=list(self.last_failures),
            skipped=self.skipped,
        )


def combine(events: Iterable[Progress]) -> Progress | None:
    """One model-level Progress from the latest Progress of each of its workers.

    Counts and rates add up (workers run side by side), the ETA is the slowest worker's, peak
    memory is the largest, devices are listed.
    """
    events = list(events)
    if not events:
        return None
    if len(events) == 1:
        return events[0]

    def add(values: list[float | None]) -> float | None:
        vals = [v for v in values if v is not None]
        return sum(vals) if vals else None

    etas = [e.eta_s for e in events]
    failures = [f for e in sorted(events, key=lambda e: e.t) for f in e.last_failures][-LAST_FAILURES:]
    mems = [e.peak_memory_bytes for e in events if e.peak_memory_bytes is not None]
    return replace(
        events[0],
        worker=-1,
        t=max(e.t for e in events),
        done=sum(e.done for e in events),
        total=sum(e.total for e in events),
        atoms_done=sum(e.atoms_done for e in events),
        atoms_total=sum(e.atoms_total for e in events),
        ok=sum(e.ok for e in events),
        failed=sum(e.failed for e in events),
        structures_per_s=add([e.structures_per_s for e in events]),
        atoms_per_s=add([e.atoms_per_s for e in events]),
        eta_s=None if any(x is None for x in etas) else max(etas),  # type: ignore[type-var]
        elapsed_s=max(e.elapsed_s for e in events),
        device=",".join(dict.fromkeys(e.device for e in events)),
        peak_memory_bytes=max(mems) if mems else None,
        batch_atoms=max(e.batch_atoms for e in events),
        last_failures=failures,
        skipped=sum(e.skipped for e in events),
    )


# ---- plain-text formatting (the CLI's rich renderer and logs use these) -------------------------


def memory_label(kind: str) -> str:
    return {"cuda_max_allocated": "GPU peak", "cpu_peak_rss": "RSS peak"}.get(kind, kind or "memory")


def format_progress(ev: Progress) -> str:
    """One line, e.g. ``chgnet-0.3.0 static 120/300 (40%) 35.2 s/s 612 at/s ETA 00:05 failed 1``."""
    pct = 100.0 * ev.done / ev.total if ev.total else 100.0
    sps = f"{ev.structures_per_s:.1f}/s" if ev.structures_per_s else "-/s"
    aps = f"{ev.atoms_per_s:.0f} atoms/s" if ev.atoms_per_s else "- atoms/s"
    text = (
        f"{ev.model} {ev.mode} {ev.done}/{ev.total} ({pct:.0f}%) {sps} {aps} "
        f"ETA {format_duration(ev.eta_s, clock=True)} failed {ev.failed} [{ev.device}, "
        f"{memory_label(ev.memory_kind)} {format_bytes(ev.peak_memory_bytes)}]"
    )
    if ev.last_failures:
        mid, reason = ev.last_failures[-1]
        text += f" last failure {mid}: {reason[:80]}"
    return text
