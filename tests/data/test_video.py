"""Video: uniform sampling over the frames that exist, seek-decode == sequential decode, bad files."""

from __future__ import annotations

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_egbench.data.errors import VideoFileError
from pytest_egbench.data.video import (
    iter_video_frames,
    probe_video,
    read_all_frames,
    read_video_frames,
    remux_clip,
    sample_frame_indices,
    write_mp4,
)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 64))
def test_sampled_indices_increase_stay_in_range_and_spread_evenly(frames, n):
    if n > frames:
        with pytest.raises(ValueError):
            sample_frame_indices(frames, n)
        return
    idx = sample_frame_indices(frames, n)
    assert len(idx) == n and idx[0] == 0
    assert np.all(np.diff(idx) > 0)  # strictly increasing: n distinct frames
    assert 0 <= idx.min() and idx.max() <= frames - 1
    if n > 1:
        assert idx[-1] == frames - 1
        gaps = np.diff(idx)
        assert gaps.max() - gaps.min() <= 1  # evenly spread
        np.testing.assert_array_equal(idx, np.linspace(0, frames - 1, n, dtype=int))  # Video-LLaVA's rule


def _distinct(frames):
    return len({f.tobytes() for f in frames})


def test_cup_mp4_gives_8_correct_distinct_frames(cup_mp4):
    index = probe_video(cup_mp4)
    assert index.frames == 217 and index.header_frames == 217 and (index.width, index.height) == (640, 480)
    seek_stats, sequential_stats = {}, {}
    sampled = read_video_frames(cup_mp4, 8, index=index, stats=seek_stats)
    assert sampled.shape == (8, 480, 640, 3) and sampled.dtype == np.uint8
    assert _distinct(sampled) == 8
    # the same frames as decoding from the start and keeping linspace(0, 216, 8) ...
    sequential = read_video_frames(cup_mp4, 8, index=index, seek=False, stats=sequential_stats)
    np.testing.assert_array_equal(sampled, sequential)
    # ... for a fraction of the decoding: cup.mp4 has a key frame every 30 frames
    assert sequential_stats["decoded"] == 217
    assert seek_stats["decoded"] < 217 // 2 and seek_stats["seeks"] >= 2 and seek_stats["recounted"] == 0


def test_tree_avi_header_lies_yet_8_correct_distinct_frames(tree_avi):
    index = probe_video(tree_avi)
    assert index.header_frames == 444 and index.frames == 68  # only 68 frames exist
    everything = read_all_frames(tree_avi)
    assert everything.shape == (68, 240, 320, 3)
    sampled = read_video_frames(tree_avi, 8)
    assert sampled.shape == (8, 240, 320, 3) and _distinct(sampled) == 8
    np.testing.assert_array_equal(sampled, everything[[0, 9, 19, 28, 38, 47, 57, 67]])


def test_more_frames_than_exist_is_an_error_naming_the_file(tree_avi):
    with pytest.raises(VideoFileError, match="cannot sample 100 distinct frames from 68") as err:
        read_video_frames(tree_avi, 100)
    assert str(tree_avi) in str(err.value)


def test_frames_come_with_their_times(cup_mp4):
    index = probe_video(cup_mp4)
    times = index.timestamps_us()
    assert times[0] == 0 and np.all(np.diff(times) > 0)
    assert abs(index.duration_us - 8_104_000) < 40_000  # 8.1 s
    window = list(iter_video_frames(cup_mp4, 1_000_000, 1_500_000))
    got = [t for t, _ in window]
    expected = times[(times >= 1_000_000) & (times < 1_500_000)]
    assert abs(len(got) - len(expected)) <= 1 and all(1_000_000 <= t < 1_500_000 for t in got)


# --------------------------------------------------------------------------- bad files


def test_missing_empty_and_non_video_files(tmp_path):
    with pytest.raises(VideoFileError, match="does not exist"):
        probe_video(tmp_path / "nope.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoFileError, match="is empty"):
        probe_video(tmp_path / "empty.mp4")
    (tmp_path / "text.mp4").write_text("hello, not a video\n")
    with pytest.raises(VideoFileError, match="FFmpeg cannot open it") as err:
        read_video_frames(tmp_path / "text.mp4")
    assert str(tmp_path / "text.mp4") in str(err.value)


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "tone.wav"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    with pytest.raises(VideoFileError, match="has no video stream"):
        read_video_frames(path)


def test_truncated_mp4_and_avi_are_refused(tmp_path, cup_mp4, tree_avi):
    for source, size in ((cup_mp4, 800_000), (tree_avi, 600_000)):
        cut = tmp_path / f"cut{source.suffix}"
        cut.write_bytes(source.read_bytes()[:size])
        with pytest.raises(VideoFileError, match="truncated") as err:
            read_video_frames(cut)
        assert str(cut) in str(err.value)
    header_only = tmp_path / "header_only.mp4"
    header_only.write_bytes(cup_mp4.read_bytes()[:20_000])  # sample table, no frame data
    with pytest.raises(VideoFileError, match="no decodable video frames"):
        read_video_frames(header_only)


def test_corrupt_frame_data_is_refused(tmp_path, cup_mp4):
    data = bytearray(cup_mp4.read_bytes())
    data[300_000:700_000] = np.random.default_rng(0).integers(0, 256, 400_000, dtype=np.uint8).tobytes()
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(bytes(data))
    with pytest.raises(VideoFileError, match="corrupt"):
        read_video_frames(path)


# --------------------------------------------------------------------------- writing


def test_write_mp4_keeps_frame_count_and_times(tmp_path):
    rng = np.random.default_rng(0)
    times = [0, 40_000, 80_000, 200_000, 240_000, 280_000, 320_000, 360_000, 400_000, 440_000]  # a gap: VFR
    frames = [(t, rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for t in times]
    path = tmp_path / "out.mp4"
    assert write_mp4(path, frames, fps=25) == 10
    index = probe_video(path)
    assert index.frames == 10 and index.codec == "h264" and (index.width, index.height) == (64, 48)
    np.testing.assert_allclose(index.timestamps_us(), times, atol=20)
    assert read_video_frames(path, 8).shape == (8, 48, 64, 3)
    with pytest.raises(ValueError, match="even"):
        write_mp4(tmp_path / "odd.mp4", [(0, np.zeros((5, 6, 3), np.uint8))])
    with pytest.raises(ValueError, match="increase"):
        write_mp4(tmp_path / "back.mp4", [(10, np.zeros((4, 4, 3), np.uint8)), (5, np.zeros((4, 4, 3), np.uint8))])


def test_remux_clip_copies_the_first_seconds_without_reencoding(tmp_path, cup_mp4):
    """What the clip-length benchmarks build their clips with (PyAV >= 14: add_stream_from_template)."""
    source = probe_video(cup_mp4)
    written = remux_clip(cup_mp4, tmp_path / "cup_2s.mp4", 2_000_000)
    clip = probe_video(tmp_path / "cup_2s.mp4")
    assert 0 < written == clip.frames < source.frames
    assert clip.codec == source.codec and (clip.width, clip.height) == (source.width, source.height)
    assert clip.timestamps_us()[-1] < 2_000_000 <= clip.timestamps_us()[-1] + 2 * (clip.timestamps_us()[1] - clip.timestamps_us()[0])
    with pytest.raises(ValueError, match="positive"):
        remux_clip(cup_mp4, tmp_path / "none.mp4", 0)
