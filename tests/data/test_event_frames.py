"""Event frames: EventGPT's chunking and colours, last event wins, on the real DSEC clip."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_egbench.data.events import SensorSize, events_from_arrays, read_events
from pytest_egbench.data.frames import (
    BLUE_OFF,
    RED_ON,
    WHITE,
    event_chunk_bounds,
    event_frames,
    event_frames_by_time,
    read_png,
    read_pngs,
    render_event_frame,
    time_window_bounds,
    write_png,
)

# Expected colours written as literal RGB from EventGPT's definition (``generate_event_image`` in
# its common/common.py: a white canvas, polarity 1 red, polarity 0 blue, events drawn in order),
# never taken from the module's constants, so a swap in the module is a failure here.
W_, R_, B_ = (255, 255, 255), (255, 0, 0), (0, 0, 255)


@st.composite
def event_arrays(draw, max_events=300):
    width = draw(st.integers(1, 12))
    height = draw(st.integers(1, 9))
    n = draw(st.integers(0, max_events))
    x = np.array(draw(st.lists(st.integers(0, width - 1), min_size=n, max_size=n)), dtype=np.uint16)
    y = np.array(draw(st.lists(st.integers(0, height - 1), min_size=n, max_size=n)), dtype=np.uint16)
    p = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=np.uint8)
    return x, y, p, SensorSize(width, height)


def _colour(p):
    return R_ if p else B_


@settings(max_examples=150, deadline=None)
@given(event_arrays())
def test_every_event_lands_on_its_pixel_unless_a_later_one_overwrites_it(arrays):
    x, y, p, sensor = arrays
    image = render_event_frame(x, y, p, sensor)
    assert image.shape == (sensor.height, sensor.width, 3) and image.dtype == np.uint8
    last_at = {}
    for i in range(len(x)):
        last_at[(int(y[i]), int(x[i]))] = i
    for i in range(len(x)):
        pixel = (int(y[i]), int(x[i]))
        if last_at[pixel] == i:  # nothing later overwrites it: its own colour
            assert tuple(image[pixel]) == _colour(p[i])
        else:  # overwritten: the colour of the last event there
            assert tuple(image[pixel]) == _colour(p[last_at[pixel]])
    untouched = np.ones((sensor.height, sensor.width), bool)
    untouched[y.astype(int), x.astype(int)] = False
    assert np.all(image[untouched] == W_)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 64))
def test_every_chunk_but_the_last_holds_total_div_n(total, n):
    bounds = event_chunk_bounds(total, n)
    sizes = np.diff(bounds)
    assert len(sizes) == n and bounds[0] == 0 and bounds[-1] == total
    assert np.all(sizes[:-1] == total // n)
    assert sizes[-1] == total // n + total % n


@settings(max_examples=60, deadline=None)
@given(event_arrays(max_events=120), st.integers(1, 7))
def test_event_frames_are_eventgpt_chunks_drawn_in_order(arrays, n):
    x, y, p, sensor = arrays
    events = events_from_arrays(x, y, np.arange(len(x)), p, sensor=sensor, allow_empty=True)
    frames = event_frames(events, n)
    assert frames.shape == (n, sensor.height, sensor.width, 3)
    k = len(x) // n
    for i in range(n):  # EventGPT's loop, one event at a time
        lo, hi = i * k, ((i + 1) * k if i < n - 1 else len(x))
        expected = np.full((sensor.height, sensor.width, 3), 255, np.uint8)
        for j in range(lo, hi):
            expected[y[j], x[j]] = _colour(p[j])
        np.testing.assert_array_equal(frames[i], expected)


def test_real_dsec_clip_renders_to_1_and_5_frames_of_480_by_640(dsec_npy):
    events = read_events(dsec_npy)
    for n in (1, 5):
        frames = event_frames(events, n)
        assert frames.shape == (n, 480, 640, 3) and frames.dtype == np.uint8
        bounds = event_chunk_bounds(len(events), n)
        for i, frame in enumerate(frames):
            packed = np.unique((frame.astype(np.int64) << np.array([16, 8, 0])).sum(axis=2))
            assert {(int(c) >> 16, (int(c) >> 8) & 255, int(c) & 255) for c in packed} == {W_, R_, B_}
            lo, hi = bounds[i], bounds[i + 1]
            hit = np.unique(events.y[lo:hi].astype(np.int64) * 640 + events.x[lo:hi])
            assert int(np.count_nonzero(np.any(frame != 255, axis=2))) == hit.size
    # the single frame's last events are on top
    single = event_frames(events, 1)[0]
    assert tuple(single[events.y[-1], events.x[-1]]) == _colour(events.p[-1])


def test_time_windows_keep_empty_windows_white():
    t = np.array([0, 5, 12, 35, 39])
    events = events_from_arrays(np.array([0, 1, 2, 3, 4]), np.zeros(5, int), t, np.array([1, 0, 1, 0, 1]), sensor=(5, 1))
    bounds = time_window_bounds(events.t, 10)
    np.testing.assert_array_equal(bounds, [0, 2, 3, 3, 5])  # [0,10) [10,20) [20,30) [30,40)
    frames = event_frames_by_time(events, 10)
    assert frames.shape == (4, 1, 5, 3)
    assert np.all(frames[2] == 255)
    assert tuple(frames[3][0, 3]) == B_ and tuple(frames[3][0, 4]) == R_
    assert event_frames_by_time(events, 10, start_us=10, n=2).shape[0] == 2
    with pytest.raises(ValueError):
        time_window_bounds(events.t, 0)


def test_real_dsec_clip_in_10_ms_windows(dsec_npy):
    events = read_events(dsec_npy)
    frames = event_frames_by_time(events, 10_000)
    assert frames.shape == (5, 480, 640, 3)  # 0..49595 us


def test_render_refuses_bad_input():
    with pytest.raises(ValueError, match="outside"):
        render_event_frame(np.array([5]), np.array([0]), np.array([1]), (5, 5))
    with pytest.raises(ValueError, match="polarity"):
        render_event_frame(np.array([0]), np.array([0]), np.array([2]), (5, 5))
    with pytest.raises(ValueError, match="lengths"):
        render_event_frame(np.array([0, 1]), np.array([0]), np.array([1]), (5, 5))
    with pytest.raises(ValueError):
        event_chunk_bounds(10, 0)


def test_png_round_trip(tmp_path, dsec_npy):
    frames = event_frames(read_events(dsec_npy), 2)
    paths = [write_png(tmp_path / f"{i}.png", f) for i, f in enumerate(frames)]
    np.testing.assert_array_equal(read_pngs(paths), frames)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match="bad.png"):
        read_png(tmp_path / "bad.png")


# --------------------------------------------------------------------------- outside oracles


def _tiny_stream():
    """Seven events on a 4 x 3 sensor, (x, y, p) in time order; three pixels are hit twice."""
    xyp = [(0, 0, 1), (1, 0, 0), (0, 0, 0), (3, 2, 1), (2, 1, 0), (2, 1, 1), (1, 0, 1)]
    x, y, p = (np.array(c) for c in zip(*xyp))
    return events_from_arrays(x, y, np.arange(7) * 10, p, sensor=(4, 3))


def test_tiny_stream_by_hand_single_frame():
    frame = event_frames(_tiny_stream(), 1)[0]
    expected = np.array([
        [B_, R_, W_, W_],  # (0,0): red, then blue on top; (1,0): blue, then red on top
        [W_, W_, R_, W_],  # (2,1): blue, then red on top
        [W_, W_, W_, R_],  # (3,2): red
    ], dtype=np.uint8)  # fmt: skip
    assert frame.shape == (3, 4, 3)
    np.testing.assert_array_equal(frame, expected)


def test_tiny_stream_by_hand_two_chunks():
    # 7 events in 2 chunks: k = 7 // 2 = 3, so events 0-2 and 3-6 (the last takes the remainder)
    first, second = event_frames(_tiny_stream(), 2)
    np.testing.assert_array_equal(first, np.array([
        [B_, B_, W_, W_],  # (0,0): red then blue; (1,0): blue
        [W_, W_, W_, W_],
        [W_, W_, W_, W_],
    ], dtype=np.uint8))  # fmt: skip
    np.testing.assert_array_equal(second, np.array([
        [W_, R_, W_, W_],  # (1,0): red (event 6)
        [W_, W_, R_, W_],  # (2,1): blue then red
        [W_, W_, W_, R_],
    ], dtype=np.uint8))  # fmt: skip


def test_module_colour_constants_are_eventgpts():
    assert (WHITE, RED_ON, BLUE_OFF) == (W_, R_, B_)


def _plain_render(x, y, p, n_frames, height, width):
    """EventGPT's loop, as plainly as possible: equal event-count chunks (k = total // n, the last
    with the remainder), each drawn event by event on a white canvas with literal colours."""
    x, y, p = x.tolist(), y.tolist(), p.tolist()
    k = len(x) // n_frames
    frames = []
    for i in range(n_frames):
        lo, hi = i * k, (i + 1) * k if i < n_frames - 1 else len(x)
        last = {}
        for j in range(lo, hi):
            last[y[j], x[j]] = p[j]  # a later event at the same pixel replaces the earlier one
        image = np.full((height, width, 3), 255, np.uint8)
        for (row, col), pol in last.items():
            image[row, col] = R_ if pol == 1 else B_
        frames.append(image)
    return frames


def _bundled_png(name):
    from pathlib import Path

    from PIL import Image

    path = Path(__file__).resolve().parents[2] / "pytest_egbench" / "data" / "bundled" / "event_image" / name
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_bundled_dsec_pngs_equal_eventgpts_rendering_of_the_source_events(dsec_npy):
    """The bundled PNGs against the raw source file (read here with numpy, not with the package's
    reader), rendered by the plain loop above: not the builder checking itself."""
    raw = np.load(dsec_npy, allow_pickle=True).item()
    expected = _plain_render(raw["x"], raw["y"], raw["p"], 5, 480, 640)
    for i in range(5):
        np.testing.assert_array_equal(_bundled_png(f"dsec_sample1_50ms_{i}.png"), expected[i], err_msg=f"frame {i}")


def test_bundled_cup_pngs_equal_eventgpts_rendering_of_the_bundled_events():
    from pathlib import Path

    with np.load(Path(__file__).resolve().parents[2] / "pytest_egbench" / "data" / "bundled" / "events" / "cup_0000.npz") as z:
        x, y, p = z["x"], z["y"], z["p"]
    expected = _plain_render(x, y, p, 5, 480, 640)
    for i in range(5):
        np.testing.assert_array_equal(_bundled_png(f"cup_0000_{i}.png"), expected[i], err_msg=f"frame {i}")
