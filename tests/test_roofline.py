"""Roofline figures (pytest_egbench.roofline) against hand-computed cases."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pytest_egbench import roofline
from pytest_egbench.roofline import Peaks, calibrated_peaks, datasheet_peaks


def _config(**kw):
    base = dict(hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, vocab_size=10)
    return SimpleNamespace(**{**base, **kw})


def test_prefill_flops_by_hand():
    # d=8, ffn=16, 2 layers, 2 heads of 4 (q_dim 8), 1 KV head (kv_dim 4), vocab 10, L=3 tokens.
    # per layer: q 8*8 + k,v 2*8*4 + o 8*8 + MLP 3*8*16 = 64 + 64 + 64 + 384 = 576 weights
    # linear: 2 FLOPs x 3 tokens x 2 layers x 576 = 6912; causal attention: 2 layers x 2 x 3 x 4 x 8 = 384
    # (QK^T and AV over 1, 2 and 3 keys: 2 x (1+2+3) x 8 x 2 FLOPs = 192 a layer); LM head, last position: 2 x 8 x 10 = 160
    model = SimpleNamespace(config=_config())
    assert roofline.prefill_flops(model, 3) == 6912 + 384 + 160
    # a multimodal config: the text config's numbers are used
    assert roofline.prefill_flops(SimpleNamespace(config=SimpleNamespace(text_config=_config())), 3) == 7456


def test_prefill_flops_of_llama_7b_match_the_2n_rule():
    # LLaMA-7B: 6.48e9 weights in the decoder layers' linear maps (32 x (4 x 4096^2 + 3 x 4096 x 11008)).
    config = _config(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32, vocab_size=32000)
    flops = roofline.prefill_flops(SimpleNamespace(config=config), 637)
    linear = 2 * 637 * 32 * (4 * 4096**2 + 3 * 4096 * 11008)
    assert linear == pytest.approx(2 * 637 * 6.476e9, rel=1e-3)
    # Kaplan et al.'s C = 2N per token, N the non-embedding weights: attention and the head add 1.3 %
    assert linear < flops == pytest.approx(2 * 637 * 6.476e9, rel=0.02)


def test_decode_bytes_count_the_weights_less_the_input_embeddings_plus_the_kv_cache():
    torch = pytest.importorskip("torch")
    model = torch.nn.Module()
    model.embed = torch.nn.Embedding(10, 4)  # 40 fp32 = 160 bytes, one row read a token
    model.body = torch.nn.Linear(4, 4, bias=False)  # 64 bytes
    model.head = torch.nn.Linear(4, 10, bias=False)  # 160 bytes
    model.get_input_embeddings = lambda: model.embed
    model.get_output_embeddings = lambda: model.head
    assert roofline.decode_bytes_per_token(model, kv_bytes_per_position=6, attended_positions=100) == 64 + 160 + 600
    model.head.weight = model.embed.weight  # tied: the head reads the whole table
    assert roofline.decode_bytes_per_token(model, 6, 100) == 64 + 160 + 600


def test_peaks_from_the_calibration_else_the_datasheet():
    assert datasheet_peaks("NVIDIA H200") == Peaks(4.8e12, 989.4e12, "datasheet H200")
    assert datasheet_peaks("NVIDIA H100 80GB HBM3").source == "datasheet H100"
    assert datasheet_peaks("NVIDIA H100 PCIe").source == "datasheet H100 PCIe"  # the more specific key wins
    assert datasheet_peaks("NVIDIA GeForce RTX 2080") is None and datasheet_peaks(None) is None
    calibration = {"device": "cuda", "probes": {"device_copy": {"median": 4200.0}, "matmul": {"median": 770.0}}}
    assert calibrated_peaks(calibration) == Peaks(4.2e12, 770e12, "calibration")
    assert calibrated_peaks({**calibration, "device": "cpu"}) is None
    assert calibrated_peaks({"device": "cuda", "probes": {"matmul": {"median": 770.0}}}) is None


def test_roofline_shares():
    peaks = Peaks(4.0e12, 1.0e15, "datasheet X")
    r = roofline.roofline({"decode_bytes_per_token": 1.2e10, "prefill_flops": 5e12}, tpot_s=5e-3, prefill_s=0.02, peaks=peaks)
    assert r.decode_bandwidth == pytest.approx(2.4e12) and r.decode_share == pytest.approx(0.6)
    assert r.prefill_flops_per_s == pytest.approx(2.5e14) and r.prefill_share == pytest.approx(0.25)
    bare = roofline.roofline({}, tpot_s=5e-3, prefill_s=None, peaks=None)
    assert bare.decode_bandwidth is None and bare.decode_share is None and bare.prefill_share is None
