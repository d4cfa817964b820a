"""The five stages of the example adapter, on each bundled sample with event images."""

import pytest

pytestmark = pytest.mark.egbench(group="example")


@pytest.mark.egbench_needs("event_image")
def test_example_stages(stage_timer, egbench_model, egbench_settings, egbench_sample):
    # imported here, not at the top: plain `pytest` (no --egbench) then imports no torch
    from pytest_egbench.pipeline import load_sample, visual_input

    adapter = egbench_model("example")
    frames = adapter.default_frames
    steps = egbench_settings.max_new_tokens - 1
    stage_timer.extra_info.update(model="example", sample=egbench_sample.id, frames=frames)
    for rnd in stage_timer.rounds():
        with rnd.stage("load"):
            loaded = load_sample("example", egbench_sample, frames)
        with rnd.stage("preprocess"):
            inputs = adapter.preprocess(visual_input("example", loaded, frames, egbench_sample.question))
        with rnd.stage("vision", tokens=inputs.visual_tokens):
            visual = adapter.encode_vision(inputs)
        with rnd.stage("prefill", tokens=inputs.prompt_tokens):
            state = adapter.prefill(inputs, visual)
        with rnd.stage("decode", tokens=steps):
            adapter.decode(state, steps)
    stage_timer.extra_info.update(prompt_tokens=inputs.prompt_tokens, visual_tokens=inputs.visual_tokens, kv_bytes_per_token=adapter.kv_bytes_per_token)
