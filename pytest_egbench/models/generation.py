"""Prefill and decode as separate calls (docs/design.md#stages, stages 4 and 5), in the style of gpt-fast.

Neither function synchronises with the device: tokens stay on the device and nothing calls
``.item()``, so a CUDA-event timer around them measures device time without host stalls.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any

import torch

#: The KV cache's keyword in the forwards of transformers >= 5.24 and the field of their outputs.
CACHE = "cache"
#: Its name before 5.24 (forwards and outputs); 5.24 still accepts it, with a FutureWarning, and
#: 5.40 removes it.
PAST_KEY_VALUES = "past_key_values"


@functools.cache
def cache_keyword(model_class: type[Any]) -> str:
    """The keyword under which ``model_class.forward`` takes the KV cache: ``"cache"`` where its
    signature names it (transformers >= 5.24, and this project's EventGPT), else
    ``"past_key_values"`` where it names that (transformers 5.0-5.23). A forward naming neither
    (``**kwargs`` only) gets the name the installed transformers' own causal LMs use. Read from
    the class, once: hooks that replace a model's ``forward`` on the instance (accelerate's
    offloading) keep the class's signature."""
    params = inspect.signature(model_class.forward).parameters
    for name in (CACHE, PAST_KEY_VALUES):
        if name in params:
            return name
    from transformers import LlamaForCausalLM

    return cache_keyword(LlamaForCausalLM)


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """``{keyword: cache}`` for ``model(...)`` under the name its forward accepts (see
    :func:`cache_keyword`), so that no call passes a deprecated name."""
    model_class: type = type(model)  # plain ``type``: mypy does not take ``type[Any]`` for Hashable
    return {cache_keyword(model_class): cache}


def output_cache(output: Any) -> Any:
    """The KV cache a forward returned: ``output.cache`` (transformers >= 5.24) or
    ``output.past_key_values`` (before; 5.24 keeps that name as a deprecated alias)."""
    fields = {f.name for f in dataclasses.fields(output)} if dataclasses.is_dataclass(output) else set(output.keys())
    return getattr(output, CACHE if CACHE in fields else PAST_KEY_VALUES)


@torch.inference_mode()
def prefill(model: Any, *, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
    """One forward over the whole prompt: fills the KV cache and picks the first token greedily.

    ``input_ids``: ``[B, L]`` token ids, or ``inputs_embeds``: ``[B, L, hidden]`` (visual tokens
    already spliced in). Returns ``(first_token [B, 1] int64 on the device, KV cache)``.
    Only the last position's logits are computed (``logits_to_keep=1``).
    """
    token, cache, _ = prefill_with_logits(model, input_ids=input_ids, inputs_embeds=inputs_embeds)
    return token, cache


@torch.inference_mode()
def prefill_with_logits(
    model: Any, *, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None, **model_kwargs: Any
) -> tuple[torch.Tensor, Any, torch.Tensor]:
    """:func:`prefill`, also returning the last position's logits ``[B, vocab]`` (on the device;
    what the first token was chosen from). ``model_kwargs``: further arguments of the model's
    forward (pixels, or Qwen2-VL's grid sizes). Both ``input_ids`` and ``inputs_embeds`` only for
    a forward that takes both (Qwen2-VL computes its 3D positions from the ids); ``ValueError``
    when neither is given."""
    if input_ids is None and inputs_embeds is None:
        raise ValueError("pass input_ids or inputs_embeds")
    from transformers import DynamicCache

    cache = DynamicCache()
    tokens = {"input_ids": input_ids, "inputs_embeds": inputs_embeds, **model_kwargs}
    out = model(**tokens, **cache_kwargs(model, cache), use_cache=True, logits_to_keep=1)
    logits = out.logits[:, -1]
    return logits.argmax(-1, keepdim=True), output_cache(out), logits


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
        out = model(input_ids=token, **cache_kwargs(model, cache), use_cache=True)
        token = out.logits[:, -1:, :vocab_size].argmax(-1)
        produced[:, i : i + 1] = token
    return produced
