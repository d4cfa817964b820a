"""The LLaMA language model shared by all three multimodal models, timed in stages.

preprocess (token ids to the device), prefill (one forward over the prompt, KV cache filled, first
token) and decode (``max_new_tokens - 1`` greedy steps on the KV cache), in the runtime of
``--egbench-runtime`` (:mod:`pytest_egbench.models.runtime`; the compiled one is compiled before
the rounds and its compile time reported apart). The prompt is EventGPT's 1-frame prefill length
(637 tokens: 578 visual + 59 text, docs/design.md#token-counts) drawn at random from the
vocabulary; with dummy weights the values do not matter, the length does.

Beside the timings (``extra_info``), what the roofline columns need (docs/gpu.md#roofline):
``decode_bytes_per_token`` (the weights a decode step reads plus the KV cache it attends over) and
``prefill_flops`` (:func:`pytest_egbench.roofline.prefill_flops`).
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.egbench(group="lm")

PROMPT_TOKENS = 637


def test_lm_stages(stage_timer, egbench_device, egbench_settings, egbench_progress):
    torch = pytest.importorskip("torch")
    from pytest_egbench import roofline
    from pytest_egbench.models.llama import dummy_llama
    from pytest_egbench.models.memory import kv_bytes_per_token
    from pytest_egbench.models.runtime import lm_runtime, quant_unsupported

    unsupported = quant_unsupported(egbench_settings.runtime, egbench_settings.quant, egbench_device.type)
    if unsupported:
        pytest.skip(unsupported)
    model = dummy_llama(egbench_settings.preset, egbench_settings.quant, egbench_device)
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(3, model.config.vocab_size, (1, PROMPT_TOKENS), generator=generator)
    steps = egbench_settings.max_new_tokens - 1
    lm = lm_runtime(egbench_settings.runtime, model)
    lm.progress = egbench_progress
    compile_s = lm.prepare(PROMPT_TOKENS, steps)  # None for eager
    stage_timer.extra_info.update(
        model=f"llama-{egbench_settings.preset}", prompt_tokens=PROMPT_TOKENS, runtime=lm.name, compile_s=compile_s, compile_parts_s=lm.compile_parts
    )

    for rnd in stage_timer.rounds():
        with rnd.stage("preprocess"):
            ids = prompt.to(egbench_device)
        with rnd.stage("prefill", tokens=PROMPT_TOKENS):
            first, cache, _ = lm.prefill(input_ids=ids)
        with rnd.stage("decode", tokens=steps):
            produced = lm.decode(first, cache, steps)
        # one token from prefill plus every decode step, and the KV cache holds every position
        assert produced.shape == (1, steps)
        assert int(cache.get_seq_length()) == PROMPT_TOKENS + steps

    attended = lm.attended_positions(PROMPT_TOKENS, steps, cache)
    stage_timer.extra_info.update(
        decode_bytes_per_token=roofline.decode_bytes_per_token(model, kv_bytes_per_token(model.config, model.dtype), attended),
        prefill_flops=roofline.prefill_flops(model, PROMPT_TOKENS),
    )
    results = stage_timer.results()
    assert results.stages == ["preprocess", "prefill", "decode"]
    assert results.rounds == egbench_settings.rounds
