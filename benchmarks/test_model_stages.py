"""All five stages (docs/design.md#stages) of each multimodal model on the real samples.

EventGPT with 1 and 5 event frames, Video-LLaVA with 8 video frames, LLaVA-1.5 with 1 image and
with 8 images (the origin's "8 frames" run), on each selected sample that has what the model reads
(EventGPT: events; the others: video; a sample without it is skipped with the reason). Per round:

1. load: the event file, or the sampled MP4 frames (decoding only those), into host memory;
2. preprocess: event-frame rendering (EventGPT), image processor, tokenisation, copy to the device;
3. vision: tower and projector (EventGPT: adaptor once, spatio-temporal pooling);
4. prefill: prompt embeddings with the visual ones spliced in, one LM forward (TTFT ends here);
5. decode: ``--egbench-max-new-tokens`` - 1 greedy steps on the KV cache.

Recorded beside the timings (``extra_info``): prompt and visual tokens, KV-cache bytes computed
from the config and measured from the cache (they must agree), the weights' footprint, the model's
load time (cold, reported apart), the runtime (``--egbench-runtime``) and its compile time (done
before the rounds on this prompt's length, reported apart; ``None`` for eager), and peak device
memory per stage (CUDA; ``None`` on the CPU).
"""

from __future__ import annotations

import pytest

from pytest_egbench.fixtures import require_sample
from pytest_egbench.pipeline import load_sample, model_needs, visual_input

pytestmark = pytest.mark.egbench(group="stages")

CASES = [("eventgpt", 1), ("eventgpt", 5), ("video_llava", 8), ("llava", 1), ("llava", 8)]
#: The generic transformers adapter (models/hf_generic.py): Qwen2-VL-2B and LLaVA-OneVision-0.5B
#: shapes, one frame as an image. Their extra_info says how the stages split (``vision_split``)
#: and the tower/projector milliseconds of each round from the vision hooks.
CASES += [("qwen2_vl", 1), ("llava_onevision", 1)]


@pytest.mark.parametrize(("model", "frames"), CASES, ids=[f"{m}-{n}" for m, n in CASES])
def test_model_stages(stage_timer, egbench_model, egbench_settings, egbench_sample, model, frames):
    pytest.importorskip("torch")
    from pytest_egbench import roofline
    from pytest_egbench.models.memory import PeakMemory, kv_cache_bytes, measured_kv_cache_bytes, resident_bytes

    require_sample(egbench_sample, model_needs(model))
    adapter = egbench_model(model)
    steps = egbench_settings.max_new_tokens - 1
    peaks = PeakMemory(adapter.device, resident_bytes(adapter))
    stage_timer.extra_info.update(model=model, sample=egbench_sample.id, frames=frames)
    if adapter.runtime.name != "eager":  # compile outside the rounds, on this prompt's length
        prompt_tokens = adapter.preprocess(visual_input(model, load_sample(model, egbench_sample, frames), frames, egbench_sample.question)).prompt_tokens
        adapter.runtime.prepare(prompt_tokens, steps)
    hooks = adapter.hooks() if hasattr(adapter, "hooks") else None
    vision_parts: dict[str, list[float]] = {"tower": [], "projector": []}

    for rnd in stage_timer.rounds():
        with peaks.stage("load"), rnd.stage("load"):
            loaded = load_sample(model, egbench_sample, frames)
        with peaks.stage("preprocess"), rnd.stage("preprocess"):
            inputs = adapter.preprocess(visual_input(model, loaded, frames, egbench_sample.question))
        with peaks.stage("vision"), rnd.stage("vision", tokens=inputs.visual_tokens):
            visual = adapter.encode_vision(inputs)
        with peaks.stage("prefill"), rnd.stage("prefill", tokens=inputs.prompt_tokens):
            state = adapter.prefill(inputs, visual)
        with peaks.stage("decode"), rnd.stage("decode", tokens=steps):
            produced = adapter.decode(state, steps)
        assert produced.shape == (1, steps)
        assert state.cache.get_seq_length() == inputs.prompt_tokens + steps
        if hooks is not None:  # outside the timed stages: reading the spans synchronises
            assert hooks.calls["tower"] == 1, f"vision tower ran {hooks.calls['tower']} times in one round"
            for part, ms in hooks.take().items():
                vision_parts[part].append(ms)

    if hooks is not None:
        hooks.remove()
        stage_timer.extra_info.update(adapter.stage_note(), vision_tower_ms=vision_parts["tower"], vision_projector_ms=vision_parts["projector"])

    kv_positions = adapter.runtime.cache_positions(state.cache)  # prompt + steps, or the static cache's length
    attended = adapter.runtime.attended_positions(inputs.prompt_tokens, steps, state.cache)
    kv_computed = kv_cache_bytes(adapter.text_config, kv_positions, adapter.dtype)
    kv_measured = measured_kv_cache_bytes(state.cache)
    assert kv_measured == kv_computed
    stage_timer.extra_info.update(
        prompt_tokens=inputs.prompt_tokens,
        visual_tokens=inputs.visual_tokens,
        kv_cache_bytes=kv_measured,
        kv_bytes_per_token=adapter.kv_bytes_per_token,
        footprint_bytes=adapter.footprint_bytes(),
        model_load_s=adapter.load_seconds,
        runtime=adapter.runtime.name,
        compile_s=adapter.runtime.compile_seconds,
        compile_parts_s=adapter.runtime.compile_parts,
        decode_bytes_per_token=roofline.decode_bytes_per_token(adapter.lm, adapter.kv_bytes_per_token, attended),
        prefill_flops=roofline.prefill_flops(adapter.lm, inputs.prompt_tokens),
        kv_cache_positions=kv_positions,
        peak_memory_bytes=dict(peaks.bytes),
        peak_memory_others_bytes=peaks.others_bytes,
    )
    results = stage_timer.results()
    assert results.stages == ["load", "preprocess", "vision", "prefill", "decode"]
    assert results.rounds == egbench_settings.rounds
