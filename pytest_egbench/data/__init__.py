"""The data layer: event streams, event frames, video, simulated events and the dataset index.

Modules (each imports only what it needs; importing this package imports nothing heavy, names
below load their module on first use):

* :mod:`.events` -- read/validate/write event streams (``.npy`` read safely, ``.npz``, DSEC HDF5).
* :mod:`.frames` -- EventGPT's event frames (equal event count, or fixed time windows), PNG I/O.
* :mod:`.video` -- PyAV: count the frames that exist, sample N uniformly, decode only those.
* :mod:`.simulate` -- ESIM / v2e style events from video frames.
* :mod:`.dataset` -- ``EventGPT_Instruction_Subset.json`` index, :class:`Sample`, buckets.
* :mod:`.build` -- the dataset builder behind ``python -m pytest_egbench.data build``.

Errors are :mod:`.errors` types, all ``ValueError`` subclasses naming the file and the problem.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "errors": ("DataFileError", "EventFileError", "VideoFileError", "DatasetError", "MissingDependencyError"),
    "events": (
        "SensorSize",
        "DSEC_SENSOR",
        "EventStream",
        "events_from_arrays",
        "read_events",
        "read_dsec_h5",
        "write_events_npz",
        "safe_unpickle",
        "RestrictedUnpickler",
    ),
    "frames": ("event_chunk_bounds", "render_event_frame", "event_frames", "event_frames_by_time", "time_window_bounds", "write_png", "read_png", "read_pngs"),
    "video": ("VideoIndex", "probe_video", "sample_frame_indices", "read_video_frames", "read_all_frames", "iter_video_frames", "write_mp4"),
    "simulate": ("EventSimulator", "simulate_events", "log_intensity"),
    "dataset": (
        "Sample",
        "Dataset",
        "load_dataset",
        "write_index",
        "duration_bucket",
        "bucket_label",
        "bundled_dataset_dir",
        "DURATION_BUCKETS_MS",
        "INDEX_NAME",
    ),
    "build": ("BuildOptions", "build_dataset"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
