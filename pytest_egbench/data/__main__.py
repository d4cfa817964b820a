"""Command line of the data layer.

``python -m pytest_egbench.data build OUT_DIR [--video FILE]... [--events FILE]... [--clip-ms MS]
[--frames N] [--max-clips K] [--threshold C] [--seed S] [--sensor WxH] [--copy FILE]... [--force]``
builds a dataset folder (see :mod:`pytest_egbench.data.build`).

``python -m pytest_egbench.data check DIR`` loads a dataset folder and reads every event file and
video header it names, reporting problems by sample id and field.

Exit status: 0 on success, 2 for bad arguments or inputs (nothing written), 1 for a failure while
writing (disk full, read-only folder, no permission: nothing written either), 130 when
interrupted (Ctrl-C), 143 when stopped by SIGTERM. Every failure of ``build`` ends in one line on
stderr per problem, ``error: <file>: <problem>``, and no traceback (``--traceback`` shows one
for a failure that is not about the files: a bug).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from ..argtypes import parse_positive_int
from .errors import DataFileError, DatasetError, DataWriteError


def _parse_sensor(value: str) -> tuple[int, int]:
    width, sep, height = value.lower().partition("x")
    try:
        size = (int(width), int(height))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not WIDTHxHEIGHT, e.g. 640x480") from None
    if not sep or min(size) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not WIDTHxHEIGHT, e.g. 640x480")
    return size


def _parse_threshold(value: str) -> float:
    try:
        c = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0.0 < c < 10.0:
        raise argparse.ArgumentTypeError(f"{value!r}: the contrast threshold must lie in (0, 10)")
    return c


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="make a dataset folder from videos and event files")
    build.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="dataset folder to create")
    build.add_argument(
        "--video",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="a video (any container FFmpeg reads); repeatable. Gives paired samples with simulated events",
    )
    build.add_argument(
        "--events", action="append", default=[], type=Path, metavar="FILE", help="an event file (.npy, .npz, .h5); repeatable. Gives an event-only sample"
    )
    build.add_argument("--clip-ms", type=parse_positive_int, metavar="MS", help="cut each video into clips of MS milliseconds (default: keep it whole)")
    build.add_argument("--max-clips", type=parse_positive_int, metavar="K", help="keep at most K clips per video, from its start")
    build.add_argument("--frames", type=parse_positive_int, default=5, metavar="N", help="event-frame PNGs per sample (default 5, as EventGPT)")
    build.add_argument("--threshold", type=_parse_threshold, default=0.2, metavar="C", help="contrast threshold of the event simulator (default 0.2)")
    build.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the simulator's per-pixel thresholds (default 0)")
    build.add_argument("--sensor", type=_parse_sensor, metavar="WxH", help="sensor size of the event files (default: from the file, else 640x480)")
    build.add_argument("--split", default="test", help="split name written in the index (default test)")
    build.add_argument(
        "--copy", action="append", default=[], type=Path, metavar="FILE", help="copy FILE into OUT_DIR unchanged (a provenance or licence note); repeatable"
    )
    build.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists and is not empty")
    build.add_argument("--quiet", action="store_true", help="no progress lines")
    build.add_argument("--traceback", action="store_true", help="on an unexpected failure (a bug, not a bad file or a full disk), show Python's traceback")
    check = sub.add_parser("check", help="load a dataset folder and read every file it names")
    check.add_argument("dataset", type=Path, metavar="DIR")


def _build(args: argparse.Namespace) -> int:
    from .build import BuildOptions, build_dataset, progress_printer
    from .events import SensorSize

    opts = BuildOptions(
        videos=tuple(args.video),
        events=tuple(args.events),
        clip_ms=args.clip_ms,
        frames=args.frames,
        max_clips=args.max_clips,
        threshold=args.threshold,
        seed=args.seed,
        split=args.split,
        sensor=SensorSize(*args.sensor) if args.sensor else None,
        copy_files=tuple(args.copy),
    )
    with _sigterm_raises():
        try:
            samples = build_dataset(args.out_dir, opts, force=args.force, progress=None if args.quiet else progress_printer())
        except DatasetError as exc:
            for problem in exc.problems:
                _error(problem)
            return 2
        except (DataFileError, ImportError) as exc:  # an input found bad while writing
            _error(str(exc))
            return 2
        except DataWriteError as exc:
            _error(str(exc))
            return 1
        except OSError as exc:  # outside the writing itself (should not happen; still one line)
            _error(f"{args.out_dir}: {exc.strerror or exc}{f' ({exc.filename})' if exc.filename else ''}")
            return 1
        except KeyboardInterrupt:
            _quiet_teardown()
            _error(f"{args.out_dir}: interrupted; nothing was written")
            return 130
        except _Terminated:
            _quiet_teardown()
            _error(f"{args.out_dir}: stopped by SIGTERM; nothing was written")
            return 143
        except Exception as exc:
            if args.traceback:
                raise
            _error(f"{args.out_dir}: build failed: {type(exc).__name__}: {exc} (a bug: rerun with --traceback and report it)")
            return 1
    kinds = {k: sum(s.kind == k for s in samples) for k in ("paired", "event")}
    print(f"wrote {args.out_dir}: {len(samples)} samples ({kinds['paired']} paired, {kinds['event']} event-only)", file=sys.stderr)
    return 0


def _quiet_teardown() -> None:
    """After an interrupt, the writers it cut short (a half-written ``.npz``'s ``ZipFile``, whose
    file was already closed while unwinding) are collected on the way out, and their
    ``__del__`` errors would print tracebacks ("Exception ignored in ... ZipFile.__del__", seen
    with numpy 1.24) after the one error line. Nothing they held is kept (the partial folder is
    gone), so collect them now with such reports silenced."""
    import gc

    sys.unraisablehook = lambda _unraisable: None
    gc.collect()


def _error(message: str) -> None:
    """``error: <message>`` as one line on stderr (newlines inside a message become spaces)."""
    print("error: " + " ".join(message.splitlines()), file=sys.stderr, flush=True)


class _Terminated(BaseException):
    """SIGTERM arrived: unwinds like ``KeyboardInterrupt`` so the partial folder is removed."""


class _sigterm_raises:
    """While active (main thread only), SIGTERM raises :class:`_Terminated` instead of ending the
    process on the spot."""

    def __enter__(self) -> None:
        self.previous = None
        try:
            self.previous = signal.signal(signal.SIGTERM, self._raise)
        except (ValueError, OSError, AttributeError):  # not the main thread, or no SIGTERM
            self.previous = None

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)

    @staticmethod
    def _raise(signum: int, frame: object) -> None:
        raise _Terminated()


def _check(args: argparse.Namespace) -> int:
    from .dataset import load_dataset
    from .events import read_events
    from .video import probe_video

    try:
        dataset = load_dataset(args.dataset)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problems = []
    for sample in dataset:
        try:
            if sample.event_path is not None:
                read_events(sample.event_path)
            if sample.mp4_path is not None:
                probe_video(sample.mp4_path)
        except (DataFileError, ImportError) as exc:
            problems.append(f"sample {sample.id}: {exc}")
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    print(f"{args.dataset}: {len(dataset)} samples, {len(problems)} problem(s)", file=sys.stderr)
    return 2 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_egbench.data", description="pytest-egbench data tools")
    add_cli_args(parser)
    args = parser.parse_args(argv)
    return _build(args) if args.command == "build" else _check(args)


if __name__ == "__main__":
    sys.exit(main())
