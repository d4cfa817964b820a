"""The LLaMA language model shared by all three multimodal models, timed in stages.

preprocess (token ids to the device), prefill (one forward over the prompt, KV cache filled, first
token) and decode (``max_new_tokens - 1`` greedy steps on the KV cache). The prompt is EventGPT's
1-frame prefill length (637 tokens: 578 visual + 59 text, docs/design.md#token-counts) drawn at random from the
vocabulary; with dummy weights the values do not matter, the length does.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.egbench(group="lm")

PROMPT_TOKENS = 637


def test_lm_stages(stage_timer, egbench_device, egbench_settings):
    torch = pytest.importorskip("torch")
    from pytest_egbench.models.generation import decode, prefill
    from pytest_egbench.models.llama import dummy_llama

    model = dummy_llama(egbench_settings.preset, egbench_settings.quant, egbench_device)
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(3, model.config.vocab_size, (1, PROMPT_TOKENS), generator=generator)
    steps = egbench_settings.max_new_tokens - 1
    stage_timer.extra_info.update(model=f"llama-{egbench_settings.preset}", prompt_tokens=PROMPT_TOKENS)

    for rnd in stage_timer.rounds():
        with rnd.stage("preprocess"):
            ids = prompt.to(egbench_device)
        with rnd.stage("prefill", tokens=PROMPT_TOKENS):
            first, cache = prefill(model, input_ids=ids)
        with rnd.stage("decode", tokens=steps):
            produced = decode(model, first, cache, steps)
        # one token from prefill plus every decode step, and the KV cache holds every position
        assert produced.shape == (1, steps)
        assert cache.get_seq_length() == PROMPT_TOKENS + steps

    results = stage_timer.results()
    assert results.stages == ["preprocess", "prefill", "decode"]
    assert results.rounds == egbench_settings.rounds
