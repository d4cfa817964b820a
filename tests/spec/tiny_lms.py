"""Tiny seeded ``LlamaForCausalLM`` models for the speculative-decoding tests (CPU, no hub).

A plain module (not a conftest) so that tests import :func:`tiny_lm` by a name no other test
folder uses."""

from __future__ import annotations

import functools

VOCAB = 96


@functools.cache
def tiny_lm(seed: int, layers: int = 2, noise: float = 0.0, base_seed: int | None = None):
    """A tiny LLaMA with seeded random weights (vocab 96, hidden 32), in eval mode, no EOS.

    ``noise`` > 0 with ``base_seed``: the model of ``base_seed`` with Gaussian noise of that
    scale (seeded by ``seed``) added to every weight -- a draft that agrees with it part of the
    time, so both acceptance and rejection happen."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=None,
        pad_token_id=0,
    )
    torch.manual_seed(base_seed if base_seed is not None else seed)
    model = LlamaForCausalLM(config).eval()
    if noise:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * noise * p.std().clamp_min(1e-3))
    return model
