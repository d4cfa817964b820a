"""Output of a run: the terminal stage table and the JSON results file.

The JSON file follows pytest-benchmark's layout (``machine_info``, ``commit_info``,
``benchmarks[]``, ``datetime``, ``version``) so that ``pytest-benchmark compare`` reads it. That
format's ``stats`` are seconds, so only time metrics go into ``benchmarks[]``; counts, rates and
bytes go into a top-level ``egbench`` block (and are repeated in the ``extra_info`` of nothing
else). No torch here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .catalog import DERIVED, Unit
from .layout import WIDTH, Grid, fit, render, wrap
from .roofline import Peaks, calibrated_peaks, datasheet_peaks, roofline
from .session import NOT_COMPARED, NOT_GATED, SECONDS, EgbenchSession, Measurement, _jsonable
from .stats import benchmark_stats, summarize
from .verdict import CONTROL_REFERENCE, IMPROVEMENT, INCONCLUSIVE, NOISE_ONLY, PASS, REGRESSION, SETTINGS_DIFFER

#: Version of the ``egbench`` block of a results file (baseline files have their own, in baselines.py).
RESULTS_SCHEMA_VERSION = 1


def _extra_info(m: Measurement, run: dict[str, Any], device: str | None) -> dict[str, Any]:
    # the run's settings first: its "warmup" (a count) must not hide the warm-up rounds' values
    return {
        **run,
        **m.extra_info,
        "model": m.model,
        "stage": m.stage,
        "metric": m.metric,
        "unit": m.unit,
        "kind": m.kind,
        "device": m.extra_info.get("device") or device,
        "cold": m.cold,
        "warmup": list(m.warmup),
        "control": list(m.control),
    }


def benchmark_json(session: EgbenchSession, machine_info: dict[str, Any], commit_info: dict[str, Any]) -> dict[str, Any]:
    """The run as a pytest-benchmark JSON document (a dict ready for ``json.dump``)."""
    from pytest_benchmark import __version__ as pb_version

    from . import lockstep

    run = session.run_info()
    device = (session.device_block or {}).get("device")
    peer = lockstep.client()
    benchmarks: list[dict[str, Any]] = []
    other: list[dict[str, Any]] = []
    for m in session.measurements:
        entry = {
            "group": m.group,
            "name": m.name,
            "fullname": m.fullname,
            "params": _jsonable(m.params) or None,
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
        "egbench": {
            "schema_version": RESULTS_SCHEMA_VERSION,
            "run_id": session.run_id,
            "settings": run,
            "calibration": session.calibration,
            "metrics": other,
            **({"skipped": dict(session.skipped)} if session.skipped else {}),
            **({"lockstep": peer.summary()} if peer else {}),
        },
    }


# --------------------------------------------------------------------------- stage tables


def _column_label(m: Measurement) -> str:
    """The model (or the test function without ``test_``) and the parameters other than the
    model, e.g. ``eventgpt frames=5`` or ``event_load sample=cup_0000``."""
    label = m.model or m.test.split("[")[0].removeprefix("test_")
    params = [f"{k.removeprefix('egbench_')}={v}" for k, v in m.params.items() if k != "model"]
    return " ".join([label, ",".join(params)]).strip()


def _fmt(x: float) -> str:
    """Four significant figures at most, without exponents for the usual ranges."""
    a = abs(x)
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def _fmt_ms(seconds: float) -> str:
    return _fmt(seconds * 1e3)


@dataclass
class StageTable:
    """One group's table as cells: ``header`` and ``rows`` of strings, ready to render.

    Rows are the stages in pipeline order, then total, TTFT, TPOT and the throughputs, then the
    cold round's total (:data:`pytest_egbench.catalog.DERIVED`). Each model configuration has a
    ``median [IQR]`` column (ms, or tokens/s for throughputs) and, when its stages are parts of
    one pipeline (it has a ``total``; not so with ``egbench(alternatives=True)``), a ``share``
    column (the stage's median over the sum of stage medians, so the shares add up to 100 %). With several configurations they are numbered, and each one after the
    first adds a ratio column ``i / 1``: its median over the first configuration's median.
    """

    header: list[str]
    rows: list[list[str]]


def stage_table(measurements: Sequence[Measurement], order: Sequence[str]) -> StageTable | None:
    """The :class:`StageTable` of ``measurements`` (one group), or ``None`` if none is a stage."""
    columns: dict[str, dict[str, Measurement]] = defaultdict(dict)
    for m in measurements:
        columns[_column_label(m)][m.metric] = m
    labels = list(columns)
    stages = [s for s in order if any(s in columns[c] and columns[c][s].stage for c in labels)]
    if not stages:
        return None
    medians = {c: {k: summarize(v.samples).median for k, v in columns[c].items()} for c in labels}
    stage_sum = {c: sum(medians[c].get(s, 0.0) for s in stages) for c in labels}
    # a share of the total only where the stages add up to one (alternatives have no total)
    parts = {c: "total" in columns[c] for c in labels}
    numbered = len(labels) > 1
    header = ["stage"]
    for i, c in enumerate(labels, start=1):
        header += [f"{f'{i}: ' if numbered else ''}{c} median [IQR] ms"] + (["share"] if parts[c] else [])
    header += [f"{i} / 1" for i in range(2, len(labels) + 1)]

    def row(title: str, metric: str, share: bool, time: bool) -> list[str] | None:
        if not any(metric in columns[c] for c in labels):
            return None
        cells = [title]
        for c in labels:
            m = columns[c].get(metric)
            if m is None:
                cells += ["-", ""] if parts[c] else ["-"]
                continue
            s = summarize(m.samples)
            cells.append(f"{_fmt_ms(s.median)} [{_fmt_ms(s.iqr)}]" if time else f"{_fmt(s.median)} [{_fmt(s.iqr)}]")
            if parts[c]:
                cells.append(f"{100 * s.median / stage_sum[c]:.1f}%" if share and stage_sum[c] else "")
        base = medians[labels[0]].get(metric)
        for c in labels[1:]:
            other = medians[c].get(metric)
            cells.append(f"{other / base:.2f}x" if base and other is not None else "-")
        return cells

    rows = [row(stage, stage, True, True) for stage in stages]
    rows += [row(d.title, d.name, False, d.unit == Unit.SECONDS) for d in DERIVED]
    cold = [columns[c]["total"].cold if "total" in columns[c] else None for c in labels]
    if any(v is not None for v in cold):
        cells = ["cold total"]
        for c, v in zip(labels, cold):
            cells += ["-" if v is None else _fmt_ms(v)] + ([""] if parts[c] else [])
        rows.append(cells + [""] * (len(labels) - 1))
    return StageTable(header, [r for r in rows if r is not None])


def scaling_table(measurements: Sequence[Measurement], param: str = "frames") -> StageTable | None:
    """Prefill length and latency against ``param`` (frames): one row per value, per model the
    prompt tokens and the prefill median [IQR] in ms. ``None`` without such measurements."""
    cells: dict[str, dict[Any, dict[str, Measurement]]] = defaultdict(lambda: defaultdict(dict))
    for m in measurements:
        if param in m.params and m.metric in ("prefill", "tokens.prefill", "vision"):
            cells[m.model or m.test][m.params[param]][m.metric] = m
    if not cells:
        return None
    models = list(cells)
    values = sorted({v for per in cells.values() for v in per})
    header = [param] + [h for model in models for h in (f"{model} prompt tokens", f"{model} prefill ms", f"{model} vision ms")]
    rows = []
    for v in values:
        row = [str(v)]
        for model in models:
            got = cells[model].get(v, {})
            tokens = got.get("tokens.prefill")
            row.append(f"{summarize(tokens.samples).median:.0f}" if tokens else "-")
            for metric in ("prefill", "vision"):
                found = got.get(metric)
                row.append(f"{_fmt_ms(summarize(found.samples).median)} [{_fmt_ms(summarize(found.samples).iqr)}]" if found else "-")
        rows.append(row)
    return StageTable(header, rows)


def memory_table(measurements: Sequence[Measurement]) -> StageTable | None:
    """Per model: weights footprint, KV-cache bytes per token and for the run's prompt, and the
    peak device memory of each stage as if the model were alone on the device (``model_peak.<stage>``,
    :class:`~pytest_egbench.models.memory.PeakMemory`; MiB); ``None`` without byte measurements."""
    per_model: dict[str, dict[str, float]] = defaultdict(dict)
    for m in measurements:
        if m.unit == "bytes":
            per_model[m.model or m.test][m.metric] = summarize(m.samples).median
    if not per_model:
        return None
    metrics = ["footprint_bytes", "kv_bytes_per_token", "kv_cache_bytes"] + sorted({k for v in per_model.values() for k in v if k.startswith("model_peak.")})
    titles = {"footprint_bytes": "weights MiB", "kv_bytes_per_token": "KV KiB/token", "kv_cache_bytes": "KV cache MiB"}
    header = ["model"] + [titles.get(k, k.replace("model_peak.", "peak ") + " MiB") for k in metrics]
    rows = []
    for model, values in per_model.items():
        row = [model]
        for k in metrics:
            v = values.get(k)
            row.append("-" if v is None else f"{v / 1024:.1f}" if k == "kv_bytes_per_token" else f"{v / 2**20:.1f}")
        rows.append(row)
    return StageTable(header, rows)


def figures_table(measurements: Sequence[Measurement]) -> StageTable | None:
    """The figures a benchmark recorded with ``egbench_record`` as kind "rate" or "info" (rates,
    counts, ratios, speed-ups): one row per metric in the order recorded, one column
    per configuration (labelled as in :func:`stage_table`), the median with its unit. ``None`` without such measurements. Lets figures that
    belong together (alpha, tau, predicted and measured speed-up per gamma) be read side by side."""
    cells: dict[str, dict[str, Measurement]] = defaultdict(dict)
    for m in measurements:
        if m.stage is None and m.kind in ("rate", "info"):
            cells[m.metric][_column_label(m)] = m
    if not cells:
        return None
    models = list(dict.fromkeys(model for per in cells.values() for model in per))
    rows = []
    for metric, per in cells.items():
        row = [metric]
        for model in models:
            cell = per.get(model)
            row.append("-" if cell is None else f"{_fmt(summarize(cell.samples).median)} {cell.unit}")
        rows.append(row)
    return StageTable(["figure", *models], rows)


def roofline_table(measurements: Sequence[Measurement], peaks: Peaks | None) -> StageTable | None:
    """Per configuration that recorded ``decode_bytes_per_token`` and ``prefill_flops`` in its
    ``extra_info`` (the LM and model-stage benchmarks): the runtime and its compile time, the
    median TPOT and the decode bandwidth it achieves (GB/s, and its share of ``peaks``), the
    median prefill and its TFLOP/s (and share); :mod:`pytest_egbench.roofline`. ``None`` when no
    measurement carries those figures."""
    per: dict[str, dict[str, Any]] = {}
    for m in measurements:
        if "decode_bytes_per_token" not in m.extra_info:
            continue
        entry = per.setdefault(_column_label(m), {"extra": m.extra_info})
        if m.metric in ("tpot", "prefill"):
            entry[m.metric] = summarize(m.samples).median
    if not per:
        return None

    def share(x: float | None) -> str:
        return "-" if x is None else f"{x:.0%}"

    rows = []
    for label, e in per.items():
        extra, tpot, prefill = e["extra"], e.get("tpot"), e.get("prefill")
        r = roofline(extra, tpot, prefill, peaks)
        compile_s = extra.get("compile_s")
        rows.append(
            [
                label,
                str(extra.get("runtime", "eager")),
                "-" if compile_s is None else f"{compile_s:.1f}",
                "-" if tpot is None else _fmt_ms(tpot),
                "-" if r.decode_bandwidth is None else f"{r.decode_bandwidth / 1e9:.0f}",
                share(r.decode_share),
                "-" if prefill is None else _fmt_ms(prefill),
                "-" if r.prefill_flops_per_s is None else _fmt(r.prefill_flops_per_s / 1e12),
                share(r.prefill_share),
            ]
        )
    header = ["configuration", "runtime", "compile s", "TPOT ms", "decode GB/s", "of peak", "prefill ms", "TFLOP/s", "of peak"]
    return StageTable(header, rows)


def roofline_title(group: str, peaks: Peaks | None) -> str:
    """The roofline table's title: the group and the peaks its shares are of, with their source."""
    if peaks is None:
        return f"{group} roofline (no peak known for this device: shares not shown)"
    return f"{group} roofline (peaks: {peaks.bandwidth / 1e9:.0f} GB/s, {peaks.flops / 1e12:.0f} TFLOP/s bf16, from the {peaks.source})"


def session_peaks(session: EgbenchSession) -> Peaks | None:
    """The peaks the roofline shares are of: this run's CUDA calibration where it measured them,
    else the datasheet of a known GPU (:mod:`pytest_egbench.roofline`), else ``None``."""
    gpu = (session.device_block or {}).get("gpu_name")
    return calibrated_peaks(session.calibration) or datasheet_peaks(gpu)


def render_text(table: StageTable) -> list[str]:
    """Fixed-width lines for the terminal: first column left-aligned, the others right-aligned."""
    return render(Grid(table.header, table.rows))


def render_markdown(table: StageTable | Grid) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [line(table.header), "|" + "---|" + "---:|" * (len(table.header) - 1), *(line(r) for r in table.rows)]


def _group_measurements(session: EgbenchSession) -> dict[str, list[Measurement]]:
    groups: dict[str, list[Measurement]] = defaultdict(list)
    for m in session.measurements:
        groups[m.group].append(m)
    return groups


def _groups(session: EgbenchSession) -> list[tuple[str, StageTable]]:
    """(title, table) for every group: the token-scaling and memory groups get their own tables,
    every other group its stage table."""
    out = []
    peaks = session_peaks(session)
    for group, ms in _group_measurements(session).items():
        special = _OWN_TABLES[group](ms) if group in _OWN_TABLES else None
        table = special or stage_table(ms, session.stage_order({m.stage for m in ms if m.stage}))
        if table is not None:
            out.append((group, table))
        figures = figures_table(ms) if group in _FIGURE_GROUPS else None
        if figures is not None:
            out.append((f"{group} figures", figures))
        roof = roofline_table(ms, peaks)
        if roof is not None:
            out.append((roofline_title(group, peaks), roof))
    return out


_OWN_TABLES = {"token_scaling": scaling_table, "memory": memory_table}
#: Groups whose recorded figures get a table of their own beside the stage table.
_FIGURE_GROUPS = {"acceptance", "parallel_prefill"}


def _steady_rounds(session: EgbenchSession) -> str:
    """How many steady rounds the shown statistics are over, counted from the measurements (an
    A/B's processes run their own rounds, 24 with one pair, and a benchmark may set its own): the
    most common count, with the others named; ``--egbench-rounds`` when nothing was measured."""
    from collections import Counter

    counts = Counter(len(m.samples) for m in session.measurements if m.samples)
    if not counts:
        return str(session.settings.rounds)
    common = counts.most_common(1)[0][0]
    others = sorted(set(counts) - {common})
    return f"{common}" + (f" ({', '.join(map(str, others))} for some metrics)" if others else "")


def _heading(session: EgbenchSession) -> str:
    s = session.settings
    block = session.device_block or {}
    device = block.get("gpu_name") or block.get("device", s.device)
    control = f"; {s.rounds} control rounds interleaved (--egbench-inject), not shown" if s.inject else ""
    return (
        f"device {device}, preset {s.preset}, weights {s.quant}; median [IQR] over {_steady_rounds(session)} steady rounds "
        f"(cold round and {s.warmup} warm-up rounds excluded; 'cold total' shown apart){control}"
    )


# --------------------------------------------------------------------------- verdict tables


#: The mark beside each number in the verdict tables, per verdict status, and what it means.
VERDICT_MARKS = {
    PASS: ("=", "pass"),
    REGRESSION: ("!", "regression (slower, or worse)"),
    IMPROVEMENT: ("+", "improvement (faster, or better)"),
    NOISE_ONLY: ("~", "pass: beyond the tolerance, not significant"),
    INCONCLUSIVE: ("?", "inconclusive"),
    SETTINGS_DIFFER: ("#", "settings differ"),
    NOT_COMPARED: ("-", "not compared"),
    NOT_GATED: (".", "not gated (--egbench-gate, --egbench-gate-exclude)"),
    None: ("*", "not judged"),
}


@dataclass(frozen=True)
class MetricRow:
    """One metric of one configuration as plain data, what the verdict tables and the plots
    draw. ``value`` (median), ``iqr``, ``ci`` (95 % interval of the median, or ``None`` when not
    computed), ``cold`` and the reference's ``ref_value`` / ``ref_spread`` (its first and third
    quartiles) are in ``unit`` (``ms`` for times, else the metric's unit). ``status``: the verdict
    status (``None``: not judged); ``reference``: what the verdict compared with, as it names it."""

    group: str
    config: str
    metric: str
    title: str
    stage: str | None
    unit: str
    value: float
    iqr: float
    status: str | None = None
    reference: str | None = None
    ci: tuple[float, float] | None = None
    cold: float | None = None
    ref_value: float | None = None
    ref_spread: tuple[float, float] | None = None


def _table_metrics(ms: Sequence[Measurement], order: Sequence[str]) -> list[tuple[str, str]]:
    """(metric, column title) of a group's verdict table: its stages in ``order``, then total
    and the derived metrics present (as :func:`stage_table` rows them)."""
    present = {m.metric for m in ms}
    stages = [(s, s) for s in order if any(m.metric == s and m.stage for m in ms)]
    return stages + [(d.name, d.title) for d in DERIVED if d.name in present] if stages else []


def metric_rows(session: EgbenchSession, *, references: bool = False) -> list[MetricRow]:
    """The :class:`MetricRow` of every metric in a verdict table (stages and derived metrics of
    every group but token scaling and memory), in table order. ``references``: also compute the
    95 % CI of each median (bootstrap, :func:`~pytest_egbench.stats.bootstrap_median_ci`) and the
    reference's median and quartiles (:func:`reference_samples`), which the plots need."""
    out = []
    for group, ms in _group_measurements(session).items():
        if group in _OWN_TABLES:
            continue
        by_name = {(m.metric, _column_label(m)): m for m in ms}
        columns = _table_metrics(ms, session.stage_order({m.stage for m in ms if m.stage}))
        for config in dict.fromkeys(_column_label(m) for m in ms):
            for metric, title in columns:
                m = by_name.get((metric, config))
                if m is not None:
                    out.append(_metric_row(session, m, config, title, references))
    return out


def _metric_row(session: EgbenchSession, m: Measurement, config: str, title: str, references: bool) -> MetricRow:
    scale, unit = (1e3, "ms") if m.unit == SECONDS else (1.0, m.unit)
    s = summarize(m.samples)
    verdict = m.extra_info.get("verdict") or {}
    row = MetricRow(
        m.group,
        config,
        m.metric,
        title,
        m.stage,
        unit,
        s.median * scale,
        s.iqr * scale,
        verdict.get("status"),
        verdict.get("reference"),
        cold=None if m.cold is None else m.cold * scale,
    )
    if not references:
        return row
    from dataclasses import replace

    from .stats import bootstrap_median_ci

    _, low, high = bootstrap_median_ci(m.samples, resamples=1000)
    ref = reference_samples(session, m, row.reference)
    ref_stats = summarize(ref) if ref else None
    return replace(
        row,
        ci=(low * scale, high * scale),
        ref_value=ref_stats.median * scale if ref_stats else None,
        ref_spread=(ref_stats.q1 * scale, ref_stats.q3 * scale) if ref_stats else None,
    )


def reference_samples(session: EgbenchSession, m: Measurement, reference: str | None) -> list[float]:
    """The samples ``m`` was judged against, pooled (``m.unit``): the interleaved control rounds
    (:data:`~pytest_egbench.verdict.CONTROL_REFERENCE`), the A/B reference's processes
    (``--egbench-ref``), else this fingerprint's saved baseline runs; empty when there are none."""
    if reference is None:
        return []
    if reference == CONTROL_REFERENCE.name:
        return list(m.control)
    ab = (session.ab_runs or {}).get("ref", {}).get(m.fullname)
    if ab:
        return [v for run in ab.values() for v in run]
    own = session.own_baseline() if session.settings.baseline_dir else None
    entry = own.entries.get(m.fullname) if own is not None else None
    return [v for run in entry.runs for v in run] if entry is not None else []


def _cell(row: MetricRow) -> str:
    return f"{_fmt(row.value)} [{_fmt(row.iqr)}] {VERDICT_MARKS.get(row.status, ('*', ''))[0]}"


def _common_params(labels: Sequence[str]) -> tuple[list[str], str]:
    """Labels without the ``key=value`` parameters every one of them has (with several labels),
    and those parameters, for the table's title."""
    split = [(label.split(" ", 1) + [""])[:2] for label in labels]
    params = [p.split(",") if p else [] for _, p in split]
    common = [p for p in params[0] if all(p in ps for ps in params)] if len(labels) > 1 else []
    short = [" ".join([name, ",".join(p for p in ps if p not in common)]).strip() for (name, _), ps in zip(split, params)]
    return short, ",".join(common)


def verdict_grids(rows: Sequence[MetricRow]) -> list[tuple[str, Grid]]:
    """One (title, :class:`~pytest_egbench.layout.Grid`) per group of ``rows``: configurations as
    rows, metrics as columns (sections: stages, then total and the derived metrics, then the cold
    round's total), each cell ``median [IQR] mark`` (:data:`VERDICT_MARKS`). Parameters shared by
    every configuration of a group move into its title."""
    out = []
    for group in dict.fromkeys(r.group for r in rows):
        mine = [r for r in rows if r.group == group]
        configs = list(dict.fromkeys(r.config for r in mine))
        metrics = list(dict.fromkeys((r.metric, r.title, r.stage is not None) for r in mine))
        cells = {(r.config, r.metric): r for r in mine}
        labels, common = _common_params(configs)
        cold = {c: cells[(c, "total")].cold for c in configs if (c, "total") in cells}
        header = ["configuration"] + [title for _, title, _ in metrics] + (["cold total"] if any(v is not None for v in cold.values()) else [])
        grid_rows = []
        for config, label in zip(configs, labels):
            row = [label] + [_cell(cells[(config, metric)]) if (config, metric) in cells else "" for metric, _, _ in metrics]
            if len(header) > len(metrics) + 1:
                cold_total = cold.get(config)
                row.append("" if cold_total is None else _fmt(cold_total))
            grid_rows.append(row)
        stages = sum(1 for _, _, stage in metrics if stage)
        title = f"{group}{f' ({common})' if common else ''}"
        out.append((title, Grid(header, grid_rows, [1 + stages, 1 + len(metrics)])))
    return out


def legend_line(rows: Sequence[MetricRow]) -> str:
    """What the marks of ``rows`` mean, only those that occur, e.g.
    ``marks: = pass, - not compared``."""
    seen = dict.fromkeys(r.status for r in rows)
    return "marks: " + ", ".join(f"{mark} {what}" for status, (mark, what) in VERDICT_MARKS.items() if status in seen)


def terminal_lines(session: EgbenchSession, width: int = WIDTH) -> list[str]:
    """The run for the terminal, no line wider than ``width``: a heading that says how the
    numbers were taken, each group's verdict table (:func:`verdict_grids`, split and abbreviated
    by :func:`~pytest_egbench.layout.fit`), the token-scaling, memory and figures tables, then
    the verdict summary (:func:`verdict_lines`)."""
    rows = metric_rows(session)
    lines = wrap(_heading(session) + "; times in ms, throughputs in tokens/s", width)
    lines += wrap(legend_line(rows), width) if rows else []
    grids = dict(verdict_grids(rows))
    by_group = _group_measurements(session)
    peaks = session_peaks(session)
    for group, ms in by_group.items():
        for title, grid in [(t, g) for t, g in grids.items() if t.split(" (")[0] == group]:
            lines += ["", *wrap(f"[{title}]", width), *fit(grid, width)]
        own = _OWN_TABLES[group](ms) if group in _OWN_TABLES else None
        figures = figures_table(ms) if group in _FIGURE_GROUPS else None
        roof = roofline_table(ms, peaks)
        # the token-scaling table has three columns a model: split between models first
        tables = ((group, own, 3 if group == "token_scaling" else 1), (f"{group} figures", figures, 1), (roofline_title(group, peaks), roof, 1))
        for title, table, step in tables:
            if table is not None:
                lines += ["", *wrap(f"[{title}]", width), *fit(Grid(table.header, table.rows, list(range(1, len(table.header), step))), width)]
    return lines + [""] + verdict_lines(session, width)


#: Most lines one reason of :func:`verdict_lines` lists benchmarks on, before "and N more".
_LISTED_LINES = 4


def verdict_lines(session: EgbenchSession, width: int = WIDTH) -> list[str]:
    """How many metrics got each outcome, then every metric without a pass/fail verdict (not
    compared, inconclusive, settings differ), folded: one paragraph per reason (wrapped to
    ``width``), naming the benchmarks and their metrics, at most :data:`_LISTED_LINES` lines of
    them, then how many more.

    Example: ``not compared: no baseline for this machine's fingerprint ... in baselines: 40
    metric(s) in 8 benchmark(s): test_lm_stages (prefill, decode, ...)``.
    """
    counts: dict[str, int] = defaultdict(int)
    unjudged = "saved, not judged (--egbench-save)" if session.settings.save else "not judged"
    for m in session.measurements:
        counts[(m.extra_info.get("verdict") or {}).get("status", unjudged)] += 1
    lines = wrap("verdicts: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())), width) if counts else []
    folded: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for u in session.unjudged:
        folded[(u["status"], u["why"])][u["test"]].append(u["metric"])
    for (status, why), tests in folded.items():
        metrics = sum(len(v) for v in tests.values())
        head = wrap(f"{status}: {why}: {metrics} metric(s) in {len(tests)} benchmark(s):", width)
        items = [f"{test} ({', '.join(ms)})" for test, ms in tests.items()]
        shown: list[str] = []
        for item in items:  # about _LISTED_LINES lines' worth of benchmarks
            if shown and sum(len(i) + 2 for i in shown) + len(item) > _LISTED_LINES * (width - 4):
                break
            shown.append(item)
        more = f"; ... and {len(items) - len(shown)} more benchmark(s) (marked in the tables above; all in --egbench-json)" if len(shown) < len(items) else ""
        listed = wrap("  " + "; ".join(shown) + more, width)
        lines += head + listed
    return lines


def _pyplot() -> Any:
    """matplotlib's pyplot on the non-interactive Agg backend (``ImportError`` without matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    """Write ``fig`` as PNG; ``bbox_inches="tight"`` grows the canvas to hold a legend placed
    outside the axes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=100, bbox_inches="tight")
    finally:
        _pyplot().close(fig)
    return path


#: Hatches that tell apart series sharing a colour once a palette's colours are used up.
_HATCHES = ("", "//", "..", "xx", "\\\\", "++", "oo", "--")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_LINESTYLES = ("-", "--", "-.", ":")


def _styles(count: int) -> list[tuple[Any, int]]:
    """``count`` distinguishable styles as ``(RGBA colour, variant)``: the colours of tab10 (up to
    10 series) or tab20, repeated with the next variant (hatch, marker, line style) each time the
    palette runs out, so any number of series gets a style and none of the first 160 repeats."""
    plt = _pyplot()
    palette = list(plt.get_cmap("tab10" if count <= 10 else "tab20").colors)
    return [(palette[i % len(palette)], i // len(palette)) for i in range(count)]


def _legend_outside(ax: Any, handles: Sequence[Any], labels: Sequence[str]) -> None:
    """A legend to the right of the axes (never over the data), in columns of at most 30."""
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize="small", ncol=max(1, -(-len(handles) // 30)))


def plot_stage_bars(session: EgbenchSession, path: Path) -> Path | None:
    """Stacked horizontal bars, one per model configuration and group: the median of each stage
    (ms). Written as PNG to ``path``; ``None`` when no group has stages. Needs matplotlib (the
    ``plot`` extra); raises ``ImportError`` without it."""
    plt = _pyplot()

    bars: list[tuple[str, list[tuple[str, float]]]] = []
    for group, ms in _group_measurements(session).items():
        if group in _OWN_TABLES:
            continue
        order = session.stage_order({m.stage for m in ms if m.stage})
        columns: dict[str, dict[str, float]] = defaultdict(dict)
        for m in ms:
            if m.stage and m.unit == SECONDS:
                columns[_column_label(m)][m.stage] = summarize(m.samples).median * 1e3
        for label, medians in columns.items():
            bars.append((f"{group}: {label}", [(s, medians[s]) for s in order if s in medians]))
    if not bars:
        return None
    stage_names = session.stage_order({s for _, stages in bars for s, _ in stages})
    style = dict(zip(stage_names, _styles(len(stage_names))))
    # about 0.4 inch a bar, capped so that the PNG stays within matplotlib's 2**16 pixels
    fig, ax = plt.subplots(figsize=(9, min(0.4 * len(bars) + 1.5, 300)))
    # one collection of rectangles per stage (thousands of bars draw in well under a second; a
    # Rectangle each would take seconds), stacked after the earlier stages of the same bar
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Patch

    segments: dict[str, list[list[tuple[float, float]]]] = {s: [] for s in stage_names}
    longest = 0.0
    for y, (_, bar) in enumerate(bars):
        left = 0.0
        for stage, width in bar:
            segments[stage].append([(left, y - 0.4), (left + width, y - 0.4), (left + width, y + 0.4), (left, y + 0.4)])
            left += width
        longest = max(longest, left)
    handles = []
    for stage, rects in segments.items():
        colour, variant = style[stage]
        look = {"facecolor": colour, "hatch": _HATCHES[variant % len(_HATCHES)], "edgecolor": "white" if variant == 0 else "black", "linewidth": 0.3}
        ax.add_collection(PolyCollection(rects, **look))
        handles.append(Patch(label=stage, **look))
    ax.set_xlim(0, longest * 1.02 or 1.0)
    ax.set_yticks(range(len(bars)), [b[0] for b in bars], **({"fontsize": "small"} if len(bars) > 20 else {}))
    ax.set_ylim(len(bars) - 0.5, -0.5)  # first bar on top
    ax.set_xlabel("median time per round (ms)")
    _legend_outside(ax, handles, stage_names)
    ax.set_title("stages (steady state)")
    return _save(fig, path)


def plot_token_scaling(session: EgbenchSession, path: Path) -> Path | None:
    """Two panels against the number of frames, one line per model: prompt tokens, and prefill
    median (ms). PNG at ``path``; ``None`` without token-scaling measurements. Needs matplotlib."""
    ms = _group_measurements(session).get("token_scaling", [])
    series: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for m in ms:
        if "frames" in m.params and m.metric in ("prefill", "tokens.prefill"):
            scale = 1e3 if m.metric == "prefill" else 1.0
            series[m.model or m.test][m.metric].append((m.params["frames"], summarize(m.samples).median * scale))
    if not series:
        return None
    plt = _pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for (model, metrics), (colour, variant) in zip(series.items(), _styles(len(series))):
        look = {"color": colour, "marker": _MARKERS[variant % len(_MARKERS)], "linestyle": _LINESTYLES[variant // len(_MARKERS) % len(_LINESTYLES)]}
        for ax, metric in zip(axes, ("tokens.prefill", "prefill")):
            points = sorted(metrics.get(metric, []))
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], label=model, **look)
    for ax, label in zip(axes, ("prompt tokens", "prefill median (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("frames")
        ax.set_ylabel(label)
    # one legend for both panels, right of the second (the same models on both)
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    _legend_outside(axes[1], handles, labels)
    fig.suptitle("token scaling (measured)")
    return _save(fig, path)


def plot_against_reference(rows: Sequence[MetricRow], title: str, path: Path) -> Path | None:
    """One panel per metric of ``rows`` (one group), one pair of horizontal bars per
    configuration: this run's median with its 95 % CI as error bars, beside the reference's
    median with its interquartile range (``ref_value``, ``ref_spread``; no bar without a
    reference). The legend sits below the panels, outside every axes. PNG at ``path``; ``None``
    when ``rows`` is empty. Needs matplotlib (``ImportError`` without it)."""
    if not rows:
        return None
    plt = _pyplot()
    metrics = list(dict.fromkeys((r.metric, r.title, r.unit) for r in rows))
    configs = list(dict.fromkeys(r.config for r in rows))
    cells = {(r.config, r.metric): r for r in rows}
    ncols = min(3, len(metrics))
    nrows = -(-len(metrics) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.6 * ncols + 3, min(nrows * (0.45 * len(configs) + 1.2), 300)), sharey=True, squeeze=False, layout="constrained"
    )
    (now_colour, _), (ref_colour, _) = _styles(2)
    references = sorted({r.reference for r in rows if r.ref_value is not None and r.reference})
    for ax, (metric, label, unit) in zip(axes.flat, metrics):
        for y, config in enumerate(configs):
            r = cells.get((config, metric))
            if r is None:
                continue
            low, high = r.ci or (r.value, r.value)
            ax.barh(y - 0.2, r.value, height=0.4, color=now_colour, xerr=[[r.value - low], [high - r.value]], capsize=3)
            if r.ref_value is not None and r.ref_spread is not None:
                q1, q3 = r.ref_spread
                ax.barh(y + 0.2, r.ref_value, height=0.4, color=ref_colour, xerr=[[r.ref_value - q1], [q3 - r.ref_value]], capsize=3)
        ax.set_title(label, fontsize="medium")
        ax.set_xlabel(unit)
    for ax in axes.flat[len(metrics) :]:
        ax.set_visible(False)
    axes[0][0].set_yticks(range(len(configs)), configs)
    for row in axes:
        row[0].tick_params(axis="y", labelsize="small")
    axes[0][0].set_ylim(len(configs) - 0.5, -0.5)  # first configuration on top
    from matplotlib.patches import Patch

    handles = [Patch(color=now_colour, label="this run: median, 95% CI")]
    handles += [Patch(color=ref_colour, label=f"reference ({', '.join(references)}): median, IQR")] if references else []
    fig.suptitle(title)
    # below the panels, outside every axes (bbox_inches="tight" grows the canvas to hold it)
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles), fontsize="small", frameon=False)
    return _save(fig, path)


def markdown_report(session: EgbenchSession, machine: dict[str, Any], plots: dict[str, str] | None = None, *, plots_note: str | None = None) -> str:
    """The run as markdown: a heading, machine and settings; then the verdict tables (each group's
    :func:`verdict_grids`, whole) and the verdict summary; then ``plots`` (title -> relative PNG
    path) or, without them, ``plots_note``; then each group's detail table (shares and ratios).
    Measured data only."""
    gpu = machine.get("egbench", {})
    libs = ", ".join(f"{k} {v}" for k, v in gpu.get("libraries", {}).items() if v)
    lines = [
        "# egbench report",
        "",
        f"- {_heading(session)}",
        f"- GPU: {gpu.get('gpu_name') or 'none'}; driver {gpu.get('driver') or '-'}; CUDA {gpu.get('cuda') or '-'}",
        f"- CPU: {machine.get('cpu', {}).get('brand_raw', machine.get('processor') or '-')}; Python {machine.get('python_version')}",
        f"- libraries: {libs}",
        "",
        "## verdicts",
    ]
    rows = metric_rows(session)
    if rows:
        lines += ["", f"Each cell: median [IQR] (ms, or the metric's unit) and its verdict; {legend_line(rows)}."]
    for title, grid in verdict_grids(rows):
        lines += ["", f"### {title}", "", *render_markdown(grid)]
    lines += ["", *(f"- {v.strip()}" for v in verdict_lines(session, width=10**9))]
    if plots or plots_note:
        lines += ["", "## plots"]
    for title, rel in (plots or {}).items():
        lines += ["", f"![{title}]({rel})"]
    lines += ["", plots_note] if plots_note and not plots else []
    for group, table in _groups(session):
        lines += ["", f"## {group}", "", *render_markdown(table)]
    return "\n".join(lines) + "\n"
