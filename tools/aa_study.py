"""A/A and injected-slowdown study of the latency gate (issue: verdicts you can trust).

For k = 1..K: time a fresh *baseline* run of the LLaMA LM (prefill of 637 tokens, then decode),
then several *current* runs in the same process -- one unchanged (A/A) and one per injected
slowdown of prefill or decode (``SlowdownInjector``) -- and judge each current run against the
baseline with the suite's own verdict (:func:`pytest_egbench.verdict.judge`: relative tolerance
and one-sided Mann-Whitney U). It counts false alarms (A/A regressions) and detections.

Every run is one process's rounds, so this measures the gate's behaviour against run-to-run noise
*within* a process; the larger shifts between processes and machines are measured by the suite's
nightly runs (README, "Baselines and verdicts"). Usage::

    python tools/aa_study.py --device cuda --preset 7b --quant nf4 --k 20 --out docs/aa-study-h200-nf4.md
    python tools/aa_study.py --device cpu --preset tiny --quant fp32 --k 10 --out docs/aa-study-cpu.md
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

PROMPT_TOKENS = 637


def run_once(model, prompt, steps, timer_factory, slowdowns):
    """One run: ``rounds`` steady rounds of prefill + decode; returns {stage: [seconds]}."""
    from pytest_egbench.models.generation import decode, prefill

    timer = timer_factory(slowdowns)
    for rnd in timer.rounds():
        with rnd.stage("prefill", tokens=PROMPT_TOKENS):
            first, cache = prefill(model, input_ids=prompt)
        with rnd.stage("decode", tokens=steps):
            decode(model, first, cache, steps)
    res = timer.results()
    return {stage: [ns * 1e-9 for ns in res.steady[stage]] for stage in res.stages}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--quant", default="fp32")
    parser.add_argument("--k", type=int, default=20, help="baseline/current pairs per condition")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--decode-tokens", type=int, default=8)
    parser.add_argument("--slowdowns", default="2,3,5,10", help="injected slowdowns in percent")
    parser.add_argument("--tolerances", default="2,3,5,10", help="gate tolerances to evaluate, in percent")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    import torch

    from pytest_egbench.models.llama import dummy_llama
    from pytest_egbench.stats import summarize
    from pytest_egbench.timing import SlowdownInjector, StageTimer, clocks_for
    from pytest_egbench.verdict import REGRESSION, judge

    device = torch.device(args.device)
    started = time.perf_counter()
    model = dummy_llama(args.preset, args.quant, device)
    prompt = torch.randint(3, model.config.vocab_size, (1, PROMPT_TOKENS), generator=torch.Generator().manual_seed(0)).to(device)
    steps = args.decode_tokens - 1
    device_clock, host_clock = clocks_for(device)

    def timer_factory(slowdowns):
        hook = SlowdownInjector(slowdowns, device) if slowdowns else None
        return StageTimer(device_clock, host_clock, rounds=args.rounds, warmup=args.warmup, stage_hook=hook)

    slowdowns = [float(x) / 100 for x in args.slowdowns.split(",")]
    conditions = [("none", None, 0.0)] + [(f"{stage} +{s:.0%}", stage, s) for stage in ("prefill", "decode") for s in slowdowns]
    tolerances = [float(x) / 100 for x in args.tolerances.split(",")]
    hits = {(tol, name, metric): 0 for tol in tolerances for name, _, _ in conditions for metric in ("prefill", "decode")}
    cvs: dict[str, list[float]] = {"prefill": [], "decode": []}
    raw = []
    for k in range(args.k):
        base = run_once(model, prompt, steps, timer_factory, {})
        for stage in cvs:
            cvs[stage].append(summarize(base[stage]).cv)
        for name, stage, fraction in conditions:
            cur = run_once(model, prompt, steps, timer_factory, {stage: fraction} if stage else {})
            raw.append({"k": k, "condition": name, "baseline": base, "current": cur})
            for metric in ("prefill", "decode"):
                for tol in tolerances:
                    v = judge(metric, "latency", "s", [base[metric]], cur[metric], tolerance=tol, tolerance_abs=0.02, alpha=0.01)
                    hits[tol, name, metric] += v.status == REGRESSION
        print(f"k={k + 1}/{args.k} done after {time.perf_counter() - started:.0f} s", flush=True)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU {platform.processor() or platform.machine()}"
    lines = [
        f"# A/A and injected-slowdown study: {name}",
        "",
        f"`python tools/aa_study.py --device {args.device} --preset {args.preset} --quant {args.quant} --k {args.k} --rounds {args.rounds} --warmup {args.warmup} --decode-tokens {args.decode_tokens} --slowdowns {args.slowdowns} --tolerances {args.tolerances}`",
        "",
        f"LLaMA LM ({args.preset}, {args.quant}, dummy weights), prompt {PROMPT_TOKENS} tokens, {steps} decode tokens; each baseline and current run: 1 cold + {args.warmup} warm-up + {args.rounds} steady rounds, in one process. Gate: the suite's verdict (tolerance, and one-sided Mann-Whitney p < 0.01). {args.k} baseline/current pairs per condition; {time.perf_counter() - started:.0f} s in all. Raw medians: `{args.out.with_suffix('.json').name}`.",
        "",
        f"Within-run coefficient of variation of the baseline runs (median over {args.k}): prefill {100 * summarize(cvs['prefill']).median:.2f} %, decode {100 * summarize(cvs['decode']).median:.2f} %.",
        "",
        "Flagged out of K, per tolerance. On the stage that was slowed down a flag is a detection; on the other stage, and with nothing injected, it is a false alarm.",
        "",
        "| injected | " + " | ".join(f"prefill @{t:.0%} | decode @{t:.0%}" for t in tolerances) + " |",
        "|---|" + "---:|" * (2 * len(tolerances)),
    ]
    for cond, _, _ in conditions:
        lines.append(f"| {cond} | " + " | ".join(f"{hits[t, cond, 'prefill']}/{args.k} | {hits[t, cond, 'decode']}/{args.k}" for t in tolerances) + " |")
    lines.append("")
    for t in tolerances:
        for metric in ("prefill", "decode"):
            false = sum(hits[t, c, metric] for c, stage, _ in conditions if stage != metric)
            trials = args.k * sum(1 for _, stage, _ in conditions if stage != metric)
            lines.append(f"- tolerance {t:.0%}, {metric}: false alarms {false}/{trials} ({100 * false / trials:.1f} %)")
    import json

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(raw))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
