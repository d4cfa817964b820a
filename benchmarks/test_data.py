"""The data layer, timed: stage 1 (load) and the event-frame part of stage 2 (render).

Groups: ``data.events`` (event file and event-frame PNG reads), ``data.render``, ``data.video``,
``data.seek``. Each test runs once per selected sample it can use (``egbench_sample``).

* ``test_event_load``: read and validate one sample's event file (``read_events``).
* ``test_event_render``: EventGPT's event frames (1 and 5) from the loaded events; the rate in
  events per second is recorded as ``events_per_s`` (a throughput metric, one value per round).
* ``test_event_image_load``: read the sample's event-frame PNGs (the LLaVA image path).
* ``test_video_load``: Video-LLaVA's 8 frames from the sample's MP4: count frames by demuxing,
  seek, decode only the sampled frames.
* ``test_video_seek_vs_decode_all``: the same 8 frames two ways on long clips, each round
  timing ``decode_sampled`` (seek) and ``decode_all`` (decode every frame, the origin's way);
  ``decoded_frames`` in extra_info says how much work each did. The clips: cup.mp4 (8.1 s, 217
  frames, from ``data/sources``) and cup.mp4 concatenated 4 times by remuxing (32 s, 868 frames).
  Decoding everything costs about 1.3 s a round on one CPU core for the long clip, so this test
  runs at most 3 steady rounds after the cold one.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

pytestmark = pytest.mark.egbench(group="data")

SOURCES = Path(__file__).resolve().parents[1] / "data" / "sources"


def _time_load(stage_timer, load):
    """Run ``load()`` as the ``load`` stage of every round; returns the last result."""
    for rnd in stage_timer.rounds():
        with rnd.stage("load"):
            result = load()
    return result


@pytest.mark.egbench(group="data.events")
@pytest.mark.egbench_needs("events")
def test_event_load(stage_timer, egbench_sample):
    from pytest_egbench.data.events import read_events

    path = egbench_sample.event_path
    events = _time_load(stage_timer, lambda: read_events(path))
    stage_timer.extra_info.update(sample=egbench_sample.id, events=len(events), file_bytes=path.stat().st_size)


@pytest.mark.egbench(group="data.render", stages=["render"], metrics=["events_per_s"])
@pytest.mark.egbench_needs("events")
@pytest.mark.parametrize("frames", [1, 5])
def test_event_render(stage_timer, egbench_sample, egbench_record, frames):
    from pytest_egbench.data.events import read_events
    from pytest_egbench.data.frames import event_frames

    events = read_events(egbench_sample.event_path)
    width, height = events.sensor
    for rnd in stage_timer.rounds():
        with rnd.stage("render"):
            images = event_frames(events, frames)
    assert images.shape == (frames, height, width, 3)

    rates = [len(events) / (ns * 1e-9) for ns in stage_timer.results().steady["render"]]
    stage_timer.extra_info.update(sample=egbench_sample.id, events=len(events), events_per_s=statistics.median(rates))
    egbench_record("events_per_s", rates, unit="events/s", kind="throughput", stage="render", **stage_timer.extra_info)


@pytest.mark.egbench(group="data.events")
@pytest.mark.egbench_needs("event_image")
def test_event_image_load(stage_timer, egbench_sample):
    from pytest_egbench.data.frames import read_pngs

    paths = egbench_sample.event_image_paths
    images = _time_load(stage_timer, lambda: read_pngs(paths))
    stage_timer.extra_info.update(sample=egbench_sample.id, images=len(images))


@pytest.mark.egbench(group="data.video")
@pytest.mark.egbench_needs("video")
def test_video_load(stage_timer, egbench_sample):
    from pytest_egbench.data.video import read_video_frames

    path = egbench_sample.mp4_path
    stats: dict[str, int] = {}
    frames = _time_load(stage_timer, lambda: read_video_frames(path, 8, stats=stats))
    assert frames.shape[0] == 8
    stage_timer.extra_info.update(sample=egbench_sample.id, decoded_frames=stats["decoded"], seeks=stats["seeks"])


def _remux_repeated(source: Path, target: Path, times: int) -> Path:
    """``source``'s video packets ``times`` over, timestamps shifted, no re-encoding (milliseconds)."""
    import av

    with av.open(str(source)) as inp, av.open(str(target), "w", format="mp4") as out:
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream)
        for k in range(times):
            inp.seek(0)
            for packet in inp.demux(stream):
                if packet.dts is None:  # the demuxer's final empty packet
                    continue
                packet.pts += k * stream.duration
                packet.dts += k * stream.duration
                packet.stream = copy
                out.mux(packet)
    return target


@pytest.fixture(scope="module")
def long_clips(tmp_path_factory):
    cup = SOURCES / "cup.mp4"
    if not cup.is_file():
        pytest.skip(f"{cup} is not here (the long clips come from the repository's data/sources)")
    return {"cup_8s": cup, "cup_x4_32s": _remux_repeated(cup, tmp_path_factory.mktemp("clips") / "cup_x4.mp4", 4)}


@pytest.mark.egbench(group="data.seek", stages=["decode_sampled", "decode_all"])
@pytest.mark.parametrize("clip", ["cup_8s", "cup_x4_32s"])
def test_video_seek_vs_decode_all(stage_timer, egbench_settings, long_clips, clip):
    import numpy as np

    from pytest_egbench.data.video import read_video_frames

    path = long_clips[clip]
    seek_stats: dict[str, int] = {}
    all_stats: dict[str, int] = {}
    for rnd in stage_timer.rounds(rounds=min(egbench_settings.rounds, 3), warmup=0):
        with rnd.stage("decode_sampled"):
            sampled = read_video_frames(path, 8, stats=seek_stats)
        with rnd.stage("decode_all"):
            everything = read_video_frames(path, 8, seek=False, stats=all_stats)
    assert np.array_equal(sampled, everything)  # the same 8 frames either way
    results = stage_timer.results()
    speedup = statistics.median(results.steady["decode_all"]) / statistics.median(results.steady["decode_sampled"])
    stage_timer.extra_info.update(clip=clip, decoded_frames_sampled=seek_stats["decoded"], decoded_frames_all=all_stats["decoded"], speedup=speedup)
