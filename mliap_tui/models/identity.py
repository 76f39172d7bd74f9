"""Which weights a model runs with: a content fingerprint of its checkpoint file(s).

The cache keys prediction rows by (material, model, **weights fingerprint**, mode): a different
``--checkpoint`` under the same model id is a different model for the cache, and rows of other
weights are never counted as done, nor shown as the current ones.

* A file's sha256 is computed once and memoised by (real path, size, mtime) in
  ``$XDG_CACHE_HOME/mliap-tui/file-sha256.json`` (``$MLIAP_TUI_HASH_MEMO`` overrides the path):
  a 40 MB checkpoint is read once per machine, then looked up in microseconds.
* One file: the fingerprint is its sha256 (a copy elsewhere is the same weights). A folder (a
  matgl model: model.json, model.pt, state.pt): sha256 over ``name sha256`` lines of its files.
* Weights that are not on disk yet (a hub model to download) have no fingerprint before loading;
  the worker takes it after loading, when the family's cache holds the files.
* ``ase:`` models: the fingerprint of their configuration (the reference string, with the content
  hash of any file a keyword argument names). Plug-ins: their declared ``weights_files``, else
  their spec (id, version, weights name).

Cheap to import: no torch, no model package.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from mliap_tui.models.base import ModelSpec

#: read files in chunks of this many bytes while hashing
_CHUNK_BYTES = 4 << 20
_memo_lock = threading.Lock()
_memo: dict[str, dict[str, Any]] | None = None
_memo_path_loaded: Path | None = None


def hash_memo_path() -> Path:
    env = os.environ.get("MLIAP_TUI_HASH_MEMO")
    if env:
        return Path(env).expanduser()
    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return home / "mliap-tui" / "file-sha256.json"


def _load_memo(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_memo(path: Path, memo: dict[str, dict[str, Any]]) -> None:
    """Best effort (a read-only home only costs a re-hash next time)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo, indent=0, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of a file's content, memoised by (real path, size, mtime_ns)."""
    global _memo, _memo_path_loaded
    real = os.path.realpath(path)
    st = os.stat(real)
    key = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    memo_path = hash_memo_path()
    with _memo_lock:
        if _memo is None or _memo_path_loaded != memo_path:
            _memo, _memo_path_loaded = _load_memo(memo_path), memo_path
        hit = _memo.get(real)
        if hit and hit.get("size") == key["size"] and hit.get("mtime_ns") == key["mtime_ns"] and hit.get("sha256"):
            return str(hit["sha256"])
    digest = hashlib.sha256()
    with open(real, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK_BYTES), b""):
            digest.update(block)
    value = digest.hexdigest()
    with _memo_lock:
        assert _memo is not None
        _memo = {**_load_memo(memo_path), **_memo}  # keep what other processes added meanwhile
        _memo[real] = {**key, "sha256": value}
        _save_memo(memo_path, _memo)
    return value


def files_fingerprint(path: str | Path) -> tuple[str, tuple[str, ...]]:
    """(fingerprint, files hashed) of a weights file or folder (its regular files, not recursive)."""
    p = Path(path).expanduser()
    if p.is_file():
        return file_sha256(p), (str(p.resolve()),)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
        if not files:
            raise FileNotFoundError(f"{p} holds no files")
        lines = "".join(f"{f.name} {file_sha256(f)}\n" for f in files)
        return hashlib.sha256(lines.encode()).hexdigest(), tuple(str(f.resolve()) for f in files)
    raise FileNotFoundError(f"{p} does not exist")


def text_fingerprint(text: str) -> str:
    """Fingerprint of a configuration (models without weight files): sha256 of ``config:<text>``."""
    return hashlib.sha256(f"config:{text}".encode()).hexdigest()


def distribution_version(names: Iterable[str]) -> str | None:
    """``name version`` of the first installed distribution among ``names`` (None: none installed)."""
    for name in names:
        if not name:
            continue
        try:
            return f"{name} {importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def module_distribution_version(module: str) -> str | None:
    """``dist version`` of the distribution that provides top-level module ``module``."""
    top = module.split(".", 1)[0]
    try:
        dists = importlib.metadata.packages_distributions().get(top, [])
    except Exception:  # noqa: BLE001 - broken metadata somewhere on the path
        dists = []
    return distribution_version([*dists, top])


@dataclass(frozen=True)
class WeightsIdentity:
    """The weights a model runs with. ``fingerprint`` is None until they are on disk."""

    model: str
    fingerprint: str | None
    source: str  # where the weights come from, one line: "bundled: <path>", "checkpoint: <path>", ...
    files: tuple[str, ...] = ()
    package_version: str | None = None  # "chgnet 0.4.2"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def short(self) -> str:
        return (self.fingerprint or "unknown")[:7]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _package_version(spec: ModelSpec) -> str | None:
    from mliap_tui.models.registry import FAMILY_PIP

    pip_name = FAMILY_PIP.get(spec.family)
    if pip_name:
        return distribution_version([pip_name, spec.package])
    return module_distribution_version(spec.package) if spec.package else None


def resolve_identity(spec: ModelSpec, checkpoint: str | None = None) -> WeightsIdentity:
    """The weights ``spec`` would run with here (``checkpoint`` replaces its default weights).

    Cheap after the first call per file (memoised hashes); imports no model package. The
    fingerprint is None when the default weights are not on this machine yet.
    """
    version = _package_version(spec)
    if checkpoint:
        path = Path(os.path.expanduser(str(checkpoint)))
        fp, files = files_fingerprint(path)
        return WeightsIdentity(spec.id, fp, f"checkpoint: {path.resolve()}", files, version)
    identity_text = spec.options.get("identity")
    if identity_text is not None:  # ase: models: their configuration, and the files it names
        files = tuple(str(Path(f).resolve()) for f in spec.options.get("identity_files", ()) if Path(f).is_file())
        text = str(identity_text) + "".join(f"\n{f} {file_sha256(f)}" for f in files)
        return WeightsIdentity(spec.id, text_fingerprint(text), f"configuration: {identity_text}", files, version)
    declared = [Path(p).expanduser() for p in spec.options.get("weights_files", ())]
    if declared:  # a plug-in that names its weights
        if all(p.exists() for p in declared):
            fp, files = paths_fingerprint(declared)
            return WeightsIdentity(spec.id, fp, f"plug-in weights: {', '.join(map(str, declared))}", files, version)
        return WeightsIdentity(spec.id, None, f"plug-in weights {declared[0]} not found", (), version)
    if spec.family not in _family_modules():  # a plug-in that names no weights: its spec is all we know
        text = f"plugin:{spec.id}:{spec.version}:{spec.weights}"
        return WeightsIdentity(spec.id, text_fingerprint(text), f"plug-in spec (no weight files declared): {spec.options.get('plugin', spec.id)}", (), version)
    for path in default_weights_paths(spec):
        try:
            fp, files = files_fingerprint(path)
        except (OSError, FileNotFoundError):
            continue
        return WeightsIdentity(spec.id, fp, f"{_default_kind(spec)}: {path}", files, version)
    return WeightsIdentity(spec.id, None, f"default weights ({spec.weights}), not on this machine yet", (), version)


def paths_fingerprint(paths: Sequence[Path]) -> tuple[str, tuple[str, ...]]:
    """Fingerprint of several weights files/folders together (one: that one's fingerprint)."""
    if len(paths) == 1:
        return files_fingerprint(paths[0])
    parts = [files_fingerprint(p) for p in paths]
    lines = "".join(f"{p.name} {fp}\n" for p, (fp, _) in zip(paths, parts))
    return hashlib.sha256(lines.encode()).hexdigest(), tuple(f for _, files in parts for f in files)


def _family_modules() -> dict[str, str]:
    from mliap_tui.models.registry import FAMILY_MODULES

    return FAMILY_MODULES


def short_source(source: str) -> str:
    """A weights source for display: ``bundled: /long/site-packages/.../file.pth`` -> ``bundled:
    file.pth`` (where a package keeps its files says nothing); user paths are kept whole."""
    kind, sep, where = source.partition(": ")
    if sep and kind in ("bundled", "downloaded"):
        return f"{kind}: {where.rstrip('/').rsplit('/', 1)[-1]}"
    return source


def _default_kind(spec: ModelSpec) -> str:
    return "bundled" if spec.weights_offline else "downloaded"


def default_weights_paths(spec: ModelSpec) -> list[Path]:
    """The file (or matgl folder, newest first) the family loader reads for ``spec``'s default weights."""
    from mliap_tui.models.registry import weight_files

    paths: list[Path] = []
    for f in weight_files(spec):
        p = f.parent if spec.family == "matgl" else f
        if p not in paths:
            paths.append(p)
    if spec.family == "matgl":
        paths.sort(key=lambda p: -p.stat().st_mtime)
    return paths


__all__: Sequence[str] = [
    "WeightsIdentity",
    "default_weights_paths",
    "distribution_version",
    "file_sha256",
    "files_fingerprint",
    "hash_memo_path",
    "module_distribution_version",
    "paths_fingerprint",
    "resolve_identity",
    "short_source",
    "text_fingerprint",
]
