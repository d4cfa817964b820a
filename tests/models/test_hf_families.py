"""LLaVA-NeXT and Qwen2.5-VL through the generic transformers adapter (hf_generic.py), tiny dummy
models in fp32 on the CPU, on a real frame (the bundled cup_0000 clip, 480 x 640).

The oracles are outside the adapter: hand-computed visual token counts (from the families' papers
and transformers' processors), the family's own processor's output, the model's own
``get_image_features`` and its single forward from pixels, with and without the KV cache.
The adapters are tested here, not registered as built-in names (see docs/generic-adapter.md).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from pytest_egbench.models.base import ModelSpec, VisualInput

FAMILIES = ["llava_next", "qwen2_5_vl"]

#: Visual tokens of one 480 x 640 frame, by hand:
#: * LLaVA-NeXT (llava-v1.6 "AnyRes", transformers' select_best_resolution / unpad_image): the grid
#:   672 x 672 keeps the most of the image with the least padding, so 2 x 2 tiles of 336 px plus
#:   the 336 px base view; base 24 x 24 = 576 patches; tiles 48 x 48 patches, unpadded to the
#:   frame's 3:4 aspect: 36 rows of 48, each row ending with one newline token: 36 x 49 = 1764.
#: * Qwen2.5-VL (as Qwen2-VL, "Naive Dynamic Resolution", smart_resize): each side rounded to a
#:   multiple of patch x merge = 28 px, 476 x 644, then 2 x 2 patches merged: 17 x 23.
HAND_COUNTS = {"llava_next": 576 + 36 * 49, "qwen2_5_vl": 17 * 23}
#: What the model's own get_image_features takes beside the pixels.
VISION_ARGS = {"llava_next": "image_sizes", "qwen2_5_vl": "image_grid_thw"}


def _class(name: str):
    from pytest_egbench.models.hf_generic import LlavaNextAdapter, Qwen2_5_VLAdapter

    return {"llava_next": LlavaNextAdapter, "qwen2_5_vl": Qwen2_5_VLAdapter}[name]


@functools.cache
def _adapter(name: str):
    return _class(name).load(ModelSpec(name, preset="tiny", quant="fp32", device="cpu"))


@functools.cache
def _frame() -> np.ndarray:
    from pytest_egbench.data.dataset import bundled_dataset_dir, load_dataset
    from pytest_egbench.data.video import read_video_frames

    sample = load_dataset(bundled_dataset_dir()).by_id("cup_0000")
    return read_video_frames(sample.mp4_path, 1)[0]


@pytest.fixture(params=FAMILIES)
def family(request):
    """``(adapter, inputs)``: the family's tiny adapter and its preprocessed real frame."""
    adapter = _adapter(request.param)
    return adapter, adapter.preprocess(VisualInput(images=[_frame()]))


def test_visual_tokens_hand_processor_and_model_agree(family):
    adapter, inputs = family
    kind = adapter.model.config.model_type
    assert _frame().shape == (480, 640, 3)
    # the family's own processor, called here: how many image-token ids it expanded the prompt to
    out = adapter.processor(text=adapter.prompt(VisualInput(images=[_frame()])), images=[_frame()], return_tensors="pt")
    processor_count = int((out["input_ids"] == adapter.model.config.image_token_id).sum())
    # the model's own vision features for those pixels
    with torch.inference_mode():
        features = adapter.model.model.get_image_features(pixel_values=out["pixel_values"], **{VISION_ARGS[kind]: out[VISION_ARGS[kind]]})
    model_count = sum(f.shape[0] for f in features.pooler_output)
    assert processor_count == model_count == HAND_COUNTS[kind]
    assert inputs.visual_tokens == HAND_COUNTS[kind]
    assert adapter.encode_vision(inputs).shape == (HAND_COUNTS[kind], adapter.text_config.hidden_size)


def test_llava_next_anyres_patches_and_qwen2_5_grid():
    """The processors' tensors the vision stage must hand on: LLaVA-NeXT's 1 + 2 x 2 views of
    336 px with the frame's size (H, W); Qwen2.5-VL's grid of 14 px patches (t, 476/14, 644/14)."""
    next_inputs = _adapter("llava_next").preprocess(VisualInput(images=[_frame()]))
    assert next_inputs.features["pixel_values"].shape == (1, 5, 3, 336, 336)
    assert next_inputs.features["image_sizes"].tolist() == [[480, 640]]
    qwen_inputs = _adapter("qwen2_5_vl").preprocess(VisualInput(images=[_frame()]))
    assert qwen_inputs.features["image_grid_thw"].tolist() == [[1, 34, 46]]


def test_llava_next_two_images_of_other_shapes(assert_close_in_dtype, forward_ops):
    """A 480 x 640 frame and its 240 x 640 middle band: the band's best grid is 336 x 672 (1 x 2
    tiles; 672 x 672 and 336 x 1008 keep as much but pad more), so 1 + 2 views, padded to the
    first image's 5 in pixel_values; its tokens: 576 + 18 rows (48 x 24 tile features unpadded
    to 3:8) x 49 = 1458. The tower sees the 5 + 3 real views in one call."""
    adapter = _adapter("llava_next")
    inputs = adapter.preprocess(VisualInput(images=[_frame(), _frame()[120:360].copy()]))
    assert inputs.features["pixel_values"].shape == (2, 5, 3, 336, 336)
    assert inputs.visual_tokens == HAND_COUNTS["llava_next"] + 576 + 18 * 49
    views = []
    handle = adapter.towers[0].register_forward_pre_hook(
        lambda module, args, kwargs: views.append(kwargs.get("pixel_values", args[0] if args else None).shape[0]), with_kwargs=True
    )
    try:
        visual = adapter.encode_vision(inputs)
    finally:
        handle.remove()
    assert views == [8]
    whole, _ = adapter.forward_whole(inputs)
    assert_close_in_dtype(adapter.prefill(inputs, visual).logits, whole, ops=forward_ops(adapter))


def test_vision_once_per_round_and_split_equals_whole_forward(family, assert_close_in_dtype, forward_ops):
    adapter, inputs = family
    calls = []  # the test's own hook on the tower, beside the adapter's
    handle = adapter.towers[0].register_forward_hook(lambda *_: calls.append(1))
    hooks = adapter.hooks()
    try:
        for _ in range(2):  # rounds
            visual = adapter.encode_vision(inputs)
            assert len(calls) == 1 and hooks.calls == {"tower": 1, "projector": 1}
            state = adapter.prefill(inputs, visual)
            adapter.decode(state, 2)
            assert len(calls) == 1 and hooks.calls == {"tower": 1, "projector": 1}  # prefill and decode add none
            assert state.cache.get_seq_length() == inputs.prompt_tokens + 2
            calls.clear()
            hooks.take()
        whole, _ = adapter.forward_whole(inputs)  # the model's own forward from pixels
        assert len(calls) == 1
    finally:
        handle.remove()
        hooks.remove()
    assert adapter.stage_note()["vision_split"] is True
    assert_close_in_dtype(state.logits, whole, ops=forward_ops(adapter))


def test_decode_equals_one_forward_from_pixels_without_cache(family, assert_close_in_dtype, forward_ops):
    """Greedy decode on the KV cache against one plain forward of the whole model from pixels, no
    cache, over the prompt and the generated tokens (Qwen's 3D positions of the new tokens then
    come from the model's own rope index over the whole sequence): every token chosen is that
    forward's argmax (up to a near tie within the tolerance), and the logits agree."""
    adapter, inputs = family
    n = 4
    state = adapter.prefill(inputs, adapter.encode_vision(inputs))
    first = state.token.clone()
    step_logits = []
    handle = adapter.model.register_forward_hook(lambda module, args, out: step_logits.append(out.logits[0, -1].clone()))
    try:
        tokens = adapter.decode(state, n)
    finally:
        handle.remove()
    generated = torch.cat([first, tokens], dim=1)  # [1, n + 1]
    ids = torch.cat([inputs.input_ids, generated[:, :-1]], dim=1)
    features = dict(inputs.features, input_ids=ids, attention_mask=torch.ones_like(ids))
    if "mm_token_type_ids" in features:  # text tokens are type 0
        features["mm_token_type_ids"] = torch.cat([features["mm_token_type_ids"], torch.zeros_like(generated[:, :-1])], dim=1)
    with torch.inference_mode():
        full = adapter.model(**features, use_cache=False, logits_to_keep=n + 1).logits[0]  # [n + 1, vocab]
    tol = 4 * forward_ops(adapter) * torch.finfo(full.dtype).eps * float(full.abs().max())
    chosen = full.gather(-1, generated[0][:, None])[:, 0]
    assert torch.all(chosen >= full.max(-1).values - 2 * tol), (generated.tolist(), full.argmax(-1).tolist())
    assert_close_in_dtype(torch.stack([state.logits[0], *step_logits]), full, ops=forward_ops(adapter))


@pytest.mark.parametrize(("name", "low", "high", "hidden"), [
    ("llava_next", 7.56e9, 7.58e9, 4096),  # llava-hf/llava-v1.6-mistral-7b-hf: 7.57 B parameters (model card)
    ("qwen2_5_vl", 3.74e9, 3.76e9, 2048),  # Qwen/Qwen2.5-VL-3B-Instruct: 3.75 B (model card)
])  # fmt: skip
def test_real_shapes_on_meta(name, low, high, hidden):
    adapter = _class(name).load(ModelSpec(name, preset="7b", quant="bf16", device="meta"))
    n = sum(p.numel() for p in adapter.model.parameters())
    assert low < n < high
    assert adapter.text_config.hidden_size == hidden


def test_a_conftest_hook_can_name_them():
    """The mapping docs/generic-adapter.md gives a ``pytest_egbench_adapters`` hook registers both
    (the registry imports and checks each class's declarations)."""
    from pytest_egbench.models.registry import Registry

    registry = Registry()
    registry.add_all(
        {"llava_next": "pytest_egbench.models.hf_generic:LlavaNextAdapter", "qwen2_5_vl": "pytest_egbench.models.hf_generic:Qwen2_5_VLAdapter"},
        "conftest",
    )
    assert [registry.adapter_class(n) for n in FAMILIES] == [_class(n) for n in FAMILIES]
