"""LLaVA-1.5 and Video-LLaVA from local Hugging Face folders (here: tiny models written with
``save_pretrained``), offline."""

from __future__ import annotations

import pytest
import torch

from pytest_egbench.models.base import ModelSpec
from pytest_egbench.models.registry import adapter_class


@pytest.mark.parametrize("name", ["llava", "video_llava"])
def test_local_folder_loads_with_the_same_outputs(tiny_model, sample, tmp_path, name, assert_close_in_dtype, forward_ops):
    original = tiny_model(name)
    original.model.save_pretrained(tmp_path)
    loaded = adapter_class(name).load(ModelSpec(name, preset="tiny", quant="fp32", checkpoint=tmp_path))
    inputs = original.preprocess(sample(name))
    # the same weights in other buffers: equal up to the kernels' rounding, not bit for bit
    assert_close_in_dtype(loaded.forward_whole(inputs)[0], original.forward_whole(inputs)[0], ops=forward_ops(original))
    state = loaded.prefill(inputs, loaded.encode_vision(inputs))
    # split path against the whole forward: 1e-4 as in test_adapters.py (1e-5 flaked there once)
    torch.testing.assert_close(state.logits, original.forward_whole(inputs)[0], rtol=1e-4, atol=1e-4)


def test_folder_errors(tiny_model, tmp_path):
    with pytest.raises(ValueError, match=f"llava checkpoint {tmp_path}: no config.json"):
        adapter_class("llava").load(ModelSpec("llava", checkpoint=tmp_path))
    model = tiny_model("llava").model
    model.config.image_token_id = 32001
    try:
        model.save_pretrained(tmp_path)
    finally:
        model.config.image_token_id = 32000
    with pytest.raises(ValueError, match="config image_token_id is 32001, the bundled tokenizer's <image> is 32000"):
        adapter_class("llava").load(ModelSpec("llava", checkpoint=tmp_path))
