"""Memory of each model on its first usable sample: weights, KV cache, peak device memory.

* ``footprint_bytes`` (exact): every parameter and buffer plus bitsandbytes' quantisation state.
* ``kv_bytes_per_token`` and ``kv_cache_bytes`` (exact): computed from the config
  (2 x layers x kv_heads x head_dim x bytes per element, docs/design.md#kv-cache) and measured from the cache
  tensors after prefill and decode; the test fails if the two disagree.
* ``model_peak.<stage>`` (memory; CUDA only): the stage's peak device memory as if the model were
  alone on the device: its weights (and a compiled runtime's static KV cache where one was made
  before this test) plus the most the stage allocated above what the process held when the test
  began (:class:`~pytest_egbench.models.memory.PeakMemory`). Not the process's absolute peak,
  which holds every model loaded for the session and so depends on which benchmarks ran before;
  what else the process held is reported as ``others_bytes``. The CPU's allocator keeps no peak
  counter, so on the CPU these are not recorded (never reported as 0).
"""

from __future__ import annotations

import pytest

from pytest_egbench.fixtures import require_sample
from pytest_egbench.pipeline import load_sample, model_needs, visual_input

#: metrics: the recorded ones that take a tolerance, declared so that the tolerances accept them
pytestmark = pytest.mark.egbench(group="memory", metrics=[f"model_peak.{stage}" for stage in ("preprocess", "vision", "prefill", "decode")])

CASES = [("eventgpt", 5), ("video_llava", 8), ("llava", 8)]


@pytest.mark.parametrize(("model", "frames"), CASES, ids=[f"{m}-{n}" for m, n in CASES])
def test_memory(egbench_record, egbench_model, egbench_settings, egbench_sample, model, frames):
    pytest.importorskip("torch")
    from pytest_egbench.models.memory import PeakMemory, kv_cache_bytes, measured_kv_cache_bytes, resident_bytes

    require_sample(egbench_sample, model_needs(model))
    adapter = egbench_model(model)
    steps = egbench_settings.max_new_tokens - 1
    peaks = PeakMemory(adapter.device, resident_bytes(adapter))
    with peaks.stage("preprocess"):
        inputs = adapter.preprocess(visual_input(model, load_sample(model, egbench_sample, frames), frames, egbench_sample.question))
    with peaks.stage("vision"):
        visual = adapter.encode_vision(inputs)
    with peaks.stage("prefill"):
        state = adapter.prefill(inputs, visual)
    with peaks.stage("decode"):
        adapter.decode(state, steps)
    # positions the cache holds memory for: prompt + decode (eager), the static cache's length (compiled)
    tokens = adapter.runtime.cache_positions(state.cache)
    assert tokens >= inputs.prompt_tokens + steps
    computed = kv_cache_bytes(adapter.text_config, tokens, adapter.dtype)
    measured = measured_kv_cache_bytes(state.cache)
    assert measured == computed, f"KV cache: {measured} bytes in the tensors, {computed} from the config"
    egbench_record("footprint_bytes", adapter.footprint_bytes(), unit="bytes", kind="exact", model=model)
    egbench_record("kv_bytes_per_token", adapter.kv_bytes_per_token, unit="bytes", kind="exact", model=model)
    egbench_record("kv_cache_bytes", measured, unit="bytes", kind="exact", model=model, tokens=tokens)
    for stage, peak in peaks.bytes.items():
        if peak is not None:
            egbench_record(f"model_peak.{stage}", peak, unit="bytes", kind="memory", model=model, stage=None, others_bytes=peaks.others_bytes)
