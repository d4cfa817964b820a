"""Model sizes. ``7b``: the shapes of the public 7B checkpoints (DESIGN.md, "Models");
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

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def llama_config(preset: str) -> Any:
    """``transformers.LlamaConfig`` of the LM for ``preset`` ("tiny" or "7b").

    Raises ``ValueError`` for an unknown preset.
    """
    from transformers import LlamaConfig

    if preset not in LLAMA_LM:
        raise ValueError(f"unknown preset {preset!r}: choose from {', '.join(LLAMA_LM)}")
    return LlamaConfig(**LLAMA_LM[preset], bos_token_id=1, eos_token_id=2, pad_token_id=0)


def torch_dtype(quant: str) -> Any:
    """Compute dtype for an unquantised run (fp32, bf16, fp16).

    Raises ``ValueError`` for nf4/int8: those need the quantisation path.
    """
    import torch

    if quant not in DTYPES:
        raise ValueError(f"{quant!r} is a quantised format, not a dtype; unquantised choices: {', '.join(DTYPES)}")
    return getattr(torch, DTYPES[quant])
