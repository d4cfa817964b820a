"""How many interleaved process pairs a same-machine A/B (``--egbench-ref``) needs to catch a
slowdown of the code under test, and how often it flags unchanged code.

Arms, each a copy of this checkout in a temporary folder:

* ``ref`` -- the code as it is (the reference);
* ``same`` -- the code as it is again (an A/A: every flag on it is a false alarm);
* ``slowP`` -- for each ``--slow P``: the code under test made slower on purpose, in
  ``pytest_egbench/models/generation.py`` (``prefill_with_logits`` and ``decode``; for
  ``--egbench-runtime compiled``, ``CompiledLM.prefill`` and ``decode`` in ``runtime.py``), by extra work of
  ``P`` times the prefill and decode time that a first, unchanged process measured: a
  ``torch.cuda._sleep`` spin kernel on the GPU (its cycles per second measured in the process), a
  busy wait on the CPU. Not the plugin's injector: the code that the benchmark runs.

``--rounds R`` rounds of processes run one after the other; in each round every arm runs one
process, all of them at once in lockstep (:mod:`pytest_egbench.lockstep`: they take turns round
by round, the first turn rotating), as ``--egbench-ref`` runs a pair, so that a drift of the
machine falls on every arm alike. Then every ``k`` in ``--k`` splits the rounds into
disjoint groups of ``k`` and judges each group as ``--egbench-ref`` with ``--egbench-ref-pairs k``
would (:func:`pytest_egbench.verdict.judge_ab`, tolerance ``--tolerance``, alpha ``--alpha``): how
many groups flag the slowed arms (caught) and the unchanged one (false alarms). Every process's
results are kept in ``OUT/raw.json``; the table goes to ``OUT/ab-study.md``.

    python tools/ab_study.py --out /tmp/ab --rounds 10 --slow 0.05 --slow 0.02 -- \\
        --egbench -k test_lm_stages --egbench-device cpu
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_egbench import ab, lockstep  # noqa: E402
from pytest_egbench.verdict import IMPROVEMENT, REGRESSION, ab_reference, judge_ab  # noqa: E402

SLOWDOWN = """

# --- tools/ab_study.py: a deliberate slowdown of the code under test ---------------------------
_EXTRA_PREFILL_S, _EXTRA_DECODE_S = {prefill!r}, {decode!r}
_CYCLES_PER_S: dict = {{}}


def _extra_work(seconds: float, device: torch.device) -> None:
    import time as _time

    if device.type != "cuda":
        end = _time.perf_counter() + seconds
        while _time.perf_counter() < end:
            pass
        return
    if device not in _CYCLES_PER_S:
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(1_000_000)
        start.record()
        torch.cuda._sleep(20_000_000)
        stop.record()
        stop.synchronize()
        _CYCLES_PER_S[device] = 20_000_000 / (start.elapsed_time(stop) / 1e3)
    torch.cuda._sleep(int(seconds * _CYCLES_PER_S[device]))


_unchanged_prefill_with_logits = prefill_with_logits
_unchanged_decode = decode


def prefill_with_logits(model, **kwargs):  # noqa: F811
    out = _unchanged_prefill_with_logits(model, **kwargs)
    _extra_work(_EXTRA_PREFILL_S, out[0].device)
    return out


def decode(model, token, cache, steps, **kwargs):  # noqa: F811
    produced = _unchanged_decode(model, token, cache, steps, **kwargs)
    _extra_work(_EXTRA_DECODE_S, token.device)
    return produced
"""


#: The same slowdown in the compiled runtime's prefill and decode (``--egbench-runtime compiled``),
#: appended to ``pytest_egbench/models/runtime.py``; the work itself is generation.py's.
RUNTIME_SLOWDOWN = """

# --- tools/ab_study.py: the slowdown in the compiled runtime ------------------------------------
_unchanged_compiled_prefill, _unchanged_compiled_decode = CompiledLM.prefill, CompiledLM.decode


def _slowed_prefill(self, **kwargs):
    from . import generation

    out = _unchanged_compiled_prefill(self, **kwargs)
    generation._extra_work(generation._EXTRA_PREFILL_S, out[0].device)
    return out


def _slowed_decode(self, token, cache, *args, **kwargs):
    from . import generation

    produced = _unchanged_compiled_decode(self, token, cache, *args, **kwargs)
    generation._extra_work(generation._EXTRA_DECODE_S, token.device)
    return produced


CompiledLM.prefill, CompiledLM.decode = _slowed_prefill, _slowed_decode
"""


def copy_tree(dest: Path) -> Path:
    """This checkout's code, benchmarks and configuration (no git, wheels or outputs)."""
    everywhere = shutil.ignore_patterns(".git", ".whl", "__pycache__", "*.egg-info", ".pytest_cache", ".hypothesis")

    def ignore(folder: str, names: list[str]) -> set[str]:
        top = {"docs", "data", "baselines", "egbench-results"} if Path(folder) == ROOT else set()
        return set(everywhere(folder, names)) | (top & set(names))

    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


def replay(paths: list[Path]) -> tuple[dict[str, list[dict | None]], dict[str, list[float | None]], int]:
    """The processes of earlier ``raw.json`` files, their rounds one after the other: by arm,
    each round's results and seconds, ``None`` for a round of a file without that arm (a run
    with ``--no-same`` after one with it); and the number of rounds. ``SystemExit`` when a file
    has no ``ref`` arm."""
    raws = [json.loads(path.read_text()) for path in paths]
    for path, raw in zip(paths, raws):
        if "ref" not in raw["docs"]:
            raise SystemExit(f"{path}: no ref arm")
    names = list(dict.fromkeys(n for raw in raws for n in raw["docs"]))
    docs: dict[str, list[dict | None]] = {n: [] for n in names}
    seconds: dict[str, list[float | None]] = {n: [] for n in names}
    for raw in raws:
        done = raw["rounds_done"]
        for n in names:
            docs[n].extend(raw["docs"][n][:done] if n in raw["docs"] else [None] * done)
            seconds[n].extend(raw["seconds"][n][:done] if n in raw["seconds"] else [None] * done)
    return docs, seconds, sum(raw["rounds_done"] for raw in raws)


def slowed_copy(dest: Path, prefill_s: float, decode_s: float) -> Path:
    """A copy of this checkout at ``dest`` whose prefill and decode (eager and compiled runtime)
    do ``prefill_s`` and ``decode_s`` seconds of extra work a call (:data:`SLOWDOWN`,
    :data:`RUNTIME_SLOWDOWN`). Returns ``dest``."""
    copy_tree(dest)
    models = dest / "pytest_egbench" / "models"
    (models / "generation.py").write_text((models / "generation.py").read_text() + SLOWDOWN.format(prefill=prefill_s, decode=decode_s))
    (models / "runtime.py").write_text((models / "runtime.py").read_text() + RUNTIME_SLOWDOWN)
    return dest


def metric_runs(docs: list[dict], suffix: str, first: int | None = None) -> list[list[float]]:
    """Each process's samples of the one metric whose full name ends in ``::suffix`` (its first
    ``first`` steady rounds when given)."""
    out = []
    for doc in docs:
        found = [b for name, b in ab.entries(doc).items() if name.endswith(f"::{suffix}")]
        if len(found) != 1:
            raise SystemExit(f"expected one metric ending in ::{suffix}, found {len(found)}: narrow the selection with -k")
        out.append([float(v) for v in found[0]["stats"]["data"]][:first])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--slow", type=float, action="append", default=[], help="fraction, e.g. 0.05 (repeatable)")
    parser.add_argument("--k", type=int, action="append", default=[], help="pairs per judged A/B (repeatable; default 1 2 4)")
    parser.add_argument("--tolerance", type=float, default=None, help="default: verdict.AB_TOLERANCE")
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--metrics", default="prefill,decode")
    parser.add_argument("--first", type=int, default=None, help="judge only the first N steady rounds of each process (as if it had run N)")
    parser.add_argument("--cpus", default="auto", help="pin every process to these CPUs (as --egbench-ref-cpus): auto, none or a list")
    parser.add_argument("--no-same", action="store_true", help="no A/A arm (saves a process per round)")
    parser.add_argument(
        "--base",
        type=float,
        nargs=2,
        metavar=("PREFILL_S", "DECODE_S"),
        help="size the slowdowns from these unchanged prefill and decode seconds (a previous study's base_seconds) instead of a first probe process",
    )
    parser.add_argument(
        "--replay",
        type=Path,
        action="append",
        help="judge the processes of earlier raw.json files (repeatable: their rounds are concatenated) instead of running any",
    )
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    from pytest_egbench.verdict import AB_TOLERANCE

    tolerance = AB_TOLERANCE if args.tolerance is None else args.tolerance
    pytest_args = [a for a in args.pytest_args if a != "--"]
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.replay:
        docs, seconds, rounds = replay(args.replay)
    else:
        docs, seconds, rounds = run_arms(args, pytest_args)
    names = list(docs)
    ks = args.k or [1, 2, 4]
    lines = [
        f"A/B study: {rounds} rounds x {len(names)} arms ({', '.join(names)}), {sum(s is not None for v in seconds.values() for s in v)} processes, "
        f"median {statistics.median([s for v in seconds.values() for s in v if s is not None]):.1f} s a process, {time.perf_counter() - t0:.0f} s in all; "
        f"tolerance {tolerance:.0%}, alpha {args.alpha}; pytest {' '.join(pytest_args)}"
        + (f"; judged on the first {args.first} steady rounds of each process" if args.first else ""),
        "",
        "| metric | arm | pairs per A/B (k) | A/Bs | flagged slower | flagged faster | median change |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    summary = []
    for metric in args.metrics.split(","):
        for n in names[1:]:
            # the rounds in which both the reference and this arm ran (an arm may be absent from a replayed file)
            both = [i for i in range(rounds) if docs["ref"][i] is not None and docs[n][i] is not None]
            ref_runs = metric_runs([docs["ref"][i] for i in both], metric, args.first)
            runs = metric_runs([docs[n][i] for i in both], metric, args.first)
            for k in ks:
                groups = [list(range(i, i + k)) for i in range(0, len(both) - k + 1, k)]
                if not groups:
                    continue
                verdicts = [
                    judge_ab(
                        metric,
                        "latency",
                        "s",
                        [ref_runs[i] for i in g],
                        [runs[i] for i in g],
                        reference=ab_reference("ref"),
                        tolerance=tolerance,
                        tolerance_abs=0.02,
                        alpha=args.alpha,
                    )
                    for g in groups
                ]
                slower = sum(v.status == REGRESSION for v in verdicts)
                faster = sum(v.status == IMPROVEMENT for v in verdicts)
                change = statistics.median(v.change for v in verdicts)
                lines.append(f"| {metric} | {n} | {k} | {len(groups)} | {slower} | {faster} | {change:+.1%} |")
                summary.append(
                    {
                        "metric": metric,
                        "arm": n,
                        "k": k,
                        "tries": len(groups),
                        "slower": slower,
                        "faster": faster,
                        "changes": [v.change for v in verdicts],
                        "p": [v.p for v in verdicts],
                        "status": [v.status for v in verdicts],
                    }
                )
    text = "\n".join(lines) + "\n"
    (args.out / "ab-study.md").write_text(text)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(text)
    return 0


def run_arms(args: argparse.Namespace, pytest_args: list[str]) -> tuple[dict[str, list[dict]], dict[str, list[float]], int]:
    """Copy the arms, size the slowdowns from a first unchanged process (or ``--base``), run ``args.rounds``
    rounds (the order rotating), writing ``OUT/raw.json`` after each round. Returns the
    processes' results and seconds by arm, and the rounds run."""
    work = Path(tempfile.mkdtemp(prefix="ab-study-"))
    empty = work / "no-baselines"
    empty.mkdir()
    cpus = ab.pinned_cpus(args.cpus)
    arms = {"ref": copy_tree(work / "ref")} if args.no_same else {"ref": copy_tree(work / "ref"), "same": copy_tree(work / "same")}
    if args.base:
        base = dict(zip(("prefill", "decode"), args.base))
    else:
        status, secs = ab.run_process(arms["ref"], Path("."), Path("."), pytest_args, empty, work / "probe.json", work / "probe.log", cpus)
        probe = ab.read_results("probe", status, work / "probe.json", work / "probe.log")
        base = {m: statistics.median(metric_runs([probe], m)[0]) for m in ("prefill", "decode")}
        print(f"probe process: {secs:.1f} s; prefill {base['prefill'] * 1e3:.3f} ms, decode {base['decode'] * 1e3:.3f} ms", file=sys.stderr)
    for frac in args.slow:
        name = f"slow{frac:g}"
        arms[name] = slowed_copy(work / name, frac * base["prefill"], frac * base["decode"])
    names = list(arms)
    lock: list[dict] = []
    docs: dict[str, list[dict]] = {n: [] for n in names}
    seconds: dict[str, list[float]] = {n: [] for n in names}
    base_args = ab.child_args(pytest_args)
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        commands = [(n, *ab.process_command(arms[n], Path("."), Path("."), base_args, empty, work / f"{n}-{r}.json"), work / f"{n}-{r}.log") for n in names]
        t0 = time.perf_counter()
        done, paired = lockstep.run_pair(commands, order, cpus)
        for n in names:
            status, secs = done[n]
            docs[n].append(ab.read_results(n, status, work / f"{n}-{r}.json", work / f"{n}-{r}.log"))
            seconds[n].append(secs)
        lock.append(paired)
        print(f"round {r + 1}/{args.rounds}: {len(names)} processes in lockstep, {time.perf_counter() - t0:.1f} s; {paired}", file=sys.stderr)
        # after every round, so that a run cut short keeps what it measured
        (args.out / "raw.json").write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "base_seconds": base,
                    "rounds_done": r + 1,
                    "seconds": seconds,
                    "lockstep": lock,
                    "docs": docs,
                }
            )
            + "\n"
        )
    shutil.rmtree(work, ignore_errors=True)
    return docs, seconds, args.rounds


if __name__ == "__main__":
    raise SystemExit(main())
