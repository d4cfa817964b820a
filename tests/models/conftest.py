"""Shared helpers of the model tests: tiny CPU models, built once per run."""

from __future__ import annotations

import functools

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")


@functools.cache
def _tiny(name: str, quant: str):
    from pytest_egbench.models.base import ModelSpec
    from pytest_egbench.models.registry import load_model

    return load_model(ModelSpec(name, preset="tiny", quant=quant, device="cpu"))


@pytest.fixture
def tiny_model():
    """``tiny_model(name, quant="fp32")``: a tiny dummy model on the CPU, built once per run."""
    return lambda name, quant="fp32": _tiny(name, quant)


@pytest.fixture
def forward_ops():
    """``forward_ops(adapter)``: rounding steps along one forward from pixels to logits, for
    ``assert_close_in_dtype``: about 8 a transformer layer (norm, Q/K/V, scores, softmax, mix,
    output projection, MLP) in the vision tower and the LM, plus embedding, projector, final
    norm and LM head. A Qwen2-VL-style tower names its layer count ``depth`` (transformers 5.6
    maps no ``num_hidden_layers`` onto it)."""

    def layers(config):
        return getattr(config, "num_hidden_layers", None) or config.depth

    return lambda adapter: 8 * (layers(adapter.vision_config) + layers(adapter.text_config)) + 4


@pytest.fixture
def sample():
    """``sample(name, frames=None)``: a small (120 x 160) seeded synthetic sample for ``name``."""
    from pytest_egbench.models.base import synthetic_sample

    return lambda name, frames=None: synthetic_sample(name, frames, height=120, width=160)
