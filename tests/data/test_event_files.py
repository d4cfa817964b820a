"""Event files: the real DSEC clip, the safe unpickler, every bad input, npz and HDF5."""

from __future__ import annotations

import builtins
import os
import pickle
import sys

import numpy as np
import pytest

from pytest_egbench.data.errors import EventFileError, MissingDependencyError
from pytest_egbench.data.events import (
    DSEC_SENSOR,
    SensorSize,
    events_from_arrays,
    read_dsec_h5,
    read_events,
    safe_unpickle,
    write_events_npz,
)


def test_real_dsec_clip_reads_as_eventgpt_stores_it(dsec_npy):
    events = read_events(dsec_npy)
    assert len(events) == 132_268
    assert events.sensor == DSEC_SENSOR == (640, 480)
    assert events.t.dtype == np.int64  # widened from the file's uint16
    assert int(events.t[0]) == 0 and int(events.t[-1]) == 49_595
    assert np.all(np.diff(events.t) >= 0)
    assert events.x.max() == 639 and events.y.max() == 479
    assert set(np.unique(events.p).tolist()) == {0, 1}
    # the same arrays numpy's own (unsafe) loader gives
    reference = np.load(dsec_npy, allow_pickle=True).item()
    for name in "xyp":
        np.testing.assert_array_equal(getattr(events, name), reference[name])
    np.testing.assert_array_equal(events.t, reference["t"].astype(np.int64))


# --------------------------------------------------------------------------- malicious pickles


class _TouchFile:
    """Unpickling this runs ``builtins.exec`` that writes a file."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (builtins.exec, (f"open({self.target!r}, 'w').write('pwned')",))


class _SystemTouch:
    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("payload", [_TouchFile, _SystemTouch], ids=["exec", "os.system"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, payload):
    target = tmp_path / "pwned.txt"
    evil = payload(target)
    # Control: the payload really writes the file when an ordinary unpickler loads it.
    pickle.loads(pickle.dumps(evil))
    assert target.exists()
    target.unlink()
    # The same payload inside an EventGPT-style .npy (a pickled dict beside real arrays).
    path = tmp_path / "evil.npy"
    np.save(path, {"x": np.zeros(3, np.uint16), "y": np.zeros(3, np.uint16), "t": np.arange(3), "p": np.ones(3, np.uint8), "meta": evil}, allow_pickle=True)
    with pytest.raises(EventFileError) as err:
        read_events(path)
    assert str(path) in str(err.value) and "refused global" in str(err.value)
    assert not target.exists()


def test_pickle_of_an_object_array_element_is_checked_too(tmp_path):
    target = tmp_path / "pwned.txt"
    inner = np.empty(1, dtype=object)
    inner[0] = _TouchFile(target)
    with pytest.raises(EventFileError, match="refused global"):
        safe_unpickle(pickle.dumps({"x": inner}))
    assert not target.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_safe_unpickler_reads_every_protocol_numpy_uses(protocol):
    data = {"x": np.arange(4, dtype=np.uint16), "scale": np.float64(1.5), "size": (640, 480), "tags": {"a"}}
    back = safe_unpickle(pickle.dumps(data, protocol=protocol))
    np.testing.assert_array_equal(back["x"], data["x"])
    assert back["scale"] == 1.5 and back["size"] == (640, 480) and back["tags"] == {"a"}


def test_persistent_ids_are_refused():
    # PERSID opcode: "P" + id + newline, then STOP
    with pytest.raises(EventFileError, match="persistent id"):
        safe_unpickle(b"Pabc\n.")


# --------------------------------------------------------------------------- bad files


def _write_npy_dict(path, **fields):
    np.save(path, fields, allow_pickle=True)
    return path


def test_missing_empty_and_unknown_files(tmp_path):
    with pytest.raises(EventFileError, match="does not exist"):
        read_events(tmp_path / "nope.npy")
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(EventFileError, match="is empty"):
        read_events(tmp_path / "empty.npy")
    (tmp_path / "events.txt").write_text("1 2 3 1\n")
    with pytest.raises(EventFileError, match="unknown event file type"):
        read_events(tmp_path / "events.txt")
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(EventFileError, match="not a .npy file"):
        read_events(tmp_path / "junk.npy")


def test_truncated_npy_names_the_file(tmp_path, dsec_npy):
    cut = tmp_path / "cut.npy"
    cut.write_bytes(dsec_npy.read_bytes()[:400_000])
    with pytest.raises(EventFileError, match="truncated") as err:
        read_events(cut)
    assert str(cut) in str(err.value)


def test_npy_with_zero_events_is_refused(tmp_path):
    path = _write_npy_dict(tmp_path / "zero.npy", x=np.zeros(0, np.uint16), y=np.zeros(0, np.uint16), t=np.zeros(0, np.int64), p=np.zeros(0, np.uint8))
    with pytest.raises(EventFileError, match="holds no events"):
        read_events(path)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"x": [1, 2], "y": [1, 2, 3], "t": [1, 2, 3], "p": [0, 1, 1]}, "different lengths"),
        ({"x": [1, 640], "y": [1, 2], "t": [1, 2], "p": [0, 1]}, "x=640, outside the 640 x 480 sensor"),
        ({"x": [1, -1], "y": [1, 2], "t": [1, 2], "p": [0, 1]}, "x=-1"),
        ({"x": [1, 2], "y": [480, 2], "t": [1, 2], "p": [0, 1]}, "y=480"),
        ({"x": [1, 2], "y": [1, 2], "t": [1, 2], "p": [0, 2]}, "polarity 2"),
        ({"x": [1, 2], "y": [1, 2], "t": [1, 2], "p": [-1, 1]}, "polarity -1"),
        ({"x": [1, 2], "y": [1, 2], "t": [5, 2], "p": [0, 1]}, r"not sorted: t\[0\]=5 > t\[1\]=2"),
        ({"x": [1, 2], "y": [1, 2], "t": [0.5, 2.0], "p": [0, 1]}, "whole microseconds"),
        ({"x": [[1, 2]], "y": [1, 2], "t": [1, 2], "p": [0, 1]}, "one dimension"),
        ({"x": ["a", "b"], "y": [1, 2], "t": [1, 2], "p": [0, 1]}, "expected integers"),
    ],
)
def test_inconsistent_events_are_refused_with_the_reason(fields, message):
    with pytest.raises(EventFileError, match=message):
        events_from_arrays(**{k: np.asarray(v) for k, v in fields.items()}, source="clip.npy")


def test_inconsistent_file_names_file_and_problem(tmp_path):
    path = _write_npy_dict(
        tmp_path / "bad.npy", x=np.array([1, 700], np.uint16), y=np.array([1, 2], np.uint16), t=np.array([1, 2]), p=np.array([0, 1], np.uint8)
    )
    with pytest.raises(EventFileError) as err:
        read_events(path)
    assert str(err.value).startswith(f"{path}: event 1 has x=700")


def test_missing_field_and_wrong_container(tmp_path):
    path = _write_npy_dict(tmp_path / "nop.npy", x=np.zeros(2, np.uint16), y=np.zeros(2, np.uint16), t=np.arange(2))
    with pytest.raises(EventFileError, match="missing event field"):
        read_events(path)
    np.save(tmp_path / "plain.npy", np.zeros((5, 4), np.int64))
    with pytest.raises(EventFileError, match="ambiguous"):
        read_events(tmp_path / "plain.npy")
    np.save(tmp_path / "list.npy", np.array([1, 2, 3], dtype=object), allow_pickle=True)
    with pytest.raises(EventFileError, match="not a dict"):
        read_events(tmp_path / "list.npy")


def test_uint16_timestamps_are_widened_and_a_wrap_is_explained():
    events = events_from_arrays(np.array([0, 1]), np.array([0, 0]), np.array([65_000, 65_535], np.uint16), np.array([0, 1]))
    assert events.t.dtype == np.int64 and events.duration_us == 535
    with pytest.raises(EventFileError, match="wrapped"):
        events_from_arrays(np.array([0, 1]), np.array([0, 0]), np.array([65_530, 5], np.uint16), np.array([0, 1]))


def test_sort_on_request_is_stable():
    t = np.array([30, 10, 20, 10])
    events = events_from_arrays(np.array([0, 1, 2, 3]), np.zeros(4, int), t, np.array([1, 0, 1, 1]), sort=True)
    np.testing.assert_array_equal(events.t, [10, 10, 20, 30])
    np.testing.assert_array_equal(events.x, [1, 3, 2, 0])  # equal t keep their order
    np.testing.assert_array_equal(events.p, [0, 1, 1, 1])


def test_sensor_size_is_configurable():
    args = (np.array([700]), np.array([500]), np.array([0]), np.array([1]))
    with pytest.raises(EventFileError):
        events_from_arrays(*args)
    assert events_from_arrays(*args, sensor=SensorSize(1280, 720)).sensor == (1280, 720)


# --------------------------------------------------------------------------- npz and structured arrays


def test_npz_round_trip_keeps_everything(tmp_path, dsec_npy):
    events = read_events(dsec_npy)
    events = events_from_arrays(events.x, events.y, events.t, events.p, t_offset_us=123_456)
    path = write_events_npz(tmp_path / "clip.npz", events)
    back = read_events(path)
    for name in "xytp":
        np.testing.assert_array_equal(getattr(back, name), getattr(events, name))
    assert back.sensor == events.sensor and back.t_offset_us == 123_456
    with np.load(path, allow_pickle=False) as npz:  # plain arrays, no pickles anywhere
        assert {npz[k].dtype.kind for k in npz.files} <= {"u", "i"}


def test_npz_sensor_size_is_used_and_pickled_members_refused(tmp_path):
    np.savez(tmp_path / "s.npz", x=np.array([300]), y=np.array([200]), t=np.array([1]), p=np.array([1]), sensor_size=np.array([346, 260]))
    assert read_events(tmp_path / "s.npz").sensor == (346, 260)
    np.savez(tmp_path / "o.npz", x=np.array([1]), y=np.array([1]), t=np.array([1]), p=np.array([1]), meta=np.array([{"a": 1}], dtype=object))
    with pytest.raises(EventFileError, match="pickled objects"):
        read_events(tmp_path / "o.npz")
    full = (tmp_path / "s.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(full[: len(full) // 2])
    with pytest.raises(EventFileError, match="truncated or corrupt"):
        read_events(tmp_path / "cut.npz")


def test_structured_arrays_in_npy_and_npz(tmp_path):
    arr = np.zeros(3, dtype=[("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "u1")])
    arr["t"], arr["x"], arr["p"] = [1, 2, 3], [4, 5, 6], [1, 0, 1]
    np.save(tmp_path / "s.npy", arr)
    np.savez(tmp_path / "s.npz", events=arr)
    for name in ("s.npy", "s.npz"):
        events = read_events(tmp_path / name)
        np.testing.assert_array_equal(events.x, [4, 5, 6])
        np.testing.assert_array_equal(events.p, [1, 0, 1])
    np.save(tmp_path / "bad.npy", np.zeros(2, dtype=[("t", "<i8"), ("x", "<u2")]))
    with pytest.raises(EventFileError, match="lacks field"):
        read_events(tmp_path / "bad.npy")


# --------------------------------------------------------------------------- DSEC HDF5


def _write_dsec_h5(path, events, t_offset=1_000_000, ms_to_idx=None):
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        group = f.create_group("events")
        for name in "xyp":
            group.create_dataset(name, data=getattr(events, name))
        group.create_dataset("t", data=events.t.astype(np.uint32))
        f.create_dataset("t_offset", data=np.int64(t_offset))
        if ms_to_idx is None:
            ms_to_idx = np.searchsorted(events.t, np.arange(0, int(events.t[-1]) // 1000 + 1) * 1000, side="left")
        f.create_dataset("ms_to_idx", data=np.asarray(ms_to_idx, dtype=np.uint64))
    return path


def test_dsec_hdf5_whole_and_windowed(tmp_path, dsec_npy):
    events = read_events(dsec_npy)
    path = _write_dsec_h5(tmp_path / "events.h5", events)
    whole = read_events(path)
    np.testing.assert_array_equal(whole.t, events.t)
    assert whole.t_offset_us == 1_000_000 and len(whole) == len(events)
    window = read_dsec_h5(path, start_ms=10, end_ms=20)
    expected = (events.t >= 10_000) & (events.t < 20_000)
    assert len(window) == int(expected.sum()) > 0
    np.testing.assert_array_equal(window.x, events.x[expected])


def test_dsec_hdf5_bad_layouts(tmp_path, dsec_npy):
    h5py = pytest.importorskip("h5py")
    events = read_events(dsec_npy)
    path = _write_dsec_h5(tmp_path / "bad_idx.h5", events, ms_to_idx=[0, 10**9])
    with pytest.raises(EventFileError, match="ms_to_idx is inconsistent"):
        read_dsec_h5(path, start_ms=0, end_ms=1)
    with h5py.File(tmp_path / "nogroup.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(2))
    with pytest.raises(EventFileError, match="no 'events' group"):
        read_events(tmp_path / "nogroup.h5")
    (tmp_path / "junk.h5").write_bytes(b"\x89HDF junk" * 10)
    with pytest.raises(EventFileError, match="corrupt HDF5"):
        read_events(tmp_path / "junk.h5")


def test_hdf5_without_h5py_says_what_to_install(tmp_path, monkeypatch):
    path = tmp_path / "events.h5"
    path.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pytest-egbench\[hdf5\]"):
        read_events(path)
