"""The models on a CUDA GPU: 7B dummy weights made and quantised on the device, all five stages,
split path == whole forward, KV cache 0.5 MiB a token, peak memory per stage. Skipped without a
GPU (``gpu`` marker). Load times are printed and recorded (``record_property``), not asserted."""

from __future__ import annotations

import gc
import resource

import pytest
import torch

from pytest_egbench.models.base import ModelSpec, synthetic_sample
from pytest_egbench.models.memory import PeakMemory, kv_cache_bytes, measured_kv_cache_bytes
from pytest_egbench.models.registry import adapter_class, load_model

pytestmark = pytest.mark.gpu
GiB = 2**30


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _free():
    gc.collect()
    torch.cuda.empty_cache()


@pytest.mark.parametrize("quant", ["nf4", "bf16"])
@pytest.mark.parametrize("name", ["eventgpt", "video_llava", "llava"])
def test_7b_dummy_model_on_cuda(record_property, name, quant):
    _free()
    torch.cuda.init()
    rss_before = _max_rss_bytes()
    adapter = load_model(ModelSpec(name, preset="7b", quant=quant, device="cuda"))
    rss_growth = _max_rss_bytes() - rss_before
    footprint = adapter.footprint_bytes()
    record_property("load_seconds", adapter.load_seconds)
    record_property("footprint_bytes", footprint)
    print(
        f"\n{name} 7b {quant}: created and quantised on cuda in {adapter.load_seconds:.2f} s, weights {footprint / GiB:.2f} GiB, host RSS +{rss_growth / GiB:.2f} GiB"
    )
    assert {p.device.type for p in adapter.model.parameters()} == {"cuda"}
    # no round trip through host memory: the host never held the weights (14 GB in bf16)
    assert rss_growth < 2 * GiB
    linear4bit = sum(type(m).__name__ == "Linear4bit" for m in adapter.model.modules())
    assert linear4bit == (32 * 7 if quant == "nf4" else 0)
    assert (3.5 * GiB < footprint < 5 * GiB) if quant == "nf4" else (13 * GiB < footprint < 14.5 * GiB)

    inputs = adapter.preprocess(synthetic_sample(name))
    peaks = PeakMemory(adapter.device, footprint)
    with peaks.stage("vision"):
        visual = adapter.encode_vision(inputs)
    with peaks.stage("prefill"):
        state = adapter.prefill(inputs, visual)
    with peaks.stage("decode"):
        tokens = adapter.decode(state, 8)
    assert tokens.shape == (1, 8) and tokens.device.type == "cuda"
    assert all(isinstance(b, int) and b >= footprint for b in peaks.bytes.values()), peaks.bytes
    record_property("peak_memory_bytes", peaks.bytes)
    assert measured_kv_cache_bytes(state.cache) == kv_cache_bytes(adapter.text_config, inputs.prompt_tokens + 8, torch.bfloat16)
    assert adapter.kv_bytes_per_token == 2**19  # 0.5 MiB
    whole, _ = adapter.forward_whole(inputs)
    torch.testing.assert_close(state.logits.float(), whole.float(), rtol=2e-2, atol=2e-2)
    del adapter, inputs, visual, state, whole
    _free()


@pytest.mark.parametrize("quant", ["nf4", "int8", "fp16"])
def test_tiny_models_in_every_format_on_cuda(quant):
    for name in ("eventgpt", "video_llava", "llava"):
        adapter = load_model(ModelSpec(name, preset="tiny", quant=quant, device="cuda"))
        inputs = adapter.preprocess(synthetic_sample(name, height=120, width=160))
        state = adapter.prefill(inputs, adapter.encode_vision(inputs))
        assert adapter.decode(state, 3).shape == (1, 3)
        whole, _ = adapter.forward_whole(inputs)
        torch.testing.assert_close(state.logits.float(), whole.float(), rtol=2e-2, atol=2e-2)


def test_real_hf_folder_is_quantised_as_it_loads(tmp_path):
    """A local LLaVA folder loaded in NF4 by transformers: only the LLaMA decoder is 4-bit."""
    tiny = load_model(ModelSpec("llava", preset="tiny", quant="fp32", device="cpu"))
    tiny.model.save_pretrained(tmp_path)
    adapter = adapter_class("llava").load(ModelSpec("llava", preset="tiny", quant="nf4", device="cuda", checkpoint=tmp_path))
    quantised = [n for n, m in adapter.model.named_modules() if type(m).__name__ == "Linear4bit"]
    assert quantised and all(".language_model.layers." in n for n in quantised)
    inputs = adapter.preprocess(synthetic_sample("llava", height=120, width=160))
    state = adapter.prefill(inputs, adapter.encode_vision(inputs))
    assert adapter.decode(state, 2).shape == (1, 2)


def test_peak_memory_counts_what_a_stage_allocates_above_what_the_process_held():
    """Oracle: the sizes of the tensors allocated (multiples of the allocator's 2 MiB block size)."""
    held_elsewhere = torch.empty(512 * 2**20, dtype=torch.uint8, device="cuda")  # another model, say
    peaks = PeakMemory("cuda", weights_bytes=10**9)
    with peaks.stage("alloc"):
        x = torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda")
        del x
        y = torch.empty(32 * 2**20, dtype=torch.uint8, device="cuda")
    assert peaks.supported and peaks.bytes["alloc"] == 10**9 + 64 * 2**20
    assert peaks.held is not None and peaks.held >= 512 * 2**20
    del y, held_elsewhere
