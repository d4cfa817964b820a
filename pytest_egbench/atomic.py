"""Atomic file writes: a temporary file in the same folder, fsync, then a rename.

A crash, a full disk or content that cannot be serialised leaves an existing file as it was.
A symbolic link is written through (its target gets the new content; the link stays a link); a
target that exists and is not a regular file (a device node, a FIFO, a folder) is refused and left
alone. Standard library only.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any


class NotARegularFileError(OSError):
    """The target of an atomic write exists and is not a regular file (a device node, a FIFO, a
    socket, a folder): replacing it with a file would destroy it, so it is left alone."""


def _target(path: Path) -> Path:
    """Where to write ``path``: the final target of a symbolic link (so the link is kept and its
    target updated), else ``path`` itself. Raises :class:`NotARegularFileError` when that exists
    and is not a regular file."""
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        mode = os.stat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):  # a missing file, or a parent that is a file (reported below)
        return target
    if not stat.S_ISREG(mode):
        what = (
            "a folder"
            if stat.S_ISDIR(mode)
            else "a device node"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "a special file"
        )
        via = f" (the target of the link {path})" if target != path else ""
        raise NotARegularFileError(f"{target}{via} is {what}, not a regular file: refusing to replace it")
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic(path: Path, write: Any) -> None:
    path = _target(Path(path))
    for folder in (path.parent, *path.parent.parents):
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(f"{folder} is a file, not a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would, or keep
        # the mode of the file it replaces.
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, document: Any) -> None:
    """Write ``document`` as JSON to ``path`` through a temporary file and a rename.

    An existing file is replaced only once the new one is complete, so a crash or a value that
    cannot be serialised leaves the old file as it was. A symbolic link is written through to its
    target. Raises ``OSError`` (``NotADirectoryError`` when a parent is a file,
    :class:`NotARegularFileError` when the target is a device node, FIFO or folder), ``TypeError``
    or ``ValueError`` (NaN/inf) for bad content.
    """

    def write(fh: Any) -> None:
        json.dump(document, fh, indent=2, allow_nan=False)
        fh.write("\n")

    _atomic(path, write)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (see :func:`write_json_atomic`)."""
    _atomic(path, lambda fh: fh.write(text))
