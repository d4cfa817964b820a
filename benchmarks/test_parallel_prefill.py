"""Parallel prefill, really parallel: EventGPT (draft, 5 event frames, ~641 prompt tokens) prefills
and decodes while Video-LLaVA (8 frames, 2077 tokens) or LLaVA-1.5 (8 images, 4643 tokens) is
still in prefill, then a parallel-prefill speculative decoder verifies the hidden draft tokens with
the target's first forward after prefill (:mod:`pytest_egbench.metrics.parallel`).

Lanes (the parameter ``lanes``): ``sequential`` (one after the other: the reference, and the only
lane a CPU runs), ``streams`` (two CUDA streams on one GPU; ``gpu``) and ``devices`` (the draft
loaded again on ``cuda:1``; ``gpu``, skipped with fewer than two GPUs). Vision (stage 3) runs
before the timed part; each model's prefill starts from its spliced prompt embeddings.

Timed per round (stage timer): ``target_alone`` (target prefill + ``steps`` greedy tokens),
``sequential_e2e`` (:func:`parallel_prefill_decode` with the two prefills one after the other, the
same ``steps`` tokens) and, for ``streams``/``devices``, ``parallel_e2e`` (the same on those
lanes). The figures below come from the last of these runs. Sequential references, timed too: ``draft_prefill``, ``draft_decode`` (``HIDDEN`` - 1
tokens), ``target_prefill``. Recorded from the last steady round's CUDA events (or host clock):
``hidden_before_target`` (draft tokens that finished before the target's prefill ended: measured),
``predicted_hidden`` (the origin's formula from the sequential runs), ``overlap_window_ms``
(how long draft work and target prefill ran at once: 0 on sequential lanes), ``hidden_accepted``, ``speedup_vs_target_alone`` and ``speedup_vs_sequential`` (kind "info"). The
decoder's output is asserted equal to the target's own greedy output every round.

With dummy weights the draft's tokens are rejected (alpha near 0): the time figures (overlap,
hidden tokens) are what this benchmark is for; hidden tokens pay off only with real checkpoints.
"""

from __future__ import annotations

import statistics

import pytest

from pytest_egbench.fixtures import require_eager
from pytest_egbench.pipeline import load_sample, visual_input

#: stages: the ones timed besides the pipeline's, declared so that --egbench-inject and tolerances accept them
pytestmark = pytest.mark.egbench(
    group="parallel_prefill", stages=["draft_prefill", "draft_decode", "target_prefill", "target_alone", "sequential_e2e", "parallel_e2e"], alternatives=True
)

DRAFT, DRAFT_FRAMES = "eventgpt", 5
#: LLaVA-1.5 with 8 images (4643-token prefills) is GPU-only: on a 2-core CPU a round takes seconds.
TARGETS = [pytest.param("video_llava", 8, id="video_llava-8"), pytest.param("llava", 8, id="llava-8", marks=pytest.mark.gpu)]
#: Tokens after the first on a CPU (each verification step of gamma 4 costs 5 forwards).
CPU_STEPS = 4
HIDDEN = 8
GAMMA = 4
LANES = [
    pytest.param("sequential", id="sequential"),
    pytest.param("streams", id="streams", marks=pytest.mark.gpu),
    pytest.param("devices", id="devices", marks=pytest.mark.gpu),
]


def _embeds(adapter, name, sample, frames):
    inputs = adapter.preprocess(visual_input(name, load_sample(name, sample, frames), frames, sample.question))
    return adapter.embed_prompt(inputs, adapter.encode_vision(inputs)), inputs.prompt_tokens


@pytest.mark.egbench_needs("events", "video")
@pytest.mark.parametrize("lanes", LANES)
@pytest.mark.parametrize(("target_name", "frames"), TARGETS)
def test_parallel_prefill(stage_timer, egbench_model, egbench_settings, egbench_sample, egbench_record, target_name, frames, lanes):
    require_eager(
        egbench_settings,
        "parallel prefill runs eagerly only: its two lanes run the draft and the target at the same time on two CUDA streams, "
        "and the compiled runtime replays its CUDA graphs on one stream, one at a time",
    )
    pytest.importorskip("torch")
    import torch

    from pytest_egbench.metrics.agreement import output_agreement
    from pytest_egbench.metrics.parallel import Lanes, parallel_prefill_decode, predicted_hidden_tokens
    from pytest_egbench.models.generation import decode, prefill_with_logits

    target = egbench_model(target_name)
    draft = egbench_model(DRAFT)
    if lanes == "devices":
        if torch.cuda.device_count() < 2:
            pytest.skip("one model per GPU needs two GPUs")
        from dataclasses import replace

        from pytest_egbench.models.registry import load_model

        draft = load_model(replace(draft.spec, device="cuda:1"))
    # the stage timer's CUDA events live on the benchmark device: with the draft on another GPU,
    # its stages end with a host wait for that GPU, so the end event comes after the draft's work
    wait_for_draft = (lambda: torch.cuda.synchronize(draft.device)) if draft.device != target.device else (lambda: None)
    vocab = min(draft.text_config.vocab_size, target.text_config.vocab_size)
    exact = target.dtype == torch.float32
    matches = {}
    steps = egbench_settings.max_new_tokens - 1
    if target.device.type == "cpu":
        steps = min(steps, CPU_STEPS)
    with torch.inference_mode():
        d_embeds, d_len = _embeds(draft, DRAFT, egbench_sample, DRAFT_FRAMES)
        t_embeds, t_len = _embeds(target, target_name, egbench_sample, frames)
    runs = [("sequential_e2e", Lanes("sequential", draft.device, target.device))]
    if lanes != "sequential":
        runs.append(("parallel_e2e", Lanes(lanes, draft.device, target.device)))
    label = f"{DRAFT}->{target_name}"
    stage_timer.extra_info.update(
        model=label, sample=egbench_sample.id, lanes=lanes, steps=steps, hidden=HIDDEN, gamma=GAMMA, draft_prompt_tokens=d_len, target_prompt_tokens=t_len
    )

    for rnd in stage_timer.rounds():
        with rnd.stage("draft_prefill", tokens=d_len):
            token, d_cache, _ = prefill_with_logits(draft.lm, inputs_embeds=d_embeds)
            wait_for_draft()
        with rnd.stage("draft_decode", tokens=HIDDEN - 1):
            decode(draft.lm, token, d_cache, HIDDEN - 1, vocab_size=vocab)
            wait_for_draft()
        with rnd.stage("target_prefill", tokens=t_len):
            prefill_with_logits(target.lm, inputs_embeds=t_embeds)
        with rnd.stage("target_alone", tokens=steps):
            _, t_cache, t_logits = prefill_with_logits(target.lm, inputs_embeds=t_embeds)
            own = decode(target.lm, t_logits[:, :vocab].argmax(-1, keepdim=True), t_cache, steps, vocab_size=vocab)
        reference = own[0].tolist()
        for stage, lanes_now in runs:
            with rnd.stage(stage, tokens=steps):
                result = parallel_prefill_decode(
                    draft.lm,
                    {"inputs_embeds": d_embeds},
                    target.lm,
                    {"inputs_embeds": t_embeds},
                    steps=steps,
                    gamma=GAMMA,
                    hidden=HIDDEN,
                    lanes=lanes_now,
                    vocab_size=vocab,
                )
            if exact:  # see benchmarks/test_acceptance.py: exact in fp32, recorded in bf16 / NF4
                assert result.tokens == reference, f"{stage}: parallel-prefill speculative output differs from the target's greedy output"
            matches[stage] = output_agreement(result.tokens, reference)

    med = {stage: statistics.median(ns) for stage, ns in stage_timer.results().steady.items()}
    predicted = predicted_hidden_tokens(med["target_prefill"], med["draft_prefill"], med["draft_decode"] / (HIDDEN - 1))
    e2e = runs[-1][0]
    for stage, match in matches.items():
        egbench_record(
            f"greedy_match.{stage}", match.rate, unit="fraction", kind="info", model=label, first_divergence=match.common_prefix, exact_arithmetic=exact
        )
    egbench_record(
        "hidden_before_target",
        result.hidden_before_target,
        unit="tokens",
        kind="info",
        model=label,
        draft_token_end_ns=result.draft_token_end_ns,
        target_prefill_end_ns=result.target_prefill_end_ns,
    )
    egbench_record(
        "predicted_hidden",
        predicted,
        unit="tokens",
        kind="info",
        model=label,
        formula="floor((target prefill - draft prefill) / draft time per token), sequential medians",
    )
    egbench_record(
        "overlap_window_ms",
        result.overlap_ns / 1e6,
        unit="ms",
        kind="info",
        model=label,
        draft_start_ns=result.draft_start_ns,
        draft_prefill_end_ns=result.draft_prefill_end_ns,
    )
    egbench_record("hidden_accepted", result.hidden_accepted, unit="tokens", kind="info", model=label, hidden_proposed=result.hidden_proposed)
    egbench_record("speedup_vs_target_alone", med["target_alone"] / med[e2e], unit="x", kind="info", model=label, run=e2e)
    egbench_record("speedup_vs_sequential", med["sequential_e2e"] / med[e2e], unit="x", kind="info", model=label, run=e2e)
    print(
        f"\n{label} [{lanes}] on {egbench_sample.id}: hidden tokens measured {result.hidden_before_target} / predicted {predicted} "
        f"(of {HIDDEN} queued), accepted {result.hidden_accepted}; overlap window {result.overlap_ns / 1e6:.2f} ms; "
        f"end-to-end {med[e2e] / 1e6:.2f} ms vs one after the other {med['sequential_e2e'] / 1e6:.2f} ms vs target alone {med['target_alone'] / 1e6:.2f} ms"
    )
