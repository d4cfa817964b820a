"""Parallel prefill: the draft (short prompt) prefills and decodes while the target (long prompt) is
still in prefill, and a speculative decoder that verifies those hidden draft tokens with the
target's first forward after its prefill (docs/design.md#parallel-prefill).

Where the two models run is a parameter, a :class:`Lanes`:

* ``"sequential"`` -- one after the other on the current stream (or the CPU; with the models on
  two GPUs, a synchronisation after each lane): the reference for "the two one after the
  other", and how the CPU tests run the same algorithm;
* ``"streams"`` -- two CUDA streams on one GPU, really at the same time;
* ``"devices"`` -- one model per GPU (the models must already live on their devices).

The host queues the target's prefill on its lane first, then the draft's prefill and ``hidden``
draft tokens on the draft's lane, without synchronising (tokens stay on the device). Marks (CUDA
events on each lane's stream, or ``perf_counter_ns`` for sequential CPU runs) are read after one
synchronisation: the target prefill's end, the draft's start, the draft prefill's end and the
end of every draft token. **Hidden tokens** are the draft tokens whose end mark comes before the target prefill's end
mark: measured, not computed. For ``"devices"`` each device's marks are timed from an origin event
recorded on that device right after a synchronisation of both; the origins differ by the host time
between two event records (microseconds).

:func:`predicted_hidden_tokens` is the origin's estimate from sequential runs, for printing beside
the measured figure: (target prefill - draft prefill) / draft time per token, rounded down.

Sources: Leviathan et al. 2023 and Chen et al. 2023 for the verification; the parallel-prefill
idea and its hidden-token estimate are the origin project's (EventGPT as draft for Video-LLaVA).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from .speculative import AcceptanceStats, Continuation, continue_speculating, greedy, verify

LANE_KINDS = ("sequential", "streams", "devices")


class Lanes:
    """Where draft and target work is queued, and how its points in time are marked.

    ``kind``: one of :data:`LANE_KINDS`. ``draft_device``/``target_device``: the models' devices
    (``"devices"`` needs two different CUDA devices; ``"streams"`` one CUDA device for both).
    Raises ``ValueError`` for a kind that does not fit the devices.
    """

    def __init__(self, kind: str, draft_device: Any, target_device: Any) -> None:
        import torch

        if kind not in LANE_KINDS:
            raise ValueError(f"unknown lanes {kind!r}: choose from {', '.join(LANE_KINDS)}")
        self.kind = kind
        self.devices = {"draft": torch.device(draft_device), "target": torch.device(target_device)}
        cuda = {d.type for d in self.devices.values()} == {"cuda"}
        if kind == "streams" and not (cuda and self.devices["draft"] == self.devices["target"]):
            raise ValueError(f"streams need both models on one CUDA device, got {self.devices['draft']} and {self.devices['target']}")
        if kind == "devices" and not (cuda and self.devices["draft"] != self.devices["target"]):
            raise ValueError(f"devices need the models on two different CUDA devices, got {self.devices['draft']} and {self.devices['target']}")
        self.cuda = any(d.type == "cuda" for d in self.devices.values())
        self._torch = torch
        self.streams: dict[str, Any] = {}
        if kind == "streams":
            self.streams = {lane: torch.cuda.Stream(self.devices[lane]) for lane in ("draft", "target")}
        self._origins: dict[Any, Any] = {}

    def lane(self, name: str) -> AbstractContextManager[Any]:
        """Context in which work for lane ``name`` ("draft" or "target") is queued."""
        if self.kind == "streams":
            return self._torch.cuda.stream(self.streams[name])
        if self.kind == "devices":
            return self._torch.cuda.device(self.devices[name])
        if self.cuda and self.devices["draft"] != self.devices["target"]:
            return self._synchronized()  # two GPUs would otherwise overlap: one after the other
        return nullcontext()

    @contextmanager
    def _synchronized(self) -> Iterator[None]:
        yield
        self.synchronize()

    def _stream(self, name: str) -> Any:
        return self.streams[name] if self.kind == "streams" else self._torch.cuda.current_stream(self.devices[name])

    def start(self) -> None:
        """Synchronise, then record the origin of every lane's clock."""
        self.synchronize()
        if self.cuda:
            self._origins = {}
            for name in ("target", "draft"):
                device = self.devices[name]
                if device not in self._origins:
                    event = self._torch.cuda.Event(enable_timing=True)
                    event.record(self._torch.cuda.current_stream(device))
                    self._origins[device] = event
        else:
            self._origins = {"host": time.perf_counter_ns()}

    def mark(self, name: str) -> Any:
        """A point in time on lane ``name`` (an event recorded on its stream; a host time stamp
        without CUDA). Never blocks."""
        if not self.cuda:
            return time.perf_counter_ns()
        event = self._torch.cuda.Event(enable_timing=True)
        event.record(self._stream(name))
        return (self.devices[name], event)

    def mark_after(self) -> Any:
        """A point in time on the target device's current stream, for work queued after
        :meth:`join` (which runs there, not on a lane's stream)."""
        if not self.cuda:
            return time.perf_counter_ns()
        device = self.devices["target"]
        event = self._torch.cuda.Event(enable_timing=True)
        event.record(self._torch.cuda.current_stream(device))
        return (device, event)

    def join(self) -> None:
        """Make the current stream of each device wait for the lanes' streams (no host wait)."""
        if self.kind == "streams":
            current = self._torch.cuda.current_stream(self.devices["target"])
            for stream in self.streams.values():
                current.wait_stream(stream)

    def synchronize(self) -> None:
        for device in {d for d in self.devices.values() if d.type == "cuda"}:
            self._torch.cuda.synchronize(device)

    def since_start_ns(self, mark: Any) -> int:
        """Nanoseconds from :meth:`start` to ``mark``; only after :meth:`synchronize`."""
        if not self.cuda:
            return mark - self._origins["host"]
        device, event = mark
        return round(self._origins[device].elapsed_time(event) * 1e6)


@dataclass
class ParallelPrefillResult:
    """One parallel-prefill speculative run. Times in ns from the start (both prefills queued).

    ``tokens``: the ``steps`` tokens after the first (equal to the target's own greedy output);
    ``hidden_proposed``: draft tokens produced during the target's prefill (``hidden``; the first
    is the draft's own first token, its guess of the target's first); ``hidden_accepted``: how
    many the target's first forward after prefill accepted (the first counts when it equals the
    target's first token); ``hidden_before_target``: draft tokens whose end came before the
    target prefill's end (measured); ``draft_token_end_ns`` ``[hidden]``; ``stats``: the ordinary
    verification steps that followed, at ``gamma``.
    """

    tokens: list[int]
    hidden_proposed: int
    hidden_accepted: int
    hidden_before_target: int
    target_prefill_end_ns: int
    draft_start_ns: int
    draft_prefill_end_ns: int
    draft_token_end_ns: list[int]
    end_ns: int
    stats: AcceptanceStats
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def overlap_ns(self) -> int:
        """The overlap window: how long the draft's work (prefill and hidden tokens) and the
        target's prefill ran at the same time, ``min(target prefill end, last draft token end) -
        draft start``, never below 0 (0 on sequential lanes)."""
        return max(0, min(self.target_prefill_end_ns, self.draft_token_end_ns[-1]) - self.draft_start_ns)


def _prefill(model: Any, inputs: dict[str, Any]) -> tuple[Any, Any]:
    from ..models.generation import prefill_with_logits

    _, cache, logits = prefill_with_logits(model, **inputs)
    return cache, logits


def _draft_lane(draft_model: Any, draft_inputs: dict[str, Any], hidden: int, lanes: Lanes, vocab_size: int | None) -> tuple[Any, Any, Any, Any, list[Any]]:
    """The draft's side of :func:`parallel_prefill_decode`, inside its lane: its prefill, then
    ``hidden`` draft tokens (the first from the prefill's logits, ``hidden - 1`` decode steps).
    Returns the lane's marks at the prefill's start and end, the draft's KV cache, the proposals
    ``[1, hidden]`` on the device and each token's end mark."""
    import torch

    from ..models.generation import cache_kwargs

    d_start = lanes.mark("draft")
    d_cache, d_logits = _prefill(draft_model, draft_inputs)
    d_end = lanes.mark("draft")
    token = greedy(d_logits[:, None], vocab_size)  # [1, 1]
    produced, ends = [token], [lanes.mark("draft")]
    for _ in range(hidden - 1):
        token = greedy(draft_model(input_ids=token, **cache_kwargs(draft_model, d_cache), use_cache=True).logits[:, -1:], vocab_size)
        produced.append(token)
        ends.append(lanes.mark("draft"))
    return d_start, d_end, d_cache, torch.cat(produced, dim=1), ends


def _accept_hidden(target: Continuation, first: int, proposals: list[int], steps: int, vocab_size: int | None) -> tuple[list[int], int]:
    """The target's first token and the hidden draft tokens it accepts: the first hidden token
    against the target's first token, the rest verified in the target's first forward (when there
    are more and any steps are asked for). Returns ``(tokens so far, hidden tokens accepted)``."""
    out = [first]
    if proposals[0] != first:
        return out, 0
    if len(proposals) == 1 or steps == 0:
        return out, 1
    n, nxt = verify(target, first, proposals[1:], vocab_size)
    return out + proposals[1 : 1 + n] + [nxt], 1 + n


def parallel_prefill_decode(
    draft_model: Any,
    draft_inputs: dict[str, Any],
    target_model: Any,
    target_inputs: dict[str, Any],
    *,
    steps: int,
    gamma: int,
    hidden: int,
    lanes: Lanes,
    vocab_size: int | None = None,
) -> ParallelPrefillResult:
    """Parallel-prefill speculative decoding: ``steps`` tokens after the target's first.

    ``draft_inputs``/``target_inputs``: the prefill inputs of each model, ``{"input_ids": [1, L]}``
    or ``{"inputs_embeds": [1, L, hidden]}`` (visual embeddings already spliced in), on its device.
    ``hidden`` (>= 1): draft tokens queued during the target's prefill -- the draft's first token
    and ``hidden - 1`` decode steps. After the target's prefill, its first forward verifies them
    (the first hidden token against the target's first token, the rest in that forward), then
    ordinary verification steps of ``gamma`` follow. The output always equals the target's own
    greedy output. Raises ``ValueError`` for ``hidden < 1``, ``gamma < 1`` or ``steps < 0``.
    """
    import torch

    if hidden < 1 or gamma < 1 or steps < 0:
        raise ValueError(f"need hidden >= 1, gamma >= 1, steps >= 0; got hidden={hidden}, gamma={gamma}, steps={steps}")
    with torch.inference_mode():
        lanes.start()
        with lanes.lane("target"):
            t_cache, t_logits = _prefill(target_model, target_inputs)
            t_first = greedy(t_logits[0], vocab_size)
            t_end = lanes.mark("target")
        with lanes.lane("draft"):
            d_start, d_end, d_cache, proposals_dev, ends = _draft_lane(draft_model, draft_inputs, hidden, lanes, vocab_size)
        lanes.join()
        first, proposals = int(t_first), proposals_dev[0].tolist()  # host reads: waits for both lanes
        target = Continuation(target_model, t_cache, int(t_cache.get_seq_length()))
        draft = Continuation(draft_model, d_cache, int(d_cache.get_seq_length()) - (hidden - 1))
        out, accepted_hidden = _accept_hidden(target, first, proposals, steps, vocab_size)
        draft.truncate(draft.prompt_tokens + len(out) - 1)
        accepted, _ = continue_speculating(draft, target, out, steps + 1, gamma, vocab_size=vocab_size)
        finish = lanes.mark_after()
        lanes.synchronize()
        t_end_ns = lanes.since_start_ns(t_end)
        token_ends = [lanes.since_start_ns(e) for e in ends]
        return ParallelPrefillResult(
            tokens=out[1 : steps + 1],
            hidden_proposed=hidden,
            hidden_accepted=accepted_hidden,
            hidden_before_target=sum(1 for e in token_ends if e <= t_end_ns),
            target_prefill_end_ns=t_end_ns,
            draft_start_ns=lanes.since_start_ns(d_start),
            draft_prefill_end_ns=lanes.since_start_ns(d_end),
            draft_token_end_ns=token_ends,
            end_ns=lanes.since_start_ns(finish),
            stats=AcceptanceStats(gamma, tuple(accepted)),
            extra={"lanes": lanes.kind},
        )


def predicted_hidden_tokens(target_prefill_ns: float, draft_prefill_ns: float, draft_ns_per_token: float) -> int:
    """The origin's estimate from sequential runs: draft tokens that fit in the target's prefill
    after the draft's own, ``floor((target prefill - draft prefill) / draft time per token)``,
    never below 0. Any one time unit for all three. Raises ``ValueError`` for a per-token time
    <= 0."""
    if draft_ns_per_token <= 0:
        raise ValueError(f"draft time per token must be > 0, got {draft_ns_per_token}")
    return max(0, int((target_prefill_ns - draft_prefill_ns) // draft_ns_per_token))
