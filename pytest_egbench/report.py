"""Output of a run: the terminal stage table and the JSON results file.

The JSON file follows pytest-benchmark's layout (``machine_info``, ``commit_info``,
``benchmarks[]``, ``datetime``, ``version``) so that ``pytest-benchmark compare`` reads it. That
format's ``stats`` are seconds, so only time metrics go into ``benchmarks[]``; counts, rates and
bytes go into a top-level ``egbench`` block (and are repeated in the ``extra_info`` of nothing
else). No torch here.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .session import SECONDS, EgbenchSession, Measurement
from .stats import benchmark_stats, summarize

SCHEMA_VERSION = 1
_DERIVED_ROWS = (("ttft", "TTFT"), ("tpot", "TPOT"), ("prefill_tokens_per_s", "prefill tok/s"), ("decode_tokens_per_s", "decode tok/s"))


def _extra_info(m: Measurement, run: dict[str, Any], device: str | None) -> dict[str, Any]:
    return {
        **m.extra_info,
        "model": m.model,
        "stage": m.stage,
        "metric": m.metric,
        "unit": m.unit,
        "kind": m.kind,
        "device": device,
        "cold": m.cold,
        "warmup": list(m.warmup),
        **run,
    }


def benchmark_json(session: EgbenchSession, machine_info: dict[str, Any], commit_info: dict[str, Any]) -> dict[str, Any]:
    """The run as a pytest-benchmark JSON document (a dict ready for ``json.dump``)."""
    from pytest_benchmark import __version__ as pb_version

    run = session.run_info()
    device = (session.device_block or {}).get("device")
    benchmarks, other = [], []
    for m in session.measurements:
        entry = {
            "group": m.group,
            "name": m.name,
            "fullname": m.fullname,
            "params": m.params or None,
            "param": "-".join(str(v) for v in m.params.values()) or None,
            "extra_info": _extra_info(m, run, device),
            "options": {"timer": "egbench", "rounds": len(m.samples), "warmup": len(m.warmup)},
            "stats": benchmark_stats(m.samples),
        }
        (benchmarks if m.unit == SECONDS else other).append(entry)
    return {
        "machine_info": machine_info,
        "commit_info": commit_info,
        "benchmarks": benchmarks,
        "datetime": datetime.now(timezone.utc).isoformat(),
        "version": pb_version,
        "egbench": {"schema_version": SCHEMA_VERSION, "settings": run, "metrics": other},
    }


def write_json_atomic(path: Path, document: Any) -> None:
    """Write ``document`` as JSON to ``path`` through a temporary file and a rename.

    An existing file is replaced only once the new one is complete, so a crash or a value that
    cannot be serialised leaves the old file as it was. Raises ``OSError`` / ``TypeError``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(document, fh, indent=2, allow_nan=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- terminal table


def _column_label(m: Measurement) -> str:
    label = m.model or m.test.split("[")[0]
    if m.params:
        label += " " + ",".join(f"{k}={v}" for k, v in m.params.items() if k != "model")
    return label.strip()


def _fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.4g}" if ms < 1000 else f"{ms:.0f}"


def stage_table(group: str, measurements: Sequence[Measurement], order: Sequence[str]) -> list[str]:
    """Lines of one group's table: rows are stages then TTFT/TPOT/throughput, one column per
    model configuration with ``median [IQR]`` (ms, or tokens/s) and the stage's share of the sum of
    stage medians; with two or more columns, a ``ratio`` column per extra column (its median over
    the first column's median)."""
    columns: dict[str, dict[str, Measurement]] = defaultdict(dict)
    for m in measurements:
        columns[_column_label(m)][m.metric] = m
    labels = list(columns)
    stages = [s for s in order if any(s in columns[c] and columns[c][s].stage for c in labels)]
    if not stages:
        return []
    medians = {c: {k: summarize(v.samples).median for k, v in columns[c].items()} for c in labels}
    stage_sum = {c: sum(medians[c].get(s, 0.0) for s in stages) for c in labels}

    head = [f"{'stage':<14}"] + [f"{c[:30]:>30} {'share':>6}" for c in labels]
    head += [f"{('x ' + c)[:16]:>16}" for c in labels[1:]]
    lines = ["".join(head)]
    sub = [f"{'':<14}"] + [f"{'median [IQR] ms':>30} {'':>6}" for _ in labels] + [f"{'vs ' + labels[0][:12]:>16}" for _ in labels[1:]]
    lines.append("".join(sub))

    def row(title: str, metric: str, share: bool, time: bool) -> str | None:
        if not any(metric in columns[c] for c in labels):
            return None
        cells = [f"{title:<14}"]
        for c in labels:
            m = columns[c].get(metric)
            if m is None:
                cells.append(f"{'-':>30} {'':>6}")
                continue
            s = summarize(m.samples)
            text = f"{_fmt_ms(s.median)} [{_fmt_ms(s.iqr)}]" if time else f"{s.median:.4g} [{s.iqr:.3g}]"
            pct = f"{100 * s.median / stage_sum[c]:5.1f}%" if share and stage_sum[c] else ""
            cells.append(f"{text:>30} {pct:>6}")
        base = medians[labels[0]].get(metric)
        for c in labels[1:]:
            other = medians[c].get(metric)
            cells.append(f"{(f'{other / base:.2f}x' if base and other is not None else '-'):>16}")
        return "".join(cells)

    for stage in stages:
        lines.append(row(stage, stage, True, True) or "")
    for metric, title in (("total", "total"),) + _DERIVED_ROWS:
        r = row(title, metric, False, metric in ("total", "ttft", "tpot"))
        if r:
            lines.append(r)
    cold = [columns[c]["total"].cold for c in labels if "total" in columns[c]]
    if cold and all(v is not None for v in cold):
        lines.append("".join([f"{'cold total':<14}"] + [f"{_fmt_ms(v):>30} {'':>6}" for v in cold]))
    return lines


def terminal_lines(session: EgbenchSession) -> list[str]:
    """Every group's stage table, with a heading that says how the numbers were taken."""
    s = session.settings
    device = (session.device_block or {}).get("gpu_name") or (session.device_block or {}).get("device", s.device)
    lines = [
        f"device {device}, preset {s.preset}, weights {s.quant}; median [IQR] over {s.rounds} steady rounds "
        f"(cold round and {s.warmup} warm-up rounds excluded; 'cold total' shown apart)"
    ]
    groups: dict[str, list[Measurement]] = defaultdict(list)
    for m in session.measurements:
        groups[m.group].append(m)
    for group, ms in groups.items():
        order = session.stage_order({m.stage for m in ms if m.stage})
        table = stage_table(group, ms, order)
        if table:
            lines += ["", f"[{group}]", *table]
    return lines


def write_outputs(session: EgbenchSession) -> tuple[list[Path], list[str]]:
    """Write the files the options asked for. Returns (paths written, error messages).

    An error names the option and the file; the file it would have replaced is left intact.
    """
    from .machine import commit_info, machine_info

    written: list[Path] = []
    errors: list[str] = []
    path = session.settings.json
    if path is not None:
        try:
            document = benchmark_json(session, machine_info(session.device_block, session.run_info()), commit_info())
            write_json_atomic(path, document)
            written.append(path)
        except (OSError, TypeError, ValueError) as exc:
            errors.append(f"--egbench-json {path}: could not write the results: {exc}")
    return written, errors
