"""Writing files so that a failure says so and leaves nothing half-written.

Every file the tool writes (cache chunks and tables, import reports, CSV exports, figures,
reports) goes through :func:`write_bytes_atomic`: the bytes go to a temporary file in the same
folder, are flushed to disk, and the file is renamed into place. An ``OSError`` on the way (disk
full, permission denied, read-only file system, a folder that vanished) removes the temporary file
and is raised as :class:`WriteError`, one line that names the path, the reason and what to do.
"""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

#: errno -> what the user can do about it
_ADVICE = {
    errno.ENOSPC: "free some space (or point --cache / the output at another disk) and run the same command again",
    errno.EDQUOT: "free some of your quota (or write somewhere else) and run the same command again",
    errno.EACCES: "make the folder writable for you (or write somewhere else)",
    errno.EPERM: "make the folder writable for you (or write somewhere else)",
    errno.EROFS: "the file system is read-only: write somewhere else (--cache DIR or another output path)",
    errno.ENOENT: "the folder disappeared while writing: check it exists (was it deleted or unmounted?)",
}


class WriteError(OSError):
    """A file could not be written; ``str()`` is one line with the path, the reason and the remedy."""

    def __init__(self, path: str | Path, cause: OSError, advice: str | None = None):
        code = cause.errno
        name = errno.errorcode.get(code, "") if code is not None else ""
        reason = cause.strerror or str(cause) or type(cause).__name__
        self.path = Path(path)
        self.cause = cause
        self.advice = advice or _ADVICE.get(code or -1, "check the path and the disk, then run the same command again")
        super().__init__(code, f"cannot write {self.path}: {reason}{f' [{name}]' if name else ''}; {self.advice}")

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def write_bytes_atomic(data: bytes, path: str | Path, *, make_parents: bool = True, advice: str | None = None) -> Path:
    """Write ``data`` to ``path`` through a temporary file, fsync and an atomic rename.

    ``make_parents=False`` refuses to create a missing folder (a cache folder that vanished during
    a run must not be silently re-created). Raises :class:`WriteError` and leaves no temporary file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        if make_parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.parent.is_dir():
            raise FileNotFoundError(errno.ENOENT, "the folder does not exist (any more)", str(path.parent))
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise WriteError(path, exc, advice) from exc
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
    return path


def write_text_atomic(text: str, path: str | Path, **kwargs) -> Path:
    return write_bytes_atomic(text.encode("utf-8"), path, **kwargs)


__all__ = ["WriteError", "write_bytes_atomic", "write_text_atomic"]
