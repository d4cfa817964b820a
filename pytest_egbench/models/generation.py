"""Prefill and decode as separate calls (DESIGN.md stages 4 and 5), in the style of gpt-fast.

Neither function synchronises with the device: tokens stay on the device and nothing calls
``.item()``, so a CUDA-event timer around them measures device time without host stalls.
"""

from __future__ import annotations

from typing import Any

import torch


@torch.inference_mode()
def prefill(model: Any, *, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
    """One forward over the whole prompt: fills the KV cache and picks the first token greedily.

    ``input_ids``: ``[B, L]`` token ids, or ``inputs_embeds``: ``[B, L, hidden]`` (visual tokens
    already spliced in). Returns ``(first_token [B, 1] int64 on the device, past_key_values)``.
    Only the last position's logits are computed (``logits_to_keep=1``).
    """
    token, cache, _ = prefill_with_logits(model, input_ids=input_ids, inputs_embeds=inputs_embeds)
    return token, cache


@torch.inference_mode()
def prefill_with_logits(model: Any, *, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None) -> tuple[torch.Tensor, Any, torch.Tensor]:
    """:func:`prefill`, also returning the last position's logits ``[B, vocab]`` (on the device;
    what the first token was chosen from)."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids and inputs_embeds")
    from transformers import DynamicCache

    cache = DynamicCache()
    out = model(input_ids=input_ids, inputs_embeds=inputs_embeds, past_key_values=cache, use_cache=True, logits_to_keep=1)
    logits = out.logits[:, -1]
    return logits.argmax(-1, keepdim=True), out.past_key_values, logits


@torch.inference_mode()
def decode(model: Any, token: torch.Tensor, cache: Any, steps: int, *, vocab_size: int | None = None) -> torch.Tensor:
    """``steps`` greedy decode steps, one token per forward, reusing (and growing) ``cache``.

    ``token``: ``[B, 1]`` the last token so far (the one prefill produced). Returns ``[B, steps]``
    int64: the tokens produced in decode, all of them (no early stop at EOS, so that every run
    decodes the same number of tokens with dummy weights). ``vocab_size``: choose only among the
    first ``vocab_size`` logits (the ids a shared tokenizer knows; LLaVA pads its LM head to
    32064 rows); ``None``: all of them.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    produced = torch.empty(token.shape[0], steps, dtype=torch.long, device=token.device)
    for i in range(steps):
        out = model(input_ids=token, past_key_values=cache, use_cache=True)
        token = out.logits[:, -1:, :vocab_size].argmax(-1)
        produced[:, i : i + 1] = token
    return produced
