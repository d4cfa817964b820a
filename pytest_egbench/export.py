"""Export a results file for other tools: github-action-benchmark's custom JSON.

github-action-benchmark (``benchmark-action/github-action-benchmark``) reads, for its tools
``customSmallerIsBetter`` and ``customBiggerIsBetter``, a JSON array of objects with ``name``
(string), ``unit`` (string) and ``value`` (number), and optionally ``range`` (string: the
results' variance) and ``extra`` (string: shown in the chart's tooltip). One file per direction:

* **smaller is better** (``<prefix>-smaller.json``): latencies (stages, total, TTFT, TPOT; in ms)
  and memory (bytes).
* **bigger is better** (``<prefix>-bigger.json``): throughputs (tokens/s) and rates (acceptance,
  agreement; 0..1).
* **token counts and other exact figures have no direction** (fewer prompt tokens is neither
  better nor worse; any change is a change of the work measured, which ``pytest --egbench``
  already fails on as an exact metric). They go into no file as a value of their own: each is
  listed in the ``extra`` of every exported metric of its benchmark (``tokens.prefill 637``), so
  the chart's tooltip shows the work each figure measured. ``info`` figures (not gated) are left
  out.

``value`` is the median of the steady rounds, ``range`` ``± half the IQR``, ``extra`` names the
rounds, the quartiles, the model and the token counts. ``name`` is the metric's full name
(``benchmarks/test_lm_stages.py::test_lm_stages::decode``). Standard library only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .baselines import Baseline, BaselineError, Entry, MetricSummary, load

SMALLER_KINDS = ("latency", "memory")
BIGGER_KINDS = ("throughput", "rate")


def _bench(key: str, entry: Entry, counts: str) -> dict[str, Any]:
    """One github-action-benchmark entry for ``entry`` (seconds shown as ms)."""
    s = MetricSummary.of(entry)
    scale, unit = (1e3, "ms") if entry.unit == "s" else (1.0, entry.unit)
    extra = [f"median of {s.n} steady rounds; q1 {s.q1 * scale:.6g}, q3 {s.q3 * scale:.6g} {unit}"]
    if entry.model:
        extra.append(f"model {entry.model}")
    if counts:
        extra.append(counts)
    return {"name": key, "unit": unit, "value": s.median * scale, "range": f"± {s.iqr * scale / 2:.6g}", "extra": "\n".join(extra)}


def github_action_benchmark(results: Baseline) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(smaller-is-better entries, bigger-is-better entries) of ``results`` (a results file read
    by :func:`pytest_egbench.baselines.load`: one run), in key order; see the module docstring."""
    counts: dict[str, list[str]] = {}
    for key, entry in sorted(results.entries.items()):
        if entry.kind == "exact":
            counts.setdefault(key.rsplit("::", 1)[0], []).append(f"{entry.metric} {MetricSummary.of(entry).median:g}")
    smaller: list[dict[str, Any]] = []
    bigger: list[dict[str, Any]] = []
    for key, entry in sorted(results.entries.items()):
        if entry.kind in SMALLER_KINDS + BIGGER_KINDS:
            bench = _bench(key, entry, ", ".join(counts.get(key.rsplit("::", 1)[0], [])))
            (smaller if entry.kind in SMALLER_KINDS else bigger).append(bench)
    return smaller, bigger


def write_github_action_benchmark(results_path: Path, prefix: Path) -> list[tuple[Path, int]]:
    """Write ``<prefix>-smaller.json`` and ``<prefix>-bigger.json`` from the results file
    ``results_path`` (``--egbench-json``; a baseline file of one run works too); returns each
    path with its number of entries. Both files are written even when one is empty (``[]``;
    github-action-benchmark refuses an empty list, so a workflow should feed it only a file with
    entries). Raises :class:`~pytest_egbench.baselines.BaselineError` naming the file for a file
    that cannot be read or holds several runs, ``OSError`` for a file that cannot be written."""
    from .atomic import write_text_atomic

    results = load(results_path)
    if len(results.runs) != 1:
        raise BaselineError(f"{results_path}: holds {len(results.runs)} runs; export takes a results file (--egbench-json) of one run")
    written = []
    for suffix, entries in zip(("smaller", "bigger"), github_action_benchmark(results), strict=True):
        path = prefix.with_name(f"{prefix.name}-{suffix}.json")
        write_text_atomic(path, json.dumps(entries, indent=2) + "\n")
        written.append((path, len(entries)))
    return written
