"""EventGPT: pooling, prompt, adaptor applied once, and loading a fake checkpoint written in the
public release's layout."""

from __future__ import annotations

import json

import pytest
import torch

from pytest_egbench.models.base import ModelSpec
from pytest_egbench.models.eventgpt import CheckpointError, EventGPTAdapter, eventgpt_prompt, spatio_temporal_pool
from pytest_egbench.models.tokenization import DEFAULT_QUESTION


def test_spatio_temporal_pool_by_hand():
    f = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], [[7.0, 8.0], [9.0, 10.0], [11.0, 12.0]]])  # T=2, P=3, C=2
    pooled = spatio_temporal_pool(f)
    expected = torch.tensor([[3.0, 4.0], [9.0, 10.0], [4.0, 5.0], [6.0, 7.0], [8.0, 9.0]])  # 2 temporal, then 3 spatial
    assert torch.equal(pooled, expected)  # means of small integers are exact in any summation order
    with pytest.raises(ValueError, match=r"\[T, P, C\]"):
        spatio_temporal_pool(f[0])


def test_prompt_template():
    assert eventgpt_prompt(DEFAULT_QUESTION) == (
        "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, "
        "and polite answers to the human's questions. USER: <ev_start><event><ev_end>\nWhat are the key elements in this scene? ASSISTANT:"
    )


def test_feature_adaptor_runs_once_per_encode(tiny_model, sample):
    adapter = tiny_model("eventgpt")
    calls = []
    handles = [m.register_forward_hook(lambda m, a, o, name=name: calls.append(name)) for name, m in
               (("projector", adapter.model.projector), ("adaptor", adapter.model.feature_adaptor))]  # fmt: skip
    try:
        visual = adapter.encode_vision(adapter.preprocess(sample("eventgpt", 3)))
    finally:
        for h in handles:
            h.remove()
    assert calls == ["projector", "adaptor"]
    assert visual.shape == (3 + 577, adapter.text_config.hidden_size)


# ----------------------------------------------------------------------------- fake checkpoint


def _public_key(name: str) -> str:
    """This module's parameter name -> the key the public EventGPT release uses (written out
    literally here, independent of the loader's table)."""
    for ours, public in (
        ("vision_tower.", "model.visual_tower.visual_tower.vision_model."),
        ("projector.", "model.visual_projector."),
        ("feature_adaptor.", "model.feature_adaptor."),
        ("language_model.model.", "model."),
        ("language_model.lm_head.", "lm_head."),
    ):
        if name.startswith(ours):
            return public + name[len(ours) :]
    raise AssertionError(name)


def _write_checkpoint(folder, model, fmt="safetensors", shards=1, drop=(), extra=None, model_type="EventChat_llama"):
    folder.mkdir(parents=True, exist_ok=True)
    text = model.config.text
    config = {k: getattr(text, k) for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                                            "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "pad_token_id")}  # fmt: skip
    config.update(model_type=model_type, architectures=["EventChatModel"], mm_visual_tower="openai/clip-vit-large-patch14-336", event_feature_adaptor=True)
    (folder / "config.json").write_text(json.dumps(config))
    state = {_public_key(n): p.detach().clone().contiguous() for n, p in model.named_parameters()}
    state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(4)  # old LLaMA checkpoints carry it
    for key in drop:
        del state[key]
    state.update(extra or {})
    keys = sorted(state)
    parts = [keys[i::shards] for i in range(shards)]
    for i, part in enumerate(parts):
        tensors = {k: state[k] for k in part}
        if fmt == "safetensors":
            from safetensors.torch import save_file

            save_file(tensors, str(folder / f"model-{i + 1:05d}-of-{shards:05d}.safetensors"))
        else:
            torch.save(tensors, folder / f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin")
    return folder


@pytest.mark.parametrize(("fmt", "shards"), [("safetensors", 1), ("safetensors", 2), ("bin", 2)])
def test_fake_public_checkpoint_loads_with_the_same_outputs(tiny_model, sample, tmp_path, fmt, shards, assert_close_in_dtype, forward_ops):
    original = tiny_model("eventgpt")
    folder = _write_checkpoint(tmp_path / "ckpt", original.model, fmt, shards)
    loaded = EventGPTAdapter.load(ModelSpec("eventgpt", preset="tiny", quant="fp32", checkpoint=folder))
    assert loaded.vision_config.image_size == 336 and loaded.vision_config.num_hidden_layers == original.vision_config.num_hidden_layers
    for (name, p), (name2, q) in zip(original.model.named_parameters(), loaded.model.named_parameters(), strict=True):
        assert name == name2 and torch.equal(p, q), name  # a copy: bit for bit
    inputs = original.preprocess(sample("eventgpt", 2))
    # the same weights in other buffers: equal up to the kernels' rounding, not bit for bit
    expected = original.forward_whole(inputs)[0]
    assert_close_in_dtype(loaded.forward_whole(inputs)[0], expected, ops=forward_ops(original))


def test_checkpoint_key_errors_name_folder_and_keys(tiny_model, tmp_path):
    model = tiny_model("eventgpt").model
    folder = _write_checkpoint(
        tmp_path / "bad", model, drop=["model.feature_adaptor.weight", "model.visual_projector.2.bias"], extra={"model.query_embeddings": torch.zeros(2)}
    )
    with pytest.raises(CheckpointError) as info:
        EventGPTAdapter.load(ModelSpec("eventgpt", checkpoint=folder))
    message = str(info.value)
    assert str(folder) in message
    assert "2 missing key(s): model.feature_adaptor.weight, model.visual_projector.2.bias" in message
    assert "1 unexpected key(s): model.query_embeddings" in message


def test_checkpoint_shape_mismatch_is_reported(tiny_model, tmp_path):
    model = tiny_model("eventgpt").model
    folder = _write_checkpoint(tmp_path / "shape", model, drop=["model.feature_adaptor.bias"], extra={"model.feature_adaptor.bias": torch.zeros(3)})
    with pytest.raises(CheckpointError, match=r"1 of the wrong shape: model.feature_adaptor.bias \(3,\) \(expected \(64,\)\)"):
        EventGPTAdapter.load(ModelSpec("eventgpt", checkpoint=folder))


def test_checkpoint_folder_errors(tiny_model, tmp_path):
    model = tiny_model("eventgpt").model
    with pytest.raises(CheckpointError, match="no config.json"):
        EventGPTAdapter.load(ModelSpec("eventgpt", checkpoint=tmp_path))
    other = _write_checkpoint(tmp_path / "other", model, model_type="llava_llama")
    with pytest.raises(CheckpointError, match="model_type is 'llava_llama', expected 'EventChat_llama'"):
        EventGPTAdapter.load(ModelSpec("eventgpt", checkpoint=other))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"model_type": "EventChat_llama", "mm_visual_tower": "x", "event_feature_adaptor": True}))
    with pytest.raises(CheckpointError, match=r"empty: no \*.safetensors or pytorch_model\*.bin"):
        EventGPTAdapter.load(ModelSpec("eventgpt", checkpoint=empty))
