"""The dataset index: EventGPT's ``EventGPT_Instruction_Subset.json`` layout, read and written.

A dataset folder holds the index file and the files it names, by paths relative to the folder::

    [{"id": "cup_0000", "split": "test",
      "event_data": "events/cup_0000.npz",        # event file (.npy/.npz/.h5), or null
      "video_data": null,                          # EventGPT's frame folder; optional
      "mp4_data": "mp4/cup_0000.mp4",             # MP4 for Video-LLaVA, or null
      "event_image": ["event_image/cup_0000_0.png", ...],   # rendered event frames
      "conversations": [{"from": "human", "value": "<event>\\nWhat are the key elements ..."}],
      "duration_ms": 1000}, ...]

``duration_ms`` is this package's addition (EventGPT's index has no such field); other unknown
fields are kept in :attr:`Sample.extra`. A sample with ``event_data`` and ``mp4_data`` is *paired*,
one with only ``event_data`` is *event-only*, one with only ``mp4_data`` *video-only*.

Only the standard library is imported here: the plugin reads the index at collection time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import DatasetError

#: Index file name, as in the EventGPT release.
INDEX_NAME = "EventGPT_Instruction_Subset.json"
#: The question of the origin runs (docs/design.md#dataset-index).
DEFAULT_QUESTION = "What are the key elements in this scene?"
#: Clip durations of the origin sets, in milliseconds (DSEC test clips, 2220 ... 23 samples).
DURATION_BUCKETS_MS: tuple[int, ...] = (500, 1000, 2000, 4000, 5000, 8000, 10000, 16000, 20000)
#: Fields of a sample holding one relative path, and the one holding a list of paths.
PATH_FIELDS: tuple[str, ...] = ("event_data", "video_data", "mp4_data")
LIST_PATH_FIELDS: tuple[str, ...] = ("event_image",)
#: What a benchmark can need from a sample, and the field that provides it.
NEEDS: dict[str, str] = {"events": "event_data", "video": "mp4_data", "event_image": "event_image"}
_KNOWN = {"id", "split", "conversations", "duration_ms", *PATH_FIELDS, *LIST_PATH_FIELDS}


def duration_bucket(duration_ms: float) -> int | None:
    """The origin duration bucket (ms) of a clip: the largest bucket not longer than the clip
    plus 5 % (frame rounding), or ``None`` for clips shorter than 95 % of 500 ms."""
    fitting = [b for b in DURATION_BUCKETS_MS if b <= duration_ms * 1.05]
    return fitting[-1] if fitting else None


def bucket_label(bucket_ms: int) -> str:
    """``500`` -> ``"500ms"``, ``2000`` -> ``"2s"``."""
    return f"{bucket_ms // 1000}s" if bucket_ms % 1000 == 0 else f"{bucket_ms}ms"


@dataclass(frozen=True)
class Sample:
    """One entry of the index. Path fields are as written (relative, POSIX separators); the
    ``*_path`` properties resolve them against ``root``, the dataset folder.

    ``duration_ms``: clip length in milliseconds when known (``None`` otherwise).
    ``conversations``: EventGPT's ``[{"from": "human"|"gpt", "value": str}, ...]``.
    """

    id: str
    root: Path
    split: str = "test"
    event_data: str | None = None
    video_data: str | None = None
    mp4_data: str | None = None
    event_image: tuple[str, ...] = ()
    conversations: tuple[dict[str, str], ...] = ()
    duration_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def _resolve(self, rel: str | None) -> Path | None:
        return None if rel is None else self.root / rel

    @property
    def event_path(self) -> Path | None:
        return self._resolve(self.event_data)

    @property
    def mp4_path(self) -> Path | None:
        return self._resolve(self.mp4_data)

    @property
    def video_path(self) -> Path | None:
        return self._resolve(self.video_data)

    @property
    def event_image_paths(self) -> tuple[Path, ...]:
        return tuple(self.root / rel for rel in self.event_image)

    @property
    def has_events(self) -> bool:
        return self.event_data is not None

    @property
    def has_video(self) -> bool:
        return self.mp4_data is not None

    @property
    def kind(self) -> str:
        """``"paired"``, ``"event"`` (event-only), ``"video"`` (video-only) or ``"empty"``."""
        if self.has_events and self.has_video:
            return "paired"
        return "event" if self.has_events else ("video" if self.has_video else "empty")

    @property
    def bucket_ms(self) -> int | None:
        """:func:`duration_bucket` of ``duration_ms`` (``None`` when unknown or under 475 ms)."""
        return None if self.duration_ms is None else duration_bucket(self.duration_ms)

    @property
    def question(self) -> str:
        """The first human turn without its ``<event>``/``<video>``/``<image>`` placeholder, or
        :data:`DEFAULT_QUESTION`."""
        for turn in self.conversations:
            if turn.get("from") == "human":
                text = turn.get("value", "")
                for tag in ("<event>", "<video>", "<image>"):
                    text = text.replace(tag, "")
                return text.strip() or DEFAULT_QUESTION
        return DEFAULT_QUESTION

    def lacks(self, need: str) -> str | None:
        """Why this sample cannot serve a benchmark that needs ``need`` (a key of :data:`NEEDS`),
        or ``None`` when it can."""
        if need not in NEEDS:
            raise ValueError(f"unknown need {need!r}: choose from {', '.join(NEEDS)}")
        if getattr(self, NEEDS[need]):
            return None
        # short: pytest's summary prints it after the benchmark's path, within 120 columns (issue 14)
        return f"sample {self.id}: {_KIND_WORDS[self.kind]} (no {NEEDS[need]}), needs {need}"

    def missing_files(self) -> list[str]:
        """Problems with the files this sample names: ``"sample X: field F: P does not exist"``."""
        problems = []
        for name in PATH_FIELDS:
            path = self._resolve(getattr(self, name))
            if path is not None and not path.exists():
                problems.append(f"sample {self.id}: field {name}: {getattr(self, name)} does not exist")
        for i, rel in enumerate(self.event_image):
            if not (self.root / rel).is_file():
                problems.append(f"sample {self.id}: field event_image[{i}]: {rel} does not exist")
        return problems

    def to_json(self) -> dict[str, Any]:
        """The index entry (relative paths), extra fields included."""
        out: dict[str, Any] = {"id": self.id, "split": self.split}
        for name in PATH_FIELDS:
            out[name] = getattr(self, name)
        out["event_image"] = list(self.event_image)
        out["conversations"] = [dict(turn) for turn in self.conversations]
        if self.duration_ms is not None:
            out["duration_ms"] = self.duration_ms
        out.update(self.extra)
        return out


_KIND_WORDS = {"paired": "paired", "event": "event-only", "video": "video-only", "empty": "empty"}


def _relative(value: Any, where: str, problems: list[str]) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        problems.append(f"{where}: expected a relative path string, got {type(value).__name__}")
        return None
    posix = PurePosixPath(value.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts or (len(value) > 1 and value[1] == ":"):
        problems.append(f"{where}: {value!r} must be a path inside the dataset folder (relative, no '..')")
        return None
    return str(posix)


def sample_from_json(entry: Any, root: Path, position: int, problems: list[str]) -> Sample | None:
    """Parse one index entry; appends problems (by sample id and field) instead of raising."""
    if not isinstance(entry, dict):
        problems.append(f"entry {position}: expected an object, got {type(entry).__name__}")
        return None
    sid = entry.get("id")
    if not isinstance(sid, (str, int)) or str(sid) == "":
        problems.append(f"entry {position}: field id: missing or not a string")
        return None
    sid = str(sid)
    before = len(problems)
    paths = {name: _relative(entry.get(name), f"sample {sid}: field {name}", problems) for name in PATH_FIELDS}
    images = entry.get("event_image") or []
    if isinstance(images, str):
        images = [images]
    if not isinstance(images, list):
        problems.append(f"sample {sid}: field event_image: expected a list of paths")
        images = []
    image_paths = tuple(p for i, v in enumerate(images) if (p := _relative(v, f"sample {sid}: field event_image[{i}]", problems)))
    conversations = entry.get("conversations") or []
    if not isinstance(conversations, list) or not all(isinstance(t, dict) for t in conversations):
        problems.append(f"sample {sid}: field conversations: expected a list of {{from, value}} objects")
        conversations = []
    duration = entry.get("duration_ms")
    if duration is not None and (not isinstance(duration, (int, float)) or isinstance(duration, bool) or duration < 0):
        problems.append(f"sample {sid}: field duration_ms: {duration!r} is not a non-negative number")
        duration = None
    if paths["event_data"] is None and paths["mp4_data"] is None and not image_paths:
        problems.append(f"sample {sid}: names no data (event_data, mp4_data and event_image are all empty)")
    if len(problems) > before:
        return None
    extra = {k: v for k, v in entry.items() if k not in _KNOWN}
    return Sample(
        sid,
        root,
        str(entry.get("split") or "test"),
        paths["event_data"],
        paths["video_data"],
        paths["mp4_data"],
        image_paths,
        tuple(dict(t) for t in conversations),
        duration,
        extra,
    )


@dataclass(frozen=True)
class Dataset:
    """A dataset folder and its samples, in index order."""

    root: Path
    samples: tuple[Sample, ...]
    index_name: str = INDEX_NAME

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def by_id(self, sample_id: str) -> Sample:
        for s in self.samples:
            if s.id == sample_id:
                return s
        raise KeyError(f"{self.root}: no sample {sample_id!r}")

    def select(self, per_kind: int) -> list[Sample]:
        """The benchmark selection: the first ``per_kind`` samples that have events and the first
        ``per_kind`` that have video, merged in index order (a paired sample counts for both).

        With the bundled set and ``per_kind=1`` that is the DSEC clip (event-only) and the cup
        clip (paired): event benchmarks run on both, video benchmarks on the cup clip.
        """
        if per_kind < 1:
            raise ValueError(f"per_kind must be >= 1, got {per_kind}")
        chosen: set[str] = set()
        for need in ("events", "video"):
            chosen.update([s.id for s in self.samples if s.lacks(need) is None][:per_kind])
        if not chosen:  # only image samples
            chosen.update(s.id for s in self.samples[:per_kind])
        return [s for s in self.samples if s.id in chosen]


def load_dataset(root: str | Path, *, index_name: str = INDEX_NAME, check_files: bool = True) -> Dataset:
    """Read ``root/index_name`` and return its :class:`Dataset`.

    Every problem is collected before raising one :class:`~pytest_egbench.data.errors.DatasetError`
    that lists them by sample id and field: unreadable JSON, entries that are not objects,
    missing or duplicate ids, paths that are absolute or leave the folder, and (with
    ``check_files``) files that do not exist.
    """
    folder = Path(root)
    index = folder / index_name
    if not folder.is_dir():
        raise DatasetError(folder, ["is not a folder"])
    if not index.is_file():
        raise DatasetError(folder, [f"has no index file {index_name}"])
    try:
        entries = json.loads(index.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(index, [f"is not valid JSON: {exc}"]) from None
    if not isinstance(entries, list):
        raise DatasetError(index, [f"must hold a JSON list of samples, found {type(entries).__name__}"])
    problems: list[str] = []
    samples: list[Sample] = []
    seen: set[str] = set()
    for position, entry in enumerate(entries):
        sample = sample_from_json(entry, folder, position, problems)
        if sample is None:
            continue
        if sample.id in seen:
            problems.append(f"sample {sample.id}: field id: duplicate id")
            continue
        seen.add(sample.id)
        if check_files:
            problems.extend(sample.missing_files())
        samples.append(sample)
    if not entries:
        problems.append("the index lists no samples")
    if problems:
        raise DatasetError(index, problems)
    return Dataset(folder, tuple(samples), index_name)


def write_index(path: str | Path, samples: Iterable[Sample]) -> Path:
    """Write the samples as an index JSON (UTF-8, indented, via a temporary file and rename)."""
    dst = Path(path)
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.write_text(json.dumps([s.to_json() for s in samples], indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, dst)
    return dst


def bundled_dataset_dir() -> Path:
    """The folder of the bundled default dataset (inside the installed package)."""
    return Path(__file__).with_name("bundled")


def samples_by_bucket(samples: Sequence[Sample]) -> dict[int | None, list[Sample]]:
    """Samples grouped by :attr:`Sample.bucket_ms` (``None``: unknown or under 500 ms)."""
    groups: dict[int | None, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.bucket_ms, []).append(s)
    return groups
