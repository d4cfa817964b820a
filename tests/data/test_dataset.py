"""Dataset index, buckets, the builder (CLI included) and the bundled default set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pytest_egbench.data import build as build_module
from pytest_egbench.data.__main__ import main
from pytest_egbench.data.build import BuildOptions, build_dataset
from pytest_egbench.data.dataset import (
    DURATION_BUCKETS_MS,
    INDEX_NAME,
    Sample,
    bucket_label,
    bundled_dataset_dir,
    duration_bucket,
    load_dataset,
    write_index,
)
from pytest_egbench.data.errors import DatasetError
from pytest_egbench.data.events import read_events
from pytest_egbench.data.frames import event_frames, read_pngs
from pytest_egbench.data.video import probe_video, read_video_frames


def _index(folder: Path, entries) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / INDEX_NAME).write_text(json.dumps(entries))
    return folder


def test_duration_buckets():
    assert [duration_bucket(b) for b in DURATION_BUCKETS_MS] == list(DURATION_BUCKETS_MS)
    assert duration_bucket(49.6) is None and duration_bucket(480) == 500 and duration_bucket(1990) == 2000
    assert duration_bucket(4500) == 4000 and duration_bucket(25_000) == 20_000
    assert [bucket_label(b) for b in (500, 1000, 16000)] == ["500ms", "1s", "16s"]


def test_samples_resolve_paths_and_report_missing_files_by_id_and_field(tmp_path):
    root = _index(
        tmp_path / "ds",
        [
            {
                "id": "a",
                "split": "test",
                "event_data": "events/a.npz",
                "mp4_data": "mp4/a.mp4",
                "event_image": ["img/a_0.png"],
                "conversations": [{"from": "human", "value": "<event>\nWhat is here?"}],
            },
            {"id": "b", "event_data": "events/b.npy", "video_data": None, "mp4_data": None},
        ],
    )
    with pytest.raises(DatasetError) as err:
        load_dataset(root)
    text = str(err.value)
    for line in (
        "sample a: field event_data: events/a.npz does not exist",
        "sample a: field mp4_data: mp4/a.mp4 does not exist",
        "sample a: field event_image[0]: img/a_0.png does not exist",
        "sample b: field event_data: events/b.npy does not exist",
    ):
        assert line in text
    dataset = load_dataset(root, check_files=False)
    a, b = dataset.samples
    assert a.event_path == root / "events" / "a.npz" and a.mp4_path == root / "mp4" / "a.mp4"
    assert a.kind == "paired" and b.kind == "event" and a.question == "What is here?"
    assert b.lacks("video") == "sample b: event-only (no mp4_data), needs video"
    assert a.lacks("video") is None and b.lacks("events") is None


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"id": "a"}, "must hold a JSON list"),
        ([], "lists no samples"),
        (["text"], "entry 0: expected an object"),
        ([{"event_data": "e.npz"}], "entry 0: field id: missing"),
        ([{"id": "a", "event_data": "/etc/passwd"}], "sample a: field event_data: '/etc/passwd' must be a path inside"),
        ([{"id": "a", "event_data": "../x.npz"}], "must be a path inside the dataset folder"),
        ([{"id": "a", "event_data": 3}], "expected a relative path string"),
        ([{"id": "a"}], "sample a: names no data"),
        ([{"id": "a", "event_data": "e.npz"}, {"id": "a", "event_data": "e.npz"}], "sample a: field id: duplicate id"),
        ([{"id": "a", "event_data": "e.npz", "duration_ms": "long"}], "field duration_ms"),
    ],
)
def test_bad_indexes_are_refused_with_the_reason(tmp_path, entries, message):
    root = _index(tmp_path / "ds", entries)
    with pytest.raises(DatasetError, match=message):
        load_dataset(root, check_files=False)


def test_missing_folder_index_and_broken_json(tmp_path):
    with pytest.raises(DatasetError, match="is not a folder"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(DatasetError, match="has no index file"):
        load_dataset(tmp_path)
    (tmp_path / INDEX_NAME).write_text("[{")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_dataset(tmp_path)


def test_index_round_trip_keeps_extra_fields(tmp_path):
    sample = Sample(id="x", root=tmp_path, event_data="e.npz", event_image=("a.png",), duration_ms=1000.0, extra={"source": "cup.mp4"})
    write_index(tmp_path / INDEX_NAME, [sample])
    (back,) = load_dataset(tmp_path, check_files=False).samples
    assert back == sample and back.extra == {"source": "cup.mp4"} and back.bucket_ms == 1000


def test_selection_takes_the_first_n_of_each_kind(tmp_path):
    entries = [{"id": f"e{i}", "event_data": "e.npz"} for i in range(3)] + [{"id": f"p{i}", "event_data": "e.npz", "mp4_data": "v.mp4"} for i in range(3)]
    dataset = load_dataset(_index(tmp_path, entries), check_files=False)
    assert [s.id for s in dataset.select(1)] == ["e0", "p0"]
    assert [s.id for s in dataset.select(2)] == ["e0", "e1", "p0", "p1"]
    assert [s.id for s in dataset.select(4)] == ["e0", "e1", "e2", "p0", "p1", "p2"]


# --------------------------------------------------------------------------- the builder


def test_builder_makes_a_dataset_from_a_video_alone(tmp_path, cup_mp4, capsys):
    out = tmp_path / "ds"
    code = main(["build", str(out), "--video", str(cup_mp4), "--clip-ms", "500", "--max-clips", "2", "--frames", "3"])
    assert code == 0
    err = capsys.readouterr().err
    assert "[1/2] cup_0000" in err and "[2/2] cup_0001" in err and "2 samples (2 paired, 0 event-only)" in err
    dataset = load_dataset(out)  # every named file exists
    assert [s.id for s in dataset] == ["cup_0000", "cup_0001"]
    sample = dataset.samples[1]
    assert sample.kind == "paired" and sample.duration_ms == 500 and sample.bucket_ms == 500
    assert sample.extra["clip_start_ms"] == 500 and sample.question == "What are the key elements in this scene?"
    events = read_events(sample.event_path)
    assert events.sensor == (640, 480) and len(events) > 1000 and events.t_offset_us == 500_000
    assert 0 <= events.t[0] and events.t[-1] < 500_000
    video = probe_video(sample.mp4_path)
    assert video.codec == "h264" and 12 <= video.frames <= 15  # 26.8 fps x 0.5 s
    assert read_video_frames(sample.mp4_path, 8).shape == (8, 480, 640, 3)
    images = read_pngs(sample.event_image_paths)
    np.testing.assert_array_equal(images, event_frames(events, 3))
    with np.load(sample.event_path, allow_pickle=False) as npz:  # a safe file
        assert set(npz.files) == {"x", "y", "t", "p", "sensor_size", "t_offset"}


def test_builder_turns_event_files_into_safe_event_only_samples(tmp_path, dsec_npy):
    samples = build_dataset(tmp_path / "ds", BuildOptions(events=(dsec_npy,), frames=1))
    (sample,) = samples
    assert sample.kind == "event" and sample.mp4_data is None and sample.video_data is None
    assert sample.event_path.suffix == ".npz" and len(sample.event_image) == 1
    original, copied = read_events(dsec_npy), read_events(sample.event_path)
    np.testing.assert_array_equal(copied.t, original.t)
    assert read_pngs(sample.event_image_paths).shape == (1, 480, 640, 3)


def test_builder_keeps_a_whole_avi_by_reencoding_it(tmp_path, tree_avi):
    (sample,) = build_dataset(tmp_path / "ds", BuildOptions(videos=(tree_avi,), frames=2))
    assert sample.id == "tree" and sample.mp4_path.suffix == ".mp4"
    video = probe_video(sample.mp4_path)
    assert video.frames == 68 and video.codec == "h264" and (video.width, video.height) == (320, 240)


def test_builder_validates_every_input_before_writing(tmp_path, cup_mp4):
    bad_events = tmp_path / "bad.npy"
    bad_events.write_bytes(b"junk")
    out = tmp_path / "ds"
    with pytest.raises(DatasetError) as err:
        build_dataset(out, BuildOptions(videos=(cup_mp4, tmp_path / "missing.mp4"), events=(bad_events,), clip_ms=200))
    text = str(err.value)
    assert f"{bad_events}: not a .npy file" in text
    assert f"{tmp_path / 'missing.mp4'}: does not exist" in text
    assert "clip 0-200 ms holds 6 frame(s); each clip needs at least 8" in text  # 26.8 fps
    assert not out.exists() and list(tmp_path.iterdir()) == [bad_events]
    with pytest.raises(DatasetError, match="nothing to build"):
        build_dataset(out, BuildOptions())
    with pytest.raises(DatasetError, match="shorter than one 60000 ms clip"):
        build_dataset(out, BuildOptions(videos=(cup_mp4,), clip_ms=60_000))


def test_builder_refuses_a_non_empty_folder_unless_forced(tmp_path, dsec_npy, capsys):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["build", str(out), "--events", str(dsec_npy), "--quiet"]) == 2
    assert "exists and is not empty: pass --force" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    assert main(["build", str(out), "--events", str(dsec_npy), "--quiet", "--force"]) == 0
    assert not (out / "keep.txt").exists() and (out / INDEX_NAME).exists()
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no temporary folders left


def test_a_failure_while_writing_leaves_the_output_untouched(tmp_path, cup_mp4, monkeypatch):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "old.txt").write_text("old")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(build_module, "write_mp4", broken)
    with pytest.raises(OSError, match="disk full"):
        build_dataset(out, BuildOptions(videos=(cup_mp4,), clip_ms=500, max_clips=1), force=True)
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_cli_check_and_bad_arguments(tmp_path, capsys):
    assert main(["check", str(bundled_dataset_dir())]) == 0
    assert "2 samples, 0 problem(s)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["build", str(tmp_path / "x"), "--frames", "0"])
    assert "below the minimum" in capsys.readouterr().err


# --------------------------------------------------------------------------- bundled set


def test_bundled_set_is_complete_with_its_provenance():
    root = bundled_dataset_dir()
    dataset = load_dataset(root)
    assert [(s.id, s.kind) for s in dataset] == [("dsec_sample1_50ms", "event"), ("cup_0000", "paired")]
    provenance = (root / "PROVENANCE.md").read_text()
    assert "CC BY-SA 4.0" in provenance and "Apache-2.0" in provenance and "DSEC" in provenance
    dsec, cup = dataset.samples
    assert len(read_events(dsec.event_path)) == 132_268
    assert read_video_frames(cup.mp4_path, 8).shape == (8, 480, 640, 3)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size < 4_000_000
    assert [s.id for s in dataset.select(1)] == ["dsec_sample1_50ms", "cup_0000"]
