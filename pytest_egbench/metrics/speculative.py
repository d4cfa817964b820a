"""Speculative acceptance measured by verification (greedy), for any draft/target pair that shares
a tokenizer, each with its own KV cache.

One *verification step* (Leviathan et al. 2023, Algorithm 1, greedy case; Chen et al. 2023,
"Accelerating Large Language Model Decoding with Speculative Sampling"):

1. the draft proposes ``gamma`` tokens greedily, one forward each, on its own cache;
2. the target scores the last accepted token and the ``gamma`` proposals in ONE forward
   (``gamma + 1`` positions);
3. the longest prefix of proposals on which the target's greedy choice equals the draft's is
   accepted, plus one token from the target: the correction at the first mismatch, or the bonus
   token when all ``gamma`` were accepted;
4. both caches are rolled back to the accepted text (:func:`truncate_cache`).

Figures (docs/design.md#speculative-acceptance): acceptance rate
``alpha = accepted / proposed``; mean accepted length ``tau`` = mean over steps of
``accepted + 1``, the tokens produced per target forward (Spec-Bench, Xia et al. 2024, "Unlocking
Efficiency in Large Language Model Inference: A Comprehensive Survey of Speculative Decoding");
per-position acceptance ``P(position i accepted | positions 1..i-1 accepted)``.

Greedy verification never changes the output: it always equals the target's own greedy output
(``tests/spec`` checks this). The draft and the target may have different prompts (EventGPT on
event frames, Video-LLaVA on video): each is prefilled with its own, the target's prefill gives
the first token, and both then continue on the same generated text tokens.

Every step reads the proposals and the target's choices on the host once, together (one
synchronisation a step: acceptance is a host decision); what the draft is fed is sliced from a copy
of the text on the device. In the compiled runtime (:class:`CompiledContinuation`) the draft's
forwards and the target's verification are CUDA-graph replays on static KV caches.
:class:`AcceptanceStats` is plain Python; torch is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AcceptanceStats:
    """Accepted proposals per verification step at a fixed ``gamma``.

    ``accepted``: one int in 0..gamma per step. Combine several prompts with :meth:`merge`.
    """

    gamma: int
    accepted: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.gamma < 1:
            raise ValueError(f"gamma must be >= 1, got {self.gamma}")
        bad = [a for a in self.accepted if not 0 <= a <= self.gamma]
        if bad:
            raise ValueError(f"accepted counts must be in 0..{self.gamma}, got {bad}")

    @property
    def steps(self) -> int:
        """Verification steps (= target forwards after prefill)."""
        return len(self.accepted)

    @property
    def proposed(self) -> int:
        """Draft tokens proposed: ``gamma x steps``."""
        return self.gamma * self.steps

    @property
    def alpha(self) -> float:
        """Acceptance rate ``accepted / proposed`` in 0..1; NaN with no step."""
        return sum(self.accepted) / self.proposed if self.steps else float("nan")

    @property
    def tau(self) -> float:
        """Mean accepted length (Spec-Bench): mean of ``accepted + 1`` per step, tokens per
        target forward, in 1..gamma+1; NaN with no step."""
        return (sum(self.accepted) + self.steps) / self.steps if self.steps else float("nan")

    def per_position(self) -> list[float | None]:
        """``[gamma]``: for position i (1-based), accepted at i / steps that reached i (all of
        1..i-1 accepted); ``None`` where no step reached it."""
        out: list[float | None] = []
        for i in range(1, self.gamma + 1):
            reached = sum(1 for a in self.accepted if a >= i - 1)
            out.append(sum(1 for a in self.accepted if a >= i) / reached if reached else None)
        return out

    @classmethod
    def merge(cls, stats: Sequence[AcceptanceStats]) -> AcceptanceStats:
        """The steps of several runs at one gamma pooled; ``ValueError`` for mixed gammas or none."""
        if not stats:
            raise ValueError("nothing to merge")
        gammas = {s.gamma for s in stats}
        if len(gammas) != 1:
            raise ValueError(f"cannot merge different gammas {sorted(gammas)}")
        return cls(stats[0].gamma, tuple(a for s in stats for a in s.accepted))


@dataclass
class Continuation:
    """A causal LM (accepts ``input_ids`` and a KV cache, returns ``.logits``) and its
    ``DynamicCache`` holding exactly its prompt (after prefill), in the eager runtime.
    ``prompt_tokens`` defaults to the cache length when made by :func:`continuation`.

    The speculative loop uses four methods, which :class:`CompiledContinuation` has too:
    :meth:`length`, :meth:`choices`, :meth:`truncate` and :meth:`decode`."""

    model: Any
    cache: Any
    prompt_tokens: int

    @property
    def device(self) -> Any:
        """The device of the model's parameters."""
        return _device_of(self.model)

    def length(self) -> int:
        """Positions the cache holds (prompt and the text fed since)."""
        return int(self.cache.get_seq_length())

    def choices(self, ids: Any, vocab_size: int | None = None) -> Any:
        """Feed ``ids`` ``[1, k]`` in one forward: the greedy choice after each ``[1, k]``, on the
        device, not synchronised; the cache grows by k."""
        return greedy(_forward(self.model, ids, self.cache), vocab_size)

    def truncate(self, length: int) -> None:
        """Forget the positions from ``length`` on (:func:`truncate_cache`)."""
        truncate_cache(self.cache, length)

    def decode(self, token: Any, steps: int, vocab_size: int | None = None) -> Any:
        """``steps`` greedy tokens ``[1, steps]`` after ``token`` ``[1, 1]``, one forward each
        (:func:`pytest_egbench.models.generation.decode`)."""
        from ..models.generation import decode

        return decode(self.model, token, self.cache, steps, vocab_size=vocab_size)


@dataclass
class CompiledContinuation:
    """The same four methods as :class:`Continuation` on a compiled runtime's static KV cache
    (:class:`pytest_egbench.models.runtime.CompiledLM`, after its :meth:`prefill`): one compiled
    graph per number of tokens fed (1 for decode, ``gamma + 1`` for a verification, 1 or 2 for the
    draft's catch-up), no host work between a graph's kernels, and a rollback that moves the
    write position instead of copying the cache."""

    runtime: Any
    prompt_tokens: int

    @property
    def device(self) -> Any:
        """The device of the LM's parameters."""
        return _device_of(self.runtime.lm)

    def length(self) -> int:
        """Positions the static cache holds text in (counted on the host)."""
        return int(self.runtime.filled)

    def choices(self, ids: Any, vocab_size: int | None = None) -> Any:
        """:meth:`CompiledLM.choices`."""
        return self.runtime.choices(ids, vocab_size)

    def truncate(self, length: int) -> None:
        """:meth:`CompiledLM.truncate` (no-op when it holds no more)."""
        self.runtime.truncate(min(length, self.runtime.filled))

    def decode(self, token: Any, steps: int, vocab_size: int | None = None) -> Any:
        """:meth:`CompiledLM.decode`."""
        return self.runtime.decode(token, self.runtime.cache, steps, vocab_size)


def continuation(model: Any, cache: Any) -> Continuation:
    """:class:`Continuation` of ``model`` whose ``cache`` holds the prompt and nothing else."""
    return Continuation(model, cache, int(cache.get_seq_length()))


@dataclass
class SpeculativeResult:
    """``tokens``: the ``steps`` tokens produced after the first (list of ints; the same tokens
    that :func:`pytest_egbench.models.generation.decode` gives for the target); ``stats``:
    acceptance per verification step; ``draft_forwards`` and ``target_forwards``: forwards run
    (target: one per step)."""

    tokens: list[int]
    stats: AcceptanceStats
    draft_forwards: int = 0
    target_forwards: int = 0


def truncate_cache(cache: Any, length: int) -> None:
    """Drop the positions of ``cache`` (a ``DynamicCache``) beyond ``length`` tokens; nothing when
    it holds no more. Calls ``cache.crop`` with a *negative* count (tokens to remove), which
    means the same in transformers 5.17 (where a positive argument, the length to keep, is
    deprecated) and 5.23 (where a positive argument is refused)."""
    remove = int(cache.get_seq_length()) - length
    if remove > 0:
        cache.crop(-remove)


def greedy(logits: Any, vocab_size: int | None = None) -> Any:
    """Greedy choice over the last dimension of ``logits`` (``[..., vocab]`` -> ``[...]`` int64),
    among the first ``vocab_size`` ids only when given."""
    return logits[..., :vocab_size].argmax(-1)


def _forward(model: Any, ids: Any, cache: Any) -> Any:
    from ..models.generation import cache_kwargs

    return model(input_ids=ids, **cache_kwargs(model, cache), use_cache=True).logits


def propose(draft: Continuation | CompiledContinuation, pending: Any, gamma: int, vocab_size: int | None = None) -> Any:
    """Draft ``gamma`` tokens greedily: ``pending`` ``[1, k]`` (the accepted tokens the draft's
    cache lacks, k >= 1) is fed first, then each proposal. Returns ``[1, gamma]`` int64 on the
    draft's device, without synchronising; the draft's cache grows by ``k + gamma - 1``."""
    import torch

    proposals = []
    ids = pending
    for _ in range(gamma):
        ids = draft.choices(ids, vocab_size)[:, -1:]
        proposals.append(ids)
    return torch.cat(proposals, dim=1)


def verify(target: Continuation | CompiledContinuation, last: int, proposals: list[int], vocab_size: int | None = None) -> tuple[int, int]:
    """One target forward over ``[last] + proposals``; returns ``(accepted, next_token)``: the
    longest prefix of ``proposals`` equal to the target's greedy choices, and the target's token
    after it (correction or bonus). The target's cache is rolled back to hold ``last`` and the
    accepted proposals."""
    import torch

    ids = torch.tensor([[last, *proposals]], dtype=torch.long, device=target.device)
    n, token, _ = _verify(target, ids, vocab_size)
    return n, token


def _verify(target: Continuation | CompiledContinuation, ids: Any, vocab_size: int | None) -> tuple[int, int, list[int]]:
    """:func:`verify` of ``ids`` ``[1, 1 + gamma]`` (the last accepted token, then the proposals,
    on the target's device): ``(accepted, next token, proposals)``, with the proposals and the
    target's choices read on the host together -- the step's one synchronisation."""
    import torch

    base = target.length()
    choices = target.choices(ids, vocab_size)
    gamma = ids.shape[1] - 1
    both = torch.cat([ids[:, 1:], choices], dim=1)[0].tolist()
    proposals, chosen = both[:gamma], both[gamma:]
    n = 0
    while n < gamma and proposals[n] == chosen[n]:
        n += 1
    target.truncate(base + 1 + n)
    return n, int(chosen[n]), proposals


def _device_of(model: Any) -> Any:
    return next(model.parameters()).device


def speculative_decode(
    draft: Continuation | CompiledContinuation,
    target: Continuation | CompiledContinuation,
    first_token: int,
    steps: int,
    gamma: int,
    *,
    vocab_size: int | None = None,
) -> SpeculativeResult:
    """Greedy speculative decoding of ``steps`` tokens after ``first_token`` (the token the
    target's prefill chose), ``gamma`` proposals per verification step.

    ``draft``/``target``: :class:`Continuation` s whose caches hold exactly their own prompts
    (they may differ: multimodal prompts). Every step runs the full ``gamma`` (tokens beyond
    ``steps`` are cut from the output, not from the statistics), and there is no stop at EOS.
    ``vocab_size``: choose only among the first ``vocab_size`` ids on both sides (the shared
    tokenizer's), ``None`` for all. On return each cache holds its prompt plus the accepted text
    (the last token excepted). Raises ``ValueError`` for ``steps < 0`` or ``gamma < 1``.
    """
    if steps < 0 or gamma < 1:
        raise ValueError(f"need steps >= 0 and gamma >= 1, got steps={steps}, gamma={gamma}")
    out = [int(first_token)]
    accepted, draft_forwards = continue_speculating(draft, target, out, steps + 1, gamma, vocab_size=vocab_size)
    return SpeculativeResult(out[1 : steps + 1], AcceptanceStats(gamma, tuple(accepted)), draft_forwards, len(accepted))


def continue_speculating(
    draft: Continuation | CompiledContinuation,
    target: Continuation | CompiledContinuation,
    out: list[int],
    total: int,
    gamma: int,
    *,
    vocab_size: int | None = None,
) -> tuple[list[int], int]:
    """Verification steps until ``out`` (the generated tokens so far, at least one; extended in
    place) holds ``total`` tokens or more. The target's cache must hold its prompt and
    ``out[:-1]``; the draft's cache its prompt and a prefix of ``out`` (it is fed what it lacks).
    Returns ``(accepted per step, draft forwards)``."""
    import torch

    accepted: list[int] = []
    draft_forwards = 0
    with torch.inference_mode():
        # the text so far on the draft's device: what each step feeds is sliced from it, so that
        # the step's only synchronisation is the read of the proposals and the target's choices
        # room for every token: those given (a parallel prefill may give more than total) and a
        # last step's gamma + 1
        text = torch.zeros(1, max(len(out), total) + gamma + 1, dtype=torch.long, device=draft.device)
        text[0, : len(out)] = torch.tensor(out, dtype=torch.long)
        while len(out) < total:
            fed = draft.length() - draft.prompt_tokens
            proposals = propose(draft, text[:, fed : len(out)].clone(), gamma, vocab_size)
            draft_forwards += gamma
            ids = torch.cat([text[:, len(out) - 1 : len(out)], proposals], dim=1).to(target.device)
            n, token, proposed = _verify(target, ids, vocab_size)
            text[:, len(out) : len(out) + n] = proposals[:, :n]
            text[0, len(out) + n] = token  # a scalar fill: no synchronisation
            out += proposed[:n] + [token]
            accepted.append(n)
            draft.truncate(draft.prompt_tokens + len(out) - 1)
    return accepted, draft_forwards


def prefill_ids(model: Any, ids: Sequence[int], vocab_size: int | None = None) -> tuple[Continuation, int]:
    """Prefill ``model`` on the token ids ``ids`` (a text prompt, BOS included if wanted):
    ``(Continuation, first greedy token)``."""
    import torch

    from ..models.generation import prefill_with_logits

    _, cache, logits = prefill_with_logits(model, input_ids=torch.tensor([list(ids)], dtype=torch.long, device=_device_of(model)))
    return continuation(model, cache), int(greedy(logits[0], vocab_size))


def prefill_adapter(adapter: Any, sample: Any, vocab_size: int | None = None) -> tuple[Continuation | CompiledContinuation, int]:
    """Stages 2-4 of a multimodal :class:`~pytest_egbench.models.base.ModelAdapter` on
    ``sample`` (a ``VisualInput``), in the adapter's runtime: ``(continuation of adapter.lm,
    first greedy token)`` -- a :class:`CompiledContinuation` in a compiled runtime, else a
    :class:`Continuation`; the visual embeddings enter through ``inputs_embeds``, later tokens
    through ``input_ids``."""
    from ..models.runtime import CompiledLM

    inputs = adapter.preprocess(sample)
    state = adapter.prefill(inputs, adapter.encode_vision(inputs))
    first = int(greedy(state.logits[0], vocab_size))
    if isinstance(adapter.runtime, CompiledLM):
        return CompiledContinuation(adapter.runtime, state.prompt_tokens), first
    return continuation(adapter.lm, state.cache), first


def rewind(*continuations: Continuation | CompiledContinuation) -> None:
    """Crop each cache back to its prompt, for another run from the same prefill."""
    for c in continuations:
        c.truncate(c.prompt_tokens)


def acceptance_sweep(
    draft: Continuation | CompiledContinuation,
    target: Continuation | CompiledContinuation,
    first_token: int,
    steps: int,
    gammas: Sequence[int],
    *,
    vocab_size: int | None = None,
) -> dict[int, SpeculativeResult]:
    """:func:`speculative_decode` once per gamma from the same prefill (caches rewound before
    each and after the last): ``{gamma: result}``."""
    results = {}
    for gamma in gammas:
        rewind(draft, target)
        results[gamma] = speculative_decode(draft, target, first_token, steps, gamma, vocab_size=vocab_size)
    rewind(draft, target)
    return results


def early_exit_draft(model: Any, layers: int) -> Any:
    """A self-speculative draft of a decoder-only causal LM (LLaMA layout: ``model.model.layers``,
    ``model.model.norm``, ``model.lm_head``): its first ``layers`` decoder layers, then the final
    norm and the LM head. Built on the meta device and filled with the target's own tensors
    (``load_state_dict(assign=True)``): no weight is copied, the draft shares the target's memory.

    Raises ``ValueError`` unless ``1 <= layers <= num_hidden_layers``.
    """
    import copy

    import torch

    total = model.config.num_hidden_layers
    if not 1 <= layers <= total:
        raise ValueError(f"layers must be in 1..{total}, got {layers}")
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = layers
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = list(config.layer_types[:layers])
    with torch.device("meta"):
        draft = type(model)._from_config(config, dtype=model.dtype)
    state = {k: v for k, v in model.state_dict(keep_vars=True).items() if not k.startswith("model.layers.") or int(k.split(".")[2]) < layers}
    draft.load_state_dict(state, assign=True, strict=True)
    for name, buffer in model.named_buffers():  # rotary inv_freq and the like (non-persistent)
        owner, _, leaf = name.rpartition(".")
        try:
            target = draft.get_submodule(owner)
        except AttributeError:
            continue
        if leaf in target._buffers:
            target._buffers[leaf] = buffer
    return draft.eval()
