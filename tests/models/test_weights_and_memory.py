"""Meta build + on-device fill, quantisation formats, KV-cache and footprint figures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pytest_egbench.models import presets
from pytest_egbench.models.base import ModelSpec
from pytest_egbench.models.memory import PeakMemory, footprint_bytes, kv_bytes_per_token, kv_cache_bytes
from pytest_egbench.models.quant import QuantSpec
from pytest_egbench.models.registry import adapter_class, load_model
from pytest_egbench.models.weights import RandomWeights, TensorWeights, build_empty, materialise, quantised_linear_names

MiB = 1024 * 1024


def _tiny_llama(**overrides):
    from transformers import LlamaForCausalLM

    config = presets.llama_config("tiny", **overrides)
    return build_empty(lambda: LlamaForCausalLM(config), "cpu")


def test_build_empty_puts_parameters_on_meta_and_computes_buffers():
    from transformers import LlamaForCausalLM

    empty = _tiny_llama()
    assert {p.device.type for p in empty.parameters()} == {"meta"}
    reference = LlamaForCausalLM(presets.llama_config("tiny"))
    for (name, buf), (_, ref) in zip(empty.named_buffers(), reference.named_buffers(), strict=True):
        assert buf.device.type == "cpu" and torch.equal(buf, ref), name  # the same code on the same inputs: bit for bit
    assert not empty.training


def test_random_weights_are_seeded():
    a = materialise(_tiny_llama(), "cpu", QuantSpec("fp32"), RandomWeights(seed=1))
    b = materialise(_tiny_llama(), "cpu", QuantSpec("fp32"), RandomWeights(seed=1))
    c = materialise(_tiny_llama(), "cpu", QuantSpec("fp32"), RandomWeights(seed=2))
    w = "model.layers.0.self_attn.q_proj.weight"
    # the same seed draws the same bits on any machine: exact equality is the claim
    assert torch.equal(a.state_dict()[w], b.state_dict()[w]) and not torch.equal(a.state_dict()[w], c.state_dict()[w])
    assert torch.equal(a.model.norm.weight, torch.ones(64))
    assert 0.015 < a.state_dict()[w].std().item() < 0.025
    assert all(not p.requires_grad for p in a.parameters())


def test_tied_parameters_stay_tied():
    model = materialise(_tiny_llama(tie_word_embeddings=True), "cpu", QuantSpec("bf16"), RandomWeights())
    assert model.lm_head.weight is model.model.embed_tokens.weight and model.lm_head.weight.dtype == torch.bfloat16


def test_tensor_weights_check_shapes():
    source = TensorWeights({"w": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match=r"w: checkpoint shape \(2, 3\) != model shape \(3, 2\)"):
        source("w", nn.Linear(2, 3), torch.empty(3, 2, device="meta"), torch.device("cpu"), torch.float32)


@pytest.mark.parametrize(("quant", "layer_type"), [("nf4", "Linear4bit"), ("int8", "Linear8bitLt")])
def test_quantised_dummy_model_quantises_only_the_llama_decoder(quant, layer_type):
    """bitsandbytes also quantises on the CPU, so the quantised build runs here (benchmarks
    still need CUDA for nf4/int8: ``--egbench-quant`` refuses them on the CPU)."""
    pytest.importorskip("bitsandbytes")
    adapter = load_model(ModelSpec("eventgpt", preset="tiny", quant=quant, device="cpu"))
    model = adapter.model
    quantised = [n for n, m in model.named_modules() if type(m).__name__ == layer_type]
    assert len(quantised) == 7 * model.config.text.num_hidden_layers  # q k v o gate up down
    assert all(n.startswith("language_model.model.layers.") for n in quantised)
    assert type(model.feature_adaptor) is nn.Linear and type(model.language_model.lm_head) is nn.Linear
    assert type(model.vision_tower.encoder.layers[0].mlp.fc1) is nn.Linear
    assert model.feature_adaptor.weight.dtype == QuantSpec(quant).compute_dtype
    bf16 = load_model(ModelSpec("eventgpt", preset="tiny", quant="bf16", device="cpu"))
    assert adapter.footprint_bytes() < bf16.footprint_bytes()


def test_quantised_linear_names_finds_the_decoder_linears():
    names = quantised_linear_names(_tiny_llama())
    assert len(names) == 14 and names[0] == "model.layers.0.self_attn.q_proj" and "lm_head" not in names


def test_quant_spec_formats():
    nf4 = QuantSpec("nf4").bnb_config(("lm_head", "vision_tower"))
    assert (nf4.load_in_4bit, nf4.bnb_4bit_quant_type, nf4.bnb_4bit_use_double_quant, nf4.bnb_4bit_compute_dtype) == (True, "nf4", True, torch.bfloat16)
    assert nf4.llm_int8_skip_modules == ["lm_head", "vision_tower"]
    int8 = QuantSpec("int8").bnb_config()
    assert int8.load_in_8bit and int8.llm_int8_threshold == 6.0
    assert QuantSpec("bf16").bnb_config() is None and not QuantSpec("fp32").quantised
    assert [QuantSpec(q).compute_dtype for q in ("nf4", "int8", "bf16", "fp16", "fp32")] == [
        torch.bfloat16,
        torch.float16,
        torch.bfloat16,
        torch.float16,
        torch.float32,
    ]
    with pytest.raises(ValueError, match="unknown weight format 'q4'"):
        QuantSpec("q4")


def test_kv_cache_figures_of_the_7b_lm():
    config = presets.llama_config("7b")
    assert kv_bytes_per_token(config, torch.bfloat16) == 2 * 32 * 32 * 128 * 2 == MiB // 2
    assert kv_cache_bytes(config, 636, torch.float16) / MiB == 318.0
    assert kv_cache_bytes(config, 4643, torch.bfloat16) / MiB == 2321.5
    assert kv_bytes_per_token(config, torch.float32) == MiB
    assert kv_bytes_per_token(presets.llama_config("7b", num_key_value_heads=8), torch.bfloat16) == MiB // 8


def test_footprint_counts_parameters_and_buffers_once(tiny_model):
    model = tiny_model("llava").model
    params = sum(p.numel() * 4 for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    assert footprint_bytes(model) == params + buffers


class _FakeAllocator:
    """torch.cuda's allocator counters over a hand-kept ledger of live bytes."""

    def __init__(self, held: int) -> None:
        self.live = self.peak = held

    def alloc(self, n: int) -> None:
        self.live += n
        self.peak = max(self.peak, self.live)

    def free(self, n: int) -> None:
        self.live -= n

    def install(self, monkeypatch) -> None:
        monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: self.live)
        monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: self.peak)
        monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: setattr(self, "peak", self.live))


@pytest.mark.parametrize("others", [0, 10 * 2**30])
def test_a_stage_peak_is_the_models_alone_whatever_else_the_process_holds(monkeypatch, others):
    """Hand-computed: 4 GiB of weights; prefill allocates 300 MiB, frees 100, allocates 200 (peak
    400 MiB above); decode allocates 50 MiB. Other models held by the process (10 GiB) change
    nothing but ``others_bytes``."""
    weights = 4 * 2**30
    ledger = _FakeAllocator(held=weights + others)
    ledger.install(monkeypatch)
    peaks = PeakMemory("cuda", weights)
    with peaks.stage("prefill"):
        ledger.alloc(300 * 2**20)
        ledger.free(100 * 2**20)
        ledger.alloc(200 * 2**20)
    with peaks.stage("decode"):
        ledger.alloc(50 * 2**20)
    assert peaks.bytes == {"prefill": weights + 400 * 2**20, "decode": weights + 450 * 2**20}
    assert peaks.others_bytes == others


def test_a_stage_that_frees_what_the_process_held_counts_nothing_above_it(monkeypatch):
    ledger = _FakeAllocator(held=2**30)
    ledger.install(monkeypatch)
    peaks = PeakMemory("cuda", 2**20)
    ledger.free(2**29)  # half of what was held, freed between stages
    with peaks.stage("vision"):
        ledger.alloc(2**28)
    assert peaks.bytes == {"vision": 2**20}


def test_resident_bytes_are_the_weights_plus_a_kept_static_cache():
    from types import SimpleNamespace

    from pytest_egbench.models.memory import resident_bytes

    layer = SimpleNamespace(keys=torch.zeros(1, 2, 64, 8, dtype=torch.bfloat16), values=torch.zeros(1, 2, 64, 8, dtype=torch.bfloat16))
    static = SimpleNamespace(layers=[layer, layer, layer])
    eager = SimpleNamespace(footprint_bytes=lambda: 1000, runtime=SimpleNamespace(name="eager"))
    compiled = SimpleNamespace(footprint_bytes=lambda: 1000, runtime=SimpleNamespace(name="compiled", cache=static))
    assert resident_bytes(eager) == 1000
    assert resident_bytes(compiled) == 1000 + 3 * 2 * (2 * 64 * 8) * 2  # layers x (K, V) x elements x 2 bytes


def test_peak_memory_is_not_measured_on_the_cpu():
    peaks = PeakMemory("cpu")
    with peaks.stage("vision"):
        torch.ones(1000)
    assert not peaks.supported and peaks.bytes == {"vision": None}


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'gpt4'"):
        adapter_class("gpt4")
