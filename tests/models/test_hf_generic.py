"""The generic transformers adapter (pytest_egbench/models/hf_generic.py) on tiny CPU models:
against the hand-written LLaVA-1.5 and Video-LLaVA adapters, vision once per round, Qwen2-VL and
LLaVA-OneVision shapes, checkpoint folders (safetensors only)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from pytest_egbench.models.base import ModelSpec, VisualInput
from pytest_egbench.models.registry import adapter_class, load_model


@functools.cache
def _tiny_generic(name: str):
    return load_model(ModelSpec(name, preset="tiny", quant="fp32", device="cpu"))


def _image(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


class _TowerCalls:
    """Counts forward calls of one module (the test's own hook, not the adapter's)."""

    def __init__(self, module):
        self.n = 0
        self.handle = module.register_forward_hook(lambda *_: setattr(self, "n", self.n + 1))

    def take(self) -> int:
        n, self.n = self.n, 0
        return n


# the prompt lengths of docs/design.md#token-counts: LLaVA-1.5 21 text tokens + 576 an image
# ("<image>\n" twice more text per further image), Video-LLaVA 21 + 8 x 257
@pytest.mark.parametrize(("name", "frames", "prompt"), [("llava", 1, 597), ("llava", 8, 4643), ("video_llava", 8, 2077)])
def test_generic_equals_hand_written(tiny_model, sample, tmp_path, assert_close_in_dtype, forward_ops, name, frames, prompt):
    """The hand-written adapter's weights, saved as safetensors and read by the generic one: the
    same prompt ids (and the documented lengths), and the same prefill logits up to rounding."""
    hand = tiny_model(name)
    hand.model.save_pretrained(tmp_path, safe_serialization=True)
    generic = load_model(ModelSpec(f"hf_{name}", checkpoint=tmp_path))
    s = sample(name, frames)
    hand_in, gen_in = hand.preprocess(s), generic.preprocess(s)
    assert gen_in.prompt_tokens == hand_in.prompt_tokens == prompt
    assert torch.equal(gen_in.input_ids, hand_in.input_ids)
    hand_state = hand.prefill(hand_in, hand.encode_vision(hand_in))
    gen_state = generic.prefill(gen_in, generic.encode_vision(gen_in))
    assert_close_in_dtype(gen_state.logits, hand_state.logits, ops=forward_ops(hand))


@pytest.mark.parametrize("name", ["hf_video_llava", "qwen2_vl", "llava_onevision"])
def test_vision_once_per_round_and_split_equals_whole_forward(name):
    adapter = _tiny_generic(name)
    sample = VisualInput(video=np.stack([_image(120, 160, i) for i in range(8)])) if name == "hf_video_llava" else VisualInput(images=[_image(120, 160)])
    inputs = adapter.preprocess(sample)
    calls = _TowerCalls(adapter.towers[-1])
    try:
        for _ in range(3):  # rounds
            visual = adapter.encode_vision(inputs)
            assert calls.take() == 1
            state = adapter.prefill(inputs, visual)
            adapter.decode(state, 2)
            assert calls.take() == 0
            assert state.cache.get_seq_length() == inputs.prompt_tokens + 2
        whole, _ = adapter.forward_whole(inputs)
        assert calls.take() == 1
    finally:
        calls.handle.remove()
    assert visual.shape == (inputs.visual_tokens, adapter.text_config.hidden_size)
    # split path against the model's own forward from pixels: 1e-4 as in test_adapters.py
    prefill = adapter.prefill(inputs, adapter.encode_vision(inputs))
    torch.testing.assert_close(prefill.logits, whole, rtol=1e-4, atol=1e-4)


def test_adapter_hooks_time_tower_and_projector_once():
    adapter = _tiny_generic("qwen2_vl")
    inputs = adapter.preprocess(VisualInput(images=[_image(120, 160)]))
    hooks = adapter.hooks()
    try:
        visual = adapter.encode_vision(inputs)
        assert hooks.calls == {"tower": 1, "projector": 1}
        adapter.prefill(inputs, visual)
        assert hooks.calls == {"tower": 1, "projector": 1}  # prefill adds no call
        spans = hooks.take()
        assert spans["tower"] >= spans["projector"] > 0  # Qwen2-VL's merger runs inside the tower
        assert hooks.calls == {"tower": 0, "projector": 0}
    finally:
        hooks.remove()
    assert adapter.stage_note()["vision_split"] is True


def test_qwen2_vl_visual_tokens_hand_computed():
    """Qwen2-VL's processor rounds each side to a multiple of patch x merge = 28 px and merges
    2 x 2 patches: 480 x 640 -> 476 x 644 -> 17 x 23 = 391 tokens (Qwen2-VL paper, "Naive
    Dynamic Resolution"; transformers' smart_resize)."""
    adapter = _tiny_generic("qwen2_vl")
    inputs = adapter.preprocess(VisualInput(images=[_image()]))
    assert inputs.visual_tokens == 17 * 23
    assert inputs.features["image_grid_thw"].tolist() == [[1, 34, 46]]
    two = adapter.preprocess(VisualInput(images=[_image(), _image(seed=1)]))
    assert two.visual_tokens == 2 * 391


@pytest.mark.parametrize(("name", "low", "high"), [
    ("qwen2_vl", 2.20e9, 2.22e9),  # Qwen/Qwen2-VL-2B-Instruct: 2.21 B parameters (model card)
    ("llava_onevision", 0.89e9, 0.90e9),  # llava-onevision-qwen2-0.5b-ov-hf: 894 M (model card)
])  # fmt: skip
def test_real_shapes_on_meta(name, low, high):
    adapter = adapter_class(name).load(ModelSpec(name, preset="7b", quant="bf16", device="meta"))
    n = sum(p.numel() for p in adapter.model.parameters())
    assert low < n < high
    assert all(p.device.type == "meta" for p in adapter.model.parameters())
    hidden = {"qwen2_vl": 1536, "llava_onevision": 896}[name]
    assert adapter.text_config.hidden_size == hidden


def test_checkpoint_option_and_folder(tmp_path):
    from pytest_egbench.options import parse_checkpoint

    original = _tiny_generic("qwen2_vl")
    original.model.save_pretrained(tmp_path, safe_serialization=True)
    assert parse_checkpoint(f"qwen2_vl={tmp_path}") == ("qwen2_vl", tmp_path)
    loaded = load_model(ModelSpec("qwen2_vl", checkpoint=tmp_path))
    assert loaded.tokenizer_note.startswith("stand-in")  # no processor files in the folder
    inputs = original.preprocess(VisualInput(images=[_image(120, 160)]))
    torch.testing.assert_close(loaded.forward_whole(inputs)[0], original.forward_whole(inputs)[0], rtol=1e-4, atol=1e-4)


def test_pickled_checkpoint_is_refused(tmp_path):
    with pytest.raises(ValueError, match=f"qwen2_vl checkpoint {tmp_path}: no config.json"):
        load_model(ModelSpec("qwen2_vl", checkpoint=tmp_path))
    _tiny_generic("qwen2_vl").model.config.save_pretrained(tmp_path)
    torch.save({"w": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"pytorch_model\.bin is pickled weights, which are never loaded .*safe_serialization=True"):
        load_model(ModelSpec("qwen2_vl", checkpoint=tmp_path))
    (tmp_path / "pytorch_model.bin").unlink()
    with pytest.raises(ValueError, match=r"no \*\.safetensors weights"):
        load_model(ModelSpec("qwen2_vl", checkpoint=tmp_path))


def test_vision_not_separable_is_reported_and_prefill_runs_whole_forward():
    """A model whose tower is not found: vision stage empty, prefill from pixels, and the note says so."""
    from pytest_egbench.models.hf_generic import GenericHFAdapter

    adapter = _tiny_generic("hf_llava")
    merged = GenericHFAdapter.__new__(type(adapter))
    merged.__dict__.update(adapter.__dict__, towers=[], vision_split=False)
    inputs = merged.preprocess(VisualInput(images=[_image(120, 160)]))
    assert merged.encode_vision(inputs).shape == (0, adapter.text_config.hidden_size)
    calls = _TowerCalls(adapter.towers[0])
    try:
        state = merged.prefill(inputs, merged.encode_vision(inputs))
        assert calls.take() == 1  # vision ran inside prefill
    finally:
        calls.handle.remove()
    torch.testing.assert_close(state.logits, adapter.forward_whole(inputs)[0], rtol=1e-4, atol=1e-4)
    assert merged.stage_note()["vision_split"] is False and "merged into prefill" in merged.stage_note()["stages_note"]


@pytest.mark.parametrize("name", ["qwen2_vl", "llava_onevision"])
def test_nf4_would_quantise_the_qwen2_decoder_linears_only(name):
    """NF4/int8 quantise the LM decoder's Linear layers (q, k, v, o, gate, up, down: 7 a layer),
    never the vision tower or the projector (quant.py)."""
    from pytest_egbench.models.weights import quantised_linear_names

    adapter = _tiny_generic(name)
    names = quantised_linear_names(adapter.model)
    assert len(names) == 7 * adapter.text_config.num_hidden_layers
    assert not any(n.startswith(("model.visual", "model.vision_tower", "model.multi_modal_projector")) for n in names)
