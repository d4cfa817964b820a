"""Model sizes. ``7b``: the shapes of the public 7B checkpoints (docs/design.md#models);
``tiny``: the same architecture shrunk so that a CPU with two cores runs the suite in minutes.

The tiny LM keeps the real 32k LLaMA vocabulary so that token counts are the real ones.
"""

from __future__ import annotations

from typing import Any

#: LLaMA / Vicuna-7B language model shared by EventGPT, Video-LLaVA and LLaVA-1.5.
LLAMA_LM: dict[str, dict[str, Any]] = {
    "7b": dict(
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
    ),
    "tiny": dict(
        vocab_size=32000,
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
    ),
}

#: CLIP vision towers. ``7b``: ViT-L/14 (openai/clip-vit-large-patch14[-336], and LanguageBind's
#: towers of Video-LLaVA). Image and patch size are the model's, in both presets, so that the
#: number of visual tokens is the real one (577 at 336 px, 257 at 224 px).
CLIP_VISION: dict[str, dict[str, Any]] = {
    "7b": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, projection_dim=768),
    # head_dim 64 as in every CLIP ViT (EventGPT's checkpoint loader infers heads = hidden / 64)
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=1, projection_dim=32),
}
#: LLaVA-1.5-hf and Video-LLaVA-hf pad the LM vocabulary to 32064 rows (32000 + added tokens).
LLAVA_VOCAB = 32064


def _check(preset: str, table: dict[str, Any]) -> None:
    if preset not in table:
        raise ValueError(f"unknown preset {preset!r}: choose from {', '.join(table)}")


def llama_config(preset: str, **overrides: Any) -> Any:
    """``transformers.LlamaConfig`` of the LM for ``preset`` ("tiny" or "7b"); ``overrides``
    replace fields (e.g. ``vocab_size``).

    Raises ``ValueError`` for an unknown preset.
    """
    from transformers import LlamaConfig

    _check(preset, LLAMA_LM)
    return LlamaConfig(**{**LLAMA_LM[preset], "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, **overrides})


def clip_vision_config(preset: str, image_size: int) -> Any:
    """``transformers.CLIPVisionConfig`` for ``preset`` at ``image_size`` px, patch 14:
    ``(image_size / 14) ** 2 + 1`` tokens per image (CLS included).

    Raises ``ValueError`` for an unknown preset.
    """
    from transformers import CLIPVisionConfig

    _check(preset, CLIP_VISION)
    return CLIPVisionConfig(**CLIP_VISION[preset], image_size=image_size, patch_size=14, hidden_act="quick_gelu", layer_norm_eps=1e-5)


def llava_config(preset: str) -> Any:
    """``LlavaConfig`` of LLaVA-1.5 (llava-hf/llava-1.5-7b-hf for ``7b``): CLIP ViT-L/14 at 336 px,
    features of layer -2 without CLS (576 tokens an image), GELU MLP projector, ``<image>`` 32000."""
    from transformers import LlavaConfig

    return LlavaConfig(
        vision_config=clip_vision_config(preset, 336),
        text_config=llama_config(preset, vocab_size=LLAVA_VOCAB),
        image_token_index=32000,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_seq_length=576,
    )


def video_llava_config(preset: str) -> Any:
    """``VideoLlavaConfig`` of Video-LLaVA (LanguageBind/Video-LLaVA-7B-hf for ``7b``): CLIP
    ViT-L/14 towers at 224 px; a video frame keeps CLS (257 tokens, 2056 for 8 frames);
    ``<image>`` 32000, ``<video>`` 32001."""
    from transformers import VideoLlavaConfig

    return VideoLlavaConfig(
        vision_config=clip_vision_config(preset, 224),
        text_config=llama_config(preset, vocab_size=LLAVA_VOCAB),
        image_token_index=32000,
        video_token_index=32001,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_seq_length=256,
        video_seq_length=2056,
    )
