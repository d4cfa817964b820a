"""A worked example of a third-party adapter (docs/adapters.md): a LLaVA-1.5-shaped model
(transformers' ``LlavaForConditionalGeneration``, seeded dummy weights, the ``tiny`` or ``7b``
sizes of ``pytest_egbench.models.presets``) that reads a sample's pre-rendered event images.

Registered as ``example`` by this folder's ``conftest.py``; run with
``pytest --egbench --egbench-models example``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import DynamicCache, LlavaForConditionalGeneration

from pytest_egbench.models import presets
from pytest_egbench.models.base import Inputs, ModelAdapter, ModelSpec, VisualInput, check_frames
from pytest_egbench.models.generation import cache_kwargs, output_cache
from pytest_egbench.models.tokenization import IMAGE_TOKEN, IMAGE_TOKEN_ID


class ExampleAdapter(ModelAdapter):
    """LLaVA-1.5 on event images: each of T event-frame PNGs is one ``<image>`` of 576 tokens
    (336 px, patch 14, CLS dropped) in the ``7b`` shapes."""

    # ---- declarations: what the suite needs to know before loading anything
    name = "example"
    placeholder = IMAGE_TOKEN  # "<image>", one per event image in the prompt
    input_kind = "event_images"  # stage 1 reads the sample's event_image PNGs into VisualInput.events
    default_frames = 2  # event images per sample when a benchmark does not say

    # ---- load: build the model once
    @classmethod
    def load(cls, spec: ModelSpec) -> ExampleAdapter:
        if spec.checkpoint is not None:
            raise ValueError(f"{cls.name}: --egbench-checkpoint is not supported by this example (dummy weights only)")
        config = presets.llava_config(spec.preset)
        torch.manual_seed(spec.seed)
        # unquantised in the compute dtype of --egbench-quant (nf4 -> bfloat16): an example, not NF4
        model = LlavaForConditionalGeneration(config).to(spec.device, spec.quant_spec.compute_dtype).eval()
        return cls(model, spec, lm=model, text_config=config.text_config, vision_config=config.vision_config, fill_id=IMAGE_TOKEN_ID)

    # ---- stage 2 (preprocess) is the base class's: it calls these three
    def prompt(self, sample: VisualInput) -> str:
        n = 0 if sample.events is None else len(sample.events)
        return "USER: " + f"{IMAGE_TOKEN}\n" * n + f"{sample.question} ASSISTANT:"

    def frames(self, sample: VisualInput) -> list[np.ndarray]:
        if sample.events is None:
            raise ValueError("example needs sample.events: event images [T, H, W, 3] uint8")
        return list(check_frames(sample.events, "sample.events", 4))

    def visual_token_counts(self, n_frames: int) -> list[int]:
        return [self.patches] * n_frames

    # ---- stage 3: vision tower and projector, once
    def encode_vision(self, inputs: Inputs) -> torch.Tensor:
        with torch.inference_mode():
            out = self.model.model.get_image_features(pixel_values=inputs.pixel_values)
        features = getattr(out, "pooler_output", out)  # an output object in newer transformers
        if isinstance(features, (list, tuple)):
            features = torch.cat([f.reshape(-1, f.shape[-1]) for f in features])
        return features.reshape(-1, features.shape[-1])  # [V, hidden]

    # ---- stages 4 and 5 (prefill, decode) are the base class's; this is for the equality test
    @torch.inference_mode()
    def forward_whole(self, inputs: Inputs) -> tuple[torch.Tensor, Any]:
        cache = cache_kwargs(self.model, DynamicCache())
        out = self.model(input_ids=inputs.input_ids, pixel_values=inputs.pixel_values, **cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1], output_cache(out)
