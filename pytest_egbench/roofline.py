"""Roofline figures, gpt-fast style: how close decode is to the memory-bandwidth bound and prefill
to the compute bound (docs/gpu.md#roofline).

* decode: achieved bandwidth = bytes a decode step reads (the weights, less the input embedding
  table of which it reads one row, plus the KV cache it attends over) / time per output token;
* prefill: achieved FLOP/s = FLOPs of one forward over the prompt / prefill time.

Peaks, and where they come from: this machine's calibration (:mod:`pytest_egbench.calibration`:
the measured device-memory copy and bf16 matmul rates) where it was measured, else the datasheet
figure of a known GPU (:data:`DATASHEET`), else none. No torch at import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Datasheet peaks of known GPUs: HBM bandwidth (bytes/s) and dense bf16 tensor-core FLOP/s
#: (without sparsity), from NVIDIA's H200, H100, A100, L40S and L4 datasheets. Matched against the
#: CUDA device name by :func:`datasheet_peaks`, most specific key first.
DATASHEET: dict[str, tuple[float, float]] = {
    "H200": (4.8e12, 989.4e12),
    "H100 NVL": (3.9e12, 835.0e12),
    "H100 PCIe": (2.0e12, 756.0e12),
    "H100": (3.35e12, 989.4e12),  # SXM5 ("NVIDIA H100 80GB HBM3")
    "A100-SXM4-80GB": (2.039e12, 312.0e12),
    "A100 80GB PCIe": (1.935e12, 312.0e12),
    "A100": (1.555e12, 312.0e12),  # 40 GB, SXM4 and PCIe
    "L40S": (0.864e12, 362.05e12),
    "L4": (0.3e12, 121.0e12),
}


@dataclass(frozen=True)
class Peaks:
    """Peak memory bandwidth (bytes/s) and bf16 FLOP/s of a device, and their ``source``
    ("calibration" or "datasheet NAME")."""

    bandwidth: float
    flops: float
    source: str


def datasheet_peaks(gpu_name: str | None) -> Peaks | None:
    """The :data:`DATASHEET` entry whose key occurs in ``gpu_name`` (longest key first), or None."""
    if not gpu_name:
        return None
    for key in sorted(DATASHEET, key=len, reverse=True):
        if key in gpu_name:
            bandwidth, flops = DATASHEET[key]
            return Peaks(bandwidth, flops, f"datasheet {key}")
    return None


def calibrated_peaks(calibration: Mapping[str, Any] | None) -> Peaks | None:
    """Peaks from a CUDA calibration in its JSON form (``{"device": "cuda", "probes":
    {"device_copy": {"median": GB/s}, "matmul": {"median": TFLOP/s}, ...}}``,
    :meth:`pytest_egbench.calibration.Calibration.to_json`), or None when it lacks them or was
    measured on the CPU."""
    if not calibration or calibration.get("device") != "cuda":
        return None
    probes = calibration.get("probes") or {}
    copy, matmul = probes.get("device_copy"), probes.get("matmul")
    if not isinstance(copy, Mapping) or not isinstance(matmul, Mapping):
        return None
    bandwidth, flops = copy.get("median"), matmul.get("median")
    if not isinstance(bandwidth, (int, float)) or not isinstance(flops, (int, float)) or bandwidth <= 0 or flops <= 0:
        return None
    return Peaks(float(bandwidth) * 1e9, float(flops) * 1e12, "calibration")


def _decoder_dims(config: Any) -> tuple[int, int, int, int, int, int]:
    text = getattr(config, "text_config", None) or config
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    return text.hidden_size, text.intermediate_size, text.num_hidden_layers, heads * head_dim, kv_heads * head_dim, text.vocab_size


def prefill_flops(model: Any, tokens: int) -> float:
    """FLOPs of one LLaMA-style forward over a ``tokens``-long prompt that computes the logits of
    the last position only (``logits_to_keep=1``), a multiply-add counted as 2 FLOPs:

    ``2 * tokens * P_layers + n_layer * 2 * tokens * (tokens + 1) * d_attn + 2 * d * vocab``

    where ``P_layers`` = the weights of the decoder layers' linear maps (q, k, v, o and the gated
    MLP's three), from the config (packed NF4 tensors would undercount them), and the middle term
    is causal attention (QK^T and AV over ``i + 1`` keys for query ``i``). Kaplan et al. 2020,
    "Scaling Laws for Neural Language Models", Table 1, with the causal mask's context."""
    d, ffn, layers, q_dim, kv_dim, vocab = _decoder_dims(model.config)
    per_layer = d * q_dim + 2 * d * kv_dim + q_dim * d + 3 * d * ffn
    return float(2 * tokens * layers * per_layer + layers * 2 * tokens * (tokens + 1) * q_dim + 2 * d * vocab)


def decode_bytes_per_token(model: Any, kv_bytes_per_position: int, attended_positions: float) -> float:
    """Bytes one decode step reads: every weight and buffer of ``model`` as stored
    (:func:`pytest_egbench.models.memory.footprint_bytes`, NF4 statistics included) less the
    input embedding table (one row of it is read; kept when the LM head shares it), plus the KV
    cache over ``attended_positions`` positions at ``kv_bytes_per_position``."""
    from .models.memory import footprint_bytes

    weights = footprint_bytes(model)
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    if head is None or head.weight is not embed:
        weights -= embed.numel() * embed.element_size()
    return float(weights + kv_bytes_per_position * attended_positions)


@dataclass(frozen=True)
class Roofline:
    """Achieved decode bandwidth (bytes/s) and prefill FLOP/s, and their shares of ``peaks``."""

    decode_bandwidth: float | None
    prefill_flops_per_s: float | None
    peaks: Peaks | None

    @property
    def decode_share(self) -> float | None:
        return None if self.decode_bandwidth is None or self.peaks is None else self.decode_bandwidth / self.peaks.bandwidth

    @property
    def prefill_share(self) -> float | None:
        return None if self.prefill_flops_per_s is None or self.peaks is None else self.prefill_flops_per_s / self.peaks.flops


def roofline(extra_info: Mapping[str, Any], tpot_s: float | None, prefill_s: float | None, peaks: Peaks | None) -> Roofline:
    """The roofline figures of one benchmark from its ``extra_info`` (``decode_bytes_per_token``,
    ``prefill_flops``) and its median time per output token and prefill time (seconds)."""
    nbytes, flops = extra_info.get("decode_bytes_per_token"), extra_info.get("prefill_flops")
    bandwidth = nbytes / tpot_s if isinstance(nbytes, (int, float)) and tpot_s else None
    rate = flops / prefill_s if isinstance(flops, (int, float)) and prefill_s else None
    return Roofline(bandwidth, rate, peaks)
