"""Output of a run: the terminal stage table and the JSON results file.

The JSON file follows pytest-benchmark's layout (``machine_info``, ``commit_info``,
``benchmarks[]``, ``datetime``, ``version``) so that ``pytest-benchmark compare`` reads it. That
format's ``stats`` are seconds, so only time metrics go into ``benchmarks[]``; counts, rates and
bytes go into a top-level ``egbench`` block (and are repeated in the ``extra_info`` of nothing
else). No torch here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .catalog import DERIVED, Unit
from .session import SECONDS, EgbenchSession, Measurement, _jsonable
from .stats import benchmark_stats, summarize

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
    benchmarks, other = [], []
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
        "egbench": {"schema_version": RESULTS_SCHEMA_VERSION, "run_id": session.run_id, "settings": run, "calibration": session.calibration, "metrics": other, **({"lockstep": peer.summary()} if peer else {})},
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
                m = got.get(metric)
                row.append(f"{_fmt_ms(summarize(m.samples).median)} [{_fmt_ms(summarize(m.samples).iqr)}]" if m else "-")
        rows.append(row)
    return StageTable(header, rows)


def memory_table(measurements: Sequence[Measurement]) -> StageTable | None:
    """Per model: weights footprint, KV-cache bytes per token and for the run's prompt, and the
    peak device memory of each stage (MiB); ``None`` without byte measurements."""
    per_model: dict[str, dict[str, float]] = defaultdict(dict)
    for m in measurements:
        if m.unit == "bytes":
            per_model[m.model or m.test][m.metric] = summarize(m.samples).median
    if not per_model:
        return None
    metrics = ["footprint_bytes", "kv_bytes_per_token", "kv_cache_bytes"] + sorted({k for v in per_model.values() for k in v if k.startswith("peak.")})
    titles = {"footprint_bytes": "weights MiB", "kv_bytes_per_token": "KV KiB/token", "kv_cache_bytes": "KV cache MiB"}
    header = ["model"] + [titles.get(k, k.replace("peak.", "peak ") + " MiB") for k in metrics]
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
            m = per.get(model)
            row.append("-" if m is None else f"{_fmt(summarize(m.samples).median)} {m.unit}")
        rows.append(row)
    return StageTable(["figure", *models], rows)


def render_text(table: StageTable) -> list[str]:
    """Fixed-width lines for the terminal: first column left-aligned, the others right-aligned."""
    grid = [table.header, *table.rows]
    widths = [max(len(r[i]) for r in grid) for i in range(len(table.header))]
    return ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths))).rstrip() for r in grid]


def render_markdown(table: StageTable) -> list[str]:
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
    for group, ms in _group_measurements(session).items():
        special = _OWN_TABLES[group](ms) if group in _OWN_TABLES else None
        table = special or stage_table(ms, session.stage_order({m.stage for m in ms if m.stage}))
        if table is not None:
            out.append((group, table))
        figures = figures_table(ms) if group in _FIGURE_GROUPS else None
        if figures is not None:
            out.append((f"{group} figures", figures))
    return out


_OWN_TABLES = {"token_scaling": scaling_table, "memory": memory_table}
#: Groups whose recorded figures get a table of their own beside the stage table.
_FIGURE_GROUPS = {"acceptance", "parallel_prefill"}


def _heading(session: EgbenchSession) -> str:
    s = session.settings
    block = session.device_block or {}
    device = block.get("gpu_name") or block.get("device", s.device)
    control = f"; {s.rounds} control rounds interleaved (--egbench-inject), not shown" if s.inject else ""
    return (
        f"device {device}, preset {s.preset}, weights {s.quant}; median [IQR] over {s.rounds} steady rounds "
        f"(cold round and {s.warmup} warm-up rounds excluded; 'cold total' shown apart){control}"
    )


def terminal_lines(session: EgbenchSession) -> list[str]:
    """Every group's stage table, with a heading that says how the numbers were taken, then the
    verdict summary (:func:`verdict_lines`)."""
    lines = [_heading(session)]
    for group, table in _groups(session):
        lines += ["", f"[{group}]", *render_text(table)]
    return lines + [""] + verdict_lines(session)


def verdict_lines(session: EgbenchSession) -> list[str]:
    """How many metrics got each outcome, then every metric without a pass/fail verdict (not
    compared, inconclusive, settings differ), folded: one line per reason, naming the benchmarks
    and their metrics.

    Example: ``not compared (no baseline for this machine's fingerprint ... in baselines): 40
    latency/throughput metric(s) in 8 benchmark(s): test_lm_stages (prefill, decode, ...)``.
    """
    counts: dict[str, int] = defaultdict(int)
    unjudged = "saved, not judged (--egbench-save)" if session.settings.save else "not judged"
    for m in session.measurements:
        counts[(m.extra_info.get("verdict") or {}).get("status", unjudged)] += 1
    lines = ["verdicts: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))] if counts else []
    folded: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for u in session.unjudged:
        folded[(u["status"], u["why"])][u["test"]].append(u["metric"])
    for (status, why), tests in folded.items():
        metrics = sum(len(v) for v in tests.values())
        listed = "; ".join(f"{test} ({', '.join(ms)})" for test, ms in tests.items())
        lines.append(f"{status}: {why}: {metrics} metric(s) in {len(tests)} benchmark(s): {listed}")
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
        for label, stages in columns.items():
            bars.append((f"{group}: {label}", [(s, stages[s]) for s in order if s in stages]))
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
    for y, (_, stages) in enumerate(bars):
        left = 0.0
        for stage, ms in stages:
            segments[stage].append([(left, y - 0.4), (left + ms, y - 0.4), (left + ms, y + 0.4), (left, y + 0.4)])
            left += ms
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


def markdown_report(session: EgbenchSession, machine: dict[str, Any], plots: dict[str, str] | None = None) -> str:
    """The run as markdown: machine, settings, each group's stage table, and links to ``plots``
    (title -> relative PNG path). Measured data only."""
    gpu = machine.get("egbench", {})
    libs = ", ".join(f"{k} {v}" for k, v in gpu.get("libraries", {}).items() if v)
    lines = [
        "# egbench report",
        "",
        f"- {_heading(session)}",
        f"- GPU: {gpu.get('gpu_name') or 'none'}; driver {gpu.get('driver') or '-'}; CUDA {gpu.get('cuda') or '-'}",
        f"- CPU: {machine.get('cpu', {}).get('brand_raw', machine.get('processor') or '-')}; Python {machine.get('python_version')}",
        f"- libraries: {libs}",
    ]
    for title, rel in (plots or {}).items():
        lines += ["", f"![{title}]({rel})"]
    verdicts = verdict_lines(session)
    if verdicts:
        lines += ["", "## verdicts", "", *(f"- {v}" for v in verdicts)]
    for group, table in _groups(session):
        lines += ["", f"## {group}", "", *render_markdown(table)]
    return "\n".join(lines) + "\n"
