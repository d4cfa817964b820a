"""The KV cache's keyword: ``cache`` from transformers 5.24 on, ``past_key_values`` before (5.24
warns about it, 5.40 removes it). One helper passes and reads it under the name the model takes."""

from __future__ import annotations

import dataclasses
import logging
import warnings

import pytest
import torch

from pytest_egbench.models.generation import cache_keyword, cache_kwargs, output_cache


class _New(torch.nn.Module):
    def forward(self, input_ids=None, cache=None, use_cache=None, **kwargs):
        return cache


class _Old(torch.nn.Module):
    def forward(self, input_ids=None, past_key_values=None, use_cache=None, **kwargs):
        return past_key_values


class _KwargsOnly(torch.nn.Module):
    def forward(self, input_ids=None, **kwargs):
        return kwargs


def test_the_keyword_is_the_one_the_forward_names():
    assert cache_keyword(_New) == "cache" and cache_kwargs(_New(), "kv") == {"cache": "kv"}
    assert cache_keyword(_Old) == "past_key_values" and _Old()(**cache_kwargs(_Old(), "kv")) == "kv"
    # **kwargs only: the name transformers' own causal LMs take
    from transformers import LlamaForCausalLM

    assert cache_keyword(_KwargsOnly) == cache_keyword(LlamaForCausalLM) in ("cache", "past_key_values")


def test_a_hook_on_the_instance_does_not_change_the_keyword():
    model = _Old()
    model.forward = lambda *args, **kwargs: None  # what accelerate's offloading hooks do
    assert cache_kwargs(model, "kv") == {"past_key_values": "kv"}


def test_output_cache_reads_either_field():
    @dataclasses.dataclass
    class NewOutput:
        logits: object = None
        cache: object = None

    @dataclasses.dataclass
    class OldOutput:
        logits: object = None
        past_key_values: object = None

    assert output_cache(NewOutput(cache="new")) == "new" and output_cache(OldOutput(past_key_values="old")) == "old"


@pytest.mark.parametrize("name", ["eventgpt", "video_llava", "llava"])
def test_no_deprecated_cache_name_reaches_transformers(tiny_model, sample, name):
    """Every forward this project runs (whole, prefill, decode) passes and reads the cache under the
    installed transformers' own name: no FutureWarning, no deprecation log line."""
    from transformers.utils import logging as hf_logging

    adapter = tiny_model(name)
    inputs = adapter.preprocess(sample(name))
    seen: list[str] = []
    handler = _Collect(seen)
    hf_logging.get_logger("transformers").addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            _, cache = adapter.forward_whole(inputs)
            state = adapter.prefill(inputs, adapter.encode_vision(inputs))
            adapter.decode(state, 2)
    finally:
        hf_logging.get_logger("transformers").removeHandler(handler)
    assert cache.get_seq_length() == inputs.prompt_tokens
    assert not [m for m in seen if "past_key_values" in m], seen


class _Collect(logging.Handler):
    """Keeps the messages of transformers' logger (where its ``warning_once`` goes)."""

    def __init__(self, sink: list[str]) -> None:
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage())
