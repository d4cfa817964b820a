"""The LLaMA language model with dummy (seeded random) weights."""

from __future__ import annotations

from typing import Any

import torch

from .presets import llama_config
from .quant import QuantSpec
from .weights import RandomWeights, build_empty, materialise


def dummy_llama(preset: str, quant: str, device: torch.device | str, seed: int = 0) -> Any:
    """A ``LlamaForCausalLM`` of ``preset`` with seeded random weights, made on ``device``.

    ``quant``: any :class:`~pytest_egbench.models.quant.QuantSpec` name; nf4/int8 quantise the
    decoder's Linear layers on the device as they are made (:mod:`.weights`). Latency does not
    depend on weight values, which is why dummy weights are used (docs/design.md#dummy-weights).
    """
    from transformers import LlamaForCausalLM

    spec = QuantSpec(quant)
    config = llama_config(preset)
    model = build_empty(lambda: LlamaForCausalLM._from_config(config, dtype=spec.compute_dtype), device)
    return materialise(model, device, spec, RandomWeights(seed))
