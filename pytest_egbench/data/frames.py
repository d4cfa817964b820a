"""Event frames, EventGPT's image representation of an event stream, and PNG input/output.

EventGPT (Liu et al. 2025, ``get_event_images_list`` / ``generate_event_image`` in its
``common/common.py``) splits a clip into N chunks of equal *event count*: ``k = total // N``
events each, the last chunk also taking the remainder. Each chunk is drawn on a white canvas,
polarity 1 in red (255, 0, 0), polarity 0 in blue (0, 0, 255), looping over the events in order,
so a later event overwrites an earlier one at the same pixel. The release sizes each canvas by the
chunk's largest x and y; here the canvas is the sensor size (docs/design.md#event-frames), which is the same for any
chunk that reaches the sensor's last row and column.

Rendering is vectorised and does not rely on the order in which numpy applies a fancy assignment
with repeated indices: numpy's indexing guide says "For advanced assignments, there is in general
no guarantee for the iteration order. This means that if an element is set more than once, it is
not possible to predict the final result." Instead, ``np.maximum.at``
(an unbuffered ufunc, defined for repeated indices) finds, per pixel, the largest key
``2 * i + p_i`` over the events ``i`` that hit it: the last event's index and its polarity. Every
event then writes *its pixel's final colour*, so repeated writes carry the same value and any
order gives the same image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .events import EventStream, SensorSize

#: Canvas colour and polarity colours (RGB), as in EventGPT.
WHITE = (255, 255, 255)
RED_ON = (255, 0, 0)  # p = 1
BLUE_OFF = (0, 0, 255)  # p = 0
#: EventGPT's default number of event frames per sample (1 for the single-frame runs).
DEFAULT_EVENT_FRAMES = 5


def event_chunk_bounds(total: int, n: int) -> np.ndarray:
    """Chunk boundaries of ``total`` events split into ``n`` chunks as EventGPT does.

    Returns ``[n + 1]`` int64 ``b`` with chunk ``i`` = events ``b[i]:b[i+1]``: ``b[i] = i * k`` for
    ``i < n`` with ``k = total // n``, and ``b[n] = total`` (the last chunk takes the remainder).
    With ``total < n`` every chunk but the last is empty. Raises ``ValueError`` for ``n < 1`` or
    ``total < 0``.
    """
    if n < 1 or total < 0:
        raise ValueError(f"need n >= 1 chunks and total >= 0 events, got n={n}, total={total}")
    bounds = np.arange(n + 1, dtype=np.int64) * (total // n)
    bounds[n] = total
    return bounds


def render_event_frame(
    x: np.ndarray,
    y: np.ndarray,
    p: np.ndarray,
    sensor: SensorSize | tuple[int, int],
    *,
    out: np.ndarray | None = None,
    check: bool = True,
) -> np.ndarray:
    """Draw events on a white canvas: ``[height, width, 3]`` uint8 RGB.

    ``x``, ``y``, ``p``: ``[n]`` integer arrays in event order (pixel column, row, polarity 0/1).
    ``sensor``: (width, height). Polarity 1 is red (255, 0, 0), 0 blue (0, 0, 255); at a pixel hit
    several times the last event's colour wins (see the module docstring for why this is exact).
    ``out``: optional ``[height, width, 3]`` uint8 C-contiguous array to draw into (overwritten).
    ``check=False`` skips the bounds and polarity checks (for arrays from a validated
    :class:`~pytest_egbench.data.events.EventStream`). Raises ``ValueError`` for unequal lengths,
    coordinates outside the sensor or polarity outside {0, 1} when checking.
    """
    width, height = int(sensor[0]), int(sensor[1])
    if out is None:
        out = np.empty((height, width, 3), dtype=np.uint8)
    elif out.shape != (height, width, 3) or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous uint8 array of shape {(height, width, 3)}, got {out.dtype} {out.shape}")
    n = len(x)
    if check:
        if not len(y) == len(p) == n:
            raise ValueError(f"x, y, p have different lengths: {len(x)}, {len(y)}, {len(p)}")
        if n and (int(np.min(x)) < 0 or int(np.max(x)) >= width or int(np.min(y)) < 0 or int(np.max(y)) >= height):
            raise ValueError(f"event coordinates fall outside the {width} x {height} sensor")
        if n and (int(np.min(p)) < 0 or int(np.max(p)) > 1):
            raise ValueError("polarity must be 0 or 1")
    flat = out.reshape(-1)
    flat.fill(255)
    if n == 0:
        return out
    wide = np.int64 if (2 * n + 1 >= 2**31 or width * height >= 2**31) else np.int32
    pixel = y.astype(wide) * width + x.astype(wide)  # linear pixel index of each event
    # key = 2 i + p_i increases with the event index i and carries its polarity in the low bit.
    key = np.arange(0, 2 * n, 2, dtype=wide) + p.astype(wide)
    last = np.full(width * height, -1, dtype=wide)
    np.maximum.at(last, pixel, key)
    final_on = (last[pixel] & 1).astype(np.uint8)  # polarity of the last event at each event's pixel
    base = pixel * 3
    flat[base] = final_on * np.uint8(255)  # R: 255 for red, 0 for blue
    flat[base + 1] = 0  # G: 0 for both colours
    flat[base + 2] = (1 - final_on) * np.uint8(255)  # B: 0 for red, 255 for blue
    return out


def _render_chunks(events: EventStream, bounds: np.ndarray) -> np.ndarray:
    width, height = events.sensor
    frames = np.empty((len(bounds) - 1, height, width, 3), dtype=np.uint8)
    for i in range(len(bounds) - 1):
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        render_event_frame(events.x[lo:hi], events.y[lo:hi], events.p[lo:hi], events.sensor, out=frames[i], check=False)
    return frames


def event_frames(events: EventStream, n: int = DEFAULT_EVENT_FRAMES) -> np.ndarray:
    """EventGPT's event frames: ``[n, height, width, 3]`` uint8 RGB, one per chunk of
    :func:`event_chunk_bounds` (equal event counts, the last chunk with the remainder).

    Chunks hold consecutive events in time order. Raises ``ValueError`` for ``n < 1``.
    """
    return _render_chunks(events, event_chunk_bounds(len(events), n))


def time_window_bounds(t: np.ndarray, window_us: int, *, start_us: int | None = None, n: int | None = None) -> np.ndarray:
    """Boundaries (event indices, ``[F + 1]`` int64) of consecutive fixed time windows.

    Window ``i`` holds the events with ``start + i*window_us <= t < start + (i+1)*window_us``;
    ``start_us`` defaults to ``t[0]``. ``n`` windows when given, else as many as cover the last
    event. ``t``: ``[m]`` non-decreasing int64 microseconds. Raises ``ValueError`` for
    ``window_us < 1``, ``n < 1`` or no events and no ``n``.
    """
    if window_us < 1:
        raise ValueError(f"window_us must be >= 1 microsecond, got {window_us}")
    if start_us is None:
        if len(t) == 0:
            raise ValueError("no events: give start_us")
        start_us = int(t[0])
    if n is None:
        if len(t) == 0:
            raise ValueError("no events: give n")
        n = max(1, (int(t[-1]) - start_us) // window_us + 1)
    if n < 1:
        raise ValueError(f"need n >= 1 windows, got {n}")
    edges = start_us + np.arange(n + 1, dtype=np.int64) * window_us
    return np.searchsorted(t, edges, side="left").astype(np.int64)


def event_frames_by_time(events: EventStream, window_us: int, *, start_us: int | None = None, n: int | None = None) -> np.ndarray:
    """Event frames of fixed time windows: ``[F, height, width, 3]`` uint8 RGB.

    Windows as in :func:`time_window_bounds` (``window_us`` microseconds each, from ``start_us``,
    default the first event). Unlike EventGPT's ``split_event_by_time``, which keeps only the
    non-empty bins of ``t // window``, empty windows are kept as white frames so that frame ``i``
    always covers the same span of time. Events before ``start_us`` or after the last window are
    not drawn.
    """
    bounds = time_window_bounds(events.t, window_us, start_us=start_us, n=n)
    return _render_chunks(events, bounds)


# --------------------------------------------------------------------------- PNG


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write a ``[height, width, 3]`` uint8 RGB image as PNG (Pillow). Returns the path."""
    from PIL import Image

    arr = np.ascontiguousarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected a [height, width, 3] uint8 image, got {arr.dtype} {arr.shape}")
    Image.fromarray(arr).save(path, format="PNG", optimize=False)
    return Path(path)


def read_png(path: str | Path) -> np.ndarray:
    """Read an image file as ``[height, width, 3]`` uint8 RGB (Pillow).

    Raises :class:`~pytest_egbench.data.errors.DataFileError` naming the file when it is
    missing, truncated or not an image.
    """
    from PIL import Image, UnidentifiedImageError

    from .errors import DataFileError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise DataFileError(path, f"cannot read image ({exc})") from None


def read_pngs(paths: Sequence[str | Path]) -> np.ndarray:
    """Read several images of one size: ``[N, height, width, 3]`` uint8 RGB."""
    images = [read_png(p) for p in paths]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ValueError(f"images differ in size: {sorted(shapes)}")
    return np.stack(images)
