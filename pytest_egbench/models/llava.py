"""LLaVA-1.5 (``LlavaForConditionalGeneration``) and Video-LLaVA
(``VideoLlavaForConditionalGeneration``) behind the five-stage interface (docs/design.md#models).

* LLaVA-1.5: CLIP ViT-L/14 at 336 px, features of layer -2 without CLS: 576 tokens an image;
  prompt ``USER: <image>\\n ... <image>\\n{question} ASSISTANT:`` (one ``<image>\\n`` per image).
  With 8 images and the default question: 35 text tokens + 8 x 576 = 4643.
* Video-LLaVA: 8 frames at 224 px through the video tower, CLS kept: 257 tokens a frame, 2056
  for 8; prompt ``USER: <video>\\n{question} ASSISTANT:``: 21 text tokens + 2056 = 2077.

Dummy weights are built on the meta device and filled on the target device
(:mod:`.weights`); real checkpoints in the Hugging Face layout load with ``from_pretrained``
from a local folder (``local_files_only``, no remote code), quantised by transformers as they
load, with the same modules left unquantised as for dummy weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from . import presets
from .base import Inputs, ModelAdapter, ModelSpec, VisualInput, check_frames
from .generation import cache_kwargs, output_cache
from .tokenization import IMAGE_TOKEN, IMAGE_TOKEN_ID, VIDEO_TOKEN, VIDEO_TOKEN_ID
from .weights import RandomWeights, build_empty, materialise


def _features(output: Any) -> torch.Tensor:
    """The projected features ``[V, hidden]`` from ``get_image_features``/``get_video_features``:
    a tensor, a list of per-image tensors (transformers 5.17) or an output whose
    ``pooler_output`` holds either (transformers >= 5)."""
    features = getattr(output, "pooler_output", output)
    if isinstance(features, (list, tuple)):
        features = torch.cat([f.reshape(-1, f.shape[-1]) for f in features])
    return features.reshape(-1, features.shape[-1])


class _HFLlavaAdapter(ModelAdapter):
    """Shared loading for the two transformers LLaVA families."""

    model_class: ClassVar[str]
    token_id: ClassVar[int]
    #: config attribute holding the placeholder's token id
    token_attribute: ClassVar[str]
    #: modules transformers must leave unquantised (besides the LLaMA decoder, everything)
    skip_modules: ClassVar[tuple[str, ...]]
    #: the preset's config (a function of the preset name)
    build_config: ClassVar[staticmethod[[str], Any]]
    #: the method of the base model (``model.model``) giving projected visual features
    features_method: ClassVar[str]

    def pixel_kwargs(self, inputs: Inputs) -> dict[str, torch.Tensor]:
        """The model's keyword argument for ``inputs.pixel_values``."""
        raise NotImplementedError

    def encode_vision(self, inputs: Inputs) -> torch.Tensor:
        with torch.inference_mode():
            return _features(getattr(self.model.model, self.features_method)(**self.pixel_kwargs(inputs)))

    @torch.inference_mode()
    def forward_whole(self, inputs: Inputs) -> tuple[torch.Tensor, Any]:
        from transformers import DynamicCache

        cache = cache_kwargs(self.model, DynamicCache())
        out = self.model(input_ids=inputs.input_ids, **self.pixel_kwargs(inputs), **cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1], output_cache(out)

    @classmethod
    def load(cls, spec: ModelSpec) -> _HFLlavaAdapter:
        import transformers

        model_class = getattr(transformers, cls.model_class)
        quant = spec.quant_spec
        if spec.checkpoint is not None:
            model = cls._from_folder(model_class, Path(spec.checkpoint), spec)
        else:
            config = cls.build_config(spec.preset)
            model = build_empty(lambda: model_class._from_config(config, dtype=quant.compute_dtype), spec.device)
            model = materialise(model, spec.device, quant, RandomWeights(spec.seed))
        config = model.config
        return cls(model, spec, lm=model, text_config=config.text_config, vision_config=config.vision_config, fill_id=cls.token_id)

    @classmethod
    def _from_folder(cls, model_class: Any, folder: Path, spec: ModelSpec) -> Any:
        quant = spec.quant_spec
        if not (folder / "config.json").is_file():
            raise ValueError(f"{cls.name} checkpoint {folder}: no config.json (expected a Hugging Face model folder)")
        # a device_map needs accelerate (the gpu extra), which loading onto the CPU does not
        placement = {} if torch.device(spec.device).type == "cpu" else {"device_map": {"": str(spec.device)}}
        model = model_class.from_pretrained(
            folder,
            dtype=quant.compute_dtype,
            quantization_config=quant.bnb_config(cls.skip_modules),
            local_files_only=True,
            trust_remote_code=False,
            **placement,
        ).eval()
        found = getattr(model.config, cls.token_attribute)
        if found != cls.token_id:
            raise ValueError(
                f"{cls.name} checkpoint {folder}: config {cls.token_attribute} is {found}, the bundled tokenizer's {cls.placeholder} is {cls.token_id}"
            )
        return model


class LlavaAdapter(_HFLlavaAdapter):
    """LLaVA-1.5; a sample carries ``images``, a sequence of ``[H, W, 3]`` uint8 arrays."""

    name = "llava"
    placeholder = IMAGE_TOKEN
    input_kind = "images"
    #: 1 image, as in the origin runs
    default_frames = 1
    model_class = "LlavaForConditionalGeneration"
    token_id = IMAGE_TOKEN_ID
    token_attribute = "image_token_id"
    skip_modules = ("lm_head", r"(?:model\.)?vision_tower", r"(?:model\.)?multi_modal_projector")
    build_config = staticmethod(presets.llava_config)
    features_method = "get_image_features"

    def prompt(self, sample: VisualInput) -> str:
        return "USER: " + f"{IMAGE_TOKEN}\n" * len(sample.images or ()) + f"{sample.question} ASSISTANT:"

    def frames(self, sample: VisualInput) -> list[np.ndarray]:
        if not sample.images:
            raise ValueError("LLaVA-1.5 needs sample.images: one or more [H, W, 3] uint8 arrays")
        return [check_frames(image, f"sample.images[{i}]", 3) for i, image in enumerate(sample.images)]

    def visual_token_counts(self, n_frames: int) -> list[int]:
        return [self.patches] * n_frames

    def pixel_kwargs(self, inputs: Inputs) -> dict[str, torch.Tensor]:
        return {"pixel_values": inputs.pixel_values}


class VideoLlavaAdapter(_HFLlavaAdapter):
    """Video-LLaVA; a sample carries ``video``, frames ``[N, H, W, 3]`` uint8 (N = 8)."""

    name = "video_llava"
    placeholder = VIDEO_TOKEN
    input_kind = "video"
    #: 8 video frames, as in the origin runs
    default_frames = 8
    model_class = "VideoLlavaForConditionalGeneration"
    token_id = VIDEO_TOKEN_ID
    token_attribute = "video_token_id"
    skip_modules = ("lm_head", r"(?:model\.)?image_tower", r"(?:model\.)?video_tower", r"(?:model\.)?multi_modal_projector")
    build_config = staticmethod(presets.video_llava_config)
    features_method = "get_video_features"

    def prompt(self, sample: VisualInput) -> str:
        return f"USER: {VIDEO_TOKEN}\n{sample.question} ASSISTANT:"

    def frames(self, sample: VisualInput) -> list[np.ndarray]:
        if sample.video is None:
            raise ValueError("Video-LLaVA needs sample.video: frames [N, H, W, 3] uint8")
        return list(check_frames(sample.video, "sample.video", 4))

    def visual_token_counts(self, n_frames: int) -> list[int]:
        return [n_frames * (self.patches + 1)]

    def pixel_kwargs(self, inputs: Inputs) -> dict[str, torch.Tensor]:
        return {"pixel_values_videos": inputs.pixel_values.unsqueeze(0)}
