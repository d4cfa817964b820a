"""Prefill lengths and visual shapes of the 7B presets, computed on the meta device: the whole
pipeline runs on shapes only, no 7B weight is allocated (docs/design.md#token-counts)."""

from __future__ import annotations

import functools

import pytest

from pytest_egbench.models.base import ModelSpec
from pytest_egbench.models.eventgpt import eventgpt_prompt
from pytest_egbench.models.registry import load_model
from pytest_egbench.models.tokenization import DEFAULT_QUESTION, load_tokenizer


@functools.cache
def _meta_7b(name: str):
    return load_model(ModelSpec(name, preset="7b", quant="bf16", device="meta"))


def test_eventgpt_prompt_text_is_59_tokens():
    """Piecewise around <event> (EventGPT's tokenizer_event_token): BOS only in front."""
    before, after = eventgpt_prompt(DEFAULT_QUESTION).split("<event>")
    tok = load_tokenizer()
    assert len(tok(before).input_ids) + len(tok(after, add_special_tokens=False).input_ids) == 59


@pytest.mark.parametrize(("name", "frames", "visual", "prompt"), [
    ("eventgpt", 1, 578, 637),
    ("eventgpt", 5, 582, 641),
    ("video_llava", 8, 2056, 2077),
    ("llava", 1, 576, 597),
    ("llava", 8, 4608, 4643),
])  # fmt: skip
def test_7b_prefill_length_on_meta(sample, name, frames, visual, prompt):
    adapter = _meta_7b(name)
    assert all(p.device.type == "meta" for p in adapter.model.parameters())
    inputs = adapter.preprocess(sample(name, frames))
    assert (inputs.prompt_tokens, inputs.visual_tokens) == (prompt, visual)
    embeds = adapter.encode_vision(inputs)
    assert tuple(embeds.shape) == (visual, 4096) and embeds.device.type == "meta"
    state = adapter.prefill(inputs, embeds)
    assert tuple(state.token.shape) == (1, 1)
    assert state.cache.get_seq_length() == prompt
    assert prompt - visual == {"eventgpt": 59, "video_llava": 21, "llava": 21 + 2 * (frames - 1)}[name]  # each more "<image>\n": "▁", "\n"


def test_7b_shapes_are_the_public_ones():
    eventgpt = _meta_7b("eventgpt").model
    n_params = sum(p.numel() for p in eventgpt.parameters())
    assert [type(m).__name__ for m in eventgpt.projector] == ["Linear", "GELU", "Linear"]
    assert tuple(eventgpt.projector[0].weight.shape) == (4096, 1024) and tuple(eventgpt.projector[2].weight.shape) == (4096, 4096)
    assert tuple(eventgpt.feature_adaptor.weight.shape) == (4096, 4096)
    assert tuple(eventgpt.vision_tower.embeddings.position_embedding.weight.shape) == (577, 1024)
    lm = eventgpt.config.text
    assert (lm.num_hidden_layers, lm.num_attention_heads, lm.hidden_size, lm.intermediate_size, lm.vocab_size) == (32, 32, 4096, 11008, 32000)
    # Vicuna-7B 6.74 B + CLIP ViT-L/14-336 vision 0.30 B + projector/adaptor 0.04 B
    assert 7.05e9 < n_params < 7.1e9
    llava = _meta_7b("llava").model
    assert 7.06e9 < sum(p.numel() for p in llava.parameters()) < 7.07e9  # llava-1.5-7b-hf: 7,063,427,072
    assert llava.config.text_config.vocab_size == 32064
    assert tuple(_meta_7b("video_llava").model.model.video_tower.embeddings.position_embedding.weight.shape) == (257, 1024)
