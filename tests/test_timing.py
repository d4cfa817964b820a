"""Stage timer behaviour with a fake clock: no real time is asserted."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_egbench import inject
from pytest_egbench.inject import SlowdownInjector
from pytest_egbench.timing import (
    COLD,
    CONTROL,
    STEADY,
    WARMUP,
    CudaEventClock,
    PerfCounterClock,
    StageSpan,
    StageTimer,
    clocks_for,
    metric_stages,
    timer_overhead,
)


class FakeClock:
    """A clock whose time only moves when the test says so; counts synchronisations."""

    name = "fake"

    def __init__(self) -> None:
        self.now = 0
        self.syncs = 0

    def mark(self) -> int:
        return self.now

    def synchronize(self) -> None:
        self.syncs += 1

    def elapsed_ns(self, start: int, end: int) -> int:
        return end - start


def run(timer: StageTimer, clock: FakeClock, plan: dict[str, int], tokens: dict[str, int] | None = None) -> None:
    tokens = tokens or {}
    for rnd in timer.rounds():
        for stage, ns in plan.items():
            with rnd.stage(stage, tokens=tokens.get(stage)):
                clock.now += ns + rnd.index  # each round a little slower: rounds are told apart


def test_rounds_are_cold_then_warmup_then_steady():
    clock = FakeClock()
    timer = StageTimer(clock, rounds=3, warmup=2)
    kinds = [rnd.kind for rnd in timer.rounds()]
    assert kinds == [COLD, WARMUP, WARMUP, STEADY, STEADY, STEADY]


def test_cold_and_warmup_are_kept_apart_from_steady():
    clock = FakeClock()
    timer = StageTimer(clock, rounds=3, warmup=2)
    run(timer, clock, {"prefill": 1000})
    res = timer.results()
    assert res.cold == {"prefill": 1000}
    assert res.warmup == {"prefill": [1001, 1002]}
    assert res.steady == {"prefill": [1003, 1004, 1005]}
    assert res.rounds == 3


def test_results_synchronise_once_per_clock():
    device, host = FakeClock(), FakeClock()
    timer = StageTimer(device, host, rounds=4, warmup=1)
    for rnd in timer.rounds():
        with rnd.stage("load"):
            host.now += 5
        with rnd.stage("prefill"):
            device.now += 7
        assert device.syncs == 0 and host.syncs == 0  # nothing synchronises inside the rounds
    res = timer.results()
    timer.results()  # cached: no second synchronisation
    assert (device.syncs, host.syncs) == (1, 1)
    assert res.steady["load"] == [5] * 4 and res.steady["prefill"] == [7] * 4


def test_host_stages_use_the_host_clock_unless_told():
    device, host = FakeClock(), FakeClock()
    timer = StageTimer(device, host, rounds=1, warmup=0)
    for rnd in timer.rounds():
        with rnd.stage("load"):
            host.now += 3
            device.now += 100
        with rnd.stage("vision"):
            device.now += 11
        with rnd.stage("tokenise", clock="host"):
            host.now += 2
    res = timer.results()
    assert res.steady == {"load": [3], "vision": [11], "tokenise": [2]}


def test_derived_ttft_tpot_and_throughput():
    clock = FakeClock()
    timer = StageTimer(clock, rounds=1, warmup=0)
    plan = {"load": 1_000_000, "preprocess": 2_000_000, "vision": 3_000_000, "prefill": 4_000_000, "decode": 15_000_000}
    for rnd in timer.rounds():
        for stage, ns in plan.items():
            with rnd.stage(stage) as span:
                clock.now += ns
                span.tokens = {"prefill": 637, "decode": 15}.get(stage)
    derived = timer.results().derived()
    assert derived["ttft"] == [10_000_000.0]  # load + preprocess + vision + prefill
    assert derived["total"] == [25_000_000.0]
    assert derived["tpot"] == [1_000_000.0]  # 15 ms over the 15 tokens decode produced
    assert derived["decode_tokens_per_s"] == pytest.approx([1000.0])
    assert derived["prefill_tokens_per_s"] == pytest.approx([637 / 0.004])


def test_no_tpot_without_decode_tokens():
    clock = FakeClock()
    timer = StageTimer(clock, rounds=2, warmup=0)
    run(timer, clock, {"prefill": 10, "decode": 10}, tokens={"decode": 0})
    derived = timer.results().derived()
    assert "tpot" not in derived and "ttft" in derived


def test_a_stage_timed_twice_in_a_round_is_an_error():
    timer = StageTimer(FakeClock(), rounds=1, warmup=0)
    rnd = timer.round()
    with rnd.stage("vision"):
        pass
    with pytest.raises(ValueError, match="'vision' timed twice in round 0"):
        with rnd.stage("vision"):
            pass


def test_stages_do_not_nest():
    rnd = StageTimer(FakeClock()).round()
    with pytest.raises(ValueError, match="do not nest"):
        with rnd.stage("prefill"):
            with rnd.stage("decode"):
                pass


@pytest.mark.parametrize("name", ["", "two words", "9lives", "pre/fill"])
def test_bad_stage_names_are_refused(name):
    rnd = StageTimer(FakeClock()).round()
    with pytest.raises(ValueError, match="bad stage name"):
        with rnd.stage(name):
            pass


def test_bad_token_count_is_refused():
    rnd = StageTimer(FakeClock()).round()
    with pytest.raises(ValueError, match="tokens must be a non-negative int"):
        with rnd.stage("decode", tokens=-1):
            pass


def test_a_failing_stage_is_not_recorded():
    clock = FakeClock()
    timer = StageTimer(clock, rounds=1, warmup=0)
    rnd = timer.round()
    with pytest.raises(RuntimeError):
        with rnd.stage("prefill"):
            raise RuntimeError("out of memory")
    assert not timer.used


def test_results_need_a_steady_round():
    clock = FakeClock()
    timer = StageTimer(clock, rounds=1, warmup=1)
    with timer.round().stage("prefill"):
        clock.now += 1
    with pytest.raises(ValueError, match="no steady-state round"):
        timer.results()


def test_steady_rounds_must_time_the_same_stages():
    clock = FakeClock()
    timer = StageTimer(clock, rounds=2, warmup=0)
    rounds = timer.rounds()
    next(rounds)  # cold
    with next(rounds).stage("prefill"):
        pass
    r = next(rounds)
    with r.stage("prefill"):
        pass
    with r.stage("decode"):
        pass
    with pytest.raises(ValueError, match="different stages"):
        timer.results()


def test_bad_rounds_and_warmup():
    with pytest.raises(ValueError):
        StageTimer(FakeClock(), rounds=0)
    with pytest.raises(ValueError):
        StageTimer(FakeClock(), warmup=-1)


def test_stage_hook_runs_inside_the_stage():
    clock = FakeClock()

    def hook(span, phase):
        clock.now += 50 if (span.name, phase) == ("decode", "end") else 0

    timer = StageTimer(clock, rounds=1, warmup=0, stage_hook=hook)
    run(timer, clock, {"prefill": 10, "decode": 10})
    assert timer.results().steady == {"prefill": [11], "decode": [61]}


@given(
    plan=st.dictionaries(st.sampled_from(["load", "preprocess", "vision", "prefill", "decode", "extra"]), st.integers(0, 10**9), min_size=1),
    rounds=st.integers(1, 5),
    warmup=st.integers(0, 3),
)
def test_every_steady_duration_is_what_the_clock_moved(plan, rounds, warmup):
    clock = FakeClock()
    timer = StageTimer(clock, rounds=rounds, warmup=warmup)
    run(timer, clock, plan)
    res = timer.results()
    first_steady = 1 + warmup
    for stage, ns in plan.items():
        assert res.steady[stage] == [ns + first_steady + i for i in range(rounds)]
        assert res.cold[stage] == ns
    assert res.derived()["total"] == [float(sum(res.steady[s][i] for s in plan)) for i in range(rounds)]


def test_cpu_clocks_and_overhead_structure():
    device_clock, host_clock = clocks_for("cpu")
    assert isinstance(device_clock, PerfCounterClock) and device_clock is host_clock
    readings, host_ns = timer_overhead(device_clock, rounds=50)
    assert len(readings) == 50 and all(r >= 0 for r in readings) and host_ns > 0


def test_unknown_device_has_no_clock():
    with pytest.raises(ValueError, match="no clock"):
        clocks_for("mps")


def test_injector_busy_waits_a_fraction_of_each_steady_host_stage(monkeypatch):
    waits: list[float] = []
    busy_wait = inject._busy_wait_ns
    monkeypatch.setattr(inject, "_busy_wait_ns", lambda ns: (waits.append(ns), busy_wait(ns)))
    clock = PerfCounterClock()
    injector = SlowdownInjector({"decode": 1.0})
    timer = StageTimer(clock, rounds=3, warmup=1, stage_hook=injector)
    for rnd in timer.rounds():
        with rnd.stage("prefill"):
            _spin(2_000_000)
        with rnd.stage("decode"):
            _spin(2_000_000)
    res = timer.results()
    # +100 %: one busy wait per steady decode, as long as its 2 ms (or more) of work, so each
    # steady decode lasts at least 4 ms (a busy wait never returns early); prefill and the cold,
    # warm-up and control rounds get none. Counted, not compared in time: on a loaded machine a
    # preempted 2 ms prefill can outlast an injected decode.
    assert len(waits) == 3 and all(ns >= 2_000_000 for ns in waits)
    assert all(ns >= 4_000_000 for ns in res.steady["decode"])
    assert res.rounds == 3 and len(res.control["decode"]) == 3  # one control round per steady round


def _spin(ns: int) -> None:
    import time

    end = time.perf_counter_ns() + ns
    while time.perf_counter_ns() < end:
        pass


# --------------------------------------------------------------------------- control rounds


def test_an_injector_interleaves_control_rounds_control_first():
    timer = StageTimer(FakeClock(), rounds=3, warmup=2, stage_hook=SlowdownInjector({"decode": 0.2}))
    kinds = [rnd.kind for rnd in timer.rounds()]
    assert kinds == [COLD, WARMUP, WARMUP, CONTROL, STEADY, CONTROL, STEADY, CONTROL, STEADY]


def test_no_control_rounds_without_an_injector():
    assert StageTimer(FakeClock()).control is False
    # any other hook leaves the rounds as they were
    timer = StageTimer(FakeClock(), rounds=2, warmup=1, stage_hook=lambda span, phase: None)
    assert [rnd.kind for rnd in timer.rounds()] == [COLD, WARMUP, STEADY, STEADY]


def test_control_can_be_chosen_explicitly():
    off = StageTimer(FakeClock(), rounds=2, warmup=0, stage_hook=SlowdownInjector({"decode": 0.2}), control=False)
    assert [rnd.kind for rnd in off.rounds()] == [COLD, STEADY, STEADY]
    on = StageTimer(FakeClock(), rounds=2, warmup=0, control=True)
    assert [rnd.kind for rnd in on.rounds()] == [COLD, CONTROL, STEADY, CONTROL, STEADY]


def test_hand_written_rounds_follow_the_same_order():
    timer = StageTimer(FakeClock(), rounds=2, warmup=1, stage_hook=SlowdownInjector({"decode": 0.2}))
    assert [timer.round().kind for _ in range(7)] == [COLD, WARMUP, CONTROL, STEADY, CONTROL, STEADY, CONTROL]
    plain = StageTimer(FakeClock(), rounds=2, warmup=1)
    assert [plain.round().kind for _ in range(5)] == [COLD, WARMUP, STEADY, STEADY, STEADY]


def test_rounds_argument_counts_steady_rounds_with_control_too():
    timer = StageTimer(FakeClock(), control=True)
    kinds = [rnd.kind for rnd in timer.rounds(rounds=2, warmup=0)]
    assert kinds == [COLD, CONTROL, STEADY, CONTROL, STEADY]


def test_control_rounds_are_kept_apart_and_derived():
    clock = FakeClock()
    timer = StageTimer(clock, rounds=2, warmup=1, control=True)
    for rnd in timer.rounds():
        with rnd.stage("prefill", tokens=100):
            clock.now += 1_000_000
        with rnd.stage("decode", tokens=10):
            clock.now += 10_000_000 if rnd.kind == CONTROL else 12_000_000  # steady rounds +20 %
    res = timer.results()
    assert res.rounds == 2  # steady rounds only
    assert res.steady == {"prefill": [1_000_000] * 2, "decode": [12_000_000] * 2}
    assert res.control == {"prefill": [1_000_000] * 2, "decode": [10_000_000] * 2}
    assert res.control_tokens == {"prefill": [100, 100], "decode": [10, 10]}
    assert res.warmup == {"prefill": [1_000_000], "decode": [12_000_000]}
    control = res.derived_control()
    assert control["total"] == [11_000_000.0] * 2 and control["ttft"] == [1_000_000.0] * 2
    assert control["tpot"] == [1_000_000.0] * 2 and control["decode_tokens_per_s"] == pytest.approx([1000.0] * 2)
    assert res.derived()["tpot"] == [1_200_000.0] * 2
    assert set(control) == set(res.derived())


def test_no_control_results_without_control_rounds():
    clock = FakeClock()
    timer = StageTimer(clock, rounds=2, warmup=0)
    run(timer, clock, {"prefill": 10})
    res = timer.results()
    assert res.control == {} and res.control_tokens == {} and res.derived_control() == {}


def test_control_rounds_must_time_the_same_stages_as_steady_ones():
    timer = StageTimer(FakeClock(), rounds=1, warmup=0, control=True)
    rounds = timer.rounds()
    next(rounds)  # cold
    with next(rounds).stage("prefill"):  # control: prefill only
        pass
    r = next(rounds)  # steady: prefill and decode
    with r.stage("prefill"):
        pass
    with r.stage("decode"):
        pass
    with pytest.raises(ValueError, match="steady and control rounds timed different stages"):
        timer.results()


@pytest.mark.parametrize(
    "metric, expected",
    [
        ("decode", ["decode"]),
        ("total", ["load", "preprocess", "vision", "prefill", "decode"]),
        ("ttft", ["load", "preprocess", "vision", "prefill"]),
        ("tpot", ["decode"]),
        ("decode_tokens_per_s", ["decode"]),
        ("prefill_tokens_per_s", ["prefill"]),
        ("tokens.decode", []),
        ("encode", []),
    ],
)
def test_metric_stages(metric, expected):
    assert metric_stages(metric, ["load", "preprocess", "vision", "prefill", "decode"]) == expected


def test_metric_stages_without_the_stages_it_needs():
    assert metric_stages("ttft", ["decode"]) == [] and metric_stages("tpot", ["prefill"]) == []


def test_injector_on_the_host_clock_waits_in_steady_rounds_only(monkeypatch):
    waited = []
    injector = SlowdownInjector({"decode": 0.2})

    def hook(span, phase):
        monkeypatch.setattr(inject, "_busy_wait_ns", lambda ns: waited.append((span.kind, span.name)))
        injector(span, phase)

    clock = FakeClock()
    timer = StageTimer(clock, rounds=3, warmup=1, stage_hook=hook, control=True)
    for rnd in timer.rounds():
        for stage in ("prefill", "decode"):
            with rnd.stage(stage):
                clock.now += 5
    # one busy wait per steady decode; none in control, cold or warm-up rounds, nor in prefill
    assert waited == [(STEADY, "decode")] * 3


class _FakeCuda:
    """Stands in for ``torch.cuda`` in the injector's CUDA-event path: records what it is asked."""

    def __init__(self):
        self.calls = []

    def synchronize(self, device=None):
        self.calls.append("synchronize")

    def _sleep(self, cycles):
        self.calls.append("sleep")

    def current_stream(self, device=None):
        calls = self.calls

        class Stream:
            def synchronize(self):
                calls.append("stream wait")

        return Stream()


def test_injector_on_cuda_events_treats_control_as_a_zero_delay(monkeypatch):
    torch = pytest.importorskip("torch")
    fake = _FakeCuda()
    for name in ("synchronize", "_sleep", "current_stream"):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))
    injector = SlowdownInjector({"decode": 0.5}, "cuda")
    injector._cycles_per_ns = 1.0  # spin rate known: no calibration kernels
    clock = CudaEventClock.__new__(CudaEventClock)  # no CUDA device needed: the hook only checks the type

    def stage(kind, name="decode"):
        span = StageSpan(name, 0, kind, clock)
        fake.calls.clear()
        injector(span, "start")
        injector(span, "end")
        return list(fake.calls)

    # cold and warm-up rounds calibrate: synchronised at the start and at the end
    assert stage(COLD) == ["synchronize", "synchronize"]
    assert stage(WARMUP) == ["synchronize", "synchronize"]
    calibration = {k: list(v) for k, v in injector._calibration.items()}
    # steady: a spin kernel, then the host waits for it; control: the same wait, no kernel
    assert stage(STEADY) == ["sleep", "stream wait"]
    assert stage(CONTROL) == ["stream wait"]
    assert injector._calibration == calibration  # control rounds never feed the calibration
    # stages that were not injected are never touched
    assert stage(STEADY, "prefill") == [] and stage(CONTROL, "prefill") == []


class _Peer:
    """A stand-in for the lockstep client of an A/B process: records each turn it is asked for."""

    def __init__(self) -> None:
        self.begins: list[str] = []
        self.ends = 0

    def begin(self, label: str, *, pin: bool = True) -> None:
        self.begins.append(label.split("#")[-1] if "#" in label else label)

    def end(self) -> None:
        self.ends += 1


def test_timer_overhead_in_an_ab_process_runs_in_one_exclusive_turn(monkeypatch):
    """In an A/B process a timer takes a turn per round (1 cold + 1 warm-up + 3 steady = 5 here),
    so that the other process's rounds fall between them. The timer's own overhead must not take
    turns, or every empty stage would carry the other process's round: one turn for all of it."""
    from pytest_egbench import lockstep

    peer = _Peer()
    monkeypatch.setattr(lockstep, "client", lambda: peer)
    timer = StageTimer(PerfCounterClock(), rounds=3, warmup=1)
    for rnd in timer.rounds():
        with rnd.stage("prefill"):
            pass
    timer.results()
    assert peer.begins == ["0", "1", "2", "3", "4"] and peer.ends == 5

    peer = _Peer()
    monkeypatch.setattr(lockstep, "client", lambda: peer)
    readings, _ = timer_overhead(PerfCounterClock(), rounds=50)
    assert len(readings) == 50
    assert peer.begins == ["timer overhead"] and peer.ends == 1
