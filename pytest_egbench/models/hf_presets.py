"""Shapes of public image-text-to-text checkpoints for the generic transformers adapter
(:mod:`.hf_generic`): ``real`` is the checkpoint's ``config.json`` (shapes only; weights are dummy),
``tiny`` the same architecture shrunk as :mod:`.presets` shrinks the LLaMA models (hidden 64, two
layers) with the vision tower's image and patch sizes kept, so that visual token counts stay the
real ones.

Token ids: with dummy weights the prompt is tokenised by a stand-in tokenizer (the bundled LLaMA
32k vocabulary plus the family's special tokens, :func:`.hf_generic.standin_tokenizer`), so the
configs' placeholder ids are set to that tokenizer's ids when the model is built; the embedding
shapes stay the checkpoint's.
"""

from __future__ import annotations

from typing import Any

from . import presets

#: Qwen/Qwen2-VL-2B-Instruct,
#: https://huggingface.co/Qwen/Qwen2-VL-2B-Instruct/blob/main/config.json (2,208,985,600 parameters)
QWEN2_VL_2B: dict[str, Any] = dict(
    model_type="qwen2_vl",
    text_config=dict(
        vocab_size=151936,
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]},
        tie_word_embeddings=True,
    ),
    vision_config=dict(depth=32, embed_dim=1280, mlp_ratio=4, num_heads=16, hidden_size=1536, patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
    tie_word_embeddings=True,
)

#: llava-hf/llava-onevision-qwen2-0.5b-ov-hf,
#: https://huggingface.co/llava-hf/llava-onevision-qwen2-0.5b-ov-hf/blob/main/config.json
#: (SigLIP so400m-patch14-384 tower, Qwen2-0.5B LM; 894 M parameters)
ONEVISION_05B: dict[str, Any] = dict(
    model_type="llava_onevision",
    text_config=dict(
        model_type="qwen2",
        vocab_size=152000,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        tie_word_embeddings=True,
    ),
    vision_config=dict(
        model_type="siglip_vision_model",
        hidden_size=1152,
        intermediate_size=4304,
        num_hidden_layers=26,
        num_attention_heads=16,
        image_size=384,
        patch_size=14,
        vision_use_head=False,
    ),
    projector_hidden_act="gelu",
    vision_feature_layer=-1,
    vision_feature_select_strategy="full",
    vision_aspect_ratio="anyres_max_9",
    image_grid_pinpoints=[[384 * h, 384 * w] for h in range(1, 7) for w in range(1, 7)],
    tie_word_embeddings=True,
)

#: llava-hf/llava-v1.6-mistral-7b-hf (LLaVA-NeXT),
#: https://huggingface.co/llava-hf/llava-v1.6-mistral-7b-hf/blob/main/config.json
#: (CLIP ViT-L/14-336 tower, Mistral-7B LM, any-res grids up to 672 x 672; 7.57 B parameters)
LLAVA_NEXT_MISTRAL_7B: dict[str, Any] = dict(
    model_type="llava_next",
    text_config=dict(
        model_type="mistral",
        vocab_size=32064,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=32768,
        rms_norm_eps=1e-5,
        rope_theta=1000000.0,
        sliding_window=None,
    ),
    vision_config=dict(model_type="clip_vision_model", **presets.CLIP_VISION["7b"], image_size=336, patch_size=14),  # CLIP ViT-L/14-336
    projector_hidden_act="gelu",
    vision_feature_layer=-2,
    vision_feature_select_strategy="default",
    image_grid_pinpoints=[[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
    use_image_newline_parameter=True,
    tie_word_embeddings=False,
)

#: Qwen/Qwen2.5-VL-3B-Instruct,
#: https://huggingface.co/Qwen/Qwen2.5-VL-3B-Instruct/blob/main/config.json (3.75 B parameters):
#: Qwen2-VL's layout with a SwiGLU / RMSNorm tower that attends within 112 px windows except in
#: the ``fullatt_block_indexes`` blocks
QWEN2_5_VL_3B: dict[str, Any] = dict(
    model_type="qwen2_5_vl",
    text_config=dict(
        vocab_size=151936,
        hidden_size=2048,
        intermediate_size=11008,
        num_hidden_layers=36,
        num_attention_heads=16,
        num_key_value_heads=2,
        max_position_embeddings=128000,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]},
        tie_word_embeddings=True,
    ),
    vision_config=dict(
        depth=32,
        hidden_size=1280,
        intermediate_size=3420,
        num_heads=16,
        out_hidden_size=2048,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        fullatt_block_indexes=[7, 15, 23, 31],
        tokens_per_second=2,
    ),
    tie_word_embeddings=True,
)

#: The tiny shrink of each family: LM and tower widths and depths, vocabulary (the stand-in
#: tokenizer's 32k ids fit), image and patch sizes untouched.
_TINY_TEXT = dict(
    vocab_size=presets.LLAVA_VOCAB,
    hidden_size=64,
    intermediate_size=176,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    bos_token_id=1,
    eos_token_id=2,
)
_TINY_VISION: dict[str, dict[str, Any]] = {
    # head_dim 16, mrope sections of head_dim/2 = 8 rotary pairs: [2, 3, 3]
    "qwen2_vl": dict(depth=2, embed_dim=32, num_heads=2, hidden_size=64),
    "llava_onevision": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2),
    "llava_next": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2),
    # one windowed block and one full-attention block, as the real tower interleaves them
    "qwen2_5_vl": dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, fullatt_block_indexes=[1]),
}
_TINY_EXTRA: dict[str, dict[str, Any]] = {
    "qwen2_vl": dict(rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}),
    "llava_onevision": {},
    "llava_next": {},
    "qwen2_5_vl": dict(rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}),
}

#: ``--egbench-models`` name -> the checkpoint's shapes.
REAL: dict[str, dict[str, Any]] = {
    "qwen2_vl": QWEN2_VL_2B,
    "llava_onevision": ONEVISION_05B,
    "llava_next": LLAVA_NEXT_MISTRAL_7B,
    "qwen2_5_vl": QWEN2_5_VL_3B,
}


def hf_config(name: str, preset: str, token_ids: dict[str, int]) -> Any:
    """The ``transformers`` config of ``name`` (a key of :data:`REAL`) at ``preset`` (``tiny``,
    or ``7b``/``real``: the public checkpoint's shapes), with the placeholder ids ``token_ids``
    (config attribute -> id) written in. Raises ``ValueError`` for an unknown name or preset."""
    from transformers import AutoConfig

    if name not in REAL:
        raise ValueError(f"no config preset for {name!r}: known are {', '.join(REAL)}")
    if preset not in ("tiny", "7b", "real"):
        raise ValueError(f"unknown preset {preset!r}: choose from tiny, 7b")
    fields: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in REAL[name].items()}
    if preset == "tiny":
        fields["text_config"].update(_TINY_TEXT, **_TINY_EXTRA[name])
        fields["vision_config"].update(_TINY_VISION[name])
    model_type = fields.pop("model_type")
    return AutoConfig.for_model(model_type, **fields, **token_ids)
