"""Clip duration: the load stage of an 8-frame sample must not grow with the clip's length.

Clips of 1, 2, 4 and 8 s are cut from the real ``cup.mp4`` (OpenCV samples, 8.1 s, one key frame a
second, see ``data/sources/PROVENANCE.md``) by copying its packets, without re-encoding, so the
clips keep the source's key frames (an H.264 re-encode with the encoder's default 250-frame key
interval would make every clip one group of pictures and force decoding from the start). Loading samples 8 frames
uniformly and decodes only those (and the frames back to each one's key frame): the frames
decoded are an exact metric, bounded by 8 x the longest key-frame interval whatever the length,
and the load time is judged like any latency. The origin decoded every frame, so its "load" grew
with the clip.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.egbench(group="clip_duration")

SOURCE = Path(__file__).resolve().parents[1] / "data" / "sources" / "cup.mp4"
DURATIONS_S = (1, 2, 4, 8)


@pytest.fixture(scope="module")
def clips(tmp_path_factory, egbench_session):
    from pytest_egbench.data.video import remux_clip

    if not SOURCE.is_file():
        pytest.skip(f"{SOURCE} is not here (a source checkout has it; an installed package does not)")
    out = tmp_path_factory.mktemp("clips")
    paths = {}
    for seconds in DURATIONS_S:
        paths[seconds] = out / f"cup_{seconds}s.mp4"
        remux_clip(SOURCE, paths[seconds], seconds * 1_000_000)
    return paths


@pytest.mark.parametrize("seconds", DURATIONS_S)
def test_load_does_not_grow_with_clip_length(stage_timer, egbench_record, clips, seconds):
    from pytest_egbench.data.video import probe_video, read_video_frames

    path = clips[seconds]
    index = probe_video(path)
    stage_timer.extra_info.update(model="video (8 frames)", clip_s=seconds, clip_frames=index.frames)
    stats: dict[str, int] = {}
    for rnd in stage_timer.rounds():
        with rnd.stage("load"):
            frames = read_video_frames(path, 8, stats=stats)
    assert frames.shape[0] == 8
    keys = [i for i, k in enumerate(index.key) if k] + [index.frames]
    longest_gop = max(b - a for a, b in zip(keys, keys[1:]))
    assert stats["decoded"] <= 8 * longest_gop, f"decoded {stats['decoded']} frames of {index.frames} for 8 samples"
    egbench_record("frames_decoded", stats["decoded"], unit="frames", kind="exact", model="video (8 frames)", clip_frames=index.frames)
