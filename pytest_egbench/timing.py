"""Clocks and the stage timer.

One clock class per timing method:

* :class:`PerfCounterClock` -- ``time.perf_counter_ns`` on the host (CPU runs; host stages).
* :class:`SyncedPerfCounterClock` -- the same, after a device synchronisation, for host stages
  of a CUDA run whose end must include queued copies (preprocess ends with tensors on the device).
* :class:`CudaEventClock` -- CUDA events recorded on the current stream; nothing synchronises
  until :meth:`StageTimer.results` reads the figures, once.

:class:`StageTimer` runs rounds of named stages (docs/design.md#stages: load, preprocess, vision,
prefill, decode, and free names). The first round is the cold round, the next ``warmup`` rounds
are warm-up; both are kept apart from the steady-state rounds that the statistics use. A stage
may carry a token count, from which TTFT, TPOT and tokens/s are derived rather than timed again.

A stage hook (:class:`StageHook`) runs inside every stage. A hook that asks for control rounds
(``control_rounds = True``, as :class:`pytest_egbench.inject.SlowdownInjector` of
``--egbench-inject`` does) makes the steady rounds alternate with *control* rounds: the same
pipeline, never changed by the hook, run in the same process between the steady rounds. They are
this run's own reference, so a slowdown the hook injects can be judged on a machine without a
baseline, and without the drift between runs that a baseline carries.

torch is imported only by :class:`CudaEventClock` and :class:`SyncedPerfCounterClock`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from .catalog import derive
from .catalog import metric_stages as metric_stages  # re-exported; its home is catalog
from .names import STAGE_NAME

#: Round kinds. Only steady rounds enter the statistics; control rounds (with a hook that asks for
#: them only) are the unchanged reference interleaved with them.
COLD, WARMUP, STEADY, CONTROL = "cold", "warmup", "steady", "control"
#: Stages timed on the host clock by default (docs/design.md#timing).
HOST_STAGES = frozenset({"load", "preprocess"})


class Clock(Protocol):
    """A way to mark points in time and read the span between two marks."""

    name: str

    def mark(self) -> Any:
        """Record the current point in time; must not block on a device."""

    def synchronize(self) -> None:
        """Wait until every mark taken so far can be read."""

    def elapsed_ns(self, start: Any, end: Any) -> int:
        """Nanoseconds between two marks; only valid after :meth:`synchronize`."""


class PerfCounterClock:
    """Host wall clock (``time.perf_counter_ns``); ``now`` is injectable for tests."""

    name = "perf_counter"

    def __init__(self, now: Callable[[], int] = time.perf_counter_ns) -> None:
        self._now = now

    def mark(self) -> int:
        return self._now()

    def synchronize(self) -> None:
        return None

    def elapsed_ns(self, start: int, end: int) -> int:
        return end - start


class SyncedPerfCounterClock(PerfCounterClock):
    """Host wall clock read after ``torch.cuda.synchronize(device)``.

    Used for host stages on a CUDA run: the span then includes the device work the stage queued
    (host-to-device copies), and excludes whatever was queued before it. The synchronisations sit
    at stage boundaries, never inside a timed loop.
    """

    name = "perf_counter+sync"

    def __init__(self, device: Any) -> None:
        import torch

        super().__init__()
        self._sync = lambda: torch.cuda.synchronize(device)

    def mark(self) -> int:
        self._sync()
        return self._now()


class CudaEventClock:
    """CUDA events (``torch.cuda.Event(enable_timing=True)``) on the device's current stream.

    ``mark`` only records an event; :meth:`synchronize` is one ``torch.cuda.synchronize`` for the
    whole device. Event resolution is about 0.5 us (CUDA documentation of
    ``cudaEventElapsedTime``).
    """

    name = "cuda_event"
    POOL = 64  # events created at a time (even)

    def __init__(self, device: Any) -> None:
        import torch

        self._torch = torch
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise ValueError(f"CudaEventClock needs a CUDA device, got {self.device}")
        self._pool: list[Any] = []

    def mark(self) -> Any:
        # Events are created ahead, in pairs, so that creating one never falls between the two
        # records of a stage: the pool is refilled only when empty, which (marks coming in
        # start/end pairs and the pool holding an even number) happens only at a start mark.
        if not self._pool:
            self._pool = [self._torch.cuda.Event(enable_timing=True) for _ in range(self.POOL)]
        event = self._pool.pop()
        event.record(self._torch.cuda.current_stream(self.device))
        return event

    def synchronize(self) -> None:
        self._torch.cuda.synchronize(self.device)

    def elapsed_ns(self, start: Any, end: Any) -> int:
        return round(start.elapsed_time(end) * 1e6)


def clocks_for(device: Any) -> tuple[Clock, Clock]:
    """(device clock, host clock) for a ``torch.device`` or device string.

    CPU: both are :class:`PerfCounterClock`. CUDA: :class:`CudaEventClock` and
    :class:`SyncedPerfCounterClock`.
    """
    kind = getattr(device, "type", str(device).split(":")[0])
    if kind == "cuda":
        return CudaEventClock(device), SyncedPerfCounterClock(device)
    if kind == "cpu":
        clock = PerfCounterClock()
        return clock, clock
    raise ValueError(f"no clock for device {device!r}: use cpu or cuda")


class StageHook(Protocol):
    """Called inside every stage of a :class:`StageTimer`: ``hook(span, "start")`` just after the
    start mark, ``hook(span, "end")`` just before the end mark (not when the stage raised). A hook
    with a true attribute ``control_rounds`` gets control rounds interleaved with the steady ones
    (:class:`StageTimer`'s ``control``)."""

    def __call__(self, span: StageSpan, phase: str) -> None: ...


@dataclass
class StageSpan:
    """One timed stage of one round. ``tokens`` may be set inside the ``with`` block."""

    name: str
    round_index: int
    kind: str
    clock: Clock
    tokens: int | None = None
    start: Any = None
    end: Any = None


class Round:
    """One pass through the pipeline; hands out :meth:`stage` contexts."""

    def __init__(self, timer: StageTimer, index: int, kind: str) -> None:
        self._timer = timer
        self.index = index
        self.kind = kind
        self._names: set[str] = set()
        self._open: str | None = None

    @contextmanager
    def stage(self, name: str, *, tokens: int | None = None, clock: str | None = None) -> Iterator[StageSpan]:
        """Time the ``with`` block as stage ``name``.

        ``tokens``: tokens this stage processes (prefill: prompt length) or produces (decode:
        tokens generated after the first); may also be set on the yielded span. ``clock``:
        ``"device"`` or ``"host"``; by default ``load`` and ``preprocess`` use the host clock and
        every other stage the device clock.

        Raises ``ValueError`` for a bad name, a stage timed twice in one round, or a stage opened
        inside another (stages are consecutive, never nested).
        """
        if not STAGE_NAME.fullmatch(name):
            raise ValueError(f"bad stage name {name!r}: use letters, digits, '_', '.', '-'")
        if self._open is not None:
            raise ValueError(f"stage {name!r} opened inside stage {self._open!r}: stages do not nest")
        if name in self._names:
            raise ValueError(f"stage {name!r} timed twice in round {self.index}: each stage runs once a round")
        if clock not in (None, "host", "device"):
            raise ValueError(f"clock must be 'host' or 'device', got {clock!r}")
        use_host = name in HOST_STAGES if clock is None else clock == "host"
        span = StageSpan(name, self.index, self.kind, self._timer.host_clock if use_host else self._timer.device_clock, tokens)
        self._names.add(name)
        self._open = name
        span.start = span.clock.mark()
        try:
            self._timer._hook(span, "start")
            yield span
            self._timer._hook(span, "end")
        finally:
            span.end = span.clock.mark()
            self._open = None
        if span.tokens is not None and (not isinstance(span.tokens, int) or span.tokens < 0):
            raise ValueError(f"stage {name!r}: tokens must be a non-negative int, got {span.tokens!r}")
        self._timer._spans.append(span)


@dataclass
class TimingResults:
    """What a :class:`StageTimer` measured, in nanoseconds, resolved after one synchronisation.

    ``stages``: stage names in pipeline order. ``steady[s]``: one duration per steady round;
    ``cold[s]``: the cold round's duration (absent if the stage was not in it); ``warmup[s]``:
    the warm-up rounds' durations. ``tokens[s]``: the steady rounds' token counts (``None`` where
    the stage has none). ``control[s]`` and ``control_tokens[s]``: the same for the control rounds
    (empty without control rounds).
    """

    stages: list[str]
    steady: dict[str, list[int]]
    cold: dict[str, int]
    warmup: dict[str, list[int]]
    tokens: dict[str, list[int | None]]
    cold_tokens: dict[str, int | None] = field(default_factory=dict)
    control: dict[str, list[int]] = field(default_factory=dict)
    control_tokens: dict[str, list[int | None]] = field(default_factory=dict)

    @property
    def rounds(self) -> int:
        """The number of steady rounds (control rounds not counted)."""
        return len(next(iter(self.steady.values()), []))

    def derived(self, *, alternatives: bool = False) -> dict[str, list[float]]:
        """Per steady round, every derived metric of :data:`pytest_egbench.catalog.DERIVED` that
        applies: ``total`` (ns), ``ttft`` (ns), ``tpot`` (ns/token), ``prefill_tokens_per_s`` and
        ``decode_tokens_per_s``.

        TTFT is the sum of every stage up to and including ``prefill``, with which TTFT ends; TPOT =
        decode time / tokens produced in decode, i.e. decode / (n - 1) for n generated tokens
        (docs/design.md#ttft-and-tpot). A metric is left out when its stages or tokens are missing,
        and the sums of stages (``total``, ``ttft``) when ``alternatives`` (the stages are
        alternatives, not parts: :func:`pytest_egbench.catalog.derive`).
        """
        return derive(self.stages, self.steady, self.tokens, alternatives=alternatives)

    def derived_control(self, *, alternatives: bool = False) -> dict[str, list[float]]:
        """:meth:`derived`, per control round; empty without control rounds."""
        if not self.control:
            return {}
        return derive(self.stages, self.control, self.control_tokens, alternatives=alternatives)

    def derived_cold(self, *, alternatives: bool = False) -> dict[str, float]:
        """:meth:`derived` of the cold round, one value per metric; empty without a cold round."""
        if not self.cold:
            return {}
        stages = [s for s in self.stages if s in self.cold]
        derived = derive(stages, {k: [v] for k, v in self.cold.items()}, {k: [self.cold_tokens.get(k)] for k in self.cold}, alternatives=alternatives)
        return {k: v[0] for k, v in derived.items()}


def timer_overhead(device_clock: Clock, host_clock: Clock | None = None, *, rounds: int = 2000) -> tuple[list[int], float]:
    """The stage timer's own cost, measured with empty stages.

    Returns ``(readings, host_ns)``: ``readings`` are the durations the timer reports for an
    empty stage over ``rounds`` steady rounds (ns; the floor of any reading), and ``host_ns`` is
    the host time one round with one stage costs (ns; enter + exit + bookkeeping, measured with
    ``perf_counter_ns`` around all rounds, including the cold and 10 warm-up rounds).
    """
    from . import lockstep

    # In one process of an A/B pair, all rounds in one exclusive turn: a turn per round would add
    # the other process's rounds to every one of these (measured on the 2-CPU VM: 347 us a stage)
    with lockstep.turn("timer overhead"):
        timer = StageTimer(device_clock, host_clock, rounds=rounds, warmup=10, take_turns=False)
        start = time.perf_counter_ns()
        for rnd in timer.rounds():
            with rnd.stage("empty"):
                pass
        host_ns = (time.perf_counter_ns() - start) / (rounds + 11)
        return timer.results().steady["empty"], host_ns


class StageTimer:
    """Times rounds of named stages with a device clock and a host clock.

    >>> timer = StageTimer(PerfCounterClock(), PerfCounterClock(), rounds=3, warmup=1)
    >>> for rnd in timer.rounds():
    ...     with rnd.stage("prefill", tokens=8):
    ...         pass
    >>> timer.results().rounds
    3

    ``rounds()`` yields 1 cold round, ``warmup`` warm-up rounds, then ``rounds`` steady rounds.
    ``stage_hook(span, phase)`` (optional) runs inside every stage, with ``phase`` "start" just
    after the start mark and "end" just before the end mark (not when the stage raised);
    :class:`pytest_egbench.inject.SlowdownInjector` is one (a :class:`StageHook`). ``extra_info`` is
    free metadata (model name, params) that travels with the results.

    ``take_turns``: in one process of an A/B pair (:mod:`pytest_egbench.lockstep`), wait for this
    process's turn before every round (the default); ``False`` for a timer that runs inside one
    exclusive :func:`~pytest_egbench.lockstep.turn` of its own (:func:`timer_overhead`).

    ``control``: interleave control rounds (kind :data:`CONTROL`) with the steady rounds; by
    default exactly when ``stage_hook`` asks for them (a true ``control_rounds`` attribute). After the cold and warm-up
    rounds the timer then runs ``2 x rounds`` rounds, alternating control, steady, control,
    steady, ...; :meth:`rounds` and :meth:`round` both follow that order, and
    :attr:`TimingResults.rounds` still counts the steady rounds only.
    """

    def __init__(
        self,
        device_clock: Clock,
        host_clock: Clock | None = None,
        *,
        rounds: int = 6,
        warmup: int = 2,
        stage_hook: Callable[[StageSpan, str], None] | None = None,
        control: bool | None = None,
        take_turns: bool = True,
    ) -> None:
        if rounds < 1 or warmup < 0:
            raise ValueError(f"need rounds >= 1 and warmup >= 0, got rounds={rounds}, warmup={warmup}")
        self.device_clock = device_clock
        self.host_clock = host_clock or device_clock
        self.default_rounds = rounds
        self.default_warmup = warmup
        self.stage_hook = stage_hook
        self.control = bool(getattr(stage_hook, "control_rounds", False)) if control is None else control
        self.take_turns = take_turns
        self.extra_info: dict[str, Any] = {}
        self._spans: list[StageSpan] = []
        self._next_index = 0
        self._warmup_for_kind = warmup
        self._results: TimingResults | None = None

    def _hook(self, span: StageSpan, phase: str) -> None:
        if self.stage_hook is not None:
            self.stage_hook(span, phase)

    def _kind(self, index: int) -> str:
        if index == 0:
            return COLD
        if index <= self._warmup_for_kind:
            return WARMUP
        if self.control:
            return CONTROL if (index - self._warmup_for_kind) % 2 == 1 else STEADY
        return STEADY

    def round(self) -> Round:
        """The next round, for hand-written loops: cold first, then warm-up, then steady (with
        control rounds: control and steady in turn, control first)."""
        if self._results is not None:
            raise RuntimeError("results were already read; start a new StageTimer for more rounds")
        rnd = Round(self, self._next_index, self._kind(self._next_index))
        self._next_index += 1
        self._take_turn(rnd.index)
        return rnd

    def _take_turn(self, index: int | None) -> None:
        """In one process of an A/B pair run in lockstep (:mod:`pytest_egbench.lockstep`): end
        the previous round's turn (its device work synchronised first) and, for a new round
        ``index``, wait for this process's turn. No-op otherwise."""
        from . import lockstep

        peer = lockstep.client() if self.take_turns else None
        if peer is None:
            return
        if self._next_index > 1 or index is None:
            self.device_clock.synchronize()
            self.host_clock.synchronize()
            peer.end()
        if index is not None:
            peer.begin(f"{lockstep.current_nodeid()}#{index}")

    def rounds(self, rounds: int | None = None, warmup: int | None = None) -> Iterator[Round]:
        """Yield the cold round, the warm-up rounds and ``rounds`` steady rounds (with control
        rounds: ``rounds`` control and ``rounds`` steady rounds in turn)."""
        rounds = self.default_rounds if rounds is None else rounds
        warmup = self.default_warmup if warmup is None else warmup
        if self._next_index:
            raise RuntimeError("rounds() runs once per timer: it already started")
        self._warmup_for_kind = warmup
        for _ in range(1 + warmup + rounds * (2 if self.control else 1)):
            yield self.round()

    @property
    def used(self) -> bool:
        return bool(self._spans)

    def results(self) -> TimingResults:
        """Synchronise once and resolve every span to nanoseconds.

        Raises ``ValueError`` when nothing steady was timed, or when the steady and control rounds
        did not all time the same stages.
        """
        if self._results is not None:
            return self._results
        if self._next_index:
            self._take_turn(None)
        for clock in {id(s.clock): s.clock for s in self._spans}.values():
            clock.synchronize()
        order: list[str] = []
        steady: dict[str, list[int]] = {}
        tokens: dict[str, list[int | None]] = {}
        cold: dict[str, int] = {}
        cold_tokens: dict[str, int | None] = {}
        warm: dict[str, list[int]] = {}
        control: dict[str, list[int]] = {}
        control_tokens: dict[str, list[int | None]] = {}
        per_round: dict[int, list[str]] = {}
        for span in self._spans:
            ns = span.clock.elapsed_ns(span.start, span.end)
            if span.name not in order:
                order.append(span.name)
            if span.kind == COLD:
                cold[span.name], cold_tokens[span.name] = ns, span.tokens
            elif span.kind == WARMUP:
                warm.setdefault(span.name, []).append(ns)
            else:
                durations, counts = (steady, tokens) if span.kind == STEADY else (control, control_tokens)
                durations.setdefault(span.name, []).append(ns)
                counts.setdefault(span.name, []).append(span.tokens)
                per_round.setdefault(span.round_index, []).append(span.name)
        if not steady:
            raise ValueError("no steady-state round was timed (the cold and warm-up rounds are not statistics)")
        shapes = {tuple(sorted(v)) for v in per_round.values()}
        if len(shapes) > 1:
            raise ValueError(f"steady{' and control' if control else ''} rounds timed different stages: {sorted(shapes)}")
        stages = [s for s in order if s in steady]
        self._results = TimingResults(stages, steady, cold, warm, tokens, cold_tokens, control, control_tokens)
        return self._results
