"""Events from video: an ESIM / v2e style event camera simulator.

Sources: H. Rebecq, D. Gehrig, D. Scaramuzza, "ESIM: an Open Event Camera Simulator", CoRL 2018;
Y. Hu, S.-C. Liu, T. Delbruck, "v2e: From Video Frames to Realistic DVS Events", CVPR Workshops
2021. The model of both: each pixel keeps a reference log intensity ``L_ref``; when the log
intensity ``L`` moves by a contrast threshold ``C`` away from it, the pixel emits an event (ON,
polarity 1, for an increase; OFF, polarity 0, for a decrease) and the reference moves by ``C``.
Between two video frames, ``L`` is taken to change linearly in time (ESIM's piecewise-linear
interpolation), so a change spanning ``k`` thresholds gives ``k`` events at the times where the
line crosses ``L_ref + C``, ``L_ref + 2C``, ... Per-pixel thresholds vary around their nominal
value (normal, sigma ``threshold_sigma``, as v2e's ``sigma_thres``), drawn once from a seeded
generator: the same frames and seed give the same events.

Intensity: luma ``Y = 0.299 R + 0.587 G + 0.114 B`` (BT.601) in [0, 255], mapped with v2e's
"lin-log" curve: linear below 20 (``Y * ln(20) / 20``), ``ln(Y)`` above, so dark, noisy pixels
do not fire on every compression artefact. Not modelled: refractory period, leak and shot-noise
events, bandwidth limits (v2e's optional extras).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .events import EventStream, SensorSize, events_from_arrays

#: Default contrast threshold (log intensity), as in ESIM's and v2e's examples.
DEFAULT_THRESHOLD = 0.2
#: Default per-pixel threshold spread (standard deviation), v2e's default ``sigma_thres``.
DEFAULT_THRESHOLD_SIGMA = 0.03
#: Luma below which v2e's lin-log mapping is linear.
LINLOG_KNEE = 20.0


def log_intensity(frame: np.ndarray) -> np.ndarray:
    """Lin-log intensity of a frame: ``[H, W]`` float64.

    ``frame``: ``[H, W, 3]`` uint8 RGB or ``[H, W]`` luma (any real dtype, 0..255).
    """
    arr = np.asarray(frame)
    if arr.ndim == 3:
        if arr.shape[2] != 3:
            raise ValueError(f"expected [H, W, 3] RGB or [H, W] luma, got shape {arr.shape}")
        luma = arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114
    elif arr.ndim == 2:
        luma = arr.astype(np.float64)
    else:
        raise ValueError(f"expected [H, W, 3] RGB or [H, W] luma, got shape {arr.shape}")
    return np.where(luma < LINLOG_KNEE, luma * (np.log(LINLOG_KNEE) / LINLOG_KNEE), np.log(np.maximum(luma, LINLOG_KNEE)))


@dataclass
class EventSimulator:
    """Streaming simulator: feed frames in time order, collect events.

    ``threshold``: nominal contrast threshold ``C`` for ON and OFF (``pos_threshold`` /
    ``neg_threshold`` override one side). ``threshold_sigma``: per-pixel spread of the thresholds;
    each pixel's value is clipped to at least 0.01. ``seed``: seeds the threshold draw.
    """

    threshold: float = DEFAULT_THRESHOLD
    threshold_sigma: float = DEFAULT_THRESHOLD_SIGMA
    seed: int = 0
    pos_threshold: float | None = None
    neg_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.threshold <= 0 or self.threshold_sigma < 0:
            raise ValueError(f"need threshold > 0 and threshold_sigma >= 0, got {self.threshold}, {self.threshold_sigma}")
        self._ref: np.ndarray | None = None
        self._last_log: np.ndarray | None = None
        self._last_t: int | None = None
        self._chunks: list[tuple[np.ndarray, ...]] = []
        self.frames_seen = 0

    def _thresholds(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        pos = self.pos_threshold if self.pos_threshold is not None else self.threshold
        neg = self.neg_threshold if self.neg_threshold is not None else self.threshold
        c_pos = np.maximum(rng.normal(pos, self.threshold_sigma, shape), 0.01) if self.threshold_sigma else np.full(shape, pos)
        c_neg = np.maximum(rng.normal(neg, self.threshold_sigma, shape), 0.01) if self.threshold_sigma else np.full(shape, neg)
        return c_pos.ravel(), c_neg.ravel()

    def feed(self, frame: np.ndarray, t_us: int) -> int:
        """Add the frame seen at ``t_us`` microseconds; returns the number of events it caused.

        The first frame only sets the references. Raises ``ValueError`` for a frame of another size
        or a timestamp not after the previous one.
        """
        log_i = log_intensity(frame).ravel()
        t_us = int(t_us)
        if self._ref is None:
            self.height, self.width = np.asarray(frame).shape[:2]
            self._c_pos, self._c_neg = self._thresholds((self.height, self.width))
            self._ref = log_i.copy()
            self._last_log, self._last_t = log_i, t_us
            self.frames_seen = 1
            return 0
        if self._last_log is None or self._last_t is None:  # set with _ref by the first frame
            raise RuntimeError("EventSimulator has a reference but no previous frame")
        if log_i.shape != self._ref.shape:
            raise ValueError(f"frame {self.frames_seen} is {np.asarray(frame).shape[:2]}, expected {(self.height, self.width)}")
        if t_us <= self._last_t:
            raise ValueError(f"frame {self.frames_seen} at {t_us} us is not after the previous frame ({self._last_t} us)")
        count = self._interval(self._last_log, log_i, self._last_t, t_us)
        self._last_log, self._last_t = log_i, t_us
        self.frames_seen += 1
        return count

    def _interval(self, l0: np.ndarray, l1: np.ndarray, t0: int, t1: int) -> int:
        ref = self._ref
        if ref is None:
            raise RuntimeError("EventSimulator._interval called before the first frame set the references")
        delta = l1 - ref
        up = delta > 0
        crossings = np.floor(np.abs(delta) / np.where(up, self._c_pos, self._c_neg)).astype(np.int64)  # thresholds crossed per pixel
        pixels = np.flatnonzero(crossings)
        if pixels.size == 0:
            return 0
        k = crossings[pixels]
        step = np.where(up[pixels], self._c_pos[pixels], -self._c_neg[pixels])  # signed threshold
        ref_before = ref[pixels]
        ref[pixels] = ref_before + k * step  # the reference moves by whole thresholds
        # One row per event: its pixel and its rank j = 1..k among that pixel's crossings; it fires
        # where the line from l0 to l1 reaches L_ref + j * step.
        pix = np.repeat(pixels, k)
        rank = np.arange(pix.size, dtype=np.int64) - np.repeat(np.cumsum(k) - k, k) + 1
        level = np.repeat(ref_before, k) + rank * np.repeat(step, k)
        start = l0[pix]
        slope = l1[pix] - start  # never 0 here: the level lies strictly beyond l0, up to l1
        frac = np.clip((level - start) / slope, 0.0, 1.0)
        t = t0 + np.floor(frac * (t1 - t0)).astype(np.int64)
        pol = np.repeat(up[pixels], k).astype(np.uint8)
        order = np.lexsort((pix, t))  # time order; ties by pixel index (deterministic)
        self._chunks.append((t[order], pix[order], pol[order]))
        return int(pix.size)

    def events(self) -> EventStream:
        """Every event so far, as a validated :class:`EventStream` (sensor = frame size).

        Raises ``ValueError`` before the first frame.
        """
        if self._ref is None:
            raise ValueError("no frame was fed")
        if self._chunks:
            t, pix, p = (np.concatenate(parts) for parts in zip(*self._chunks))
        else:
            t, pix, p = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8)
        y, x = np.divmod(pix, self.width)
        return events_from_arrays(
            x,
            y,
            t,
            p,
            sensor=SensorSize(self.width, self.height),
            allow_empty=True,
            metadata={"simulated": "esim-v2e", "threshold": self.threshold, "threshold_sigma": self.threshold_sigma, "seed": self.seed},
        )


def simulate_events(
    frames: Iterable[tuple[int, np.ndarray]],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    threshold_sigma: float = DEFAULT_THRESHOLD_SIGMA,
    seed: int = 0,
) -> EventStream:
    """Simulate the events a camera would see over a video: an :class:`EventStream`.

    ``frames``: ``(t_us, frame)`` in increasing time, frame ``[H, W, 3]`` uint8 RGB (or ``[H, W]``
    luma); ``t_us`` microseconds. Event timestamps are microseconds on the same clock, floored,
    between the first and the last frame's time. Deterministic for given frames and ``seed``.
    Raises ``ValueError`` for no frames, frames of different sizes or non-increasing timestamps.
    """
    sim = EventSimulator(threshold=threshold, threshold_sigma=threshold_sigma, seed=seed)
    for t_us, frame in frames:
        sim.feed(frame, t_us)
    return sim.events()
