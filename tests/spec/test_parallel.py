"""The parallel-prefill speculative decoder: its output equals the target's own greedy output for
any number of hidden draft tokens. On the CPU the same algorithm runs on ``"sequential"`` lanes;
the stream and two-GPU lanes are checked by the ``gpu`` tests (skipped here with the reason)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tiny_lms import VOCAB, tiny_lm

from pytest_egbench.metrics.parallel import Lanes, parallel_prefill_decode, predicted_hidden_tokens
from pytest_egbench.metrics.speculative import prefill_ids
from pytest_egbench.models.generation import decode


def greedy_reference(model, ids, steps):
    cont, first = prefill_ids(model, ids)
    return first, decode(model, torch.tensor([[first]], device=next(model.parameters()).device), cont.cache, steps)[0].tolist()


def run(draft, target, d_ids, t_ids, lanes, **kw):
    # each model's input on its own device (two GPUs for the "devices" lanes)
    d_device, t_device = next(draft.parameters()).device, next(target.parameters()).device
    return parallel_prefill_decode(
        draft, {"input_ids": torch.tensor([d_ids], device=d_device)}, target, {"input_ids": torch.tensor([t_ids], device=t_device)}, lanes=lanes, **kw
    )


prompts = st.lists(st.integers(2, VOCAB - 1), min_size=1, max_size=16).map(lambda xs: [1, *xs])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ids=prompts, hidden=st.integers(1, 8), gamma=st.integers(1, 6), steps=st.integers(0, 20), draft_kind=st.sampled_from(["same", "noise", "layers"]))
# more hidden draft tokens than steps (the speculative loop once sized its buffer for the steps alone)
@example(ids=[1, 2], hidden=4, gamma=1, steps=1, draft_kind="same")
def test_output_equals_target_greedy_on_sequential_lanes(ids, hidden, gamma, steps, draft_kind):
    target = tiny_lm(0)
    draft = {"same": target, "noise": tiny_lm(11, noise=0.3, base_seed=0), "layers": tiny_lm(3, layers=1)}[draft_kind]
    draft_ids = ids[:1] + ids[1:][-3:]  # the draft's prompt is shorter (event frames vs video)
    result = run(draft, target, draft_ids if draft_kind != "same" else ids, ids, Lanes("sequential", "cpu", "cpu"), steps=steps, gamma=gamma, hidden=hidden)
    assert result.tokens == greedy_reference(target, ids, steps)[1]
    assert 0 <= result.hidden_accepted <= hidden
    assert len(result.draft_token_end_ns) == hidden
    assert result.draft_token_end_ns == sorted(result.draft_token_end_ns)
    # sequential lanes: the target prefill ran first, so no draft token was hidden behind it
    assert result.hidden_before_target == 0 and result.overlap_ns == 0
    if draft_kind == "same":
        assert result.hidden_accepted == (hidden if steps else 1)


def test_identical_draft_accepts_every_hidden_token():
    target = tiny_lm(0)
    result = run(target, target, [1, 5, 6], [1, 5, 6], Lanes("sequential", "cpu", "cpu"), steps=12, gamma=3, hidden=5)
    assert result.hidden_accepted == 5
    assert result.stats.alpha == 1.0 or result.stats.steps == 0


def test_lanes_refuse_what_the_devices_cannot_do():
    with pytest.raises(ValueError, match="one CUDA device"):
        Lanes("streams", "cpu", "cpu")
    with pytest.raises(ValueError, match="two different CUDA devices"):
        Lanes("devices", "cpu", "cpu")
    with pytest.raises(ValueError, match="unknown lanes"):
        Lanes("threads", "cpu", "cpu")


def test_bad_arguments():
    target = tiny_lm(0)
    with pytest.raises(ValueError, match="hidden >= 1"):
        run(target, target, [1, 2], [1, 2], Lanes("sequential", "cpu", "cpu"), steps=2, gamma=1, hidden=0)


def test_predicted_hidden_tokens_by_hand():
    # target prefill 142 ms, draft prefill 31 ms, draft 18 ms/token: floor(111 / 18) = 6
    assert predicted_hidden_tokens(142.0, 31.0, 18.0) == 6
    assert predicted_hidden_tokens(20.0, 31.0, 18.0) == 0
    with pytest.raises(ValueError):
        predicted_hidden_tokens(1.0, 0.0, 0.0)


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["sequential", "streams", "devices"])
def test_output_equals_target_greedy_on_cuda_lanes(kind):
    if kind == "devices" and torch.cuda.device_count() < 2:
        pytest.skip("one model per GPU needs two GPUs")
    draft_device, target_device = ("cuda:0", "cuda:1") if kind == "devices" else ("cuda:0", "cuda:0")
    target = tiny_lm(0).to(target_device)
    draft = tiny_lm(3, layers=1).to(draft_device)
    try:
        ids = [1, *range(2, 90)]
        for hidden in (1, 4, 8):
            result = run(draft, target, ids[:5], ids, Lanes(kind, draft_device, target_device), steps=16, gamma=3, hidden=hidden)
            assert result.tokens == greedy_reference(target, ids, 16)[1]
            assert result.end_ns >= result.target_prefill_end_ns > 0
    finally:
        target.to("cpu"), draft.to("cpu")


class RecordingLanes(Lanes):
    """Sequential CPU lanes that log which lane each piece of work was queued on."""

    def __init__(self):
        super().__init__("sequential", "cpu", "cpu")
        self.log = []

    def lane(self, name):
        from contextlib import contextmanager

        @contextmanager
        def entered():
            self.log.append(f"enter {name}")
            yield
            self.log.append(f"exit {name}")

        return entered()

    def mark(self, name):
        self.log.append(f"mark {name}")
        return super().mark(name)

    def join(self):
        self.log.append("join")

    def mark_after(self):
        self.log.append("mark after")
        return super().mark_after()


def test_structure_target_queued_first_then_draft_then_join():
    """What the stream lanes rely on: the target's prefill is queued on its lane first, the draft's
    prefill and all hidden tokens on the draft's lane, then one join before any host read, and the
    end mark after the join."""
    target, draft = tiny_lm(0), tiny_lm(3, layers=1)
    lanes = RecordingLanes()
    run(draft, target, [1, 2, 3], [1, 2, 3, 4, 5, 6], lanes, steps=6, gamma=2, hidden=3)
    assert lanes.log == [
        "enter target",
        "mark target",
        "exit target",
        "enter draft",
        "mark draft",
        "mark draft",
        "mark draft",
        "mark draft",
        "mark draft",
        "exit draft",
        "join",
        "mark after",
    ]


class SlowPrefill(torch.nn.Module):
    """The target, whose first forward (its prefill) starts with a ``torch.cuda._sleep`` spin
    kernel of about ``ms`` milliseconds on the stream the forward is queued on. The host does not
    wait for it, so the host queues the draft's work while the target's prefill is certainly
    still running on the GPU, however fast the GPU and however tiny the models: whether the two
    lanes then overlap depends only on whether they really are independent lanes."""

    def __init__(self, inner, ms):
        super().__init__()
        self.inner = inner
        self.cycles = _cycles_per_ms(next(inner.parameters()).device) * ms
        self.armed = True

    def forward(self, **kwargs):
        if self.armed:
            self.armed = False
            torch.cuda._sleep(int(self.cycles))
        return self.inner(**kwargs)


def _cycles_per_ms(device):
    """GPU clock cycles of ``torch.cuda._sleep`` per millisecond, measured with CUDA events."""
    with torch.cuda.device(device):
        torch.cuda._sleep(1_000_000)  # first launch out of the way
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        torch.cuda._sleep(50_000_000)
        end.record()
        end.synchronize()
        return 50_000_000 / start.elapsed_time(end)


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["streams", "devices", "sequential"])
def test_parallel_lanes_overlap_in_time_on_cuda(kind):
    """The two lanes' busy intervals, read from the CUDA events ``parallel_prefill_decode``
    records, intersect by a positive amount: the target lane's [start, end of its prefill] and the
    draft lane's [start, end of its last hidden token]. ``sequential`` lanes are the control: the
    same work one after the other never overlaps. Tiny models; the target's prefill is lengthened
    to about 200 ms by a spin kernel (:class:`SlowPrefill`), so the test does not depend on the GPU's
    speed, only on the lanes being independent."""
    if kind == "devices" and torch.cuda.device_count() < 2:
        pytest.skip(f"one model per GPU needs two GPUs; this machine has {torch.cuda.device_count()}")
    draft_device, target_device = ("cuda:0", "cuda:1") if kind == "devices" else ("cuda:0", "cuda:0")
    target = tiny_lm(0).to(target_device)
    draft = tiny_lm(3, layers=1).to(draft_device)
    try:
        ids = [1, *range(2, 90)]
        run(draft, target, ids[:5], ids, Lanes(kind, draft_device, target_device), steps=2, gamma=2, hidden=2)  # warm-up: kernels, cuBLAS handles
        result = run(draft, SlowPrefill(target, ms=200), ids[:5], ids, Lanes(kind, draft_device, target_device), steps=4, gamma=2, hidden=4)
    finally:
        target.to("cpu"), draft.to("cpu")
    target_lane = (0, result.target_prefill_end_ns)  # the origin: both lanes queued from there
    draft_lane = (result.draft_start_ns, result.draft_token_end_ns[-1])
    intersection = min(target_lane[1], draft_lane[1]) - max(target_lane[0], draft_lane[0])
    assert result.target_prefill_end_ns > 100e6, "the spin kernel should make the target's prefill last about 200 ms"
    if kind == "sequential":
        assert intersection <= 0 and result.overlap_ns == 0 and result.hidden_before_target == 0
    else:
        assert intersection > 0, f"lanes did not overlap: target {target_lane}, draft {draft_lane} (ns)"
        assert result.overlap_ns == intersection
        assert result.hidden_before_target >= 1  # the draft produced tokens during the target's prefill
