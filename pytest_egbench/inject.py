"""Slowdown injection (``--egbench-inject STAGE=PCT``): a known slowdown added to chosen stages, to
check that the gate catches it. Everything the option does lives here; the rest of the suite
knows only a generic stage hook (:class:`pytest_egbench.timing.StageHook`):

* :class:`SlowdownInjector`, the stage hook that adds the delay (and asks the stage timer for
  control rounds, interleaved with the injected ones: this run's own reference);
* :func:`stage_hook`, what the ``stage_timer`` fixture hands its timer;
* :func:`collection_line` and :func:`stage_errors`: what the plugin says
  about an injected run (after collection; stages no benchmark times).

The option is parsed by :func:`pytest_egbench.options.parse_injection`; an injected run takes at
least :data:`~pytest_egbench.options.CONTROL_MIN_ROUNDS` rounds and is never saved (``options``).
Imports no torch at module level.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .options import format_percent
from .timing import COLD, CONTROL, STEADY, WARMUP, CudaEventClock, StageSpan

if TYPE_CHECKING:
    from .names import Producible
    from .options import Settings


def stage_hook(settings: Settings, device: Any) -> SlowdownInjector | None:
    """The stage hook of a benchmark's stage timer: a :class:`SlowdownInjector` of
    ``settings.inject`` on ``device``, or ``None`` when nothing is injected."""
    return SlowdownInjector(dict(settings.inject), device) if settings.inject else None


def collection_line(settings: Settings, min_rounds: int) -> str:
    """The line that says what is injected, e.g. ``egbench: injected slowdown decode=+20%, ...``."""
    slowdowns = ", ".join(f"{stage}=+{format_percent(fraction)}" for stage, fraction in settings.inject)
    return f"egbench: injected slowdown {slowdowns}, each steady round after an unchanged control round (at least {min_rounds} rounds when injecting)"


def stage_errors(settings: Settings, run: Producible) -> list[str]:
    """One message per ``--egbench-inject`` stage that none of the collected benchmarks times
    (``run``: what they can produce, :class:`pytest_egbench.names.Producible`)."""
    errors = []
    for stage, fraction in settings.inject:
        why = run.stage_error(stage)
        if why:
            errors.append(f"--egbench-inject {stage}={format_percent(fraction)}: {why}")
    return errors


class SlowdownInjector:
    """A stage hook that makes chosen stages slower by a known fraction (``--egbench-inject``).

    ``slowdowns``: ``{stage: fraction}``, e.g. ``{"decode": 0.2}``. In each steady round of such a
    stage it adds, just before the stage's end mark, ``fraction x`` the stage's duration:

    * host-clocked stages and CPU runs: the elapsed host time is known at the stage's end, so the
      delay is a busy wait of exactly ``fraction x elapsed``;
    * CUDA-event stages: elapsed device time is not known without a synchronisation, so in the cold
      and warm-up rounds (which never enter the statistics) the injector synchronises at the
      stage's start and end and measures it on the host clock; steady rounds then get one
      ``torch.cuda._sleep`` spin kernel of ``fraction x`` the median of the warm-up rounds'
      measurements (the cold round's when there is no warm-up round: it carries one-time costs) (its
      spin rate calibrated once), and the host waits for it, so that the delay cannot hide in the
      overlap of a host-bound stage with the next one.

    For decode this equals a per-token delay of ``fraction x TPOT``.

    A :class:`~pytest_egbench.timing.StageTimer` with an injector interleaves control rounds with the steady ones. The
    injector treats a control round as a steady round with a delay of zero: on the host clock it
    does nothing; on CUDA events it launches no spin kernel but makes the same host wait at the
    stage's end, so that a control round and an injected one differ by the delay only. Control
    rounds never feed the calibration. Stages not in ``slowdowns`` are never touched.
    """

    #: asks :class:`~pytest_egbench.timing.StageTimer` for control rounds
    control_rounds = True

    def __init__(self, slowdowns: dict[str, float], device: Any = "cpu") -> None:
        self.slowdowns = dict(slowdowns)
        self.device = device
        self._starts: dict[int, int] = {}
        self._calibration: dict[tuple[str, str], list[int]] = {}
        self._cycles_per_ns: float | None = None

    def __call__(self, span: StageSpan, phase: str) -> None:
        fraction = self.slowdowns.get(span.name)
        if not fraction:
            return
        if not isinstance(span.clock, CudaEventClock):
            if phase == "end" and span.kind == STEADY:
                _busy_wait_ns(fraction * (time.perf_counter_ns() - span.start))
            return
        if span.kind in (STEADY, CONTROL):
            if phase == "end":
                import torch

                if span.kind == STEADY:
                    self._sleep_ns(fraction * self._stage_ns(span.name))
                # Wait for the spin kernel on the host too. A kernel alone at the end of a
                # host-bound stage (decode in eager transformers) is absorbed: the GPU runs it
                # while the host already launches the next stage, and the next round's decode
                # then reads shorter by as much (seen on an H200: +10 % showed in the first
                # steady round only). Waiting puts the delay on both timelines, as a slower
                # host loop or a slower kernel would. A control round waits the same way, with
                # no kernel before it, so that it differs from an injected round by the delay.
                torch.cuda.current_stream(self.device).synchronize()
            return
        import torch

        torch.cuda.synchronize(self.device)
        now = time.perf_counter_ns()
        if phase == "start":
            self._starts[id(span)] = now
        else:
            self._calibration.setdefault((span.name, span.kind), []).append(now - self._starts.pop(id(span)))

    def _stage_ns(self, name: str) -> float:
        # the warm-up rounds when there are any: the cold round carries one-time costs
        durations = sorted(self._calibration.get((name, WARMUP)) or self._calibration.get((name, COLD), []))
        if not durations:
            raise RuntimeError(f"--egbench-inject {name}: no cold or warm-up round measured the stage")
        return float(durations[len(durations) // 2])

    def _sleep_ns(self, ns: float) -> None:
        import torch

        if self._cycles_per_ns is None:
            torch.cuda.synchronize(self.device)
            t0 = time.perf_counter_ns()
            for _ in range(10):
                torch.cuda._sleep(1_000_000)
            torch.cuda.synchronize(self.device)
            self._cycles_per_ns = 10 * 1_000_000 / (time.perf_counter_ns() - t0)
        torch.cuda._sleep(int(ns * self._cycles_per_ns))


def _busy_wait_ns(ns: float) -> None:
    end = time.perf_counter_ns() + int(ns)
    while time.perf_counter_ns() < end:
        pass
