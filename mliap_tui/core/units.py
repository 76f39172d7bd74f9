"""Units and their conversions, in one place, and numbers formatted with their units.

The cache stores SI-like "materials" units: energies in eV (per atom unless the name says
otherwise), forces in eV/Å, stress in GPa, lengths in Å. Screens show energies in meV/atom.
Column and variable names carry their unit (``*_ev_per_atom``, ``*_gpa``, ``*_ang``...).
"""

from __future__ import annotations

import math

#: meV per eV: energies are stored in eV/atom and shown in meV/atom.
MEV_PER_EV = 1000.0
#: GPa per eV/Å^3 (ase.units: 1 eV/Å^3 = 160.21766208 GPa).
GPA_PER_EV_PER_ANG3 = 160.21766208
#: eV/Å^3 per GPa (= ase.units.GPa).
EV_PER_ANG3_PER_GPA = 1.0 / GPA_PER_EV_PER_ANG3


def ev_per_ang3_to_gpa(value):
    """Stress or pressure from eV/Å^3 to GPa (works on floats and numpy arrays)."""
    return value * GPA_PER_EV_PER_ANG3


def gpa_to_ev_per_ang3(value):
    """Stress or pressure from GPa to eV/Å^3 (works on floats and numpy arrays)."""
    return value * EV_PER_ANG3_PER_GPA


# ---- formatting ------------------------------------------------------------------------------


def format_duration(seconds: float | None, *, clock: bool = False) -> str:
    """A duration for people: ``'42 s'``, ``'3 min 05 s'``, ``'2 h 07 min'``.

    ``clock=True`` gives the compact form used in progress lines: ``'00:42'``, ``'1:02:03'``.
    Unknown (None, NaN, negative) durations are ``'—'`` (``'--:--'`` with ``clock``).
    """
    if seconds is None or seconds != seconds or seconds < 0 or math.isinf(seconds):
        return "--:--" if clock else "—"
    total = int(round(seconds))
    if clock:
        h, rem = divmod(total, 3600)
        m, s = divmod(rem, 60)
        return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
    if total < 60:
        return f"{total} s"
    minutes, s = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m:02d} min"


def format_bytes(n: int | float | None) -> str:
    """Binary units: ``1536 -> '1.5 KiB'``; None -> ``'?'``."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop always returns


def format_signed(value: float | None, digits: int = 1, *, none: str = "-") -> str:
    """``+1.2`` / ``-3.4``; a value that rounds to zero is ``0.0`` (never ``-0.0``)."""
    if value is None or value != value:
        return none
    text = f"{value:+.{digits}f}"
    return text[1:] if float(text) == 0.0 else text


def format_mev(value_ev: float | None, digits: int = 1, *, signed: bool = False, none: str = "-") -> str:
    """An energy stored in eV shown in meV (no unit suffix: tables put it in the header)."""
    if value_ev is None or value_ev != value_ev:
        return none
    if signed:
        return format_signed(value_ev * MEV_PER_EV, digits, none=none)
    text = f"{value_ev * MEV_PER_EV:.{digits}f}"
    return text.lstrip("-") if float(text) == 0.0 else text


def format_interval(lo: float | None, hi: float | None, digits: int = 1, *, scale: float = 1.0) -> str:
    """``'[21.0,30.2]'`` (values times ``scale``, e.g. MEV_PER_EV); ``''`` when there is no interval.
    A bound that would round to zero but is not zero gets up to two more decimals (``-0.003``), so
    an interval that excludes zero reads so."""
    if lo is None or hi is None or lo != lo or hi != hi:
        return ""

    def bound(x: float) -> str:
        x *= scale
        for extra in (0, 1, 2):
            text = format_signed(x, digits + extra).lstrip("+")
            if float(text) != 0 or x == 0:
                return text
        return format_signed(x, digits).lstrip("+")

    return f"[{bound(lo)},{bound(hi)}]"


def format_mev_interval(value_ev: float | None, lo_ev: float | None, hi_ev: float | None, digits: int = 1, *,
                        signed: bool = False, none: str = "-") -> str:
    """An eV value in meV with its interval: ``'25.3 [21.0,30.2]'`` (``signed``: ``'+1.2 [...]'``);
    the value alone when there is no interval; ``none`` when there is no value."""
    if value_ev is None or value_ev != value_ev:
        return none
    text = format_mev(value_ev, digits, signed=signed)
    interval = format_interval(lo_ev, hi_ev, digits, scale=MEV_PER_EV)
    return f"{text} {interval}" if interval else text


def format_p_value(p: float | None) -> str:
    """A p-value: ``'0.012'``, ``'3.2e-05'``, ``'<1e-300'``; ``'-'`` when undefined."""
    if p is None or p != p:
        return "-"
    if p == 0:
        return "<1e-300"
    if p < 1e-3:
        return f"{p:.1e}"
    return f"{p:.2g}" if p < 0.1 else f"{p:.2f}"


def plural(n: int, noun: str, plural_form: str | None = None) -> str:
    """``'1 space group'``, ``'2 space groups'``, ``'1,024 crystals'``."""
    word = noun if n == 1 else (plural_form or noun + "s")
    return f"{n:,} {word}"


__all__ = [
    "EV_PER_ANG3_PER_GPA",
    "GPA_PER_EV_PER_ANG3",
    "MEV_PER_EV",
    "ev_per_ang3_to_gpa",
    "format_bytes",
    "format_duration",
    "format_interval",
    "format_mev",
    "format_mev_interval",
    "format_p_value",
    "format_signed",
    "gpa_to_ev_per_ang3",
    "plural",
]
