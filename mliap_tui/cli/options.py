"""Options several commands share, defined once, and the small parsers they need."""

from __future__ import annotations

import argparse
from typing import Iterable, Sequence

from mliap_tui.cache import Cache
from mliap_tui.core.vocab import DTYPES, MODES

DEFAULT_MODELS = "chgnet-0.3.0,sevennet-0"
DEVICE_HELP = "auto | cpu | cuda | cuda:N (default: auto = every visible GPU, else the CPU)"


class UserError(ValueError):
    """Something the user typed is wrong: one clear line, exit status 2."""


def add_cache(p: argparse.ArgumentParser, top: bool = False) -> None:
    """``--cache DIR``; on a sub-command it does not override one given before the command."""
    p.add_argument(
        "--cache",
        metavar="DIR",
        default=None if top else argparse.SUPPRESS,
        help="cache folder (default: $MLIAP_TUI_CACHE or ./cache)",
    )


def add_data(p: argparse.ArgumentParser, default: str | None = "sample", *, required: bool = False,
             many: bool = False) -> None:
    what = "dataset name(s), comma-separated" if many else "dataset name in the cache"
    if required:
        p.add_argument("--data", required=True, metavar="NAME", help=what)
    else:
        p.add_argument("--data", default=default, metavar="NAME", help=f"{what} (default: {default})")


def add_models(p: argparse.ArgumentParser, default: str | None = DEFAULT_MODELS) -> None:
    if default is None:
        p.add_argument("--models", default=None, metavar="IDS", help="model ids, comma-separated (default: every model in the cache)")
    else:
        p.add_argument("--models", default=default, metavar="IDS",
                       help=f"model ids, comma-separated (see `mliap-tui models`; default: {default})")


def add_mode(p: argparse.ArgumentParser, help_text: str = "static single points (default) or relaxations") -> None:
    p.add_argument("--mode", default="static", choices=MODES, help=help_text)


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="model precision (default: float32)")


def cache_of(args: argparse.Namespace) -> Cache:
    return Cache.open(getattr(args, "cache", None))


def split_list(value: str | None) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c'] (order kept, duplicates dropped)."""
    if not value:
        return []
    return list(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))


def parse_pairs(items: Iterable[str], option: str) -> dict[str, str]:
    """['MODEL=PATH', ...] -> {MODEL: PATH}; UserError naming ``option`` for a malformed item."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UserError(f"{option} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def odd_points(text: str) -> int:
    """argparse type: grid points per axis, odd and >= 3 (so the DFT point is on the grid)."""
    value = positive_int(text)
    if value < 3 or value % 2 == 0:
        raise argparse.ArgumentTypeError(
            f"must be odd and at least 3 so the DFT structure is the centre point, got {value} (try {max(3, value + 1)})")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def add_torch_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--torch-threads", type=positive_int, default=None, metavar="N",
                   help="CPU threads for the model (default: every usable core; on a machine busy with other "
                   "work, 1 is often several times faster)")


def split_models(value: str | None) -> list[str]:
    """``--models`` items: split on commas outside braces, so ``ase:m:f:{"a":1,"b":2}`` stays whole."""
    if not value:
        return []
    items, depth, current = [], 0, []
    for ch in value:
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
    items.append("".join(current))
    return list(dict.fromkeys(v.strip() for v in items if v.strip()))


def model_ids(value: str | None, *, required: bool = True, extra: Sequence[str] = ()) -> list[str]:
    """Models from ``--models`` (and repeated ``--model`` items in ``extra``): registry ids, plug-in
    ids or ``ase:`` references, each checked (UserError naming the known ids)."""
    import difflib

    from mliap_tui.models.plugins import plugin_ids
    from mliap_tui.models.registry import REGISTRY, get_spec

    ids = list(dict.fromkeys([*split_models(value), *(e.strip() for e in extra if e.strip())]))
    if required and not ids:
        raise UserError("no model given: pass --models ID[,ID...] (mliap-tui models lists them)")
    for m in ids:
        try:
            get_spec(m)
        except KeyError as exc:
            message = str(exc.args[0]) if exc.args else str(exc)
            if not message.startswith("unknown model"):  # a plug-in or ase: reference that did not load
                raise UserError(message) from None
            close = difflib.get_close_matches(m, [*REGISTRY, *plugin_ids()], n=3, cutoff=0.4)
            hint = f": did you mean {' or '.join(close)}?" if close else ""
            raise UserError(f"unknown model {m!r}{hint} (mliap-tui models lists every model; an ASE "
                            "calculator is ase:package.module:factory)") from None
    return ids


def refuse_unavailable(model_ids: Sequence[str], python_for: dict[str, str]) -> None:
    """Raise ModelUnavailable (exit 3) before anything starts when a model's package is missing
    here (and no --python-for points its family at another interpreter): one line per model."""
    from mliap_tui.models.base import ModelUnavailable
    from mliap_tui.models.registry import availability, get_spec

    problems = []
    for m in model_ids:
        spec = get_spec(m)
        if m in python_for or spec.family in python_for:
            continue  # its own venv: the worker finds out there
        avail = availability(spec)
        if not avail.installed:
            problems.append(f"{m}: {avail.message}")
    if problems:
        raise ModelUnavailable("; ".join(problems))


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Wraps prose paragraphs to the terminal width; keeps indented blocks (examples, tables) as
    written. Paragraphs are separated by blank lines."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        out = []
        for para in text.split("\n\n"):
            lines = para.splitlines()
            if any(line.startswith((" ", "\t")) for line in lines) or not para.strip():
                out.append("\n".join(indent + line for line in lines))
            else:
                out.append(textwrap.fill(" ".join(para.split()), width, initial_indent=indent, subsequent_indent=indent))
        return "\n\n".join(out)


def formatter() -> type[argparse.HelpFormatter]:
    return HelpFormatter


def examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


__all__: Sequence[str] = [
    "DEFAULT_MODELS",
    "UserError",
    "add_cache",
    "add_data",
    "add_device",
    "add_mode",
    "add_models",
    "add_torch_threads",
    "cache_of",
    "examples",
    "formatter",
    "model_ids",
    "non_negative_float",
    "parse_pairs",
    "odd_points",
    "positive_int",
    "split_list",
    "split_models",
]
