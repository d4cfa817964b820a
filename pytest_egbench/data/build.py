"""Build a dataset folder from videos and event files (``python -m pytest_egbench.data build``).

Each video is cut into clips of ``clip_ms`` (or kept whole); for every clip the builder decodes
the frames, simulates the events a camera would have seen (:mod:`.simulate`), and writes a
*paired* sample: a pickle-free ``.npz`` event file, an MP4 (H.264 re-encoded with PyAV, or the
original file copied when a whole ``.mp4`` is kept), ``frames`` event-frame PNGs and an index entry.
Each event file becomes an *event-only* sample: its events re-written as ``.npz`` (so a pickled
EventGPT ``.npy`` leaves the dataset as plain arrays) and its event-frame PNGs.

Order of work: every input is validated first (event files read and checked in full; videos
opened, demuxed, their first frame decoded, clip lengths checked), and nothing is written until
all pass. Files are then written into a partial folder beside ``out_dir``
(``.<name>.partial-XXXXXXXX``) that is renamed into place at the end, so ``out_dir`` is either
the complete dataset or untouched: the partial folder is removed on any failure or interrupt,
and the next build removes one left by a build that was killed outright (SIGKILL).

Layout::

    out_dir/EventGPT_Instruction_Subset.json
    out_dir/events/<id>.npz
    out_dir/mp4/<id>.mp4
    out_dir/event_image/<id>_<k>.png
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .dataset import DEFAULT_QUESTION, INDEX_NAME, Sample, write_index
from .errors import DataFileError, DatasetError, DataWriteError
from .events import EventStream, SensorSize, read_events, write_events_npz
from .frames import DEFAULT_EVENT_FRAMES, event_frames, write_png
from .simulate import DEFAULT_THRESHOLD, EventSimulator
from .video import DEFAULT_VIDEO_FRAMES, VideoIndex, iter_video_frames, probe_video, write_mp4


@dataclass(frozen=True)
class BuildOptions:
    """What to build. ``clip_ms=None`` keeps each video whole. ``frames``: event-frame PNGs per
    sample (EventGPT uses 5). ``max_clips``: at most this many clips per video (from the start).
    ``min_video_frames``: each clip must hold at least this many frames (Video-LLaVA samples 8)."""

    videos: tuple[Path, ...] = ()
    events: tuple[Path, ...] = ()
    clip_ms: int | None = None
    frames: int = DEFAULT_EVENT_FRAMES
    max_clips: int | None = None
    threshold: float = DEFAULT_THRESHOLD
    seed: int = 0
    split: str = "test"
    question: str = DEFAULT_QUESTION
    sensor: SensorSize | None = None
    copy_files: tuple[Path, ...] = ()
    min_video_frames: int = DEFAULT_VIDEO_FRAMES


@dataclass
class _VideoJob:
    source: Path
    index: VideoIndex
    clips: list[tuple[int, int]]  # [start_us, end_us) relative to the first frame
    whole: bool


@dataclass
class _Plan:
    videos: list[_VideoJob] = field(default_factory=list)
    events: list[tuple[Path, EventStream]] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return sum(len(v.clips) for v in self.videos) + len(self.events)


def _validate(opts: BuildOptions, out_dir: Path, force: bool) -> _Plan:
    """Check every input and the output folder; returns the work to do or raises
    :class:`DatasetError` listing every problem."""
    problems: list[str] = []
    if not opts.videos and not opts.events:
        problems.append("nothing to build: give at least one --video or --events file")
    if opts.frames < 1:
        problems.append(f"--frames must be >= 1, got {opts.frames}")
    if opts.clip_ms is not None and opts.clip_ms < 1:
        problems.append(f"--clip-ms must be >= 1, got {opts.clip_ms}")
    if out_dir.exists() and not out_dir.is_dir():
        problems.append(f"output {out_dir} exists and is not a folder")
    elif out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        problems.append(f"output folder {out_dir} exists and is not empty: pass --force to replace it")
    for extra in opts.copy_files:
        if not extra.is_file():
            problems.append(f"{extra}: --copy file does not exist")
    plan = _Plan()
    for path in opts.events:
        try:
            plan.events.append((path, read_events(path, sensor=opts.sensor)))
        except (DataFileError, ImportError) as exc:
            problems.append(str(exc))
    for path in opts.videos:
        try:
            plan.videos.append(_plan_video(path, opts))
        except DataFileError as exc:
            problems.append(str(exc))
    if problems:
        raise DatasetError("dataset build", problems)
    return plan


def _plan_video(path: Path, opts: BuildOptions) -> _VideoJob:
    from .errors import VideoFileError

    index = probe_video(path, decode=True)  # every frame decodes, and in which order
    times = index.timestamps_us()
    duration = index.duration_us
    if opts.clip_ms is None:
        clips = [(0, duration)]
    else:
        span = opts.clip_ms * 1000
        count = duration // span
        if count == 0:
            raise VideoFileError(path, f"is {duration / 1000:.0f} ms long, shorter than one {opts.clip_ms} ms clip")
        clips = [(i * span, (i + 1) * span) for i in range(count)]
        if opts.max_clips is not None:
            clips = clips[: opts.max_clips]
    for start, end in clips:
        held = int(np.count_nonzero((times >= start) & (times < end)))
        if held < max(2, opts.min_video_frames):
            raise VideoFileError(
                path,
                f"clip {start / 1000:.0f}-{end / 1000:.0f} ms holds {held} frame(s); each clip needs at least {max(2, opts.min_video_frames)} (use a longer --clip-ms)",
            )
    whole = opts.clip_ms is None
    return _VideoJob(path, index, clips, whole)


def _clip_frames(job: _VideoJob, start: int, end: int, sim: EventSimulator) -> Iterator[tuple[int, np.ndarray]]:
    """Decode ``[start, end)`` us of the video once, in presentation order: each frame (cropped
    to even sizes for yuv420p, time from the clip start) is fed to the simulator and yielded to
    the MP4 writer."""
    for t, rgb in iter_video_frames(job.source, start, end, index=job.index):
        rgb = _even(rgb)
        sim.feed(rgb, t - start)
        yield t - start, rgb


def _sample_id(stem: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or "sample"
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}-{k}"
    taken.add(name)
    return name


def _even(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    return frame[: h - h % 2, : w - w % 2]


class _WriteFailed(Exception):
    """An OSError while writing ``rel`` (a path inside the dataset folder)."""

    def __init__(self, rel: str, error: OSError) -> None:
        super().__init__(rel, error)
        self.rel, self.error = rel, error


@contextmanager
def _writing(rel: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise _WriteFailed(rel, exc) from exc


def _write_event_outputs(tmp: Path, sid: str, events: EventStream, n_frames: int) -> tuple[str, tuple[str, ...]]:
    event_rel = f"events/{sid}.npz"
    with _writing(event_rel):
        write_events_npz(tmp / event_rel, events)
    images = event_frames(events, n_frames)
    rels = tuple(f"event_image/{sid}_{k}.png" for k in range(n_frames))
    for rel, image in zip(rels, images):
        with _writing(rel):
            write_png(tmp / rel, image)
    return event_rel, rels


def _conversation(question: str) -> tuple[dict[str, str], ...]:
    return ({"from": "human", "value": f"<event>\n{question}"},)


def build_dataset(out_dir: str | Path, opts: BuildOptions, *, force: bool = False, progress: Callable[[str], None] | None = None) -> list[Sample]:
    """Build the dataset folder ``out_dir`` (see the module docstring); returns its samples.

    Raises :class:`~pytest_egbench.data.errors.DatasetError` listing every bad input (nothing is
    written then), and refuses an existing non-empty ``out_dir`` unless ``force``. The files are
    written into a partial folder beside ``out_dir`` (``.<name>.partial-XXXXXXXX``) renamed into
    place when complete; on any exception, ``KeyboardInterrupt`` included, it is removed and
    ``out_dir`` is as it was. A failure to write (disk full, read-only, no permission) raises
    :class:`~pytest_egbench.data.errors.DataWriteError` naming ``out_dir``, the file inside it and
    the reason. Partial folders of ``out_dir`` left by a killed build are removed first (see
    :func:`remove_stale_partials`).
    """
    out = Path(out_dir)
    say = progress or (lambda _msg: None)
    remove_stale_partials(out, say)
    plan = _validate(opts, out, force)
    tmp: Path | None = None
    lock: int | None = None
    try:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=_partial_prefix(out), dir=out.parent))
            lock = _lock(tmp)
            tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the dataset is not
            for sub in ("events", "mp4", "event_image"):
                (tmp / sub).mkdir()
        except OSError as exc:
            raise _WriteFailed("", exc) from exc
        samples = _write_all(tmp, plan, opts, say)
        with _writing(INDEX_NAME):
            write_index(tmp / INDEX_NAME, samples)
        for extra in opts.copy_files:
            with _writing(extra.name):
                shutil.copy2(extra, tmp / extra.name)
        with _writing(""):
            _replace_dir(tmp, out)
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, _WriteFailed):
            raise _write_error(out, exc.rel, exc.error) from exc.error
        raise
    finally:
        _unlock(lock)
    return [replace(s, root=out) for s in samples]


def _write_error(out: Path, rel: str, error: OSError) -> DataWriteError:
    """One line: the dataset folder, the file inside it, the reason and its errno name."""
    reason = error.strerror or str(error) or type(error).__name__
    code = errno.errorcode.get(error.errno or -1)
    what = f"cannot write {rel}" if rel else "cannot write the dataset folder"
    if not rel and error.filename and Path(str(error.filename)).name != out.name and not Path(str(error.filename)).name.startswith(f".{out.name}."):
        what += f" ({error.filename})"
    kept = f", {out.name} is as it was" if out.exists() else ""
    return DataWriteError(out, f"{what}: {reason}{f' ({code})' if code else ''}; nothing was written{kept}", error.errno)


def _write_clip(tmp: Path, job: _VideoJob, sid: str, span: tuple[int, int], opts: BuildOptions, conversations: Any) -> Sample:
    """One clip of a video job as a sample: its MP4 (the source copied when whole and H.264 in
    order, else re-encoded), events simulated from its frames, their event frames, and the
    sample's index entry."""
    start, end = span
    mp4_rel = f"mp4/{sid}.mp4"
    sim = EventSimulator(threshold=opts.threshold, seed=opts.seed)
    frames = _clip_frames(job, start, end, sim)
    if job.whole and job.source.suffix.lower() == ".mp4" and job.index.codec == "h264" and not job.index.out_of_order:
        with _writing(mp4_rel):
            shutil.copy2(job.source, tmp / mp4_rel)
        for _ in frames:  # the simulator still sees every frame
            pass
    else:
        times = job.index.timestamps_us()
        held = np.count_nonzero((times >= start) & (times < end))
        with _writing(mp4_rel):
            write_mp4(tmp / mp4_rel, frames, fps=held * 1_000_000 / (end - start))
    events = sim.events()
    events = EventStream(events.x, events.y, events.t, events.p, events.sensor, start, None, events.metadata)
    event_rel, images = _write_event_outputs(tmp, sid, events, opts.frames)
    extra: dict[str, Any] = {"source": job.source.name, "clip_start_ms": start / 1000, "simulated_events": True}
    repairs = job.index.repairs(start, end)
    if repairs is not None:  # the source's frames came out of order or repeated
        extra["video_timestamps"] = repairs
    return Sample(
        id=sid,
        event_data=event_rel,
        mp4_data=mp4_rel,
        event_image=images,
        duration_ms=(end - start) / 1000,
        extra=extra,
        root=tmp,
        split=opts.split,
        conversations=conversations,
    )


def _write_all(tmp: Path, plan: _Plan, opts: BuildOptions, say: Callable[[str], None]) -> list[Sample]:
    samples: list[Sample] = []
    taken: set[str] = set()
    total, done = plan.samples, 0
    conversations = _conversation(opts.question)
    for path, events in plan.events:
        sid = _sample_id(path.stem, taken)
        done += 1
        say(f"[{done}/{total}] {sid}: {len(events)} events from {path.name}, {opts.frames} event frame(s)")
        event_rel, images = _write_event_outputs(tmp, sid, events, opts.frames)
        samples.append(
            Sample(
                id=sid,
                event_data=event_rel,
                event_image=images,
                duration_ms=events.duration_us / 1000,
                extra={"source": path.name},
                root=tmp,
                split=opts.split,
                conversations=conversations,
            )
        )
    for job in plan.videos:
        for k, (start, end) in enumerate(job.clips):
            sid = _sample_id(job.source.stem if job.whole else f"{job.source.stem}_{k:04d}", taken)
            done += 1
            say(f"[{done}/{total}] {sid}: {job.source.name} {start / 1000:.0f}-{end / 1000:.0f} ms: decode, simulate events, encode")
            samples.append(_write_clip(tmp, job, sid, (start, end), opts, conversations))
    return samples


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` folder to ``out``, replacing an existing one last."""
    if not out.exists():
        os.replace(tmp, out)
        return
    if not any(out.iterdir()):
        out.rmdir()
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=_old_prefix(out), dir=out.parent))
    lock = _lock(old)
    try:
        os.replace(out, old / out.name)
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(old / out.name, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        _unlock(lock)


# --------------------------------------------------------------------------- partial folders
#
# A build writes into ".<name>.partial-XXXXXXXX" beside the output (XXXXXXXX: tempfile's eight
# random characters) and holds an exclusive flock on that folder while it lives; --force moves
# the folder it replaces into ".<name>.old-XXXXXXXX" for a moment, locked the same way. The lock
# goes with the process, however it ends, so a folder of that name that can be locked was left by
# a build that was killed (SIGKILL, power loss): the next build of the same output removes it
# (or, for an ".old-" folder whose output is missing, puts the output back). Nothing else is
# touched: only folders (not links) whose names match exactly, beside this output.

_RANDOM = re.compile(r"[a-z0-9_]{8}")  # tempfile.mkdtemp's names


def _partial_prefix(out: Path) -> str:
    return f".{out.name}.partial-"


def _legacy_prefix(out: Path) -> str:
    """Partial folders of versions before the lock (same layout; killed builds left them)."""
    return f".{out.name}.building-"


def _old_prefix(out: Path) -> str:
    return f".{out.name}.old-"


def _lock(folder: Path) -> int | None:
    """An exclusive, non-blocking flock on ``folder`` (its descriptor), or ``None`` where the
    platform has no flock. Raises ``BlockingIOError`` when another process holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock, stale folders are still removed
        return None
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock


def remove_stale_partials(out_dir: str | Path, say: Callable[[str], None] | None = None) -> list[Path]:
    """Remove what killed builds of ``out_dir`` left beside it; returns the folders handled.

    ``.<name>.partial-XXXXXXXX`` folders that no running build holds are deleted (and
    ``.<name>.building-XXXXXXXX``, the name earlier versions used). A
    ``.<name>.old-XXXXXXXX`` folder (the previous dataset, moved aside by ``--force`` for the
    moment of the swap) is moved back to ``out_dir`` when ``out_dir`` is missing, and deleted
    when ``out_dir`` exists (the swap was done; only its clean-up was cut short). Folders it
    cannot remove are reported through ``say`` and left.
    """
    out = Path(out_dir)
    say = say or (lambda _msg: None)
    handled: list[Path] = []
    try:
        entries = list(out.parent.iterdir()) if out.parent.is_dir() else []
    except OSError:
        return handled
    for entry in sorted(entries):
        name = entry.name
        partial = any(name.startswith(prefix) and _RANDOM.fullmatch(name[len(prefix) :]) for prefix in (_partial_prefix(out), _legacy_prefix(out)))
        old = name.startswith(_old_prefix(out)) and _RANDOM.fullmatch(name[len(_old_prefix(out)) :])
        if not (partial or old) or entry.is_symlink() or not entry.is_dir():
            continue
        try:
            lock = _lock(entry)
        except BlockingIOError:
            continue  # a build is writing it now
        except OSError:
            continue  # vanished, or not ours to open
        try:
            if old and not out.exists() and (entry / out.name).is_dir():
                os.replace(entry / out.name, out)
                say(f"restored {out} from {name}: a build replacing it was killed")
            shutil.rmtree(entry)
            if partial:
                say(f"removed {name}: left by a build of {out.name} that was killed")
            handled.append(entry)
        except OSError as exc:
            say(f"could not remove {entry}: {exc.strerror or exc}")
        finally:
            _unlock(lock)
    return handled


def progress_printer(stream: TextIO | None = None) -> Callable[[str], None]:
    """A progress callback printing one line per step to ``stream`` (default: the current
    ``sys.stderr``)."""

    def say(message: str) -> None:
        print(message, file=stream or sys.stderr, flush=True)

    return say
