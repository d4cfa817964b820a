"""From a dataset sample (files) to a model's input arrays: the data side of stages 1 and 2.

What a model reads is its adapter's declared :attr:`~pytest_egbench.models.base.ModelAdapter.input_kind`
(:data:`~pytest_egbench.models.base.INPUT_KINDS`); nothing here is per model.

Stage 1 (**load**, :func:`load_sample`): read what the input kind needs from disk into host memory --
the event file (``event_stream``), the pre-rendered event PNGs (``event_images``) or the sampled MP4
frames (``video``, ``images``). Stage 2 begins with :func:`visual_input`: an event stream is rendered
into event frames (docs/design.md#stages puts rendering in preprocess); other arrays are passed on as they are
(``images`` as separate images, the origin's "8 frames" run of LLaVA-1.5). The adapter's
``preprocess`` then does the image processor, tokenisation and host-to-device copy.
"""

from __future__ import annotations

from typing import Any

from .data.dataset import Sample
from .models.base import INPUT_KINDS, InputKind, VisualInput
from .models.registry import adapter_class


def input_kind(model: str) -> InputKind:
    """The :class:`~pytest_egbench.models.base.InputKind` that ``model``'s adapter declares.
    Raises ``ValueError`` for a model the registry does not know."""
    return INPUT_KINDS[adapter_class(model).input_kind]


def model_needs(model: str) -> str:
    """What ``model`` reads from a sample: a :meth:`Sample.lacks` need (``events``, ``video``,
    ``event_image``). Raises ``ValueError`` for an unknown model."""
    return input_kind(model).need


def load_sample(model: str, sample: Sample, frames: int) -> Any:
    """Stage 1 for ``model``: an ``EventStream`` (``event_stream``), ``[frames, H, W, 3]`` uint8
    RGB event images read from the sample's first ``frames`` PNGs (``event_images``), or
    ``[frames, H, W, 3]`` uint8 RGB video frames sampled uniformly (``video``, ``images``).

    Raises ``ValueError`` for an unknown model, a sample that lacks the input (the message is
    :meth:`Sample.lacks`'s) or has fewer event images than ``frames``, and the data layer's file
    errors for bad files.
    """
    kind = input_kind(model)
    reason = sample.lacks(kind.need)
    if reason:
        raise ValueError(reason)
    if kind.name == "event_stream":
        from .data.events import read_events

        event_path = sample.event_path
        if event_path is None:  # lacks() above found the field set
            raise RuntimeError(f"sample {sample.id}: no event_data although it was checked for {kind.need}")
        return read_events(event_path)
    if kind.name == "event_images":
        from .data.frames import read_pngs

        paths = sample.event_image_paths
        if len(paths) < frames:
            raise ValueError(f"sample {sample.id} has {len(paths)} event image(s); {model} asked for {frames}")
        return read_pngs(paths[:frames])
    from .data.video import read_video_frames

    video_path = sample.mp4_path or sample.video_path
    if video_path is None:  # lacks() above found one of them set
        raise RuntimeError(f"sample {sample.id}: no mp4_data or video_data although it was checked for {kind.need}")
    return read_video_frames(video_path, frames)


def visual_input(model: str, loaded: Any, frames: int, question: str) -> VisualInput:
    """The first part of stage 2: ``frames`` event frames ``[T, H, W, 3]`` rendered from an event
    stream (equal event counts per frame, as EventGPT splits); other arrays as they were loaded,
    in the :class:`VisualInput` field of ``model``'s input kind (``images``: a list of images).
    Raises ``ValueError`` for an unknown model."""
    kind = input_kind(model)
    if kind.name == "event_stream":
        from .data.frames import event_frames

        loaded = event_frames(loaded, frames)
    value = list(loaded) if kind.field == "images" else loaded
    field: dict[str, Any] = {kind.field: value}  # the field's name depends on the model
    return VisualInput(question=question, **field)
