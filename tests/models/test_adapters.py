"""The five-stage adapters on tiny CPU models: split path == the model's own forward from pixels,
each stage run once, shapes, KV cache, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pytest_egbench.models.base import VisualInput
from pytest_egbench.models.memory import kv_cache_bytes, measured_kv_cache_bytes

MODELS = ["eventgpt", "video_llava", "llava"]


def _vision_and_lm(adapter):
    """(vision tower module, first LLaMA decoder layer) of an adapter's model."""
    vision = (
        adapter.model.vision_tower
        if adapter.name == "eventgpt"
        else (adapter.model.model.video_tower if adapter.name == "video_llava" else adapter.model.model.vision_tower)
    )
    layer = next(m for m in adapter.model.modules() if type(m).__name__ == "LlamaDecoderLayer")
    return vision, layer


class _Calls:
    def __init__(self, *modules):
        self.counts = [0] * len(modules)
        self.handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(modules)]

    def _hook(self, i):
        def hook(module, args, output):
            self.counts[i] += 1

        return hook

    def take(self):
        counts, self.counts = self.counts, [0] * len(self.counts)
        return counts

    def remove(self):
        for h in self.handles:
            h.remove()


def _cache_tensors(cache):
    return [t for layer in cache.layers for t in (layer.keys, layer.values)]


@pytest.mark.parametrize("name", MODELS)
def test_split_path_equals_whole_forward(tiny_model, sample, name):
    """Vision once in stage 3, never in stage 4; the LM once in stage 4; same logits and the same
    KV cache (every layer, every position) as the model's single forward from pixels."""
    adapter = tiny_model(name)
    inputs = adapter.preprocess(sample(name))
    calls = _Calls(*_vision_and_lm(adapter))
    try:
        visual = adapter.encode_vision(inputs)
        assert calls.take() == [1, 0]
        state = adapter.prefill(inputs, visual)
        assert calls.take() == [0, 1]
        whole_logits, whole_cache = adapter.forward_whole(inputs)
        assert calls.take() == [1, 1]
    finally:
        calls.remove()
    # fp32 summation order differs between the two paths (and with the thread count): 1e-4 is
    # far below what a wrong splice or a missing layer changes (order 1), and 1e-5 flaked once
    torch.testing.assert_close(state.logits, whole_logits, rtol=1e-4, atol=1e-4)
    # the first token is the whole forward's argmax, up to a near-tie that float noise can flip
    chosen = whole_logits.gather(-1, state.token)
    assert torch.all(chosen >= whole_logits.max(-1, keepdim=True).values - 1e-4)
    for split, whole in zip(_cache_tensors(state.cache), _cache_tensors(whole_cache), strict=True):
        torch.testing.assert_close(split, whole, rtol=1e-4, atol=1e-4)


def test_split_path_in_bf16_within_dtype_tolerance(tiny_model, sample):
    adapter = tiny_model("llava", "bf16")
    inputs = adapter.preprocess(sample("llava"))
    assert inputs.pixel_values.dtype == torch.bfloat16
    state = adapter.prefill(inputs, adapter.encode_vision(inputs))
    whole, _ = adapter.forward_whole(inputs)
    torch.testing.assert_close(state.logits.float(), whole.float(), rtol=2e-2, atol=2e-2)


#: fp32 tolerance on logits, from the dtype: the cached decode and one full forward add the same
#: terms in other orders (attention over a cache against a causal mask, other matmul shapes, other
#: thread counts), which moved the tiny models' logits (|logit| < 1) by about 4 eps here. 256 eps
#: leaves room for other CPUs and still sits far below the smallest top-1/top-2 margin measured
#: (1.8e-3) and the change a wrong context makes (order 0.1).
FP32_LOGIT_TOL = 256 * torch.finfo(torch.float32).eps


@pytest.mark.parametrize("name", MODELS)
def test_decode_continues_the_prefill(tiny_model, sample, name):
    """Greedy decode on the KV cache against an outside oracle: ONE plain forward, no cache, over
    the whole sequence (the prompt with its visual embeddings, then the generated tokens). At every
    position the decode's token must be that forward's argmax (up to a near tie within the
    tolerance) and the decode's logits must equal that forward's logits within the tolerance."""
    adapter = tiny_model(name)
    inputs = adapter.preprocess(sample(name))
    visual = adapter.encode_vision(inputs)
    state = adapter.prefill(inputs, visual)
    first = state.token.clone()
    n = 4
    step_logits = []
    hook = adapter.lm.register_forward_hook(lambda module, args, out: step_logits.append(out.logits[0, -1].float().clone()))
    try:
        tokens = adapter.decode(state, n)
    finally:
        hook.remove()
    assert tokens.shape == (1, n) and tokens.dtype == torch.long and len(step_logits) == n
    generated = torch.cat([first, tokens], dim=1)  # [1, n + 1]: prefill's token, then decode's
    with torch.inference_mode():
        embeds = torch.cat([adapter.embed_prompt(inputs, visual), adapter.lm.get_input_embeddings()(generated[:, :-1])], dim=1)
        full = adapter.lm(inputs_embeds=embeds, use_cache=False, logits_to_keep=n + 1).logits[0].float()  # [n + 1, vocab]
    assert embeds.shape[1] == inputs.prompt_tokens + n
    tol = FP32_LOGIT_TOL * max(1.0, full.abs().max().item())  # relative to the logits' size
    # position prompt_tokens - 1 + i chose generated[i]: it must be the full forward's argmax
    chosen = full.gather(-1, generated[0][:, None])[:, 0]
    assert torch.all(chosen >= full.max(-1).values - 2 * tol), (generated.tolist(), full.argmax(-1).tolist())
    torch.testing.assert_close(torch.stack([state.logits[0].float(), *step_logits]), full, rtol=0, atol=tol)
    # bookkeeping after the oracle (so that a wrong cache fails on the tokens first)
    assert state.cache.get_seq_length() == inputs.prompt_tokens + n
    assert torch.equal(state.token, tokens[:, -1:])
    assert adapter.decode(state, 0).shape == (1, 0)


@pytest.mark.parametrize(("name", "frames", "pixels", "visual", "prompt"), [
    ("eventgpt", 5, (5, 3, 336, 336), 582, 641),
    ("eventgpt", 1, (1, 3, 336, 336), 578, 637),
    ("video_llava", 8, (8, 3, 224, 224), 2056, 2077),
    ("llava", 1, (1, 3, 336, 336), 576, 597),
    ("llava", 8, (8, 3, 336, 336), 4608, 4643),
])  # fmt: skip
def test_preprocess_shapes_and_counts(tiny_model, sample, name, frames, pixels, visual, prompt):
    adapter = tiny_model(name)
    inputs = adapter.preprocess(sample(name, frames))
    assert tuple(inputs.pixel_values.shape) == pixels and inputs.pixel_values.dtype == torch.float32
    assert inputs.input_ids.shape == (1, prompt) and inputs.prompt_tokens == prompt
    assert inputs.visual_tokens == visual == inputs.positions.numel()
    assert inputs.input_ids[0, 0].item() == 1  # BOS
    positions = inputs.positions.tolist()
    assert positions == sorted(positions) and torch.all(inputs.input_ids[0, inputs.positions] == adapter.fill_id)
    assert tuple(adapter.encode_vision(inputs).shape) == (visual, adapter.text_config.hidden_size)


@pytest.mark.parametrize("name", MODELS)
def test_kv_cache_bytes_measured_equal_computed(tiny_model, sample, name):
    adapter = tiny_model(name)
    inputs = adapter.preprocess(sample(name))
    state = adapter.prefill(inputs, adapter.encode_vision(inputs))
    assert measured_kv_cache_bytes(state.cache) == kv_cache_bytes(adapter.text_config, inputs.prompt_tokens, torch.float32)
    adapter.decode(state, 3)
    assert measured_kv_cache_bytes(state.cache) == (inputs.prompt_tokens + 3) * adapter.kv_bytes_per_token


@pytest.mark.parametrize(("name", "bad", "message"), [
    ("eventgpt", VisualInput(), "EventGPT needs sample.events"),
    ("eventgpt", VisualInput(events=np.zeros((2, 8, 8, 3), np.float32)), r"sample.events must be a non-empty \[T, H, W, 3\] uint8"),
    ("eventgpt", VisualInput(events=np.zeros((8, 8, 3), np.uint8)), r"got shape \(8, 8, 3\)"),
    ("video_llava", VisualInput(images=[np.zeros((8, 8, 3), np.uint8)]), "Video-LLaVA needs sample.video"),
    ("video_llava", VisualInput(video=np.zeros((8, 8, 8, 4), np.uint8)), "sample.video must be"),
    ("llava", VisualInput(), "LLaVA-1.5 needs sample.images"),
    ("llava", VisualInput(images=[np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)]), r"sample.images\[1\] must be"),
    ("llava", VisualInput(images=[[0, 0, 0]]), "sample.images.0. must be a numpy array"),
])  # fmt: skip
def test_preprocess_rejects_bad_samples(tiny_model, name, bad, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(name).preprocess(bad)


def test_prefill_rejects_visual_of_the_wrong_length(tiny_model, sample):
    adapter = tiny_model("llava")
    inputs = adapter.preprocess(sample("llava"))
    visual = adapter.encode_vision(inputs)
    with pytest.raises(ValueError, match="575 visual embeddings for 576 placeholder positions"):
        adapter.prefill(inputs, visual[:-1])
