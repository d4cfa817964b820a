"""Event simulator (ESIM / v2e style): thresholds, interpolated times, polarity, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_egbench.data.simulate import EventSimulator, log_intensity, simulate_events
from pytest_egbench.data.video import iter_video_frames


def _luma(value, shape=(2, 3)):
    return np.full(shape, float(value))


def test_a_brightening_pixel_fires_one_on_event_per_threshold_at_interpolated_times():
    # log intensity rises by 0.65 over 1000 us: thresholds 0.2, 0.4, 0.6 are crossed
    start, end = 50.0, 50.0 * math.exp(0.65)
    first, second = _luma(start), _luma(start)
    second[1, 2] = end
    events = simulate_events([(0, first), (1000, second)], threshold=0.2, threshold_sigma=0.0)
    assert len(events) == 3
    assert set(events.x.tolist()) == {2} and set(events.y.tolist()) == {1}
    assert events.p.tolist() == [1, 1, 1]
    np.testing.assert_array_equal(events.t, [math.floor(1000 * k * 0.2 / 0.65) for k in (1, 2, 3)])
    assert events.sensor == (3, 2)


def test_a_darkening_pixel_fires_off_events_and_the_reference_carries_over():
    def frame(log_change):
        return _luma(100.0 * math.exp(log_change), (1, 1))

    # -0.5: two OFF events (reference -> -0.4); -0.3 is only +0.1 from the reference: nothing
    # (+0.2 from the previous frame would have fired); -0.15 is +0.25 from it: one ON event, where
    # the line from -0.3 to -0.15 crosses -0.2, two thirds into [200, 300] us.
    events = simulate_events([(0, frame(0)), (100, frame(-0.5)), (200, frame(-0.3)), (300, frame(-0.15))], threshold=0.2, threshold_sigma=0.0)
    assert events.p.tolist() == [0, 0, 1]
    assert events.t.tolist() == [40, 80, 266]


def test_no_change_no_events_and_dark_pixels_are_linear():
    events = simulate_events([(0, _luma(80)), (10, _luma(80)), (20, _luma(80))], threshold_sigma=0.0)
    assert len(events) == 0
    assert log_intensity(np.array([[10.0, 20.0]]))[0, 0] == pytest.approx(10 * math.log(20) / 20)
    assert log_intensity(np.array([[10.0, 20.0]]))[0, 1] == pytest.approx(math.log(20))


def test_rgb_frames_use_bt601_luma():
    rgb = np.zeros((1, 1, 3), np.uint8)
    rgb[0, 0] = (100, 150, 200)
    assert log_intensity(rgb)[0, 0] == pytest.approx(math.log(0.299 * 100 + 0.587 * 150 + 0.114 * 200))


def test_seeded_and_deterministic():
    rng = np.random.default_rng(1)
    frames = [(i * 1000, rng.integers(30, 255, (12, 16, 3), dtype=np.uint8)) for i in range(5)]
    a = simulate_events(frames, seed=3)
    b = simulate_events(frames, seed=3)
    c = simulate_events(frames, seed=4)
    for name in "xytp":
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert len(a) != len(c) or not np.array_equal(a.t, c.t)
    assert np.all(np.diff(a.t) >= 0) and a.t[0] >= 0 and a.t[-1] <= 4000


def test_bad_frame_sequences_are_refused():
    sim = EventSimulator()
    sim.feed(_luma(50), 0)
    with pytest.raises(ValueError, match="not after"):
        sim.feed(_luma(60), 0)
    with pytest.raises(ValueError, match="expected"):
        sim.feed(_luma(60, (3, 3)), 10)
    with pytest.raises(ValueError, match="no frame"):
        EventSimulator().events()
    with pytest.raises(ValueError):
        EventSimulator(threshold=0)


def test_events_from_the_real_cup_video(cup_mp4):
    frames = list(iter_video_frames(cup_mp4, 0, 300_000))
    events = simulate_events(frames)
    assert events.sensor == (640, 480) and len(events) > 10_000
    assert 0 <= events.t[0] and events.t[-1] <= frames[-1][0]
    assert 0.2 < events.p.mean() < 0.8  # both polarities
