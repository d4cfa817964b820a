"""Exactness of speculative acceptance by verification on tiny seeded models (CPU).

Properties (issue 6): draft == target gives alpha = 1 exactly; the speculative output always
equals the target's own greedy output; it equals transformers' assisted generation.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_lms import VOCAB, tiny_lm

from pytest_egbench.metrics.speculative import (
    AcceptanceStats,
    acceptance_sweep,
    prefill_ids,
    speculative_decode,
    truncate_cache,
)
from pytest_egbench.models.generation import decode


def target_greedy(model, ids, steps, vocab_size=None):
    cont, first = prefill_ids(model, ids, vocab_size)
    return first, decode(model, torch.tensor([[first]]), cont.cache, steps, vocab_size=vocab_size)[0].tolist()


def run(draft, target, ids, steps, gamma, draft_ids=None, vocab_size=None):
    t, first = prefill_ids(target, ids, vocab_size)
    d, _ = prefill_ids(draft, draft_ids or ids, vocab_size)
    return first, speculative_decode(d, t, first, steps, gamma, vocab_size=vocab_size), d, t


@pytest.mark.parametrize("gamma", [1, 2, 5, 8])
def test_draft_equal_to_target_accepts_everything(gamma):
    model = tiny_lm(0)
    first, result, _, _ = run(model, model, [1, 4, 9, 16], 17, gamma)
    assert result.stats.alpha == 1.0
    assert result.stats.tau == gamma + 1
    assert result.stats.per_position() == [1.0] * gamma
    assert result.tokens == target_greedy(model, [1, 4, 9, 16], 17)[1]
    assert result.target_forwards == math.ceil(17 / (gamma + 1))


prompts = st.lists(st.integers(2, VOCAB - 1), min_size=1, max_size=12).map(lambda xs: [1, *xs])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ids=prompts, gamma=st.integers(1, 8), steps=st.integers(0, 24), draft_kind=st.sampled_from(["seed", "layers", "noise"]), draft_prompt=st.booleans())
def test_speculative_output_equals_target_greedy(ids, gamma, steps, draft_kind, draft_prompt):
    target = tiny_lm(0)
    draft = {"seed": tiny_lm(7), "layers": tiny_lm(3, layers=1), "noise": tiny_lm(11, noise=0.3, base_seed=0)}[draft_kind]
    # the draft may see another prompt (multimodal: its own visual tokens); the output must not care
    draft_ids = [1, 3, *ids[1:]] if draft_prompt else None
    first, result, d, t = run(draft, target, ids, steps, gamma, draft_ids=draft_ids)
    assert first == target_greedy(target, ids, 0)[0]
    assert result.tokens == target_greedy(target, ids, steps)[1]
    assert len(result.tokens) == steps
    stats = result.stats
    assert all(0 <= a <= gamma for a in stats.accepted)
    if stats.steps:
        assert stats.steps == result.target_forwards
        assert sum(a + 1 for a in stats.accepted) >= steps  # every step produced accepted + 1
        assert 1 <= stats.tau <= gamma + 1 and 0 <= stats.alpha <= 1
    # caches hold prompt + accepted text (the last token is fed at the next step)
    assert t.cache.get_seq_length() <= t.prompt_tokens + sum(a + 1 for a in stats.accepted)


def test_partial_acceptance_happens_and_is_counted():
    target, draft = tiny_lm(0), tiny_lm(11, noise=0.3, base_seed=0)
    _, result, _, _ = run(draft, target, [1, 5, 6, 7], 40, 4)
    stats = result.stats
    assert 0 < stats.alpha < 1, "the noisy draft should agree with the target some of the time"
    assert result.tokens == target_greedy(target, [1, 5, 6, 7], 40)[1]


def test_vocab_restriction_applies_to_both_sides():
    target, draft = tiny_lm(0), tiny_lm(11, noise=0.3, base_seed=0)
    _, result, _, _ = run(draft, target, [1, 8, 9], 20, 3, vocab_size=40)
    assert all(t < 40 for t in result.tokens)
    assert result.tokens == target_greedy(target, [1, 8, 9], 20, vocab_size=40)[1]


@pytest.mark.parametrize("gamma", [1, 3, 6])
@pytest.mark.parametrize("draft_seed", ["noise", "layers"])
def test_equals_transformers_assisted_generation(gamma, draft_seed):
    """transformers' assisted generation, made deterministic: greedy (``do_sample=False``), a
    constant ``num_assistant_tokens`` schedule, no confidence-based early stop of the assistant
    (``assistant_confidence_threshold=0``), and no EOS in the tiny models' configs."""
    target = tiny_lm(0)
    draft = tiny_lm(11, noise=0.3, base_seed=0) if draft_seed == "noise" else tiny_lm(3, layers=1)
    ids, steps = [1, 12, 30, 7, 44], 24
    first, result, _, _ = run(draft, target, ids, steps, gamma)
    draft.generation_config.num_assistant_tokens = gamma
    draft.generation_config.num_assistant_tokens_schedule = "constant"
    draft.generation_config.assistant_confidence_threshold = 0.0
    out = target.generate(
        torch.tensor([ids]),
        assistant_model=draft,
        do_sample=False,
        max_new_tokens=steps + 1,
        num_assistant_tokens=gamma,
        num_assistant_tokens_schedule="constant",
        eos_token_id=None,
        pad_token_id=0,
    )
    assert out[0, len(ids) :].tolist() == [first, *result.tokens]


def test_sweep_rewinds_between_gammas():
    target, draft = tiny_lm(0), tiny_lm(11, noise=0.3, base_seed=0)
    t, first = prefill_ids(target, [1, 2, 3])
    d, _ = prefill_ids(draft, [1, 2, 3])
    results = acceptance_sweep(d, t, first, 12, [1, 2, 4, 8])
    reference = target_greedy(target, [1, 2, 3], 12)[1]
    assert {g: r.tokens == reference for g, r in results.items()} == {1: True, 2: True, 4: True, 8: True}
    assert t.cache.get_seq_length() == t.prompt_tokens and d.cache.get_seq_length() == d.prompt_tokens


def test_truncate_cache_removes_only_the_excess():
    model = tiny_lm(0)
    cont, _ = prefill_ids(model, [1, 2, 3, 4, 5])
    truncate_cache(cont.cache, 9)
    assert cont.cache.get_seq_length() == 5
    truncate_cache(cont.cache, 3)
    assert cont.cache.get_seq_length() == 3


def test_acceptance_stats_by_hand():
    s = AcceptanceStats(3, (3, 0, 1, 2))
    assert s.proposed == 12 and s.alpha == 6 / 12
    assert s.tau == (6 + 4) / 4
    # position 1 reached 4x, accepted 3x; position 2 reached 3x (3, 1, 2), accepted 2x; position 3 reached 2x, accepted 1x
    assert s.per_position() == [3 / 4, 2 / 3, 1 / 2]
    assert AcceptanceStats(2, (0, 0)).per_position() == [0.0, None]
    assert math.isnan(AcceptanceStats(2).alpha)
    assert AcceptanceStats.merge([AcceptanceStats(2, (1,)), AcceptanceStats(2, (2, 0))]).accepted == (1, 2, 0)
    with pytest.raises(ValueError, match="different gammas"):
        AcceptanceStats.merge([AcceptanceStats(2), AcceptanceStats(3)])
    with pytest.raises(ValueError, match="0..2"):
        AcceptanceStats(2, (3,))
    with pytest.raises(ValueError, match="gamma"):
        AcceptanceStats(0)


def test_bad_arguments():
    model = tiny_lm(0)
    t, first = prefill_ids(model, [1, 2])
    with pytest.raises(ValueError, match="gamma"):
        speculative_decode(t, t, first, 4, 0)
