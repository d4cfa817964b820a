"""From a dataset sample (files) to a model's input arrays: the data side of stages 1 and 2.

Stage 1 (**load**, :func:`load_sample`): read what the model needs from disk into host memory --
the event file for EventGPT (raw events), the sampled MP4 frames for Video-LLaVA and LLaVA-1.5.
Stage 2 begins with :func:`visual_input`: EventGPT's event frames are rendered from the raw
events (DESIGN.md puts rendering in preprocess); video frames are passed on as they are (LLaVA-1.5
takes them as separate images, the origin's "8 frames" run). The adapter's ``preprocess`` then
does the image processor, tokenisation and host-to-device copy.
"""

from __future__ import annotations

from typing import Any

from .data.dataset import Sample
from .models.base import VisualInput

#: What each model reads from a sample (a :meth:`Sample.lacks` need).
MODEL_NEEDS = {"eventgpt": "events", "video_llava": "video", "llava": "video"}
#: The generic transformers adapter's models (models/hf_generic.py) read the video too: as a
#: video (hf_video_llava) or its frames as images (the others).
MODEL_NEEDS.update(hf_llava="video", hf_video_llava="video", qwen2_vl="video", llava_onevision="video")


def load_sample(model: str, sample: Sample, frames: int) -> Any:
    """Stage 1 for ``model``: an ``EventStream`` (EventGPT) or ``[frames, H, W, 3]`` uint8 RGB video
    frames sampled uniformly (Video-LLaVA, LLaVA-1.5).

    Raises ``ValueError`` for an unknown model or a sample that lacks the input (the message is
    :meth:`Sample.lacks`'s), and the data layer's file errors for bad files.
    """
    from .data.events import read_events
    from .data.video import read_video_frames

    need = MODEL_NEEDS.get(model)
    if need is None:
        raise ValueError(f"unknown model {model!r}: known are {', '.join(MODEL_NEEDS)}")
    reason = sample.lacks(need)
    if reason:
        raise ValueError(reason)
    if need == "events":
        return read_events(sample.event_path)
    return read_video_frames(sample.mp4_path or sample.video_path, frames)


def visual_input(model: str, loaded: Any, frames: int, question: str) -> VisualInput:
    """The first part of stage 2: EventGPT's ``frames`` event frames ``[T, H, W, 3]`` rendered
    from the events (equal event counts per frame, as EventGPT splits); video frames as the video
    (Video-LLaVA) or as a list of images (LLaVA-1.5)."""
    if model == "eventgpt":
        from .data.frames import event_frames

        return VisualInput(question=question, events=event_frames(loaded, frames))
    if model in ("video_llava", "hf_video_llava"):
        return VisualInput(question=question, video=loaded)
    if model in MODEL_NEEDS:
        return VisualInput(question=question, images=list(loaded))
    raise ValueError(f"unknown model {model!r}: known are {', '.join(MODEL_NEEDS)}")
