"""The LLaMA language model with dummy (seeded random) weights."""

from __future__ import annotations

from typing import Any

import torch

from .presets import llama_config, torch_dtype


def dummy_llama(preset: str, quant: str, device: torch.device | str, seed: int = 0) -> Any:
    """A ``LlamaForCausalLM`` of ``preset`` with seeded random weights, created on ``device``.

    ``quant``: fp32, bf16 or fp16 (quantised formats come with the model adapters). Latency does
    not depend on weight values, which is why dummy weights are used (DESIGN.md).
    """
    from transformers import LlamaForCausalLM

    dtype = torch_dtype(quant)
    config = llama_config(preset)
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM._from_config(config, dtype=dtype)
    return model.eval()
