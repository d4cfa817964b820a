"""Acceptance counts checked against an outside oracle, not against the code's own counting.

The counts of :func:`speculative_decode` are recomputed here from the raw material of every
verification step -- the draft's gamma proposals and the target's greedy token at each of the
gamma + 1 positions it scored -- by a reference counter written from the definition (Leviathan et
al. 2023, Algorithm 1, greedy case):

* accepted = the length of the longest prefix of the proposals equal to the target's greedy
  tokens at those positions;
* the target's extra token (the correction at the first mismatch, or the bonus after gamma
  accepted proposals) is produced but never counted as accepted;
* alpha = accepted / proposed, tau = mean of (accepted + 1).

The raw material is read with PyTorch forward hooks on the two models (what each forward was fed,
and the logits it returned), so the production API needs nothing extra and the recording cannot
share a bug with the counting.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_lms import VOCAB, tiny_lm

from pytest_egbench.metrics.speculative import prefill_ids, speculative_decode
from pytest_egbench.models.generation import decode


class ForwardLog:
    """Every forward of ``model`` from now on: (input ids, logits [positions, vocab]), copied."""

    def __init__(self, model):
        self.calls: list[tuple[list[int], torch.Tensor]] = []
        self._handle = model.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output):
        self.calls.append((kwargs["input_ids"][0].tolist(), output.logits[0].detach().clone()))

    def remove(self):
        self._handle.remove()


@dataclass
class Step:
    proposals: list[int]
    greedy: list[int]  # the target's greedy token at each of the gamma + 1 positions it scored
    accepted: int


def reference_steps(draft_log: ForwardLog, target_log: ForwardLog, gamma: int, vocab_size: int | None) -> list[Step]:
    """The verification steps, counted from the definition (see the module docstring)."""
    assert len(draft_log.calls) == gamma * len(target_log.calls), "gamma draft forwards per target forward"
    steps = []
    for s, (fed, logits) in enumerate(target_log.calls):
        # each draft forward proposes the greedy token of its last position
        proposals = [int(d_logits[-1, :vocab_size].argmax()) for _, d_logits in draft_log.calls[s * gamma : (s + 1) * gamma]]
        assert fed[1:] == proposals, "the target must score exactly what the draft proposed"
        greedy = logits[:, :vocab_size].argmax(-1).tolist()
        assert len(greedy) == gamma + 1
        accepted = 0
        while accepted < gamma and proposals[accepted] == greedy[accepted]:
            accepted += 1
        steps.append(Step(proposals, greedy, accepted))
    return steps


def run_logged(draft, target, ids, steps, gamma, vocab_size=None):
    """(first token, result, reference steps) of one speculative run; hooks only after prefill."""
    t, first = prefill_ids(target, ids, vocab_size)
    d, _ = prefill_ids(draft, ids, vocab_size)
    logs = ForwardLog(draft), ForwardLog(target)
    try:
        result = speculative_decode(d, t, first, steps, gamma, vocab_size=vocab_size)
    finally:
        for log in logs:
            log.remove()
    return first, result, reference_steps(*logs, gamma, vocab_size)


def target_greedy(model, ids, steps, vocab_size=None):
    cont, first = prefill_ids(model, ids, vocab_size)
    return decode(model, torch.tensor([[first]]), cont.cache, steps, vocab_size=vocab_size)[0].tolist()


class NeverAgrees(torch.nn.Module):
    """A draft that always proposes the target's *least* likely token: a copy of the target whose
    logits are negated, so its greedy choice is the target's argmin, which can never be the
    target's argmax (the tiny models' logits are far from all equal). Its own cache, its own
    weights (a copy, so hooks on the target do not see it)."""

    def __init__(self, target):
        super().__init__()
        self.inner = copy.deepcopy(target)

    def forward(self, **kwargs):
        # the inner model's own output object (whatever its cache field is called in this
        # transformers), with the logits negated
        out = self.inner(**kwargs)
        out.logits = -out.logits
        return out


@pytest.mark.parametrize("gamma", [1, 2, 4, 8])
def test_a_draft_that_is_never_right_has_alpha_exactly_zero(gamma):
    target = tiny_lm(0)
    draft = NeverAgrees(target)
    ids, steps = [1, 17, 4, 60, 33], 12
    _, result, reference = run_logged(draft, target, ids, steps, gamma)
    # the oracle: no proposal at the first position ever equalled the target's greedy token
    assert all(s.proposals[0] != s.greedy[0] for s in reference)
    stats = result.stats
    assert stats.accepted == (0,) * steps  # one correction token per step, none of them counted
    assert stats.alpha == 0.0 and stats.tau == 1.0
    assert stats.per_position() == [0.0] + [None] * (gamma - 1)
    assert result.target_forwards == steps
    assert result.tokens == target_greedy(target, ids, steps)


def _draft(kind: str, seed: int):
    if kind == "copy":  # identical weights, another object: accepts everything
        return copy.deepcopy(tiny_lm(0))
    if kind == "never":
        return NeverAgrees(tiny_lm(0))
    if kind == "other":  # an unrelated random model
        return tiny_lm(20 + seed)
    if kind == "shallow":
        return tiny_lm(30 + seed, layers=1)
    noise = {"noise-low": 0.05, "noise-mid": 0.2, "noise-high": 0.5}[kind]
    return tiny_lm(40 + seed, noise=noise, base_seed=0)


_DRAFTS = {}


def draft_of(kind, seed):
    if (kind, seed) not in _DRAFTS:  # build once per run: the copies are not cached by tiny_lm
        _DRAFTS[kind, seed] = _draft(kind, seed)
    return _DRAFTS[kind, seed]


prompts = st.lists(st.integers(2, VOCAB - 1), min_size=1, max_size=10).map(lambda xs: [1, *xs])
kinds = st.sampled_from(["copy", "never", "other", "shallow", "noise-low", "noise-mid", "noise-high"])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ids=prompts, gamma=st.integers(1, 6), steps=st.integers(1, 16), kind=kinds, seed=st.integers(0, 2), vocab_size=st.sampled_from([None, 40]))
def test_acceptance_counts_equal_an_independent_recount(ids, gamma, steps, kind, seed, vocab_size):
    target = tiny_lm(0)
    draft = draft_of(kind, seed)
    first, result, reference = run_logged(draft, target, ids, steps, gamma, vocab_size)
    stats = result.stats
    assert stats.gamma == gamma
    assert list(stats.accepted) == [s.accepted for s in reference]
    accepted, proposed = sum(s.accepted for s in reference), gamma * len(reference)
    assert stats.proposed == proposed
    assert stats.alpha == pytest.approx(accepted / proposed, abs=1e-12)
    assert stats.tau == pytest.approx((accepted + len(reference)) / len(reference), abs=1e-12)
    for i in range(1, gamma + 1):  # P(position i accepted | positions 1..i-1 accepted), from the raw tokens
        reached = [s for s in reference if s.proposals[: i - 1] == s.greedy[: i - 1]]
        hit = [s for s in reached if s.proposals[i - 1] == s.greedy[i - 1]]
        assert stats.per_position()[i - 1] == (pytest.approx(len(hit) / len(reached), abs=1e-12) if reached else None)
    # the text: each step adds its accepted proposals and then the target's own token
    out = [first]
    for s in reference:
        out += s.proposals[: s.accepted] + [s.greedy[s.accepted]]
    assert result.tokens == out[1 : steps + 1]
    assert result.target_forwards == len(reference) and result.draft_forwards == proposed
    if kind == "copy":
        assert stats.alpha == 1.0
    if kind == "never":
        assert stats.alpha == 0.0


def test_partial_acceptance_is_counted_as_the_recount_says():
    """The fixed case the issue measured (a noisy draft, alpha strictly between 0 and 1): the
    recount, not a range, decides."""
    target, draft = tiny_lm(0), tiny_lm(11, noise=0.3, base_seed=0)
    _, result, reference = run_logged(draft, target, [1, 5, 6, 7], 40, 4)
    recount = sum(s.accepted for s in reference) / (4 * len(reference))
    assert 0 < recount < 1
    assert result.stats.alpha == pytest.approx(recount, abs=1e-12)
    assert list(result.stats.accepted) == [s.accepted for s in reference]
