"""Speculative decoding across the multimodal adapters (tiny dummy models, CPU): EventGPT on event
frames drafting for LLaVA-1.5 on an image, each prefilled with its own multimodal prompt. With
dummy weights alpha is near 0; what is checked is exactness and the plumbing (inputs_embeds
prefill, then input_ids on each cache, greedy over the shared 32000 ids)."""

from __future__ import annotations

import pytest
import torch

from pytest_egbench.metrics.speculative import prefill_adapter, rewind, speculative_decode
from pytest_egbench.models.base import ModelSpec, synthetic_sample
from pytest_egbench.models.generation import decode
from pytest_egbench.models.registry import load_model


def test_eventgpt_drafting_for_llava_equals_llava_greedy():
    draft = load_model(ModelSpec("eventgpt", preset="tiny", device="cpu"))
    target = load_model(ModelSpec("llava", preset="tiny", device="cpu"))
    vocab = min(draft.text_config.vocab_size, target.text_config.vocab_size)
    assert vocab == 32000 and target.text_config.vocab_size > vocab  # LLaVA pads its LM head
    d, _ = prefill_adapter(draft, synthetic_sample("eventgpt", 1, height=120, width=160), vocab)
    t, first = prefill_adapter(target, synthetic_sample("llava", height=120, width=160, seed=1), vocab)
    assert d.prompt_tokens != t.prompt_tokens  # different multimodal prompts
    reference = decode(target.lm, torch.tensor([[first]]), t.cache, 6, vocab_size=vocab)[0].tolist()
    rewind(t)
    for gamma in (1, 3):
        result = speculative_decode(d, t, first, 6, gamma, vocab_size=vocab)
        assert result.tokens == reference
        assert all(tok < vocab for tok in result.tokens)
        rewind(d, t)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_compiled_runtime_speculates_as_the_eager_one(device):
    """The same pair in the compiled runtime (static KV caches, compiled prefill, k-token steps,
    rollback by moving the write position): the target's greedy output and, step for step, the
    eager run's acceptance counts. Oracle: the eager speculative loop above, itself checked
    against the target's own greedy decode. On CUDA every forward of the compiled pass is a replay
    of a captured CUDA graph, the rollbacks included (fp32 weights, so that the eager and the
    graphs' kernels choose the same tokens)."""
    from pytest_egbench.metrics.speculative import CompiledContinuation, Continuation

    draft = load_model(ModelSpec("eventgpt", preset="tiny", quant="fp32", device=device))
    target = load_model(ModelSpec("llava", preset="tiny", quant="fp32", device=device))
    vocab = 32000
    d_sample = synthetic_sample("eventgpt", 1, height=120, width=160)
    t_sample = synthetic_sample("llava", height=120, width=160, seed=1)
    d, _ = prefill_adapter(draft, d_sample, vocab)
    t, first = prefill_adapter(target, t_sample, vocab)
    assert isinstance(d, Continuation) and isinstance(t, Continuation)
    reference = decode(target.lm, torch.tensor([[first]], device=device), t.cache, 6, vocab_size=vocab)[0].tolist()
    rewind(t)
    eager = {gamma: speculative_decode(d, t, first, 6, gamma, vocab_size=vocab) for gamma in (1, 3) if not rewind(d, t)}

    for adapter in (draft, target):
        adapter.use_runtime("compiled")
    dc, _ = prefill_adapter(draft, d_sample, vocab)
    tc, first_c = prefill_adapter(target, t_sample, vocab)
    assert isinstance(dc, CompiledContinuation) and isinstance(tc, CompiledContinuation)
    assert (dc.prompt_tokens, tc.prompt_tokens, first_c) == (d.prompt_tokens, t.prompt_tokens, first)
    assert tc.decode(torch.tensor([[first]], device=device), 6, vocab)[0].tolist() == reference
    for _ in range(2):  # a second pass runs on the rolled-back caches
        for gamma, expected in eager.items():
            rewind(dc, tc)
            result = speculative_decode(dc, tc, first, 6, gamma, vocab_size=vocab)
            assert result.tokens == reference
            assert result.stats == expected.stats
            # each cache holds its prompt and the accepted text but the last token
            assert tc.length() == tc.prompt_tokens + len(result.tokens)


def test_a_longer_gamma_compiles_nothing_new():
    """The compiled step guards on its input's strides; a draft's proposal is a column of its
    ``[1, k]`` choices, so without row-major inputs every gamma recompiled the step (six graphs for
    gamma 1, 2, 4, 8 on these tiny models, where a 7B graph costs tens of seconds). Oracle: the
    compiled runtime's design, one single-token graph and one graph with k symbolic per model;
    once gamma 1 and 2 ran, gamma 4 and 8 need no new graph."""
    from torch._dynamo.utils import counters

    draft = load_model(ModelSpec("eventgpt", preset="tiny", device="cpu"))
    target = load_model(ModelSpec("llava", preset="tiny", device="cpu"))
    for adapter in (draft, target):
        adapter.use_runtime("compiled")
    vocab = 32000
    d, _ = prefill_adapter(draft, synthetic_sample("eventgpt", 1, height=120, width=160), vocab)
    t, first = prefill_adapter(target, synthetic_sample("llava", height=120, width=160, seed=1), vocab)

    def graphs_after(gammas):
        for gamma in gammas:
            rewind(d, t)
            speculative_decode(d, t, first, 12, gamma, vocab_size=vocab)
        return counters["stats"]["unique_graphs"]

    before = graphs_after((1, 2))
    assert graphs_after((4, 8)) == before
