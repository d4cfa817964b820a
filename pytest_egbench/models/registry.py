"""Model names -> adapters, and the one function that loads a model."""

from __future__ import annotations

import importlib
import time

from ..options import KNOWN_MODELS
from .base import ModelAdapter, ModelSpec

#: ``--egbench-models`` name -> "module:class" of its adapter (imported when first asked for).
ADAPTERS: dict[str, str] = {
    "eventgpt": "eventgpt:EventGPTAdapter",
    "video_llava": "llava:VideoLlavaAdapter",
    "llava": "llava:LlavaAdapter",
    # the generic transformers adapter (hf_generic.py, issue 15): LLaVA-1.5 and Video-LLaVA as a
    # check on the hand-written ones, Qwen2-VL-2B and LLaVA-OneVision-0.5B shapes
    "hf_llava": "hf_generic:HFLlavaAdapter",
    "hf_video_llava": "hf_generic:HFVideoLlavaAdapter",
    "qwen2_vl": "hf_generic:Qwen2VLAdapter",
    "llava_onevision": "hf_generic:LlavaOnevisionAdapter",
}
assert tuple(ADAPTERS) == KNOWN_MODELS, "every known model needs an adapter"


def adapter_class(name: str) -> type[ModelAdapter]:
    """The adapter class of model ``name``; ``ValueError`` for an unknown name."""
    if name not in ADAPTERS:
        raise ValueError(f"unknown model {name!r}: known are {', '.join(ADAPTERS)}")
    module, _, cls = ADAPTERS[name].partition(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), cls)


def load_model(spec: ModelSpec) -> ModelAdapter:
    """Load ``spec`` (dummy weights, or ``spec.checkpoint``) and record ``load_seconds``
    (wall time, including the device work: a CUDA device is synchronised at the end)."""
    import torch

    start = time.perf_counter()
    adapter = adapter_class(spec.name).load(spec)
    if adapter.device.type == "cuda":
        torch.cuda.synchronize(adapter.device)
    adapter.load_seconds = time.perf_counter() - start
    return adapter
