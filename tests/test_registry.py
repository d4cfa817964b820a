"""The model registry: built-in adapters, third-party ones through the pytest_egbench_adapters
hook and the pytest_egbench.adapters entry-point group, and the worked example in examples/."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pytest_egbench.models.registry import Registry, RegistryError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "adapter"


def _copy_example(pytester: pytest.Pytester) -> None:
    for path in EXAMPLE.iterdir():
        if path.is_file() and path.suffix in (".py", ".ini"):
            (pytester.path / path.name).write_text(path.read_text())


def test_example_adapter_runs_under_egbench_models_example(pytester):
    """The example's conftest registers it through the hook; its benchmark runs the five stages
    on each bundled sample with event images. Token counts against LLaVA-1.5's published layout:
    1 image = 21 text + 576 visual tokens (597), 8 images = 35 + 8 x 576 (4643), so 2 images are
    23 text tokens + 2 x (336 / 14)**2 visual ones."""
    pytest.importorskip("transformers")
    # imported out here: an in-process pytester run drops the modules it imported when it ends,
    # and torch cannot be imported twice in one process
    import transformers  # noqa: F401
    from transformers import DynamicCache, LlamaConfig, LlavaForConditionalGeneration  # noqa: F401

    from pytest_egbench.models import generation, llava, presets, tokenization  # noqa: F401

    _copy_example(pytester)
    out = pytester.path / "results.json"
    result = pytester.runpytest(
        "--egbench",
        "--egbench-models",
        "example",
        "--egbench-device",
        "cpu",
        "--egbench-rounds",
        "1",
        "--egbench-warmup",
        "0",
        "--egbench-max-new-tokens",
        "2",
        f"--egbench-json={out}",
    )
    result.assert_outcomes(passed=2)
    benchmarks = json.loads(out.read_text())["benchmarks"]
    decode = [b["extra_info"] for b in benchmarks if b["extra_info"]["metric"] == "decode"]
    assert sorted(e["sample"] for e in decode) == ["cup_0000", "dsec_sample1_50ms"]
    from pytest_egbench.models.presets import llava_config

    text = llava_config("tiny").text_config
    head_dim = text.hidden_size // text.num_attention_heads
    for e in decode:
        assert e["model"] == "example" and e["frames"] == 2
        assert e["visual_tokens"] == 2 * (336 // 14) ** 2
        assert e["prompt_tokens"] == 23 + 2 * (336 // 14) ** 2
        # K and V, every layer, every KV head, fp32
        assert e["kv_bytes_per_token"] == 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * 4


def test_plain_pytest_with_the_example_conftest_imports_no_torch(pytester):
    _copy_example(pytester)
    pytester.makepyfile(test_light="import sys\n\ndef test_no_torch():\n    assert [m for m in ('torch', 'transformers') if m in sys.modules] == []\n")
    result = pytester.runpytest_subprocess("--egbench-models", "example,llava")
    result.assert_outcomes(passed=1, skipped=1)


def test_an_unknown_model_is_a_usage_error_listing_every_registered_name(pytester):
    _copy_example(pytester)
    result = pytester.runpytest("--egbench-models", "llava,exampel")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (
        "--egbench-models (command line --egbench-models): unknown model(s) exampel: known are eventgpt, video_llava, llava, hf_llava, hf_video_llava, qwen2_vl, llava_onevision, example"
        in result.stderr.str()
    )


def test_an_unknown_checkpoint_model_is_a_usage_error(pytester, tmp_path):
    result = pytester.runpytest("--egbench-checkpoint", f"bert={tmp_path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (
        "--egbench-checkpoint (command line --egbench-checkpoint): unknown model 'bert': known are eventgpt, video_llava, llava, hf_llava, hf_video_llava, qwen2_vl, llava_onevision"
        in result.stderr.str()
    )


def test_a_hook_taking_a_built_in_name_is_a_usage_error_naming_both(pytester):
    pytester.makeconftest("def pytest_egbench_adapters():\n    return {'LLaVA': 'mine:MyLlava'}\n")
    pytester.makepyfile(test_a="def test_a(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert (
        "pytest_egbench_adapters in" in err
        and "conftest.py: model 'llava' is already registered by built-in (pytest_egbench.models.llava:LlavaAdapter), not mine:MyLlava" in err
    )


def test_an_adapter_from_an_entry_point_is_registered(pytester, monkeypatch):
    """A fake installed distribution whose entry point ``fake`` in the group
    pytest_egbench.adapters names an adapter class: the registry has it, and
    ``--egbench-models fake`` is accepted."""
    dist = pytester.mkdir("fakedist-0.1.dist-info")
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakedist\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[pytest_egbench.adapters]\nfake = fake_adapter:FakeAdapter\n")
    pytester.makepyfile(fake_adapter="from pytest_egbench.models.llava import LlavaAdapter\n\nclass FakeAdapter(LlavaAdapter):\n    name = 'fake'\n")
    pytester.makepyfile(
        test_fake="""
from pytest_egbench.models.registry import adapter_class, current

def test_registered():
    assert current().names == ("eventgpt", "video_llava", "llava", "hf_llava", "hf_video_llava", "qwen2_vl", "llava_onevision", "fake")
    assert current().source("fake") == "entry point 'fake' (pytest_egbench.adapters) of fakedist"
    assert adapter_class("fake").__name__ == "FakeAdapter"
"""
    )
    pytester.syspathinsert()
    result = pytester.runpytest("--egbench-models", "fake")
    result.assert_outcomes(passed=1)


def test_the_run_registry_is_gone_after_the_run(pytester):
    from pytest_egbench.models.registry import current

    _copy_example(pytester)
    pytester.makepyfile(test_a="def test_a(): pass")
    pytester.runpytest().assert_outcomes(passed=1, skipped=1)
    assert "example" not in current().names


def test_registry_refuses_bad_names_and_targets():
    registry = Registry({})
    with pytest.raises(RegistryError, match="'all' is reserved"):
        registry.add("all", "m:C", "test")
    with pytest.raises(RegistryError, match="'nocolon' is not 'module:Class'"):
        registry.add("x", "nocolon", "test")
    registry.add("My-Model", "m:C", "test")
    registry.add("my_model", "m:C", "again")  # the same target twice: a no-op
    assert registry.names == ("my_model",)
    with pytest.raises(RegistryError, match="unknown model\\(s\\) other: known are my_model"):
        registry.select(["my_model", "other"])
    with pytest.raises(RegistryError, match="test: model 'my_model': cannot import 'm:C'"):
        registry.adapter_class("my_model")


def test_registry_checks_what_an_adapter_declares():
    pytest.importorskip("torch")
    from pytest_egbench.models.llava import LlavaAdapter

    class Smelly(LlavaAdapter):
        input_kind = "smell"

    class NoFrames(LlavaAdapter):
        default_frames = 0

    registry = Registry({"smelly": Smelly, "noframes": NoFrames, "notadapter": dict})
    with pytest.raises(RegistryError, match="Smelly.input_kind is 'smell': choose from event_stream, event_images, video, images"):
        registry.adapter_class("smelly")
    with pytest.raises(RegistryError, match="NoFrames.default_frames is 0: must be a positive int"):
        registry.adapter_class("noframes")
    with pytest.raises(RegistryError, match="is not a subclass of pytest_egbench.models.base.ModelAdapter"):
        registry.adapter_class("notadapter")


def test_built_in_adapters_declare_the_origin_runs_inputs():
    """docs/design.md: EventGPT reads raw events rendered into 5 frames, Video-LLaVA 8 video frames,
    LLaVA-1.5 one image (frames of the video)."""
    pytest.importorskip("torch")
    from pytest_egbench.pipeline import model_needs

    registry = Registry()
    declared = {name: (registry.adapter_class(name).input_kind, registry.adapter_class(name).default_frames) for name in registry.names}
    # the origin runs: EventGPT 5 event frames, Video-LLaVA 8 video frames, LLaVA-1.5 one image; the
    # generic adapter's LLaVA-family and Qwen2-VL rows one image, its Video-LLaVA 8 video frames
    assert declared == {
        "eventgpt": ("event_stream", 5),
        "video_llava": ("video", 8),
        "llava": ("images", 1),
        "hf_llava": ("images", 1),
        "hf_video_llava": ("video", 8),
        "qwen2_vl": ("images", 1),
        "llava_onevision": ("images", 1),
    }
    assert [model_needs(n) for n in registry.names] == ["events"] + ["video"] * 6
    assert "torch" in sys.modules
