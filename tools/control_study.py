"""How often the control-round gate flags an injected run, and an unchanged one.

What it runs: the LLaMA LM of ``benchmarks/test_lm_stages.py`` (prefill of 637 tokens, then
``--decode-tokens - 1`` greedy decode steps) in one process, the model loaded once. Each pass runs
one run per condition, in order: a decode slowdown of each of ``--fractions`` (0: unchanged, the
steady rounds run as the control rounds do). Every run is what ``--egbench-inject`` does without a baseline: 1
cold round, ``--warmup`` warm-up rounds, then ``--rounds`` control and ``--rounds`` steady rounds in
turn, judged by :meth:`pytest_egbench.session.EgbenchSession.judge` against its own control rounds
(5 %, paired: one-sided Wilcoxon signed-rank p < 0.01).

Usage::

    python tools/control_study.py --device cpu --runs 30 --fractions 0,0.2 --rounds 12
"""

from __future__ import annotations

import argparse
import time

from pytest_egbench.options import CONTROL_MIN_ROUNDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--quant", default="fp32")
    parser.add_argument("--runs", type=int, default=50, help="passes over the conditions")
    parser.add_argument("--fractions", default="0,0.2", help="comma-separated decode slowdowns, 0 = unchanged")
    parser.add_argument("--rounds", type=int, default=CONTROL_MIN_ROUNDS, help="pairs of control and steady rounds (default: what --egbench-inject uses)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--decode-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()

    import torch

    from pytest_egbench.inject import SlowdownInjector
    from pytest_egbench.models.generation import decode, prefill
    from pytest_egbench.models.llama import dummy_llama
    from pytest_egbench.options import Settings
    from pytest_egbench.session import EgbenchSession, measurements_from_timing
    from pytest_egbench.timing import StageTimer, clocks_for
    from pytest_egbench.verdict import REGRESSION

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = dummy_llama(args.preset, args.quant, device)
    prompt = torch.randint(3, model.config.vocab_size, (1, 637), generator=torch.Generator().manual_seed(0)).to(device)
    steps = args.decode_tokens - 1
    device_clock, host_clock = clocks_for(device)
    fractions = [float(f) for f in args.fractions.split(",")]
    # judged as a run of --egbench-inject decode=... on a machine without a baseline (no folder)
    settings = Settings(enabled=True, preset=args.preset, quant=args.quant, inject=(("decode", 1.0),), baseline_dir=None)
    session = EgbenchSession(settings.for_device(device.type), device)
    flagged: dict[tuple[float, str], int] = {}
    start = time.time()
    for _ in range(args.runs):
        for fraction in fractions:
            hook = SlowdownInjector({"decode": fraction}, device) if fraction else None
            timer = StageTimer(device_clock, host_clock, rounds=args.rounds, warmup=args.warmup, stage_hook=hook, control=True)
            for rnd in timer.rounds():
                with rnd.stage("prefill", tokens=637):
                    first, cache = prefill(model, input_ids=prompt)
                with rnd.stage("decode", tokens=steps):
                    decode(model, first, cache, steps)
            labels = dict(nodeid="study", test="study", group="study", model=None, params={}, extra_info={})
            verdicts, _ = session.judge(measurements_from_timing(timer.results(), **labels))
            for v in verdicts:
                flagged[(fraction, v.metric)] = flagged.get((fraction, v.metric), 0) + (v.status == REGRESSION)
    print(
        f"{args.runs} runs per condition, {args.rounds} control + {args.rounds} steady rounds after {args.warmup} warm-up, torch threads {torch.get_num_threads()}, {time.time() - start:.0f} s"
    )
    for (fraction, metric), n in flagged.items():
        print(f"decode +{fraction:.0%}: {metric} flagged in {n}/{args.runs}")


if __name__ == "__main__":
    main()
