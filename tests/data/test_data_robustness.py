"""Bad input and a hostile machine against the data layer: video whose timestamps go backwards or
repeat, crafted event pickles, a full disk, a read-only folder, and builds that are killed.

Every failure of ``python -m pytest_egbench.data build`` must end in one line on stderr naming
the file and the problem, a non-zero exit status and no traceback, and leave no partial folder.
The expectations come from outside the code under test: the timestamps written into a video
with PyAV (and read back from it), the exception numpy itself raises, errno and os.strerror.
"""

from __future__ import annotations

import errno
import os
import pickle
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import pytest_egbench.data.build as build_module
from pytest_egbench.data.__main__ import main
from pytest_egbench.data.build import BuildOptions, build_dataset, remove_stale_partials
from pytest_egbench.data.dataset import INDEX_NAME, load_dataset
from pytest_egbench.data.errors import EventFileError
from pytest_egbench.data.events import read_events
from pytest_egbench.data.video import iter_video_frames, probe_video, read_all_frames, read_video_frames, sample_frame_indices

ROOT = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------------------- backwards video

#: Frame times in 1/30 s, in the order they are written: 5 before 4, 12 before 11, 7 twice.
WRITTEN = [0, 1, 2, 3, 5, 4, 6, 7, 7, 8, 9, 10, 12, 11, 13, 14, 15, 16, 17, 18]


def _grey(i: int) -> int:
    return 20 + 11 * i  # frame i of the file is a flat grey of this level (distinct, 20..229)


def _write_backwards_mkv(path: Path) -> list[int]:
    """Write one intra-coded frame per entry of ``WRITTEN`` with that PTS (1/30 s), in that order,
    into a Matroska file; returns the PTS the file stores, read back by demuxing (stream time
    base). Encoders refuse PTS that do not increase, so frames are encoded in order and each
    packet is given its PTS before muxing (Matroska keeps it; MP4 and AVI refuse or renumber)."""
    tb = Fraction(1, 30)
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = tb
        stream.codec_context.gop_size = 1  # every frame a key frame: decodes in any order
        stream.codec_context.max_b_frames = 0
        packets = []
        for i in range(len(WRITTEN)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), _grey(i), np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, tb
            packets += stream.encode(frame)
        packets += stream.encode(None)
        assert len(packets) == len(WRITTEN)
        dts = [min(WRITTEN[i:]) for i in range(len(WRITTEN))]  # non-decreasing, never above pts
        for packet, pts, d in zip(packets, WRITTEN, dts):
            packet.pts, packet.dts, packet.time_base = pts, d, tb
            out.mux(packet)
    with av.open(str(path)) as inp:
        stream = inp.streams.video[0]
        stored = [int(p.pts) for p in inp.demux(stream) if p.size]
        stored_tb = Fraction(stream.time_base)
    # The file really holds the timestamps written, in the order written.
    assert [round(Fraction(p) * stored_tb / tb) for p in stored] == WRITTEN
    return stored


def _expected(stored: list[int]) -> tuple[list[int], list[int], list[int]]:
    """From what the file holds: each timestamp once in increasing order, the grey level of the
    first frame written with it, and the timestamps of the repeats."""
    first: dict[int, int] = {}
    repeats = []
    for i, pts in enumerate(stored):
        if pts in first:
            repeats.append(pts)
        else:
            first[pts] = _grey(i)
    order = sorted(first)
    return order, [first[p] for p in order], repeats


def _levels(frames: np.ndarray) -> list[int]:
    return [int(round(float(f.mean()))) for f in frames]


def _close(levels: list[int], expected: list[int]) -> bool:
    return len(levels) == len(expected) and all(abs(a - b) <= 4 for a, b in zip(levels, expected))  # lossy codec


@pytest.fixture
def backwards_mkv(tmp_path):
    path = tmp_path / "backwards.mkv"
    return path, _write_backwards_mkv(path)


def test_backwards_video_is_read_in_presentation_order_each_timestamp_once(backwards_mkv):
    path, stored = backwards_mkv
    order, levels, repeats = _expected(stored)
    assert stored != sorted(stored) and repeats  # the file really goes backwards and repeats
    index = probe_video(path)
    assert index.out_of_order and index.pts.tolist() == order
    t_ms = [int(int(p) * index.time_base * 1000) for p in order]
    # every frame, in order
    frames = list(iter_video_frames(path))
    times = [t for t, _ in frames]
    assert all(b > a for a, b in zip(times, times[1:]))
    assert [t // 1000 for t in times] == t_ms
    assert _close(_levels(np.stack([f for _, f in frames])), levels)
    assert _close(_levels(read_all_frames(path)), levels)
    # a window of it
    window = [(t, f) for t, f in iter_video_frames(path, 100_000, 400_000, index=index)]
    inside = [i for i, t in enumerate(t_ms) if 100 <= t < 400]
    assert [t // 1000 for t, _ in window] == [t_ms[i] for i in inside]
    assert _close(_levels(np.stack([f for _, f in window])), [levels[i] for i in inside])
    # the sampler spreads N frames over the frames that exist, in presentation order
    for n in (8, len(order)):
        picked = sample_frame_indices(len(order), n)
        for seek in (True, False):
            assert _close(_levels(read_video_frames(path, n, seek=seek)), [levels[i] for i in picked])
    # and says what it did
    repairs = index.repairs()
    moved = sum(1 for i, p in enumerate(stored) if p not in stored[:i] and any(q > p for q in stored[:i]))
    assert repairs["reordered_frames"] == moved == 2
    assert repairs["dropped_frames"] == len(repeats) == 1
    assert repairs["dropped_at_ms"] == [float(int(int(p) * index.time_base * 1000)) for p in repeats]
    assert repairs["frames"] == len(order) and repairs["decoded_frames"] == len(stored)


def test_backwards_video_builds_with_provenance(backwards_mkv, tmp_path, capsys):
    path, stored = backwards_mkv
    order, levels, repeats = _expected(stored)
    out = tmp_path / "ds"
    assert main(["build", str(out), "--video", str(path), "--frames", "2", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error" not in err
    (sample,) = load_dataset(out)
    record = sample.extra["video_timestamps"]
    assert record["reordered_frames"] == 2 and record["dropped_frames"] == len(repeats)
    assert record["frames"] == len(order) and record["decoded_frames"] == len(stored)
    # the clip written holds each timestamp once, in order, with the first frame written for it
    written = probe_video(sample.mp4_path)
    src_ms = [int(int(p) * probe_video(path).time_base * 1000) for p in order]
    assert not written.out_of_order and [int(t) // 1000 for t in written.timestamps_us()] == src_ms
    assert _close(_levels(read_all_frames(sample.mp4_path)), levels)
    events = read_events(sample.event_path)  # validated: time order
    assert len(events) > 0 and events.t[-1] < src_ms[-1] * 1000


def test_in_order_video_gets_no_record(tmp_path, tree_avi):
    (sample,) = build_dataset(tmp_path / "ds", BuildOptions(videos=(tree_avi,), frames=1))
    assert "video_timestamps" not in sample.extra


# --------------------------------------------------------------------------- crafted pickles


class _Call:
    """Pickles as a call of ``func(*args)`` (``func`` by module and name), then ``state``."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def _numpy_function(name):
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray
    return getattr(multiarray, name)


def _eventgpt_npy(path: Path, **extra) -> Path:
    fields = {"x": np.zeros(3, np.uint16), "y": np.zeros(3, np.uint16), "t": np.arange(3), "p": np.ones(3, np.uint8)}
    np.save(path, {**fields, **extra}, allow_pickle=True)
    return path


def _one_error_line(err: str, path: Path) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {path}: ") and "Traceback" not in err
    return lines[0]


def test_crafted_pickle_calling_an_allowed_numpy_function_is_one_line(tmp_path, capsys):
    # numpy.core.multiarray.scalar (allowed: numpy pickles scalars with it) on a dtype with an
    # object field and raw bytes: numpy raises from inside the unpickler.
    path = _eventgpt_npy(tmp_path / "crafted.npy", meta=_Call(_numpy_function("scalar"), (np.dtype([("a", "O")]), b"\0" * 8)))
    with pytest.raises(Exception) as plain:  # control: what numpy itself raises for this file
        np.load(path, allow_pickle=True)
    assert not isinstance(plain.value, EventFileError)
    with pytest.raises(EventFileError) as err:
        read_events(path)
    assert str(err.value).startswith(f"{path}: ") and type(plain.value).__name__ in str(err.value)
    code = main(["build", str(tmp_path / "ds"), "--events", str(path), "--quiet"])
    line = _one_error_line(capsys.readouterr().err, path)
    assert code == 2 and type(plain.value).__name__ in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crafted.npy"]


def test_crafted_dtype_state_that_would_read_outside_the_array_is_refused(tmp_path):
    # A dtype state (BUILD) giving field "x" an offset of 100 in an 8-byte item: numpy's
    # __setstate__ accepts it, and reading the field reads memory outside the array.
    evil_dtype = _Call(np.dtype, ("V8", False, True), (3, "|", None, ("x",), {"x": (np.dtype("<u2"), 100)}, 8, 1, 16))
    evil = _Call(_numpy_function("_reconstruct"), (np.ndarray, (0,), b"b"), (1, (3,), evil_dtype, False, b"\0" * 24))
    plain = pickle.loads(pickle.dumps(evil, protocol=3))  # control: numpy builds it (never read)
    field, offset = plain.dtype.fields["x"]
    assert offset + field.itemsize > plain.dtype.itemsize
    path = _eventgpt_npy(tmp_path / "oob.npy", meta=evil)
    with pytest.raises(EventFileError, match="refused dtype state") as err:
        read_events(path)
    assert str(err.value).startswith(f"{path}: ")


def test_object_array_with_a_short_list_is_refused_without_crashing(tmp_path):
    # An object array of 100,000 elements given a list of 2: numpy 2.4's __setstate__ reads past
    # the list (the process segfaults). Read in a child process so a crash fails this test only.
    short = _Call(_numpy_function("_reconstruct"), (np.ndarray, (0,), b"b"), (1, (100_000,), np.dtype("O"), False, [1, 2]))
    path = _eventgpt_npy(tmp_path / "short.npy", meta=short)
    code = f"from pytest_egbench.data.events import read_events\ntry:\n    read_events({str(path)!r})\nexcept ValueError as e:\n    print(e)\n"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=_env())
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"{path}: ") and "refused array state" in run.stdout


def _codecs_encode():
    import _codecs

    return _codecs.encode


@pytest.mark.parametrize(
    "payload, refusal",
    [
        (lambda: _Call(_numpy_function("_reconstruct"), (np.ndarray, (10**6,), b"O")), "start every array empty"),
        (lambda: _Call(_codecs_encode(), ("abc", "rot13")), "latin1 only"),
        (lambda: _Call(__import__("collections").OrderedDict, (), {"__class__": 1}), "refused state for a OrderedDict"),
        (lambda: float("inf"), "t_offset"),
    ],
    ids=["reconstruct-non-empty", "encode-other-codec", "state-for-a-container", "t_offset-inf"],
)
def test_calls_numpy_pickles_never_make_are_refused(tmp_path, payload, refusal):
    # Control: the standard unpickler accepts each of these (they are valid pickles).
    pickle.loads(pickle.dumps(payload(), protocol=3))
    key = "t_offset" if refusal == "t_offset" else "meta"
    path = _eventgpt_npy(tmp_path / "odd.npy", **{key: payload()})
    with pytest.raises(EventFileError, match=refusal) as err:
        read_events(path)
    assert str(err.value).startswith(f"{path}: ")


# --------------------------------------------------------------------------- full disk, read-only


def _leftovers(parent: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name not in keep)


@pytest.mark.parametrize("writer", ["write_png", "write_events_npz", "write_mp4"])
def test_full_disk_is_one_line_and_leaves_nothing(tmp_path, cup_mp4, monkeypatch, capsys, writer):
    """The writer is sent to /dev/full, where the kernel itself answers ENOSPC (a plain
    OSError(ENOSPC) where there is no /dev/full)."""
    real = getattr(build_module, writer)

    def to_full_disk(path, *args, **kwargs):
        if Path("/dev/full").exists():
            return real("/dev/full", *args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(build_module, writer, to_full_disk)
    out = tmp_path / "ds"
    code = main(["build", str(out), "--video", str(cup_mp4), "--clip-ms", "500", "--max-clips", "1", "--frames", "1", "--quiet"])
    line = _one_error_line(capsys.readouterr().err, out)
    assert code == 1 and os.strerror(errno.ENOSPC) in line and "(ENOSPC)" in line
    folder = {"write_png": "event_image/", "write_events_npz": "events/", "write_mp4": "mp4/"}[writer]
    assert f"cannot write {folder}cup_0000" in line
    assert _leftovers(tmp_path, set()) == []  # no OUT, no partial folder


def test_full_disk_while_replacing_leaves_the_old_dataset(tmp_path, dsec_npy, monkeypatch, capsys):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "mine.txt").write_text("old")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(build_module, "write_index", full)
    assert main(["build", str(out), "--events", str(dsec_npy), "--force", "--quiet"]) == 1
    line = _one_error_line(capsys.readouterr().err, out)
    assert f"cannot write {INDEX_NAME}" in line and "ds is as it was" in line
    assert [p.name for p in out.iterdir()] == ["mine.txt"] and _leftovers(tmp_path, {"ds"}) == []


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS], ids=["EACCES", "EROFS"])
def test_unwritable_folder_is_one_line_simulated(tmp_path, dsec_npy, monkeypatch, capsys, code):
    """As the OS answers for a folder without write permission (EACCES) or on a read-only file
    system (EROFS): making the partial folder fails. Runs as root too (see the chmod test)."""
    parent = tmp_path / "locked"
    parent.mkdir()

    def refuse(*args, dir=None, **kwargs):
        raise OSError(code, os.strerror(code), os.path.join(str(dir), "x"))

    monkeypatch.setattr(build_module.tempfile, "mkdtemp", refuse)
    out = parent / "ds"
    assert main(["build", str(out), "--events", str(dsec_npy), "--quiet"]) == 1
    line = _one_error_line(capsys.readouterr().err, out)
    assert os.strerror(code) in line and f"({errno.errorcode[code]})" in line
    assert list(parent.iterdir()) == []


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="running as root (or without POSIX permissions): chmod does not stop root's writes; test_unwritable_folder_is_one_line_simulated covers EACCES",
)
def test_read_only_folder_is_one_line(tmp_path, dsec_npy, capsys):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        out = parent / "ds"
        assert main(["build", str(out), "--events", str(dsec_npy), "--quiet"]) == 1
        line = _one_error_line(capsys.readouterr().err, out)
        assert os.strerror(errno.EACCES) in line and "(EACCES)" in line
        assert list(parent.iterdir()) == []
    finally:
        parent.chmod(0o755)


def test_missing_and_corrupt_inputs_are_one_line_each(tmp_path, cup_mp4, capsys):
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"RIFF junk, not a video")
    cut = tmp_path / "cut.npy"
    cut.write_bytes(b"\x93NUMPY\x01\x00")
    cases = [(tmp_path / "missing.mp4", "--video"), (junk, "--video"), (tmp_path / "missing.npy", "--events"), (cut, "--events")]
    for path, flag in cases:
        assert main(["build", str(tmp_path / "ds"), flag, str(path), "--quiet"]) == 2
        _one_error_line(capsys.readouterr().err, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.npy", "junk.avi"]


# --------------------------------------------------------------------------- killed builds


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _start_build(out: Path, cup_mp4: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "pytest_egbench.data", "build", str(out), "--video", str(cup_mp4), "--clip-ms", "500", "--max-clips", "6", "--frames", "1"]
    return subprocess.Popen(args, cwd=str(ROOT), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _partials(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.partial-*"))


def _wait_for_a_written_file(proc: subprocess.Popen, out: Path, timeout: float = 180) -> Path:
    """Wait until the build has written a file into its partial folder; OUT must not exist."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert not out.exists(), "OUT appeared before the build was complete"
        for partial in _partials(out):
            if any(partial.glob("events/*.npz")):
                return partial
        if proc.poll() is not None:
            pytest.fail(f"the build ended before it was stopped: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the build wrote nothing in time")


def test_killed_build_leaves_no_output_and_the_next_build_cleans_up(tmp_path, cup_mp4, dsec_npy, capsys):
    out = tmp_path / "ds"
    proc = _start_build(out, cup_mp4)
    partial = _wait_for_a_written_file(proc, out)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists() and partial.is_dir() and any(partial.rglob("*"))  # what a kill leaves
    assert main(["build", str(out), "--events", str(dsec_npy)]) == 0
    assert f"removed {partial.name}" in capsys.readouterr().err
    assert not partial.exists() and _partials(out) == []
    assert [s.id for s in load_dataset(out)] == ["dsec_sample1_50ms"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM cannot be caught on Windows")
def test_sigterm_removes_the_partial_folder_and_is_one_line(tmp_path, cup_mp4):
    out = tmp_path / "ds"
    proc = _start_build(out, cup_mp4)
    _wait_for_a_written_file(proc, out)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    errors = [line for line in err.splitlines() if not line.startswith("[")]  # progress: "[k/n] ..."
    assert errors == [f"error: {out}: stopped by SIGTERM; nothing was written"] and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_stale_clean_up_touches_only_abandoned_partial_folders(tmp_path, dsec_npy):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "ds"
    abandoned = tmp_path / ".ds.partial-abcd1234"
    legacy = tmp_path / ".ds.building-x_y0z9qq"
    busy = tmp_path / ".ds.partial-busy0000"  # a build running now holds its lock
    for folder in (abandoned, legacy, busy):
        (folder / "events").mkdir(parents=True)
    user = [tmp_path / ".ds.partial-mine", tmp_path / ".ds.partial-ABCD1234", tmp_path / "ds.partial-abcd1234", tmp_path / ".other.partial-abcd1234"]
    for folder in user:
        folder.mkdir()
        (folder / "keep.txt").write_text("mine")
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    link = tmp_path / ".ds.partial-link0000"
    link.symlink_to(target, target_is_directory=True)
    fd = os.open(busy, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        removed = remove_stale_partials(out)
        assert sorted(removed) == sorted([abandoned, legacy])
        assert not abandoned.exists() and not legacy.exists() and busy.is_dir()
    finally:
        os.close(fd)
    assert all((folder / "keep.txt").read_text() == "mine" for folder in user)
    assert link.is_symlink() and (target / "keep.txt").read_text() == "mine"
    assert build_dataset(out, BuildOptions(events=(dsec_npy,), frames=1))  # the lock is free now
    assert not busy.exists() and (out / INDEX_NAME).exists()


def test_dataset_moved_aside_by_a_killed_force_build_is_put_back(tmp_path, dsec_npy, capsys):
    out = tmp_path / "ds"
    aside = tmp_path / ".ds.old-q1w2e3r4"
    (aside / "ds").mkdir(parents=True)
    (aside / "ds" / "mine.txt").write_text("previous dataset")
    # Killed between moving OUT aside and moving the new one in: OUT is missing.
    assert main(["build", str(out), "--events", str(dsec_npy), "--quiet"]) == 2  # back, not empty
    assert "exists and is not empty" in capsys.readouterr().err
    assert (out / "mine.txt").read_text() == "previous dataset" and not aside.exists()
