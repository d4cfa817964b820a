"""``python -m pytest_egbench compare A.json B.json``: judge results file B (current) against A
(reference) with the judge of ``pytest --egbench`` and print the same tables and verdicts.

A is read as a baseline (:func:`pytest_egbench.baselines.load`: a results file is one run; a
baseline file of several runs works too), B's metrics are rebuilt from its entries
(:func:`pytest_egbench.ab.measurement_from_entry`) and judged test by test by
:meth:`pytest_egbench.session.EgbenchSession.judge_and_record`, under B's settings, machine and
calibration: so latency is compared only when A and B share a machine fingerprint and their
calibrations match (``--ignore-machine`` as ``--egbench-ignore-machine``), exact metrics
whenever preset and quantisation agree, exactly as a ``pytest --egbench`` run against a baseline.

Exit status: 0 when no metric regressed, 1 when one did, 2 for a file that cannot be used.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .baselines import BaselineError, load

if TYPE_CHECKING:
    from .session import EgbenchSession, Measurement


@dataclass(frozen=True)
class Comparison:
    """The judged session (B's measurements, each with ``extra_info["verdict"]``) and the messages
    of the metrics that regressed."""

    session: EgbenchSession
    regressions: list[str]


def verdict_table(session: EgbenchSession) -> list[str]:
    """The terminal tables and verdict summary of ``pytest --egbench`` for ``session``. The one
    seam between ``compare`` and the terminal report: re-point it here when report.py's table
    changes."""
    from .report import terminal_lines

    return terminal_lines(session)


def _results(path: Path) -> dict[str, Any]:
    """A results file written by ``--egbench-json``, checked (:class:`BaselineError` naming it)."""
    load(path)  # refuses what is not a results or baseline file, naming the problem
    doc = json.loads(path.read_text(encoding="utf-8"))
    if "schema_version" in doc or not isinstance(doc.get("egbench"), dict):
        raise BaselineError(f"{path}: the current side must be a results file written by --egbench-json, not a baseline file")
    return doc


def _measurements(doc: dict[str, Any]) -> list[Measurement]:
    from .ab import entries, measurement_from_entry

    out = []
    for fullname, bench in entries(doc).items():
        data = (bench.get("stats") or {}).get("data") or []
        out.append(measurement_from_entry(bench, [float(v) for v in data], fullname.rsplit("::", 1)[0]))
    return out


def compare(reference: Path, current: Path, *, ignore_machine: bool = False) -> Comparison:
    """Judge ``current`` against ``reference`` (see the module docstring). Raises
    :class:`BaselineError` naming a file that cannot be read or used."""
    from .options import Settings
    from .session import EgbenchSession
    from .verdict import REGRESSION

    ref = load(reference)
    doc = _results(current)
    eg = doc["egbench"]
    run = eg.get("settings") or {}
    device = (doc.get("machine_info") or {}).get("egbench", {}).get("gpu_name")
    settings = Settings(
        enabled=True,
        preset=run.get("preset"),
        quant=run.get("quant"),
        rounds=int(run.get("rounds", 8)),
        warmup=int(run.get("warmup", 2)),
        max_new_tokens=int(run.get("max_new_tokens", 16)),
        baseline_dir=reference,
        ignore_machine=ignore_machine,
        device_type="cuda" if device else "cpu",
    )
    session = EgbenchSession.replay(settings, doc.get("machine_info") or {}, eg.get("calibration"), [ref])
    by_test: dict[str, list[Measurement]] = defaultdict(list)
    for m in _measurements(doc):
        session.add(m)
        by_test[m.nodeid].append(m)
    regressions = []
    for measured in by_test.values():
        regressions += [f"{measured[0].test}: {v.message}" for v in session.judge_and_record(measured) if v.status == REGRESSION]
    return Comparison(session, regressions)


def main(reference: Path, current: Path, *, ignore_machine: bool = False) -> int:
    """Print the comparison; 0 without a regression, 1 with one."""
    result = compare(reference, current, ignore_machine=ignore_machine)
    print(f"reference {reference}, current {current}")
    print("\n".join(verdict_table(result.session)))
    if result.regressions:
        print(f"\n{len(result.regressions)} metric(s) regressed:")
        print("\n".join(f"  {line}" for line in result.regressions))
    return 1 if result.regressions else 0
