"""Memory figures: KV-cache bytes (from the config and measured), model footprint, peak device
memory per stage.

KV cache per token = 2 (K and V) x layers x kv_heads x head_dim x bytes per element
(docs/design.md#kv-cache): 0.5 MiB for the 7B LLaMA in 16 bit (2 x 32 x 32 x 128 x 2 = 524288 B).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def kv_bytes_per_token(text_config: Any, dtype: Any) -> int:
    """Bytes of K and V one token adds to the cache, from a LLaMA config and the cache dtype.

    ``head_dim`` is the config's, or ``hidden_size // num_attention_heads`` when it has none.
    """
    import torch

    heads = text_config.num_attention_heads
    kv_heads = getattr(text_config, "num_key_value_heads", None) or heads
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // heads
    element = torch.empty((), dtype=dtype).element_size()
    return 2 * text_config.num_hidden_layers * kv_heads * head_dim * element


def kv_cache_bytes(text_config: Any, tokens: int, dtype: Any) -> int:
    """Bytes of a KV cache holding ``tokens`` positions (see :func:`kv_bytes_per_token`)."""
    return tokens * kv_bytes_per_token(text_config, dtype)


def measured_kv_cache_bytes(cache: Any) -> int:
    """Bytes held by the key and value tensors of a transformers ``DynamicCache``.

    Raises ``TypeError`` for a cache whose layout is unknown (neither ``layers`` with
    ``keys``/``values`` nor ``key_cache``/``value_cache`` lists).
    """
    if hasattr(cache, "layers"):
        tensors = [t for layer in cache.layers for t in (layer.keys, layer.values) if t is not None]
    elif hasattr(cache, "key_cache"):
        tensors = [*cache.key_cache, *cache.value_cache]
    else:
        raise TypeError(f"unknown KV cache type {type(cache).__name__}")
    return sum(t.numel() * t.element_size() for t in tensors)


def _quant_state_bytes(state: Any) -> int:
    """Bytes of a bitsandbytes 4-bit ``QuantState``: absmax, code, nested state."""
    import torch

    total = 0
    for name in ("absmax", "code", "offset"):
        t = getattr(state, name, None)
        if isinstance(t, torch.Tensor):
            total += t.numel() * t.element_size()
    nested = getattr(state, "state2", None)
    return total + (_quant_state_bytes(nested) if nested is not None else 0)


def footprint_bytes(model: Any) -> int:
    """Bytes of every parameter and buffer of ``model``, counted once each, plus bitsandbytes'
    quantisation statistics (NF4 absmax and codebooks, int8 row scales), which are not parameters.

    transformers' ``get_memory_footprint`` counts parameters and buffers only.
    """
    import torch

    seen: set[int] = set()
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        if id(t) in seen:
            continue
        seen.add(id(t))
        total += t.numel() * t.element_size()
        if getattr(t, "quant_state", None) is not None:
            total += _quant_state_bytes(t.quant_state)
        scb = getattr(t, "SCB", None)
        if isinstance(scb, torch.Tensor):
            total += scb.numel() * scb.element_size()
    return total


def resident_bytes(adapter: Any) -> int:
    """Bytes a loaded model keeps on its device between calls: its weights and buffers
    (``adapter.footprint_bytes()``) plus, under a compiled runtime that made one, its static KV
    cache (``adapter.runtime.cache``, kept from one prompt to the next). The ``weights_bytes`` of a
    :class:`PeakMemory`, so that a model's peaks read the same whether or not an earlier test
    already made that cache."""
    static = getattr(adapter.runtime, "cache", None)
    return int(adapter.footprint_bytes()) + (measured_kv_cache_bytes(static) if static is not None else 0)


class PeakMemory:
    """The peak device memory of one model's stages, as if the model were alone on the device:
    ``peaks = PeakMemory(device, weights_bytes)``, then ``with peaks.stage("vision"): ...``, then
    ``peaks.bytes`` (``{stage: bytes}``).

    ``bytes[stage] = weights_bytes + max(0, max_allocated - held)``: the model's weights
    (:func:`footprint_bytes`, the caller's ``weights_bytes``) plus the most the stage allocated
    above ``held``, the bytes the process held when the tracker was made (``gc.collect()`` first,
    so that earlier tests' garbage is neither counted nor freed in a stage). ``held`` includes this
    model's weights and whatever else the process keeps: other models loaded for the session,
    an earlier benchmark's tensors. So the figure does not depend on which benchmarks ran before
    or were selected: the absolute ``torch.cuda.max_memory_allocated`` does (on an H200 host,
    2026-11-30, Video-LLaVA's absolute peak held EventGPT's 4.3 GiB of weights, and every model's
    peak read 931 MiB higher in one nightly than in the run before with the same code).
    ``others_bytes`` is ``held - weights_bytes`` (what else the process held; reported, not
    judged). A stage that frees more of ``held`` than it allocates counts as 0 above it.

    CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` at the start of
    each stage (host-side allocator counters: no device synchronisation). CPU and other devices:
    the allocator keeps no such counter, so every stage records ``None`` (reported as "not
    measured", never as 0).
    """

    def __init__(self, device: Any, weights_bytes: int = 0) -> None:
        import gc

        import torch

        self._torch = torch
        self.device = torch.device(device)
        self.weights_bytes = int(weights_bytes)
        self.bytes: dict[str, int | None] = {}
        self.held: int | None = None
        if self.supported:
            gc.collect()
            self.held = int(torch.cuda.memory_allocated(self.device))

    @property
    def supported(self) -> bool:
        return self.device.type == "cuda"

    @property
    def others_bytes(self) -> int | None:
        """Bytes the process held besides this model's weights when the tracker was made (``None`` off CUDA)."""
        return None if self.held is None else self.held - self.weights_bytes

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        cuda = self._torch.cuda
        if self.supported:
            cuda.reset_peak_memory_stats(self.device)
        yield
        peak = None
        if self.held is not None:
            peak = self.weights_bytes + max(0, int(cuda.max_memory_allocated(self.device)) - self.held)
        old = self.bytes.get(name)
        self.bytes[name] = peak if old is None or peak is None else max(old, peak)
