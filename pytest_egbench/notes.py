"""Notes of a run as pytest warnings: the :class:`EgbenchWarning` family, and their folding.

A note is something the user should know that is neither a pass nor a failure: a stage still
getting faster when statistics began, a metric a benchmark did not declare, an improvement
beyond the tolerance... Each kind of note is a subclass of :class:`EgbenchWarning`, so users can
filter them or turn them into errors like any warning::

    pytest --egbench -W error::pytest_egbench.notes.EgbenchWarning        # every note fails its test
    pytest --egbench -W ignore::pytest_egbench.notes.UnsettledWarning     # no "still getting faster"

(or the ``filterwarnings`` ini option). A benchmark's notes are issued during its test, one
warning per kind with the same text for every benchmark, so that pytest's warnings summary folds
them; the egbench summary prints one line per kind of note per run (:func:`fold`), with the
count and the first few benchmarks and names, and leaves out the kinds the filters ignored.
Notes about the whole run (settings, machine) are issued when the run is configured.

Standard library only: plain ``pytest`` loads it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


class EgbenchWarning(UserWarning):
    """Base of every pytest-egbench note. ``title``: what the folded summary line says; ``counts``:
    what its count counts."""

    title = "note"
    counts = "name(s)"


class UnsettledWarning(EgbenchWarning):
    """A stage's steady rounds were still getting faster when statistics began (too short a
    warm-up, or the jitter of a CPU run): :func:`pytest_egbench.stats.unsettled`."""

    title = "still getting faster when statistics began (too short a warm-up, or jitter)"
    counts = "metric(s)"


class ThrottledWarning(EgbenchWarning):
    """The GPU was slowed down (clocks, power, temperature) during a benchmark."""

    title = "the GPU was slowed down during the benchmark"
    counts = "benchmark(s)"


class NotDeclaredWarning(EgbenchWarning):
    """A benchmark produced a stage or gated metric its ``egbench`` marker does not declare, so
    ``--egbench-inject`` and the tolerances refuse it (:mod:`pytest_egbench.names`)."""

    title = "not declared in its egbench marker (stages=[...] for a stage, metrics=[...] for a recorded metric), so --egbench-inject and the tolerances refuse"
    counts = "metric(s)"


class FewRoundsWarning(EgbenchWarning):
    """Too few rounds for the significance test to reach p < alpha: judged by the tolerance
    alone (:mod:`pytest_egbench.verdict`)."""

    title = "too few rounds for the significance test: judged by the tolerance alone"
    counts = "metric(s)"


class ImprovementWarning(EgbenchWarning):
    """A metric improved beyond its tolerance (passed, not failed). Against a saved baseline a
    faster host reads as a gain too (on the H200 x2 host of 2026-11-30, 92 metrics of unchanged
    code against the run its calibration matched), so the advice is to confirm it on this machine
    before re-saving."""

    title = "improved beyond the tolerance (against a baseline, a faster host reads so too: confirm with --egbench-ref before --egbench-save)"
    counts = "metric(s)"


class InjectionMissedWarning(EgbenchWarning):
    """An ``--egbench-inject`` slowdown was not caught against the baseline (its tolerance is too
    wide for it)."""

    title = "the injected slowdown was NOT caught against the baseline (its tolerance is too wide for it)"
    counts = "metric(s)"


class SettingsWarning(EgbenchWarning):
    """A run-wide choice that weakens the verdicts (``--egbench-ignore-machine``,
    ``--egbench-fallback-ref``)."""

    title = "settings"
    counts = "note(s)"


#: Every kind of note, by class name (for pytest-xdist's wire format).
KINDS: dict[str, type[EgbenchWarning]] = {
    c.__name__: c
    for c in (UnsettledWarning, ThrottledWarning, NotDeclaredWarning, FewRoundsWarning, ImprovementWarning, InjectionMissedWarning, SettingsWarning)
}
#: Benchmarks named in a folded line before "and N more".
FIRST_FEW = 3


#: Columns of one line of a warning's text (:meth:`Note.warning`).
WARNING_WIDTH = 50


@dataclass(frozen=True)
class Note:
    """One note: its ``kind`` (a class of :data:`KINDS`), the benchmark's ``nodeid`` and ``test``
    name (empty for a note about the run), the ``names`` it concerns (metrics), and ``detail``
    (the text of a note about the run)."""

    kind: type[EgbenchWarning]
    nodeid: str = ""
    test: str = ""
    names: tuple[str, ...] = ()
    detail: str = ""

    def warning(self) -> EgbenchWarning:
        """The warning to issue: the same text for every benchmark (so that pytest folds them),
        the detail for a note about the run. The text is broken into lines of at most
        :data:`WARNING_WIDTH` columns: pytest's warnings summary puts the warning's source
        location and class before it, and the whole line should fit 120 columns."""
        import textwrap

        text = self.detail or f"egbench: {self.kind.title} (the egbench summary names them)"
        return self.kind("\n".join(textwrap.wrap(text, WARNING_WIDTH, break_on_hyphens=False)))

    def to_wire(self) -> dict[str, Any]:
        return {"kind": self.kind.__name__, "nodeid": self.nodeid, "test": self.test, "names": list(self.names), "detail": self.detail}

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> Note:
        return cls(KINDS[raw["kind"]], raw["nodeid"], raw["test"], tuple(raw["names"]), raw["detail"])


def fold(notes: Iterable[Note]) -> list[str]:
    """One line per kind of note, in the order the kinds first appear: ``title [Kind]: N
    metric(s) in K benchmark(s): test_a (prefill, decode); test_b (vision); ... and 2 more
    benchmark(s)``, N counting every name (every benchmark for a note without names); notes
    about the run give their details instead."""
    by_kind: dict[type[EgbenchWarning], list[Note]] = defaultdict(list)
    for note in notes:
        by_kind[note.kind].append(note)
    lines = []
    for kind, group in by_kind.items():
        parts = list(dict.fromkeys(n.detail for n in group if not n.test))
        tests: dict[str, list[str]] = defaultdict(list)
        for n in group:
            if n.test:
                tests[n.test].extend(n.names)
        if tests:
            count = sum(len(names) or 1 for names in tests.values())
            listed = [f"{t} ({', '.join(names)})" if names else t for t, names in list(tests.items())[:FIRST_FEW]]
            more = f"; and {len(tests) - FIRST_FEW} more benchmark(s)" if len(tests) > FIRST_FEW else ""
            parts.append(f"{count} {kind.counts} in {len(tests)} benchmark(s): {'; '.join(listed)}{more}")
        lines.append(f"{kind.title} [{kind.__name__}]: {'; '.join(parts)}")
    return lines


class Recorder:
    """A pytest plugin object that keeps ``(class name, nodeid)`` of every egbench warning pytest
    recorded, i.e. that the ``-W``/``filterwarnings`` filters did not ignore (those turned into
    errors never arrive: they raised)."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()

    def pytest_warning_recorded(self, warning_message: Any, nodeid: str) -> None:
        category = getattr(warning_message, "category", None)
        if isinstance(category, type) and issubclass(category, EgbenchWarning):
            self.seen.add((category.__name__, nodeid))
