"""Token scaling: prefill length and prefill latency against the number of visual frames.

EventGPT pools T frames into T + 577 visual tokens (T temporal + 577 spatial), so its prefill
barely grows; Video-LLaVA adds 257 tokens a frame and LLaVA-1.5 576 an image (docs/design.md#token-counts). For
T = 1, 2, 4, 8, 16 on the first selected sample with video and events, each model's vision and
prefill stages are timed; the prompt length is an exact metric. Prompts longer than the LM's
context (``max_position_embeddings``, 4096 for the 7B models: LLaVA-1.5 with 8 images, the
origin's 4643-token run, and beyond) are still timed -- rotary positions have no hard limit and
dummy weights make the cost the same -- and flagged ``beyond_context`` in ``extra_info``; a real
checkpoint's answers there would be out of its training range.
"""

from __future__ import annotations

import pytest

from pytest_egbench.fixtures import require_sample
from pytest_egbench.pipeline import load_sample, model_needs, visual_input

pytestmark = [pytest.mark.egbench(group="token_scaling"), pytest.mark.egbench_needs("video", "events")]

FRAMES = (1, 2, 4, 8, 16)
MODELS = ("eventgpt", "video_llava", "llava")


@pytest.mark.parametrize("frames", FRAMES)
@pytest.mark.parametrize("model", MODELS)
def test_token_scaling(stage_timer, egbench_model, egbench_sample, model, frames):
    pytest.importorskip("torch")
    require_sample(egbench_sample, model_needs(model))
    adapter = egbench_model(model)
    inputs = adapter.preprocess(visual_input(model, load_sample(model, egbench_sample, frames), frames, egbench_sample.question))
    context = adapter.text_config.max_position_embeddings
    compile_s = adapter.runtime.prepare(inputs.prompt_tokens, 0)  # a compiled prefill for this length, outside the rounds; None for eager
    stage_timer.extra_info.update(
        model=model,
        frames=frames,
        sample=egbench_sample.id,
        visual_tokens=inputs.visual_tokens,
        beyond_context=inputs.prompt_tokens > context,
        runtime=adapter.runtime.name,
        compile_s=compile_s,
    )
    for rnd in stage_timer.rounds():
        with rnd.stage("vision", tokens=inputs.visual_tokens):
            visual = adapter.encode_vision(inputs)
        with rnd.stage("prefill", tokens=inputs.prompt_tokens):
            state = adapter.prefill(inputs, visual)
    assert state.cache.get_seq_length() == inputs.prompt_tokens
    # EventGPT: T temporal + (patches + CLS) spatial tokens; Video-LLaVA: patches + CLS a frame;
    # LLaVA-1.5: patches an image (577, 257 and 576 with the 7B towers)
    expected = {"eventgpt": frames + adapter.patches + 1, "video_llava": frames * (adapter.patches + 1), "llava": frames * adapter.patches}[model]
    assert inputs.visual_tokens == expected
