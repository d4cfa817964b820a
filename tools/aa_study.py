"""A/A and injected-slowdown study of the latency gate, and the choice of rounds and warm-up.

What it runs: the LLaMA LM of every preset (prefill of 637 tokens, then ``--decode-tokens - 1``
greedy decode steps, as in ``benchmarks/test_lm_stages.py``), in ``--processes`` separate
processes, one after the other. Each process loads the model once, then makes ``--cycles`` passes
over the conditions -- ``--aa-per-cycle`` unchanged runs, and one run per injected slowdown of
prefill or decode (``SlowdownInjector``, as ``--egbench-inject``) -- in that interleaved order.
Every run is 1 cold round, 1 warm-up round and ``--max-rounds`` further rounds, and *every* round is
kept, so that the gate can be replayed afterwards for any warm-up ``w`` and rounds ``r`` with
``w + r <= 1 + max-rounds`` (the first ``w`` rounds after the cold one are dropped, the next ``r``
judged).

How it judges: each comparison is the suite's own verdict (:func:`pytest_egbench.verdict.judge`:
relative tolerance and one-sided Mann-Whitney U, p < 0.01) of a *current* run against a *baseline*
run taken in **another process** -- what the nightly job does with a baseline saved by an earlier
job. False alarms: unchanged current runs flagged (all ordered pairs of unchanged runs from
different processes), per metric. Detections: runs with a slowdown injected into that metric's
stage flagged. Cross-talk: runs with a slowdown injected into the *other* stage flagged (an
injected prefill delay ends with a host wait, which can move the decode that follows); it is
reported apart, because it is a property of the injector and not of the gate.

Usage (the raw rounds go to ``<out>.json``; ``--analyse`` replays a saved one)::

    python tools/aa_study.py --device cuda --preset 7b --quant nf4 --out docs/aa-study-h100-nf4.md
    python tools/aa_study.py --device cpu --preset tiny --quant fp32 --out docs/aa-study-cpu.md
    python tools/aa_study.py --analyse docs/aa-study-cpu.json --out docs/aa-study-cpu.md
    python tools/aa_study.py --analyse docs/aa-study-h100-nf4.json --skip-first-runs 3 --out docs/aa-study-h100-nf4-warm.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROMPT_TOKENS = 637
METRICS = ("prefill", "decode")
#: The issue's targets at the default settings (GPU): false alarms at most, detection of a 5 %
#: slowdown at least.
TARGET_FALSE_ALARMS = 0.01
TARGET_DETECTION = 0.90


# --------------------------------------------------------------------------------------- worker
@dataclass
class DeviceWarmup:
    """What :func:`warm_up_device` did: ``seconds`` spent, ``iterations`` run, and the time of one
    iteration (ms) over the first and the last 10 % of them."""

    seconds: float
    iterations: int
    first_ms: float
    last_ms: float


def warm_up_device(device: Any, seconds: float, *, clock: Callable[[], float] = time.perf_counter) -> DeviceWarmup:
    """Keep a CUDA device, and the host thread that feeds it, busy for ``seconds``.

    Each iteration queues 4 bf16 matrix products (4096 x 4096) and 256 small element-wise kernels
    (host launch work, as a decode loop does), then synchronises. Meant to run once before the
    first timed benchmark: machine-level slow phases after idle (clocks, host power states) last
    longer than any benchmark's own cold and warm-up rounds. Raises ``ValueError`` for a non-CUDA
    device or ``seconds`` < 0; ``seconds`` = 0 returns at once.
    """
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"device warm-up needs a CUDA device, got {device}")
    if seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    start = clock()
    times: list[float] = []
    if seconds > 0:
        a = torch.randn(4096, 4096, device=device, dtype=torch.bfloat16)
        small = torch.zeros(1024, device=device)
        while clock() - start < seconds:
            t0 = clock()
            for _ in range(4):
                a @ a
            for _ in range(256):
                small.add_(1.0)
            torch.cuda.synchronize(device)
            times.append(clock() - t0)
    tenth = max(1, len(times) // 10)
    first = 1e3 * sorted(times[:tenth])[len(times[:tenth]) // 2] if times else 0.0
    last = 1e3 * sorted(times[-tenth:])[len(times[-tenth:]) // 2] if times else 0.0
    return DeviceWarmup(clock() - start, len(times), first, last)


def conditions(prefill_slowdowns: list[float], decode_slowdowns: list[float], aa_per_cycle: int) -> list[tuple[str, str | None, float]]:
    """One cycle's runs, in order: ``(name, stage or None, fraction)``."""
    runs: list[tuple[str, str | None, float]] = [("none", None, 0.0)] * aa_per_cycle
    runs += [(f"prefill +{s:g}%", "prefill", s / 100) for s in prefill_slowdowns]
    runs += [(f"decode +{s:g}%", "decode", s / 100) for s in decode_slowdowns]
    return runs


def worker(args: argparse.Namespace) -> dict:
    """One process's runs: ``{"runs": [{"condition", "stage", "fraction", "rounds": {stage: [s]}}]}``
    where ``rounds[stage]`` is every round after the cold one (the warm-up round first)."""
    import torch

    from pytest_egbench.inject import SlowdownInjector
    from pytest_egbench.models.generation import decode, prefill
    from pytest_egbench.models.llama import dummy_llama
    from pytest_egbench.timing import StageTimer, clocks_for

    device = torch.device(args.device)
    model = dummy_llama(args.preset, args.quant, device)
    prompt = torch.randint(3, model.config.vocab_size, (1, PROMPT_TOKENS), generator=torch.Generator().manual_seed(0)).to(device)
    steps = args.decode_tokens - 1
    device_clock, host_clock = clocks_for(device)
    if args.device_warmup and device.type == "cuda":
        done = warm_up_device(device, args.device_warmup)
        print(
            f"  process {args.process}: device warm-up {done.seconds:.1f} s, one iteration {done.first_ms:.2f} ms at the start, {done.last_ms:.2f} ms at the end",
            file=sys.stderr,
            flush=True,
        )
    out = []
    plan = conditions(_floats(args.prefill_slowdowns), _floats(args.decode_slowdowns), args.aa_per_cycle)
    for cycle in range(args.cycles):
        for name, stage, fraction in plan:
            hook = SlowdownInjector({stage: fraction}, device) if stage else None
            # control=False: the study judges injected runs against baselines from other processes
            # (as a nightly job would), so an injected run keeps the rhythm of an unchanged one
            timer = StageTimer(device_clock, host_clock, rounds=args.max_rounds, warmup=1, stage_hook=hook, control=False)
            for rnd in timer.rounds():
                with rnd.stage("prefill", tokens=PROMPT_TOKENS):
                    first, cache = prefill(model, input_ids=prompt)
                with rnd.stage("decode", tokens=steps):
                    decode(model, first, cache, steps)
            res = timer.results()
            rounds = {s: [ns * 1e-9 for ns in res.warmup[s] + res.steady[s]] for s in METRICS}
            out.append(
                {"condition": name, "stage": stage, "fraction": fraction, "cycle": cycle, "cold": {s: res.cold[s] * 1e-9 for s in METRICS}, "rounds": rounds}
            )
        print(f"  process {args.process}: cycle {cycle + 1}/{args.cycles} done", file=sys.stderr, flush=True)
    return {"process": args.process, "runs": out}


# ------------------------------------------------------------------------------------- analysis
def _window(run: dict, metric: str, warmup: int, rounds: int) -> list[float]:
    """Rounds ``warmup .. warmup + rounds - 1`` after the cold one (index 0 is the warm-up round,
    which carries no injection: ``warmup >= 1``)."""
    return run["rounds"][metric][warmup : warmup + rounds]


def flag_rate(pairs: list[tuple[dict, dict]], metric: str, warmup: int, rounds: int, tolerance: float) -> tuple[int, int]:
    """How many (baseline, current) pairs the gate flags as a regression of ``metric``."""
    from pytest_egbench.verdict import REGRESSION, judge

    flagged = 0
    for base, cur in pairs:
        v = judge(
            metric,
            "latency",
            "s",
            [_window(base, metric, warmup, rounds)],
            _window(cur, metric, warmup, rounds),
            tolerance=tolerance,
            tolerance_abs=0.02,
            alpha=0.01,
        )
        flagged += v.status == REGRESSION
    return flagged, len(pairs)


def cross_pairs(baselines: list[dict], currents: list[dict]) -> list[tuple[dict, dict]]:
    """Every (baseline, current) pair whose runs come from different processes."""
    return [(b, c) for b in baselines for c in currents if b["process"] != c["process"] and b is not c]


def warmup_profile(runs: list[dict], metric: str, tail: int) -> list[float]:
    """Per round index after the cold one: the median over unchanged runs of that round's time
    relative to the run's median over its last ``tail`` rounds, minus 1 (0.05 = 5 % slower)."""
    n = min(len(r["rounds"][metric]) for r in runs)
    rel = [[r["rounds"][metric][i] / statistics.median(r["rounds"][metric][-tail:]) - 1 for r in runs] for i in range(n)]
    return [statistics.median(x) for x in rel]


def cold_excess(runs: list[dict], metric: str, tail: int) -> float:
    return statistics.median(r["cold"][metric] / statistics.median(r["rounds"][metric][-tail:]) - 1 for r in runs)


def analyse(
    raw: dict, tolerances: list[float], settings: list[tuple[int, int]], defaults: dict[str, float], default_setting: tuple[int, int], skip_first_runs: int = 0
) -> list[str]:
    runs = [dict(run, process=p["process"]) for p in raw["processes"] for run in p["runs"][skip_first_runs:]]
    aa = [r for r in runs if r["stage"] is None]
    injected = sorted({(r["stage"], r["fraction"]) for r in runs if r["stage"]})
    meta = raw["meta"]
    n_proc = len(raw["processes"])
    aa_pairs = cross_pairs(aa, aa)
    w0, r0 = default_setting
    lines = [
        f"# A/A and injected-slowdown study: {meta['device_name']}",
        "",
        f"`{meta['command']}`",
        "",
        f"LLaMA LM ({meta['preset']}, {meta['quant']}, dummy weights): prefill of {PROMPT_TOKENS} tokens, {meta['decode_tokens'] - 1} decode tokens, as in `benchmarks/test_lm_stages.py`. "
        f"{n_proc} processes one after the other, {len(runs)} runs in all ({len(aa)} unchanged), each of 1 cold + {1 + meta['max_rounds']} further rounds, all kept; {meta['seconds']:.0f} s in all (model loading included). "
        f"Every comparison judges a run against a baseline run **from another process** with the suite's verdict (tolerance and one-sided Mann-Whitney p < 0.01). Raw rounds: `{meta['raw_name']}`.",
        "",
        *(
            [
                f"**The first {skip_first_runs} runs of every process are left out here** (`--skip-first-runs {skip_first_runs}`: the machine warm-up seen at the start of a process), so this table describes a warmed-up machine.",
                "",
            ]
            if skip_first_runs
            else []
        ),
        f"Within-run coefficient of variation of unchanged runs (median; warm-up {w0}, {r0} rounds): "
        + ", ".join(
            f"{m} {100 * statistics.median(statistics.pstdev(_window(r, m, w0, r0)) / statistics.mean(_window(r, m, w0, r0)) for r in aa):.2f} %"
            for m in METRICS
        )
        + ". Between processes, the spread of unchanged runs' medians (max / min - 1): "
        + ", ".join(
            f"{m} {100 * (max(statistics.median(_window(r, m, w0, r0)) for r in aa) / min(statistics.median(_window(r, m, w0, r0)) for r in aa) - 1):.2f} %"
            for m in METRICS
        )
        + ".",
        "",
        "## Warm-up: how much slower each round is than the run's last rounds",
        "",
        f"Median over the {len(aa)} unchanged runs of (round time / median of the run's last 4 rounds - 1). Round 0 is the cold round (model and kernels first used in this run; the very first run of a process also pays one-time start-up).",
        "",
        "| round | " + " | ".join(METRICS) + " |",
        "|---:|" + "---:|" * len(METRICS),
        "| 0 (cold) | " + " | ".join(f"{100 * cold_excess(aa, m, 4):+.2f} %" for m in METRICS) + " |",
    ]
    profiles = {m: warmup_profile(aa, m, 4) for m in METRICS}
    for i in range(len(profiles[METRICS[0]])):
        lines.append(f"| {i + 1} | " + " | ".join(f"{100 * profiles[m][i]:+.2f} %" for m in METRICS) + " |")
    lines += [
        "",
        "## The gate at each tolerance (default rounds and warm-up)",
        "",
        f"Warm-up {w0}, {r0} rounds. Flagged / comparisons. For the injected stage's own metric a flag is a detection; for the other metric it is cross-talk of the injector; unchanged runs give the false alarms.",
        "",
        "| current run | metric | " + " | ".join(f"@{t:.0%}" for t in tolerances) + " |",
        "|---|---|" + "---:|" * len(tolerances),
    ]
    for metric in METRICS:
        cells = [flag_rate(aa_pairs, metric, w0, r0, t) for t in tolerances]
        lines.append(f"| unchanged (false alarms) | {metric} | " + " | ".join(f"{f}/{n}" for f, n in cells) + " |")
    for stage, fraction in injected:
        cur = [r for r in runs if r["stage"] == stage and r["fraction"] == fraction]
        for metric in METRICS:
            cells = [flag_rate(cross_pairs(aa, cur), metric, w0, r0, t) for t in tolerances]
            what = "detection" if metric == stage else "cross-talk"
            lines.append(f"| {stage} +{100 * fraction:g}% | {metric} ({what}) | " + " | ".join(f"{f}/{n}" for f, n in cells) + " |")
    lines += [
        "",
        "## Rounds and warm-up",
        "",
        f"At the default tolerances ({', '.join(f'{m} {defaults[m]:.0%}' for m in METRICS)}): false alarms, detection of each injected slowdown, and the smallest slowdown detected at least {TARGET_DETECTION:.0%} of the time. Cost: rounds per run (1 cold + warm-up + rounds).",
        "",
    ]
    header = (
        "| warm-up | rounds | cost | "
        + " | ".join(f"{m}: false alarms | {m}: " + " / ".join(f"+{100 * f:g}%" for s, f in injected if s == m) + f" | {m}: smallest 90 %" for m in METRICS)
        + " |"
    )
    lines += [header, "|---:|---:|---:|" + "---:|---:|---:|" * len(METRICS)]
    summary: dict[tuple[int, int], dict[str, tuple[float, float | None]]] = {}
    for w, r in settings:
        if w < 1 or w + r > 1 + meta["max_rounds"]:
            continue
        cells = []
        summary[w, r] = {}
        for metric in METRICS:
            tol = defaults[metric]
            fa, n = flag_rate(aa_pairs, metric, w, r, tol)
            det = []
            smallest = None
            for stage, fraction in injected:
                if stage != metric:
                    continue
                f, m = flag_rate(cross_pairs(aa, [x for x in runs if x["stage"] == stage and x["fraction"] == fraction]), metric, w, r, tol)
                det.append(f"{100 * f / m:.0f} %")
                if smallest is None and f / m >= TARGET_DETECTION:
                    smallest = fraction
            summary[w, r][metric] = (fa / n, smallest)
            cells.append(f"{100 * fa / n:.1f} % | {' / '.join(det)} | {'-' if smallest is None else f'{100 * smallest:g} %'}")
        lines.append(f"| {w} | {r} | {1 + w + r} | " + " | ".join(cells) + " |")
    lines += ["", "## Against the targets", ""]
    for metric in METRICS:
        fa, smallest = summary.get((w0, r0), {}).get(metric, (float("nan"), None))
        ok_fa = fa <= TARGET_FALSE_ALARMS
        ok_det = smallest is not None and smallest <= 0.05
        lines.append(
            f"- {metric} at {defaults[metric]:.0%} (warm-up {w0}, {r0} rounds): false alarms {100 * fa:.1f} % (target <= {100 * TARGET_FALSE_ALARMS:g} %: {'met' if ok_fa else 'missed'}); "
            f"smallest slowdown detected {TARGET_DETECTION:.0%} of the time: {'none of those injected' if smallest is None else f'{100 * smallest:g} %'} (target 5 %: {'met' if ok_det else 'missed'})"
        )
    return lines


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _pairs(text: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in (p.split("x") for p in text.split(",") if p.strip())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--quant", default="fp32")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--cycles", type=int, default=2, help="passes over the conditions per process")
    parser.add_argument("--aa-per-cycle", type=int, default=2, help="unchanged runs per pass")
    parser.add_argument("--max-rounds", type=int, default=11, help="rounds after the warm-up round")
    parser.add_argument("--decode-tokens", type=int, default=16, help="as --egbench-max-new-tokens")
    parser.add_argument("--prefill-slowdowns", default="2,3,5,10", help="percent")
    parser.add_argument("--decode-slowdowns", default="3,5,10", help="percent")
    parser.add_argument("--tolerances", default="2,3,5,10,20", help="percent, for the per-tolerance table")
    parser.add_argument("--settings", default="1x6,2x6,4x6,1x8,2x8,4x8,2x10", help="WARMUPxROUNDS to replay")
    parser.add_argument("--default-setting", default="2x6", help="WARMUPxROUNDS of the suite's defaults")
    parser.add_argument("--default-tolerances", default="prefill=3,decode=10", help="percent, as the suite's defaults")
    parser.add_argument(
        "--device-warmup",
        type=float,
        default=0.0,
        help="seconds of bf16 matmul and kernel-launch work at the start of each process (a trial: it did not remove the slow first runs, docs/studies.md)",
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--analyse", type=Path, help="replay a saved raw file instead of measuring")
    parser.add_argument("--skip-first-runs", type=int, default=0, help="leave out each process's first N runs from the analysis (machine warm-up)")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--process", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        args.worker.write_text(json.dumps(worker(args)))
        return 0
    raw_path = args.out.with_suffix(".json")
    if args.analyse:
        raw = json.loads(args.analyse.read_text())
    else:
        started = time.perf_counter()
        raw_path.parent.mkdir(parents=True, exist_ok=True)
        procs, parts = [], []
        for p in range(args.processes):
            part = raw_path.with_name(f"{raw_path.stem}.part{p}.json")
            cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--worker", str(part), "--process", str(p)]
            print(f"process {p + 1}/{args.processes} ...", file=sys.stderr, flush=True)
            subprocess.run(cmd, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            procs.append(json.loads(part.read_text()))
            parts.append(part)
        import torch

        device_name = (
            torch.cuda.get_device_name(args.device)
            if args.device.startswith("cuda")
            else f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
        )
        shown = [a for a in (argv if argv is not None else sys.argv[1:])]
        raw = {
            "meta": {
                "device_name": device_name,
                "command": " ".join(["python tools/aa_study.py", *shown]),
                "preset": args.preset,
                "quant": args.quant,
                "decode_tokens": args.decode_tokens,
                "max_rounds": args.max_rounds,
                "seconds": time.perf_counter() - started,
                "raw_name": raw_path.name,
            },
            "processes": procs,
        }
        raw_path.write_text(json.dumps(raw))
        for part in parts:  # only now: a run cut short keeps every finished process's rounds
            part.unlink()
    defaults = {k: float(v) / 100 for k, v in (p.split("=") for p in args.default_tolerances.split(","))}
    lines = analyse(raw, [t / 100 for t in _floats(args.tolerances)], _pairs(args.settings), defaults, _pairs(args.default_setting)[0], args.skip_first_runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
