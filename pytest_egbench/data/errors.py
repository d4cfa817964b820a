"""Errors of the data layer: each names the file (or sample) and the problem.

Input errors are :class:`ValueError` subclasses, so callers that only care about "bad input" can
catch ``ValueError``; :class:`DataWriteError`, a failure to write output (disk full, read-only),
is an :class:`OSError`. The message always reads ``"<file>: <problem>"``.
"""

from __future__ import annotations

from pathlib import Path


class DataFileError(ValueError):
    """A data file is unreadable, truncated, inconsistent or unsafe.

    ``path`` is the file (``None`` for in-memory arrays), ``problem`` the reason in words.
    """

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        where = "<arrays>" if path is None else str(path)
        super().__init__(f"{where}: {problem}")

    @classmethod
    def check_readable(cls, path: str | Path) -> Path:
        """``path`` as a :class:`Path` if it is a non-empty file; else raise this error type
        saying that it does not exist, is not a file, or is empty."""
        p = Path(path)
        if not p.is_file():
            raise cls(p, "does not exist" if not p.exists() else "is not a file")
        if p.stat().st_size == 0:
            raise cls(p, "is empty (0 bytes)")
        return p


class EventFileError(DataFileError):
    """An event file (or event arrays) failed to read or validate."""


class VideoFileError(DataFileError):
    """A video file is corrupt, truncated, has no video stream or too few frames."""


class DatasetError(ValueError):
    """A dataset folder or its index is invalid; ``problems`` lists every finding in words
    (``"sample dsec_0003: field mp4_data: mp4/x.mp4 does not exist"``)."""

    def __init__(self, where: str | Path, problems: list[str]) -> None:
        self.where = str(where)
        self.problems = list(problems)
        shown = "\n  ".join(self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"{where}: {len(self.problems)} problem(s):\n  {shown}{more}")


class DataWriteError(OSError):
    """Writing output failed: disk full, read-only file system, no permission.

    ``path``: the output named to the user (the dataset folder); ``problem``: what could not be
    written and why, in words; ``errno``: the operating system's error number (``None`` when the
    failure had none).
    """

    def __init__(self, path: str | Path, problem: str, errno: int | None = None) -> None:
        super().__init__(errno, problem)
        self.path = Path(path)
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


class MissingDependencyError(ImportError):
    """An optional dependency is needed for this file type (h5py for DSEC's HDF5 files)."""
