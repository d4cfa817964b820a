"""Video with PyAV: uniform frame sampling that decodes only what it keeps, and MP4 writing.

Video-LLaVA samples ``N = 8`` frames uniformly, ``np.linspace(0, frames - 1, N, dtype=int)``
(``load_and_transform_video`` in its ``languagebind`` video processor). ``frames`` must be the
number of frames that *really exist*: container headers can lie (OpenCV's ``tree.avi`` declares
444 frames; 68 decode). And decoding every frame to keep 8 is what made the origin reports' load
stage grow with clip length.

How frames are counted and found (:func:`probe_video`, :func:`read_video_frames`):

1. *Count by demuxing.* Every non-empty, non-discarded packet of the video stream is one coded
   frame; demuxing reads the packets without decoding them. The sorted presentation timestamps
   (PTS) of those packets are the frame index. The header's count is kept for reference only:
   it is never used to place a frame.
2. *Seek and decode only the sampled frames.* For each sampled frame, seek to the key frame at or
   before its PTS (only when that skips work: a key frame lies between the current decode position
   and the target) and decode up to the target.
3. *Confirm by decoding.* Every sampled frame must come out of the decoder with exactly its PTS.
   If one does not (a packet the decoder drops, a demuxer that seeks imprecisely), the frames are
   counted again by decoding the whole file, and the sample is taken over the frames that decoded.

A file is refused as truncated when its frames stop well before the duration its video stream
declares, and as corrupt when the decoder reports an error on a frame it had to decode.

*Frames out of order or repeated.* Some files (badly muxed AVIs, edited MKVs) give frames whose
timestamps, in the order the decoder produces them, go backwards or repeat. When demuxing shows
it (two packets with one PTS, or decode timestamps that do not increase) or a sampled frame is
not where its PTS says, the frames are counted by decoding; the index then holds each timestamp
once, in presentation order, and the frame kept for a repeated timestamp is the first one
decoded (:attr:`VideoIndex.decoded_pts` keeps the decoder's order;
:meth:`VideoIndex.repairs` says what was reordered and dropped). Sampling and
:func:`iter_video_frames` then give frames in strictly increasing time.

Errors: :class:`~pytest_egbench.data.errors.VideoFileError` (a ``ValueError``) naming the file for
files FFmpeg cannot open, without a video stream, without decodable frames, or with fewer frames
than asked for.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from .errors import VideoFileError

#: Video-LLaVA's frame count per video.
DEFAULT_VIDEO_FRAMES = 8


def sample_frame_indices(frames: int, n: int = DEFAULT_VIDEO_FRAMES) -> np.ndarray:
    """Video-LLaVA's uniform sample: ``np.linspace(0, frames - 1, n, dtype=int)``, ``[n]`` int64.

    Indices strictly increase, start at 0, end at ``frames - 1`` (for ``n > 1``) and consecutive
    gaps differ by at most one. Raises ``ValueError`` when ``n < 1`` or ``frames < n`` (indices
    would repeat).
    """
    if n < 1:
        raise ValueError(f"need n >= 1 frames, got {n}")
    if frames < n:
        raise ValueError(f"cannot sample {n} distinct frames from {frames}")
    return np.linspace(0, frames - 1, n, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class VideoIndex:
    """The frames of a video's first video stream, found by demuxing (or decoding).

    ``pts``: ``[F]`` int64 presentation timestamps of the frames that exist, ascending, in units of
    ``time_base`` (seconds per tick). ``key``: ``[F]`` bool, key frame or not. ``header_frames``:
    the count the container declares (0 if none; informational). ``width``, ``height``: pixels.
    ``counted_by``: ``"demux"`` or ``"decode"``. ``start_pts``: the stream's start time (the
    first frame's PTS when the container gives none), the origin of :meth:`timestamps_us` and of
    the times :func:`iter_video_frames` yields.
    """

    path: Path
    pts: np.ndarray
    key: np.ndarray
    time_base: Fraction
    width: int
    height: int
    header_frames: int
    codec: str
    counted_by: str = "demux"
    start_pts: int | None = None
    decoded_pts: np.ndarray | None = None

    @property
    def frames(self) -> int:
        """Number of frames that exist (``len(pts)``)."""
        return int(self.pts.shape[0])

    def to_us(self, pts: np.ndarray | int) -> np.ndarray:
        """Microseconds from the stream's start (``start_pts``, else the first frame) of ``pts``."""
        rel = np.asarray(pts, dtype=np.int64) - (self.pts[0] if self.start_pts is None else self.start_pts)
        return (rel * self.time_base.numerator * 1_000_000) // self.time_base.denominator

    def timestamps_us(self) -> np.ndarray:
        """``[F]`` int64 microseconds of each frame from the stream's start (``start_pts``)."""
        return self.to_us(self.pts)

    @property
    def out_of_order(self) -> bool:
        """Whether the decoder gives this file's frames out of presentation order or with repeated
        timestamps (then ``decoded_pts`` holds its order)."""
        return self.decoded_pts is not None

    @property
    def decode_positions(self) -> np.ndarray:
        """``[F]`` int64: the position in decoding order of each frame of ``pts`` (the first frame
        decoded with that timestamp)."""
        if self.decoded_pts is None:
            return np.arange(self.frames, dtype=np.int64)
        return np.unique(self.decoded_pts, return_index=True)[1].astype(np.int64)

    def repairs(self, start_us: int | None = None, end_us: int | None = None) -> dict[str, Any] | None:
        """What was put in order among the frames of ``[start_us, end_us)`` (whole file by default);
        ``None`` when the decoder gave them in order, each timestamp once.

        ``decoded_frames``: frames the decoder gave in the window; ``frames``: kept (one per
        timestamp); ``reordered_frames``: kept frames the decoder gave after a frame with a later
        timestamp; ``dropped_frames``: frames dropped for repeating a timestamp, and
        ``dropped_at_ms``: their times.
        """
        if self.decoded_pts is None:
            return None
        decoded = self.decoded_pts
        t = self.to_us(decoded)
        inside = np.ones(len(decoded), dtype=bool)
        if start_us is not None:
            inside &= t >= start_us
        if end_us is not None:
            inside &= t < end_us
        first = np.zeros(len(decoded), dtype=bool)
        first[self.decode_positions] = True
        later_before = np.concatenate(([np.iinfo(np.int64).min], np.maximum.accumulate(decoded)[:-1])) > decoded
        reordered = int(np.count_nonzero(first & later_before & inside))
        dropped = ~first & inside
        if not reordered and not dropped.any():
            return None
        return {
            "decoded_frames": int(np.count_nonzero(inside)),
            "frames": int(np.count_nonzero(first & inside)),
            "reordered_frames": reordered,
            "dropped_frames": int(np.count_nonzero(dropped)),
            "dropped_at_ms": [round(int(v) / 1000, 3) for v in t[dropped]],
            "note": "frames put in presentation order; a frame repeating a timestamp dropped (the first decoded kept)",
        }

    @property
    def duration_us(self) -> int:
        """Microseconds from the stream's start to the end of the last frame (its time plus one
        mean frame interval)."""
        ts = self.timestamps_us()
        step = int((ts[-1] - ts[0]) // (len(ts) - 1)) if len(ts) > 1 else 0
        return int(ts[-1]) + step


def _open(path: Path) -> Any:
    VideoFileError.check_readable(path)
    try:
        container = av.open(str(path), mode="r")
    except av.FFmpegError as exc:
        raise VideoFileError(path, f"FFmpeg cannot open it: {exc}") from None
    if not container.streams.video:
        container.close()
        raise VideoFileError(path, "has no video stream")
    return container


def probe_video(path: str | Path, *, decode: bool = False) -> VideoIndex:
    """Index the frames of ``path`` by demuxing (no decoding); see the module docstring.

    ``decode=True`` counts by decoding every frame instead: slower, but it finds frames that the
    decoder gives out of order even where demuxing looks sound, and every decode error.

    Raises :class:`VideoFileError` when the file cannot be opened or demuxed, has no video
    stream, or holds no video packets.
    """
    src = Path(path)
    if decode:
        return _index_by_decoding(src)
    container = _open(src)
    try:
        stream = container.streams.video[0]
        pts: list[int] = []
        dts: list[int] = []
        key: list[bool] = []
        missing_pts = 0
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_discard or packet.is_corrupt:
                    continue
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is None:
                    missing_pts += 1
                    continue
                pts.append(int(ts))
                if packet.dts is not None:
                    dts.append(int(packet.dts))
                key.append(bool(packet.is_keyframe))
        except av.FFmpegError as exc:
            raise VideoFileError(src, f"demuxing failed after {len(pts)} packets: {exc}") from None
        info, time_base, declared = _stream_info(stream)
    finally:
        container.close()
    if missing_pts or not pts:
        # No usable timestamps from the demuxer: count by decoding instead.
        return _index_by_decoding(src)
    order = np.argsort(np.asarray(pts, dtype=np.int64), kind="stable")
    pts_arr = np.asarray(pts, dtype=np.int64)[order]
    if np.any(np.diff(pts_arr) == 0) or np.any(np.diff(np.asarray(dts, dtype=np.int64)) <= 0):
        # A repeated timestamp, or packets not in decoding order: the decoder's order is the truth.
        return _index_by_decoding(src)
    _check_not_truncated(src, pts_arr, declared, time_base)
    return VideoIndex(src, pts_arr, np.asarray(key, dtype=bool)[order], time_base, counted_by="demux", **info)


def _stream_info(stream: Any) -> tuple[dict[str, Any], Fraction, float | None]:
    ctx = stream.codec_context
    info: dict[str, Any] = dict(width=int(ctx.width), height=int(ctx.height), header_frames=int(stream.frames or 0), codec=str(ctx.name))
    time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 1)
    # Declared length in seconds: the stream's duration, or its frame count over its frame rate
    # (AVI's header count is in frame periods), whichever is longer.
    declared = [float(stream.duration * time_base)] if stream.duration else []
    if stream.frames and stream.average_rate:
        declared.append(float(stream.frames / Fraction(stream.average_rate)))
    info["start_pts"] = int(stream.start_time) if stream.start_time is not None else None
    return info, time_base, max(declared, default=None)


def _check_not_truncated(src: Path, pts: np.ndarray, declared_s: float | None, time_base: Fraction) -> None:
    """Refuse a file whose frames stop well before the length its video stream declares.

    A truncated MP4 keeps its sample table (moov) but loses the packet data at the end; a
    truncated AVI loses its index. The demuxer then stops early without an error. Frames must
    cover at least 90 % of the declared length (or miss no more than two frame intervals).
    tree.avi passes: it declares 444 frame periods of 1/15 s and holds 68 frames spread over all
    of them.
    """
    if not declared_s or len(pts) < 2:
        return
    step = float(int(np.median(np.diff(pts))) * time_base)
    covered = float(int(pts[-1] - pts[0]) * time_base) + step
    if covered < 0.9 * declared_s and declared_s - covered > 2 * step:
        raise VideoFileError(src, f"truncated: the video stream declares {declared_s:.2f} s but its frames end at {covered:.2f} s ({len(pts)} frames)")


def _index_by_decoding(src: Path) -> VideoIndex:
    """Index by decoding every frame (the fallback when packets do not identify frames)."""
    container = _open(src)
    try:
        stream = container.streams.video[0]
        pts: list[int] = []
        key: list[bool] = []
        missing = 0
        try:
            for i, frame in enumerate(container.decode(stream)):
                missing += frame.pts is None
                pts.append(int(frame.pts) if frame.pts is not None else i)
                key.append(bool(frame.key_frame))
        except av.FFmpegError as exc:
            raise _decode_error(src, len(pts), exc) from None
        info, time_base, declared = _stream_info(stream)
    finally:
        container.close()
    if not pts:
        raise VideoFileError(src, "holds no decodable video frames")
    pts_arr = np.asarray(pts, dtype=np.int64)
    key_arr = np.asarray(key, dtype=bool)
    decoded = None
    if missing:  # no timestamps to order by: number the frames in decoding order
        pts_arr = np.arange(len(pts), dtype=np.int64)
    elif np.any(np.diff(pts_arr) <= 0):  # out of order or repeated: presentation order, each once
        decoded = pts_arr
        pts_arr, first = np.unique(decoded, return_index=True)
        key_arr = key_arr[first]
    if not missing:
        _check_not_truncated(src, pts_arr, declared, time_base)
    return VideoIndex(src, pts_arr, key_arr, time_base, counted_by="decode", decoded_pts=decoded, **info)


def _decode_error(src: Path, decoded: int, exc: Exception) -> VideoFileError:
    return VideoFileError(src, f"corrupt: decoding failed after {decoded} frame(s): {exc}")


def _to_rgb(frame: Any) -> np.ndarray:
    return frame.to_ndarray(format="rgb24")


def _decode_at(src: Path, index: VideoIndex, wanted_pts: np.ndarray, stats: dict[str, int]) -> dict[int, np.ndarray]:
    """Decode the frames whose PTS are in ``wanted_pts`` (ascending), seeking where it saves work.

    Returns ``{pts: [H, W, 3] uint8}`` for the frames found; a missing key means the decoder never
    produced a frame with that PTS.
    """
    key_pts = index.pts[index.key]
    found: dict[int, np.ndarray] = {}
    container = _open(src)
    try:
        stream = container.streams.video[0]
        decoder: Iterator[Any] | None = None
        current = None  # PTS of the last decoded frame
        for target in (int(t) for t in wanted_pts):
            if target in found:
                continue
            before = key_pts[key_pts <= target]
            key_at = int(before[-1]) if before.size else int(index.pts[0])
            if decoder is None or current is None or current >= target or key_at > current:
                container.seek(target, stream=stream, backward=True, any_frame=False)
                decoder = container.decode(stream)
                stats["seeks"] += 1
            for frame in decoder:
                stats["decoded"] += 1
                if frame.pts is None:
                    continue
                current = int(frame.pts)
                if current == target:
                    found[target] = _to_rgb(frame)
                if current >= target:
                    break
            else:
                decoder = None
    except av.FFmpegError as exc:
        raise _decode_error(src, len(found), exc) from None
    finally:
        container.close()
    return found


def _decode_positions(src: Path, positions: np.ndarray, stats: dict[str, int], seen_pts: list[int | None] | None = None) -> dict[int, np.ndarray]:
    """Decode from the start, keeping frames at the given decode-order positions; stops after the
    last one. ``seen_pts`` receives the timestamp of every frame decoded."""
    wanted = set(int(i) for i in positions)
    last = max(wanted)
    out: dict[int, np.ndarray] = {}
    container = _open(src)
    try:
        for i, frame in enumerate(container.decode(container.streams.video[0])):
            stats["decoded"] += 1
            if seen_pts is not None:
                seen_pts.append(frame.pts)
            if i in wanted:
                out[i] = _to_rgb(frame)
            if i >= last:
                break
    except av.FFmpegError as exc:
        raise _decode_error(src, len(out), exc) from None
    finally:
        container.close()
    return out


def read_video_frames(
    path: str | Path,
    n: int = DEFAULT_VIDEO_FRAMES,
    *,
    index: VideoIndex | None = None,
    seek: bool = True,
    stats: dict[str, int] | None = None,
) -> np.ndarray:
    """``n`` frames sampled uniformly over the frames that exist: ``[n, H, W, 3]`` uint8 RGB.

    Frame ``j`` is frame ``sample_frame_indices(frames, n)[j]`` of the stream in presentation
    order. Only the sampled frames (and the frames between each one and its preceding key frame)
    are decoded. ``index``: a :class:`VideoIndex` from :func:`probe_video` of the same file, to skip
    the demux pass (it is part of the load cost otherwise). ``seek=False`` is the naive path, kept
    for comparison: decode from the first frame and stop after the last sampled one (with a
    uniform sample that is every frame), converting only the sampled frames to RGB. ``stats``: a
    dict that receives ``decoded`` (frames the decoder produced), ``seeks`` and ``recounted``
    (1 when the frames had to be counted by decoding).

    Frames the decoder gives out of order or with a repeated timestamp (see the module docstring)
    are sampled in presentation order, each timestamp once: they are decoded from the start, by
    their position in decoding order.

    Raises :class:`VideoFileError` naming the file if it cannot be read, holds fewer than ``n``
    frames, or a sampled frame cannot be decoded even after recounting by decoding.
    """
    src = Path(path)
    counts = {"decoded": 0, "seeks": 0, "recounted": 0}
    if stats is not None:
        counts = stats
        counts.update(decoded=0, seeks=0, recounted=0)
    index = probe_video(src) if index is None else index
    if not index.out_of_order:
        frames = _sample(src, index, n, counts) if seek else _sample_sequential(src, index.frames, n, counts)
        if frames is not None:
            return frames
        # A sampled frame is not where its timestamp says (a packet the decoder drops, frames out
        # of order): trust only the decoder.
        index = _index_by_decoding(src)
        counts["recounted"] = 1
        if not index.out_of_order:
            frames = _sample(src, index, n, counts) if seek else None
            if frames is None:
                frames = _sample_sequential(src, index.frames, n, counts)
            if frames is None:
                raise VideoFileError(src, "decodes its frames in a different order each time")
            return frames
    return _sample_by_decode_position(src, index, n, counts)


def _sample_sequential(src: Path, frames: int, n: int, stats: dict[str, int]) -> np.ndarray | None:
    """Sample by decoding position; ``None`` when the decoded timestamps do not increase (the
    positions then are not presentation order)."""
    positions = _checked_indices(src, frames, n)
    seen: list[int | None] = []
    by_position = _decode_positions(src, positions, stats, seen)
    missing = [int(i) for i in positions if int(i) not in by_position]
    if missing:
        raise VideoFileError(src, f"sampled frame(s) {missing} of {frames} do not decode")
    if None not in seen and any(b <= a for a, b in zip(seen, seen[1:])):  # type: ignore[operator]
        return None
    return np.stack([by_position[int(i)] for i in positions])


def _sample_by_decode_position(src: Path, index: VideoIndex, n: int, stats: dict[str, int]) -> np.ndarray:
    """Sample an out-of-order file: the sampled frames (presentation order) by their position in
    decoding order, decoding from the start."""
    positions = index.decode_positions[_checked_indices(src, index.frames, n)]
    by_position = _decode_positions(src, positions, stats)
    missing = [int(i) for i in positions if int(i) not in by_position]
    if missing:
        raise VideoFileError(src, f"frame(s) at decoding position(s) {missing} do not decode")
    return np.stack([by_position[int(i)] for i in positions])


def _checked_indices(src: Path, frames: int, n: int) -> np.ndarray:
    try:
        return sample_frame_indices(frames, n)
    except ValueError as exc:
        raise VideoFileError(src, f"{exc} (the video has {frames} frame(s))") from None


def _sample(src: Path, index: VideoIndex, n: int, stats: dict[str, int]) -> np.ndarray | None:
    wanted = index.pts[_checked_indices(src, index.frames, n)]
    found = _decode_at(src, index, wanted, stats)
    if any(int(t) not in found for t in wanted):
        return None
    return np.stack([found[int(t)] for t in wanted])


def read_all_frames(path: str | Path) -> np.ndarray:
    """Decode every frame: ``[F, H, W, 3]`` uint8 RGB in presentation order (the naive load path,
    kept for comparison and tests). Raises :class:`VideoFileError` if no frame decodes."""
    src = Path(path)
    return np.stack([rgb for _, rgb in iter_video_frames(src)])


def iter_video_frames(
    path: str | Path, start_us: int | None = None, end_us: int | None = None, *, index: VideoIndex | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Decode frames one at a time, in strictly increasing time: ``(t_us, [H, W, 3] uint8 RGB)``.

    ``t_us``: microseconds from the stream's first frame. Only frames with
    ``start_us <= t_us < end_us`` are yielded (seeking to ``start_us`` first); decoding stops
    after ``end_us``. ``index``: the file's :class:`VideoIndex` (probed by demuxing when not
    given). A file whose index says its frames come out of order (see the module docstring) is
    decoded from the start and put in order, each timestamp once, holding only the frames that
    wait for an earlier one. Raises :class:`VideoFileError` for a file without decodable frames,
    a frame without a timestamp, a decode error, or frames going backwards where the index did
    not expect it (``probe_video(path, decode=True)`` finds every such file).
    """
    src = Path(path)
    index = probe_video(src) if index is None else index
    if index.out_of_order:
        yield from _iter_in_order(src, index, start_us, end_us)
        return
    container = _open(src)
    try:
        stream = container.streams.video[0]
        tb = Fraction(stream.time_base) if stream.time_base else Fraction(1, 1)
        first = stream.start_time
        yielded = 0
        last: int | None = None
        if start_us and first is not None:
            container.seek(int(first + Fraction(start_us, 1_000_000) / tb), stream=stream, backward=True, any_frame=False)
        try:
            for i, frame in enumerate(container.decode(stream)):
                if frame.pts is None:
                    raise VideoFileError(src, f"decoded frame {i} has no timestamp")
                if first is None:
                    first = int(frame.pts)
                t_us = int((int(frame.pts) - first) * tb * 1_000_000)
                if start_us is not None and t_us < start_us:
                    continue
                if end_us is not None and t_us >= end_us:
                    break
                if last is not None and t_us <= last:
                    raise VideoFileError(
                        src, f"frame timestamps go backwards: a frame at {t_us} us follows one at {last} us; index it with probe_video(path, decode=True)"
                    )
                last = t_us
                yielded += 1
                yield t_us, _to_rgb(frame)
        except av.FFmpegError as exc:
            raise _decode_error(src, yielded, exc) from None
        if not yielded and start_us is None:
            raise VideoFileError(src, "holds no decodable video frames")
    finally:
        container.close()


def _iter_in_order(src: Path, index: VideoIndex, start_us: int | None, end_us: int | None) -> Iterator[tuple[int, np.ndarray]]:
    """:func:`iter_video_frames` for a file decoded out of order: decode from the start; a frame
    is yielded once no frame still to come has an earlier timestamp (known from
    ``index.decoded_pts``); repeats of a timestamp are skipped."""
    decoded = index.decoded_pts
    assert decoded is not None
    times = index.to_us(decoded)
    keep = np.zeros(len(decoded), dtype=bool)
    keep[index.decode_positions] = True
    if start_us is not None:
        keep &= times >= start_us
    if end_us is not None:
        keep &= times < end_us
    # earliest time still to come after each position (frames before it can be released)
    to_come = np.append(np.minimum.accumulate(times[::-1])[::-1][1:], np.iinfo(np.int64).max)
    i = 0
    waiting: list[tuple[int, int, np.ndarray]] = []  # heap of (t_us, position, rgb)
    container = _open(src)
    try:
        stream = container.streams.video[0]
        try:
            for i, frame in enumerate(container.decode(stream)):
                if i >= len(decoded):
                    break
                if frame.pts is None or int(frame.pts) != int(decoded[i]):
                    raise VideoFileError(src, f"decoded frame {i} has timestamp {frame.pts}, not {int(decoded[i])} as when it was indexed")
                if keep[i]:
                    heapq.heappush(waiting, (int(times[i]), i, _to_rgb(frame)))
                while waiting and waiting[0][0] < to_come[i]:
                    t_us, _, rgb = heapq.heappop(waiting)
                    yield t_us, rgb
                if end_us is not None and to_come[i] >= end_us and not waiting:
                    break
        except av.FFmpegError as exc:
            raise _decode_error(src, i, exc) from None
    finally:
        container.close()
    while waiting:  # the file decoded fewer frames than indexed
        t_us, _, rgb = heapq.heappop(waiting)
        yield t_us, rgb


def write_mp4(path: str | Path, frames: Iterable[tuple[int, np.ndarray]], *, fps: float | Fraction = 30, crf: int = 23) -> int:
    """Encode ``(t_us, [H, W, 3] uint8 RGB)`` frames as H.264 (libx264, yuv420p) in an MP4.

    Frame timestamps are kept (microseconds, rounded to a 1/90000 s clock), so variable frame
    rates survive; ``fps`` is the nominal rate written in the header. H and W must be even
    (yuv420p). Returns the number of frames written. Raises ``ValueError`` for odd sizes, a
    frame of another size, non-increasing timestamps, or no frames.
    """
    dst = Path(path)
    written = 0
    with av.open(str(dst), mode="w", format="mp4") as out:
        stream = None
        last_pts = -1
        for t_us, rgb in frames:
            if stream is None:
                height, width = rgb.shape[:2]
                if height % 2 or width % 2:
                    raise ValueError(f"{dst}: H.264 yuv420p needs even sizes, got {width} x {height}")
                stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(100000))
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.time_base = Fraction(1, 90000)
                stream.codec_context.time_base = Fraction(1, 90000)
                stream.options = {"crf": str(crf), "preset": "medium"}
            elif rgb.shape[:2] != (stream.height, stream.width):
                raise ValueError(f"{dst}: frame {written} is {rgb.shape[1]} x {rgb.shape[0]}, not {stream.width} x {stream.height}")
            pts = round(t_us * 90000 / 1_000_000)
            if pts <= last_pts:
                raise ValueError(f"{dst}: frame timestamps must increase (frame {written} at {t_us} us)")
            last_pts = pts
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 90000)
            for packet in stream.encode(frame):
                out.mux(packet)
            written += 1
        if stream is None:
            raise ValueError(f"{dst}: no frames to write")
        for packet in stream.encode(None):
            out.mux(packet)
    return written


def remux_clip(src: str | Path, dst: str | Path, end_us: int) -> int:
    """Copy the video packets of ``src`` from its start up to ``end_us`` into ``dst`` without
    re-encoding (so the key-frame structure is the source's). Returns the packets written.

    Raises :class:`VideoFileError` naming ``src`` when it cannot be read or has no video stream,
    and ``ValueError`` for ``end_us <= 0``.
    """
    if end_us <= 0:
        raise ValueError(f"end_us must be positive, got {end_us}")
    src, dst = Path(src), Path(dst)
    written = 0
    try:
        with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
            if not inp.streams.video:
                raise VideoFileError(src, "no video stream")
            stream = inp.streams.video[0]
            target = out.add_stream_from_template(stream)
            for packet in inp.demux(stream):
                if packet.dts is None:
                    continue
                if packet.pts is not None and packet.pts * stream.time_base * 1_000_000 >= end_us:
                    break
                packet.stream = target
                out.mux(packet)
                written += 1
    except av.FFmpegError as exc:
        raise VideoFileError(src, f"cannot be remuxed ({exc})") from None
    return written
