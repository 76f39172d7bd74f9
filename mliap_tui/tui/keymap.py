"""Remappable keys (Posting style): every Binding has an id; a small TOML file maps ids to keys.

File: ``$MLIAP_TUI_KEYMAP`` or ``$XDG_CONFIG_HOME/mliap-tui/keymap.toml`` (default
``~/.config/mliap-tui/keymap.toml``)::

    [keymap]
    "explore.export" = "ctrl+e"
    "explore.focus_filter" = "f,slash"

The help screen (``?``) lists every id with its current key.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path


def keymap_path() -> Path:
    env = os.environ.get("MLIAP_TUI_KEYMAP")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "mliap-tui" / "keymap.toml"


def binding_sources() -> list[tuple[str, type]]:
    """(where, class) of every class that declares bindings, in help-screen order."""
    from mliap_tui.tui.app import MliapTuiApp
    from mliap_tui.tui.detail import DetailScreen
    from mliap_tui.tui.explore import ExploreScreen
    from mliap_tui.tui.export_screen import ExportScreen
    from mliap_tui.tui.forces_screen import ForcesScreen
    from mliap_tui.tui.help_screen import HelpScreen
    from mliap_tui.tui.pes_screen import PesScreen
    from mliap_tui.tui.ptable import PeriodicTable
    from mliap_tui.tui.run_screen import FailuresScreen, ModelPane, RunScreen
    from mliap_tui.tui.study_screen import StudyScreen
    from mliap_tui.tui.table import VirtualTable

    return [("everywhere", MliapTuiApp), ("explore", ExploreScreen), ("table", VirtualTable),
            ("periodic table", PeriodicTable),
            ("detail", DetailScreen), ("PES slice", PesScreen), ("forces", ForcesScreen), ("study", StudyScreen),
            ("run", RunScreen), ("run: model pane", ModelPane),
            ("failures dialog", FailuresScreen), ("export dialog", ExportScreen), ("help", HelpScreen)]


def all_bindings() -> dict[str, tuple[str, str, str]]:
    """binding id -> (default keys, description, where)."""
    out = {}
    for where, cls in binding_sources():
        for b in cls.BINDINGS:
            if getattr(b, "id", None):
                out[b.id] = (b.key, b.description or b.action, where)
    return out


#: Keys a screen may take over from the app on purpose: q (and escape) close the screen they are on.
CLOSE_KEYS = frozenset({"q", "escape", "backspace"})
#: Actions that close the screen they are on: a screen may bind the key that opened it to one of
#: them (? opens and closes the help).
CLOSE_ACTIONS = frozenset({"dismiss", "app.pop_screen", "close", "back", "cancel"})


def binding_clashes() -> list[str]:
    """Where one key means two things: within one screen (its bindings and its widgets'), or an
    app-wide key shown in the footer that a screen or widget silently takes over (``CLOSE_KEYS``
    excepted). Empty when the key map is consistent."""
    from mliap_tui.tui.app import MliapTuiApp
    from mliap_tui.tui.detail import DetailScreen
    from mliap_tui.tui.explore import ExploreScreen
    from mliap_tui.tui.export_screen import ExportScreen
    from mliap_tui.tui.forces_screen import ForcesScreen
    from mliap_tui.tui.help_screen import HelpScreen
    from mliap_tui.tui.pes_screen import PesScreen
    from mliap_tui.tui.ptable import PeriodicTable
    from mliap_tui.tui.run_screen import FailuresScreen, ModelPane, RunScreen
    from mliap_tui.tui.study_screen import StudyScreen
    from mliap_tui.tui.table import VirtualTable

    def keys(cls) -> dict[str, str]:
        out: dict[str, str] = {}
        for b in cls.BINDINGS:
            for key in b.key.split(","):
                out.setdefault(key.strip(), f"{cls.__name__}.{b.action}")
        return out

    app = keys(MliapTuiApp)
    shown_app = {k for b in MliapTuiApp.BINDINGS if b.show for k in b.key.split(",")}
    screens = {ExploreScreen: [VirtualTable, PeriodicTable], DetailScreen: [], PesScreen: [], ForcesScreen: [],
               StudyScreen: [],
               RunScreen: [ModelPane], FailuresScreen: [], ExportScreen: [], HelpScreen: []}
    problems = []
    for screen, widgets in screens.items():
        # a focused widget's key is meant for that widget: check each widget against the screen
        # (two widgets may give the arrows different meanings; only one has the focus)
        seen: dict[str, str] = dict(keys(screen))
        for cls in widgets:
            for key, action in keys(cls).items():
                if key in keys(screen) and keys(screen)[key].split(".", 1)[1] != action.split(".", 1)[1]:
                    problems.append(f"{screen.__name__}: {key!r} is {keys(screen)[key]} and {action}")
                seen.setdefault(key, action)
        for key, action in seen.items():
            own = action.split(".", 1)[1]
            if key in shown_app and key not in CLOSE_KEYS and own not in CLOSE_ACTIONS and own != app[key].split(".", 1)[1]:
                problems.append(f"{screen.__name__}: {key!r} is {action}, but the footer says it is {app[key]}")
    return problems


def load_keymap(path: Path | None = None) -> tuple[dict[str, str], list[str]]:
    """(keymap, warnings). A missing file is an empty keymap; a bad one is reported, not fatal."""
    path = path or keymap_path()
    if not path.is_file():
        return {}, []
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return {}, [f"keymap {path} ignored: {exc}"]
    table = data.get("keymap", data)
    known = all_bindings()
    keymap, warnings = {}, []
    for binding_id, keys in table.items():
        if not isinstance(keys, str) or not keys.strip():
            warnings.append(f"keymap {path}: {binding_id!r} must map to a key string like 'ctrl+e'")
        elif binding_id not in known:
            warnings.append(f"keymap {path}: unknown binding id {binding_id!r} (see ? for the ids)")
        else:
            keymap[binding_id] = keys.strip()
    return keymap, warnings
