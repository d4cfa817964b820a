"""Same-machine A/B (``--egbench-ref``): the reference checkout, the children's arguments, the
run order, and the paired judgement on synthetic rounds with a known change."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_egbench import ab
from pytest_egbench.verdict import IMPROVEMENT, NOISE_ONLY, PASS, REGRESSION, RefKind, ab_reference, judge_ab

ALPHA = 0.01
ROOT = Path(__file__).resolve().parents[1]


def _runs(level: float, pairs: int = 4, rounds: int = 8, noise: float = 0.01, seed: int = 0, offsets=None) -> list[list[float]]:
    rng = random.Random(seed)
    offsets = offsets or [0.0] * pairs
    return [[level * (1 + off) * (1 + rng.gauss(0, noise)) for _ in range(rounds)] for off in offsets]


def _judge(ref, cur, kind="latency", tol=0.03):
    return judge_ab("decode", kind, "s", ref, cur, reference=ab_reference("REV x", "abc1234"), tolerance=tol, tolerance_abs=0.02, alpha=ALPHA)


def test_a_known_slowdown_is_a_regression_and_names_the_reference():
    v = _judge(_runs(0.010, seed=1), _runs(0.0106, seed=2))  # +6 %, 1 % noise
    assert v.status == REGRESSION and v.p < ALPHA and v.change == pytest.approx(0.06, abs=0.015)
    assert (v.reference.kind, v.reference.label, v.reference.revision) == (RefKind.AB, "REV x", "abc1234")
    assert "REV x on this machine" in v.message and "per process pair" in v.message


def test_unchanged_code_passes_and_throughput_is_reversed():
    assert _judge(_runs(0.010, seed=3), _runs(0.010, seed=4)).status == PASS
    # throughput: higher is better, so 6 % more tokens/s is an improvement, 6 % fewer a regression
    assert _judge(_runs(100.0, seed=5), _runs(106.0, seed=6), kind="throughput").status == IMPROVEMENT
    assert _judge(_runs(100.0, seed=5), _runs(94.0, seed=6), kind="throughput").status == REGRESSION


def test_one_odd_process_pair_cannot_decide_alone():
    # three pairs unchanged, one pair +30 % (one slow process): the pooled median of ratios is
    # within noise of the tolerance, the pairs disagree, so it is not a regression
    ref = _runs(0.010, seed=7)
    cur = _runs(0.010, seed=8, offsets=[0.0, 0.30, 0.0, -0.01])
    v = _judge(ref, cur, tol=0.0)
    assert v.status in (PASS, NOISE_ONLY) and v.status != REGRESSION


def test_exact_metrics_are_judged_as_exact():
    # an exact count judged as exact: equal passes, 637 -> 641 tokens regresses
    for current, expected in ((637.0, PASS), (641.0, REGRESSION)):
        verdict = judge_ab(
            "tokens.prefill",
            "exact",
            "tokens",
            [[637.0] * 3] * 2,
            [[current] * 3] * 2,
            reference=ab_reference("r"),
            tolerance=0.03,
            tolerance_abs=0.02,
            alpha=ALPHA,
        )
        assert verdict.status == expected


def test_child_arguments_drop_the_parent_only_options():
    args = [
        "--egbench",
        "-k",
        "lm",
        "--egbench-ref",
        "HEAD",
        "--egbench-ref-pairs=3",
        "--egbench-json",
        "out.json",
        "--egbench-require-baseline",
        "--egbench-baseline-dir=b",
        "--egbench-gate-exclude",
        "vision,ttft",
        "--egbench-gate=latency",
        "--egbench-rounds",
        "8",
    ]
    assert ab.child_args(args) == ["--egbench", "-k", "lm", "--egbench-rounds", "8"]


def test_the_first_turn_alternates_from_pair_to_pair():
    assert [ab.turn_order(i) for i in range(3)] == [["ref", "current"], ["current", "ref"], ["ref", "current"]]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_revision_is_checked_out_in_a_temporary_worktree_and_removed(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "code.py").write_text("VERSION = 1\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    (repo / "code.py").write_text("VERSION = 2\n")
    subprocess.run([*git, "commit", "-qam", "two"], check=True)
    (repo / "code.py").write_text("VERSION = 3  # uncommitted\n")
    ref = ab.prepare("HEAD~1", repo)
    try:
        assert (ref.root / "code.py").read_text() == "VERSION = 1\n"
        assert ref.label.startswith("REV HEAD~1 (") and ref.commit and len(ref.commit) == 40
        assert (repo / "code.py").read_text() == "VERSION = 3  # uncommitted\n"  # the user's tree is untouched
    finally:
        ref.cleanup()
    assert not ref.root.exists()
    assert "worktree" not in subprocess.run([*git, "worktree", "list"], capture_output=True, text=True).stdout.split("\n", 1)[-1]
    with pytest.raises(ab.RefError, match="--egbench-ref no-such-rev: neither a folder nor a git revision"):
        ab.prepare("no-such-rev", repo)
    folder = ab.prepare(str(repo), tmp_path)
    assert folder.root == repo.resolve() and folder.label.startswith("folder ") and folder.worktree_of is None


AB_BENCH = """
import time
import pytest
import mycode

pytestmark = pytest.mark.egbench(group="toy")

def test_toy(stage_timer):
    stage_timer.extra_info["model"] = "toy"
    for rnd in stage_timer.rounds():
        with rnd.stage("prefill", tokens=10):
            time.sleep(0.002)
        with rnd.stage("decode", tokens=4):
            time.sleep(mycode.DECODE_S)
"""


def _project(root, decode_s: float) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "test_bench.py").write_text(AB_BENCH)
    (root / "mycode.py").write_text(f"DECODE_S = {decode_s}\n")


def _commit(root: Path, *paths: str) -> str:
    """``git init`` in ``root``, commit ``paths`` (all files when none are given): the commit id."""
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run([*git, "add", *(paths or (".",))], check=True)
    subprocess.run([*git, "commit", "-qm", "bench"], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


def test_ab_against_a_slower_and_an_equal_reference_folder(pytester, tmp_path_factory, unwrapped):
    """The reference folder's code and this code run in pairs of processes in lockstep; a 3 ms decode
    against the reference's 2 ms fails naming the reference; the same code passes."""
    _project(pytester.path, 0.003)
    slower_ref = tmp_path_factory.mktemp("ref-fast")
    _project(slower_ref, 0.002)
    # 12 rounds: on a loaded 2-CPU machine (the tests beside another test run) a sleeping process
    # can wake milliseconds late, and 8 rounds a pair once read this +50 % as not significant
    common = ["--egbench", "--egbench-device", "cpu", "--egbench-rounds", "12", "--egbench-warmup", "1", "--egbench-ref-pairs", "2", "-p", "no:cacheprovider"]
    result = pytester.runpytest_subprocess(*common, f"--egbench-ref={slower_ref}")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    # 2 pairs, each pair's two processes in lockstep through the machine calibration and all 14
    # rounds (cold, warm-up, 12 steady)
    unwrapped(result).fnmatch_lines(["*egbench A/B: pair 1/2: *; 15 turns paired", "*egbench A/B: pair 2/2: *; 15 turns paired"])
    unwrapped(result).fnmatch_lines(["*A/B significance corrected for * latency and throughput comparisons (Holm)*"])
    result.stdout.fnmatch_lines([f"*regressed against folder {slower_ref}*on this machine*", "*decode: folder*change +*per process pair +*slower*"])

    assert "each pinned to CPUs" in out or "not pinned to CPUs" in out

    # a git revision: HEAD holds the same code, checked out into a temporary worktree
    _commit(pytester.path, "test_bench.py", "mycode.py")
    git = ["git", "-C", str(pytester.path)]
    result = pytester.runpytest_subprocess(*common, "--egbench-tolerance", "25%", "--egbench-ref-pairs", "1", "--egbench-ref=HEAD", "--egbench-json=ab.json")
    result.assert_outcomes(passed=1)
    unwrapped(result).fnmatch_lines(["*egbench A/B: 1 benchmark(s), 1 pair(s) of processes*REV HEAD (*) (checkout *egbench-ref-*/checkout)*"])
    doc = __import__("json").loads((pytester.path / "ab.json").read_text())
    decode = next(b for b in doc["benchmarks"] if b["name"] == "test_toy::decode")
    assert decode["extra_info"]["verdict"]["reference"].startswith("REV HEAD (") and decode["extra_info"]["verdict"]["status"] in (
        "pass",
        "pass (not significant)",
    )
    assert len(decode["stats"]["data"]) == 12  # the current side's rounds: 1 process x 12 rounds
    listed = subprocess.run([*git, "worktree", "list"], capture_output=True, text=True).stdout.strip().splitlines()
    assert len(listed) == 1  # the temporary worktree is gone
    status = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout
    assert status == ""  # the user's checkout is untouched


def test_a_benchmark_skipped_by_its_mark_is_reported_skipped_in_an_ab(pytester, tmp_path_factory):
    """A skip mark copied onto the A/B item is reported at the benchmark's own location (seen on
    an H200: a parametrised sample marked skip crashed the A/B run with an INTERNALERROR). A
    benchmark that skips in its body (a sample that lacks video) produces no results in the
    processes; the parent skips it with the reason they gave, read from their results files (their
    logs are in a temporary folder), and a run's results file lists what it skipped and why."""
    _project(pytester.path, 0.002)
    (pytester.path / "test_skipped.py").write_text(
        "import pytest\n\n@pytest.mark.egbench(group='toy')\n@pytest.mark.skip(reason='no such sample here')\ndef test_gone(stage_timer):\n    pass\n\n"
        "@pytest.mark.egbench(group='toy')\ndef test_needs_video(stage_timer):\n    pytest.skip('sample cup: event-only (no mp4_data), needs video')\n"
    )
    ref = tmp_path_factory.mktemp("same")
    _project(ref, 0.002)
    (ref / "test_skipped.py").write_text((pytester.path / "test_skipped.py").read_text())
    result = pytester.runpytest_subprocess(
        "--egbench",
        "--egbench-device",
        "cpu",
        "--egbench-rounds",
        "3",
        "--egbench-warmup",
        "0",
        "--egbench-ref-pairs",
        "1",
        "--egbench-tolerance",
        "50%",
        "-p",
        "no:cacheprovider",
        "-rs",
        f"--egbench-ref={ref}",
    )
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["SKIPPED * test_skipped.py:*: no such sample here"])
    result.stdout.fnmatch_lines(["SKIPPED * skipped in the current code's processes: sample cup: event-only (no mp4_data), needs video"])

    plain = pytester.runpytest_subprocess(
        "--egbench", "--egbench-device", "cpu", "--egbench-rounds", "3", "-p", "no:cacheprovider", "--egbench-json=plain.json"
    )
    plain.assert_outcomes(passed=1, skipped=2)
    assert __import__("json").loads((pytester.path / "plain.json").read_text())["egbench"]["skipped"] == {
        "test_skipped.py::test_gone": "no such sample here",
        "test_skipped.py::test_needs_video": "sample cup: event-only (no mp4_data), needs video",
    }


def test_a_regression_read_from_one_pair_is_confirmed_by_a_second(pytester, tmp_path_factory, unwrapped):
    """One pair of processes cannot tell a slow process from slow code (an H200 read a preprocess
    +45 % in one process of unchanged code). Here the first process of the current code is slow
    (3x the decode) and every later one is not, by construction: the single pair reads a
    regression, so one more pair runs, of that benchmark only, and its disagreement clears it. A
    real slowdown (every current process slow) is confirmed and fails."""
    counter = tmp_path_factory.mktemp("counter") / "imports"
    _project(pytester.path, 0.002)
    (pytester.path / "test_other.py").write_text(AB_BENCH.replace("def test_toy", "def test_other"))
    (pytester.path / "mycode.py").write_text(
        "import os, pathlib\n"
        f"COUNTER = pathlib.Path({str(counter)!r})\n"
        "first = False\n"
        "if os.environ.get('EGBENCH_LOCKSTEP'):  # a process of an A/B pair\n"
        "    first = not COUNTER.exists()\n"
        "    with COUNTER.open('a') as fh:\n"
        "        fh.write('x')\n"
        "DECODE_S = 0.006 if first else 0.002\n"
    )
    ref = tmp_path_factory.mktemp("ref-same")
    _project(ref, 0.002)
    (ref / "test_other.py").write_text((pytester.path / "test_other.py").read_text())
    common = ["--egbench", "--egbench-device", "cpu", "--egbench-warmup", "1", "--egbench-ref-pairs", "1", "-p", "no:cacheprovider", f"--egbench-ref={ref}"]
    result = pytester.runpytest_subprocess(*common, "--egbench-json=ab.json")
    # test_toy and test_other share the module: the first current process was slow in both
    unwrapped(result).fnmatch_lines(["*egbench A/B: pair 2/2 (confirming test_bench.py::test_toy*"])
    result.assert_outcomes(passed=2)
    assert counter.read_text() == "xx"  # two current processes: the pair and the confirmation
    doc = __import__("json").loads((pytester.path / "ab.json").read_text())
    decode = {b["name"]: b["extra_info"]["verdict"] for b in doc["benchmarks"] if b["name"].endswith("::decode")}
    for verdict in decode.values():  # the second pair reads about 0 %: not confirmed, or the pairs disagree on the sign
        assert verdict["status"] == "pass (not significant)"
        assert "not confirmed" in verdict["message"] or "disagree on the direction" in verdict["message"]
    # every current process slow: confirmed
    counter.unlink()
    (pytester.path / "mycode.py").write_text("DECODE_S = 0.006\n")
    result = pytester.runpytest_subprocess(*common)
    unwrapped(result).fnmatch_lines(["*egbench A/B: pair 2/2 (confirming *"])
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*decode: *confirmed by a second pair of processes (+*% alone, p=*)*"])


def test_what_one_pair_reads_as_slower_or_faster_is_sent_for_confirmation():
    """One pair, 24 paired rounds: a 10 % slower metric and a 10 % faster one (exact p 2**-24,
    Holm over three metrics well below 0.01) are sent to a confirming pair, an unchanged one is
    not; with two pairs nothing is (each pair must already agree)."""
    from types import SimpleNamespace

    ref = [1.0 + 0.01 * i for i in range(24)]
    metrics = {"b.py::t::slow": [r * 1.1 for r in ref], "c.py::t::fast": [r / 1.1 for r in ref], "d.py::t::same": list(ref)}

    def run(pairs: int) -> list[str]:
        sides = {
            "ref": ab.Side("ref", Path("."), "REV x", results=[_side("ref", {n: ("latency", ref) for n in metrics}).results[0]] * pairs),
            "current": ab.Side("current", Path("."), "current", results=[_side("current", {n: ("latency", d) for n, d in metrics.items()}).results[0]] * pairs),
        }
        egb = SimpleNamespace(
            ab_family=None,
            ab_runs={n: ab.runs_by_metric(s) for n, s in sides.items()},
            settings=SimpleNamespace(pvalue=ALPHA, tolerance_abs=0.02),
            tolerance_for=lambda metric, kind, marked: 0.03,
        )
        return ab.unconfirmed(egb, sides)

    assert run(1) == ["b.py::t", "c.py::t"]
    assert run(2) == []


def test_a_confirming_pair_runs_only_the_benchmarks_named():
    """The invocation's file and folder arguments give way to the node ids, written relative to
    the folder the processes start in; options and their values stay."""
    args = ["--egbench", "benchmarks", "-k", "not slow", "--egbench-device", "cpu"]
    out = ab.only_these(args, ["benchmarks"], ["benchmarks/test_a.py::test_t[x-1]", "benchmarks/test_b.py"], Path("/r"), Path("/r/sub"))
    assert out == ["--egbench", "-k", "not slow", "--egbench-device", "cpu", "../benchmarks/test_a.py::test_t[x-1]", "../benchmarks/test_b.py"]


def test_a_confirming_pair_must_read_the_change_beyond_the_tolerance_on_its_own():
    """Hand-made rounds, 12 a process: the first pair reads +100 %; the confirming (last) pair
    must read the change beyond a 3 % tolerance the same way, with its own one-sided Wilcoxon
    p < 0.01 (every round slower: exact p = 2**-12). +1 %: inside the tolerance. Median +50 %
    but 5 of 12 rounds 1 % faster: the 5 smallest |differences| are negative, W+ = 6 + ... + 12 =
    63, and 131 of the 4096 sign patterns reach it (rank sum of the rest <= 15): p = 0.032, not
    confirmed. Throughput the other way round; an improvement (-50 %) is confirmed by -20 % and
    not by -1 % or +30 %."""
    from pytest_egbench.verdict import Verdict

    n = 12
    ref = [[1.0 + 0.01 * i for i in range(n)]] * 2
    times = lambda f: [r * f for r in ref[0]]  # noqa: E731
    slow = Verdict("decode", REGRESSION, "decode: ... : slower")
    kept = ab.confirmed(slow, "latency", ref, [times(2.0), times(1.5)], 0.03, 0.01)
    assert kept.status == REGRESSION and "(+50.0% alone, p=0.000244)" in kept.message  # 2**-12
    dropped = ab.confirmed(slow, "latency", ref, [times(2.0), times(1.01)], 0.03, 0.01)
    assert dropped.status == NOISE_ONLY and "reads +1.0% alone" in dropped.message
    mixed = [r * (1.5 if i % 2 == 0 or i > 9 else 0.99) for i, r in enumerate(ref[0])]
    assert ab.confirmed(slow, "latency", ref, [times(2.0), mixed], 0.03, 0.01).status == NOISE_ONLY
    assert ab.confirmed(slow, "throughput", ref, [times(0.5), times(0.6)], 0.03, 0.01).status == REGRESSION
    assert ab.confirmed(slow, "throughput", ref, [times(0.5), times(1.2)], 0.03, 0.01).status == NOISE_ONLY
    assert ab.confirmed(slow, "latency", ref[:1], [times(2.0)], 0.03, 0.01) is slow  # no confirming rounds
    fast = Verdict("decode", IMPROVEMENT, "decode: ... : faster than the reference")
    assert ab.confirmed(fast, "latency", ref, [times(0.5), times(0.8)], 0.03, 0.01).status == IMPROVEMENT
    assert ab.confirmed(fast, "latency", ref, [times(0.5), times(0.99)], 0.03, 0.01).status == NOISE_ONLY
    assert ab.confirmed(fast, "latency", ref, [times(0.5), times(1.3)], 0.03, 0.01).status == NOISE_ONLY


def test_rounds_not_taken_in_lockstep_are_not_paired(pytester, tmp_path_factory, unwrapped):
    """A reference whose processes never take turns (as a revision from before the lockstep
    protocol: seen against such a commit, its unpaired rounds were judged as 24 "paired rounds" and
    a preprocess read +8.8 %, a regression). Its rounds ran at other times than the current
    side's, so its latencies are not compared, with the reason; the token count, which does not
    depend on when it was measured, is still judged. The reference here is 3x faster in decode:
    judged as paired, that would be a regression."""
    _project(pytester.path, 0.006)
    ref = tmp_path_factory.mktemp("ref-no-lockstep")
    _project(ref, 0.002)
    # before the plugin configures: this process finds no lockstep pipes, like an old revision
    (ref / "conftest.py").write_text("import os\n\nos.environ.pop('EGBENCH_LOCKSTEP', None)\n")
    common = ["--egbench", "--egbench-device", "cpu", "--egbench-rounds", "8", "--egbench-warmup", "1", "--egbench-ref-pairs", "1"]
    result = pytester.runpytest_subprocess(*common, "-p", "no:cacheprovider", f"--egbench-ref={ref}", "--egbench-json=ab.json")
    result.assert_outcomes(passed=1)
    unwrapped(result).fnmatch_lines(["*egbench A/B: pair 1/1: *; 0 turns paired, then unpaired: the ref process exited*"])
    doc = __import__("json").loads((pytester.path / "ab.json").read_text())
    verdicts = {b["name"].split("::")[-1]: b["extra_info"]["verdict"] for b in doc["benchmarks"] + doc["egbench"]["metrics"]}
    assert verdicts["decode"]["status"] == "not compared"
    assert "not taken in lockstep" in verdicts["decode"]["message"] and "the ref process exited" in verdicts["decode"]["message"]
    assert verdicts["tokens.prefill"]["status"] == verdicts["tokens.decode"]["status"] == "pass"
    # every latency went without a verdict: the run says so with its own exit status
    again = pytester.runpytest_subprocess(*common, "-p", "no:cacheprovider", f"--egbench-ref={ref}", "--egbench-require-baseline")
    assert again.ret == 6


def test_fallback_ref_turns_a_machine_that_differs_into_an_ab_against_the_baselines_commit(pytester, unwrapped):
    """The nightly switch: the baseline's run says another machine (its launch probe made 20 times
    faster), so instead of an inconclusive run the benchmarks are judged by an A/B against the
    commit that run recorded."""
    _project(pytester.path, 0.002)
    head = _commit(pytester.path, "test_bench.py", "mycode.py")
    common = ["--egbench", "--egbench-device", "cpu", "--egbench-rounds", "8", "--egbench-warmup", "1", "-p", "no:cacheprovider"]
    pytester.runpytest_subprocess(*common, "--egbench-save").assert_outcomes(passed=1)
    (path,) = (pytester.path / "baselines").glob("*.json")
    doc = __import__("json").loads(path.read_text())
    assert doc["runs"][0]["commit"] == head
    for probe in doc["runs"][0]["calibration"]["probes"].values():
        probe["median"] *= 20
        probe["samples"] = [v * 20 for v in probe["samples"]]
    path.write_text(__import__("json").dumps(doc))
    result = pytester.runpytest_subprocess(
        *common, "--egbench-fallback-ref", "--egbench-ref-pairs", "1", "--egbench-tolerance", "25%", "--egbench-require-baseline"
    )
    result.assert_outcomes(passed=1)
    assert result.ret == 0  # every latency got a verdict from the A/B
    unwrapped(result).fnmatch_lines(
        [
            f"*egbench A/B: 1 benchmark(s), 1 pair(s) of processes*REV {head[:12]}*",
            f"*--egbench-fallback-ref: machine differs: *; judging by a same-machine A/B against the baseline's commit {head[:12]} instead*",
        ]
    )


def test_a_regression_against_the_baseline_is_judged_again_by_an_ab_against_its_commit(pytester, unwrapped):
    """The nightly switch on a machine like the baseline's (here: --egbench-ignore-machine, so
    that the CI machine's calibration noise cannot choose the path): a decode 3x the baseline's
    in this process alone (the A/B processes of the same code decode at the baseline's speed, by
    construction) is sent to a same-machine A/B of that benchmark against the baseline's commit,
    which does not confirm it: the run passes, saying both readings. Code that is really 3x slower
    is confirmed there and fails."""
    _project(pytester.path, 0.002)
    (pytester.path / "test_other.py").write_text(AB_BENCH.replace("def test_toy", "def test_other").replace("mycode.DECODE_S", "0.002"))
    head = _commit(pytester.path, "test_bench.py", "test_other.py", "mycode.py")
    common = ["--egbench", "--egbench-device", "cpu", "--egbench-rounds", "8", "--egbench-warmup", "1", "-p", "no:cacheprovider"]
    pytester.runpytest_subprocess(*common, "--egbench-save").assert_outcomes(passed=2)
    judged = [
        *common,
        "--egbench-ignore-machine",
        "--egbench-fallback-ref",
        "--egbench-ref-pairs",
        "1",
        "--egbench-tolerance",
        "25%",
        "--egbench-json=out.json",
    ]

    # slow in this process only: a process of an A/B pair has EGBENCH_LOCKSTEP set
    (pytester.path / "mycode.py").write_text("import os\nDECODE_S = 0.002 if os.environ.get('EGBENCH_LOCKSTEP') else 0.006\n")
    result = pytester.runpytest_subprocess(*judged)
    result.assert_outcomes(passed=2)
    unwrapped(result).fnmatch_lines(
        [
            f"*test_bench.py::test_toy: * metric(s) read slower than the baseline; judging them by a same-machine A/B against its commit {head[:12]}*",
            "*egbench A/B: pair 1/1: *; * turns paired",
        ]
    )
    doc = __import__("json").loads((pytester.path / "out.json").read_text())
    verdict = {b["name"]: b["extra_info"]["verdict"] for b in doc["benchmarks"]}
    toy = verdict["test_toy::decode"]
    assert toy["reference_data"]["kind"] == "ab" and toy["reference_data"]["revision"] == head
    assert toy["status"] in ("pass", "pass (not significant)")
    assert "against the baseline it read +" in toy["message"] and "does not confirm" in toy["message"]
    assert verdict["test_other::decode"]["reference_data"]["kind"] == "baseline"  # not regressed: no A/B
    assert "test_other" not in result.stdout.str().split("egbench A/B")[0].split("read slower")[0].rsplit("\n", 1)[-1]

    # slower code: the A/B reads it too
    (pytester.path / "mycode.py").write_text("DECODE_S = 0.006\n")
    result = pytester.runpytest_subprocess(*judged)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*decode: baseline *slower; confirmed on this machine: decode: REV * on this machine *slower*"])


def _committed_toys(pytester, names: list[str]) -> str:
    """A git repository with one toy benchmark per name (each decodes for ``mycode.DECODE_S``,
    2 ms), committed; its commit."""
    _project(pytester.path, 0.002)
    for name in names:
        if name != "toy":
            (pytester.path / f"test_{name}.py").write_text(AB_BENCH.replace("def test_toy", f"def test_{name}"))
    return _commit(pytester.path)


def test_confirmations_stop_once_two_regressions_are_confirmed_or_the_baseline_is_refuted_too_often(pytester, monkeypatch):
    """Really slower code in three benchmarks: two A/Bs confirm it, the third regression stands
    without an A/B. A process that alone is slower, with at most one A/B a run: the first A/B
    refutes its regression (pass), the second benchmark's regression is inconclusive, naming the
    refuted reading, and --egbench-require-baseline fails the run with its own exit status."""
    from pytest_egbench import plugin

    _committed_toys(pytester, ["toy", "other", "third"])
    common = ["--egbench", "--egbench-device", "cpu", "--egbench-rounds", "8", "--egbench-warmup", "1", "-p", "no:cacheprovider"]
    pytester.runpytest_subprocess(*common, "--egbench-save").assert_outcomes(passed=3)
    judged = [*common, "--egbench-ignore-machine", "--egbench-fallback-ref", "--egbench-ref-pairs", "1", "--egbench-tolerance", "25%"]

    (pytester.path / "mycode.py").write_text("DECODE_S = 0.006\n")
    result = pytester.runpytest_subprocess(*judged)
    result.assert_outcomes(failed=3)
    out = result.stdout.str()
    assert out.count("read slower than the baseline; judging them by a same-machine A/B") == 2
    result.stdout.fnmatch_lines(["*slower; not sent to a same-machine A/B: 2 benchmarks of this run were read slower on this machine already*"])

    (pytester.path / "mycode.py").write_text("import os\nDECODE_S = 0.002 if os.environ.get('EGBENCH_LOCKSTEP') else 0.006\n")
    (pytester.path / "test_third.py").unlink()
    monkeypatch.setattr(plugin, "CONFIRMATIONS", 1)
    result = pytester.runpytest(*judged, "--egbench-require-baseline", "--egbench-json=out.json")
    assert result.ret == 6
    doc = __import__("json").loads((pytester.path / "out.json").read_text())
    verdict = {b["name"]: b["extra_info"]["verdict"] for b in doc["benchmarks"]}
    first, second = verdict["test_toy::decode"], verdict["test_other::decode"]  # test_bench.py runs first
    assert first["status"] in ("pass", "pass (not significant)") and first["reference_data"]["kind"] == "ab"
    assert second["status"] == "inconclusive"
    assert "refuted 1 of 1 regressions read against the baseline (test_bench.py::test_toy: decode +" in second["message"]


def _fixed_calibration(monkeypatch) -> dict:
    """Calibrate this machine once and make the in-process runs' calibration return that block
    with every probe's spread set to 5 %: the machine check then compares the test's own figures,
    and a loaded CI machine (a matmul probe spread of 320 % seen beside another test run) cannot
    choose the path the test is about."""
    import copy
    import importlib

    # the module object the plugin's own import will find: an earlier in-process run may have
    # dropped it from sys.modules, leaving another object on the package's attribute
    calibration = importlib.import_module("pytest_egbench.calibration")
    fixed = calibration.calibrate(__import__("torch").device("cpu"), repeats=2)
    for probe in fixed["probes"].values():
        probe["spread"] = 0.05
    monkeypatch.setattr(calibration, "calibrate", lambda device, **kw: copy.deepcopy(fixed))
    return fixed


def test_a_benchmark_whose_baseline_runs_come_from_other_machines_is_judged_by_an_ab(pytester, monkeypatch, unwrapped):
    """The baseline's run is this machine's (its calibration is fixed here, so that the CI
    machine's noise cannot choose the path), but test_other's latency was saved only from a run
    on another host (probes 20 times this one's). Against the baseline that benchmark is
    inconclusive; --egbench-fallback-ref judges it by a same-machine A/B against the baseline's
    commit instead, so that unchanged code passes --egbench-require-baseline, and a decode three
    times slower in test_other alone fails there."""
    import copy
    import json

    head = _committed_toys(pytester, ["toy", "other"])
    fixed = _fixed_calibration(monkeypatch)
    common = ["--egbench", "--egbench-device", "cpu", "--egbench-rounds", "8", "--egbench-warmup", "1", "-p", "no:cacheprovider"]
    pytester.runpytest(*common, "--egbench-save").assert_outcomes(passed=2)
    (path,) = (pytester.path / "baselines").glob("*.json")
    doc = json.loads(path.read_text())
    assert doc["runs"][-1]["calibration"]["probes"] == fixed["probes"]  # the fixed calibration was saved
    other_host = copy.deepcopy(doc["runs"][-1])
    other_host["id"] = "other-host"
    for probe in other_host["calibration"]["probes"].values():
        probe["median"] *= 20
        probe["samples"] = [v * 20 for v in probe["samples"]]
    doc["runs"].append(other_host)
    moved = [name for name, e in doc["entries"].items() if "test_other" in name and e["kind"] in ("latency", "throughput")]
    for name in moved:
        doc["entries"][name]["run_ids"] = ["other-host"]
    path.write_text(json.dumps(doc))
    judged = [
        *common,
        "--egbench-fallback-ref",
        "--egbench-ref-pairs",
        "1",
        "--egbench-tolerance",
        "25%",
        "--egbench-require-baseline",
        "--egbench-json=out.json",
    ]

    result = pytester.runpytest(*judged)
    assert result.ret == 0  # every latency got a verdict: test_other's from the A/B
    unwrapped(result).fnmatch_lines(
        [
            f"*test_other.py::test_other: * metric(s) the baseline cannot judge on this machine; judging them by a same-machine A/B against its commit {head[:12]}*"
        ]
    )
    verdict = {b["name"]: b["extra_info"]["verdict"] for b in json.loads((pytester.path / "out.json").read_text())["benchmarks"]}
    other, toy = verdict["test_other::decode"], verdict["test_toy::decode"]
    assert other["reference_data"]["kind"] == "ab" and other["reference_data"]["revision"] == head
    assert other["status"] in ("pass", "pass (not significant)")
    assert "because the baseline could not: " in other["message"] and "kernel launch" in other["message"]
    assert toy["reference_data"]["kind"] == "baseline" and toy["status"] in ("pass", "pass (not significant)")
    # the A/B judged exactly the moved metrics (the JSON's benchmarks are the latency ones)
    latency = {name.split(".py::", 1)[1] for name in moved if doc["entries"][name]["kind"] == "latency"}
    assert {name for name, v in verdict.items() if v["reference_data"]["kind"] == "ab"} == latency

    (pytester.path / "test_other.py").write_text((pytester.path / "test_other.py").read_text().replace("mycode.DECODE_S", "0.006"))
    result = pytester.runpytest(*judged)
    result.assert_outcomes(passed=1, failed=1)
    unwrapped(result).fnmatch_lines(["*decode: REV * on this machine *slower*; judged by this same-machine A/B because the baseline could not*"])


def test_a_benchmarks_own_tolerance_is_the_one_its_verdicts_apply(pytester):
    """``egbench(tolerances={"decode": "500%"})``: a decode three times the baseline's is within it
    (and said so: tolerance 500.0%), while the total, under the default tolerance, fails."""
    _project(pytester.path, 0.002)
    common = ["--egbench", "--egbench-device", "cpu", "--egbench-rounds", "8", "--egbench-warmup", "1", "-p", "no:cacheprovider", "--egbench-ignore-machine"]
    pytester.runpytest_subprocess(*common, "--egbench-save").assert_outcomes(passed=1)
    (pytester.path / "mycode.py").write_text("DECODE_S = 0.006\n")
    bench = pytester.path / "test_bench.py"
    bench.write_text(bench.read_text().replace('pytest.mark.egbench(group="toy")', 'pytest.mark.egbench(group="toy", tolerances={"decode": "500%"})'))
    result = pytester.runpytest_subprocess(*common, "--egbench-tolerance", "25%", "--egbench-json=out.json")
    result.assert_outcomes(failed=1)
    doc = __import__("json").loads((pytester.path / "out.json").read_text())
    verdict = {b["name"]: b["extra_info"]["verdict"] for b in doc["benchmarks"]}
    assert verdict["test_toy::decode"]["status"] == "pass" and "tolerance 500.0%" in verdict["test_toy::decode"]["message"]
    assert verdict["test_toy::total"]["status"] == "regression" and "tolerance 25.0%" in verdict["test_toy::total"]["message"]


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_getaffinity"), reason="needs Linux sched_getaffinity")
def test_cpu_lists_for_pinning():
    import os

    allowed = sorted(os.sched_getaffinity(0))
    assert ab.pinned_cpus("none") is None
    assert ab.pinned_cpus("auto") == frozenset(allowed[-min(4, len(allowed)) :])
    assert ab.pinned_cpus(f"{allowed[0]}-{allowed[0]}") == frozenset({allowed[0]})
    with pytest.raises(ab.RefError, match="not a CPU list"):
        ab.pinned_cpus("four")
    with pytest.raises(ab.RefError, match="are not among this process's CPUs"):
        ab.pinned_cpus(str(max(allowed) + 1000))


def test_failed_benchmarks_are_read_from_a_process_log(tmp_path):
    log = tmp_path / "p.log"
    log.write_text(
        "== short test summary info ==\nFAILED benchmarks/test_x.py::test_y[a-1] - AssertionError: no\nERROR benchmarks/test_x.py::test_z - RuntimeError\nSKIPPED [1] x\n"
    )
    assert ab.failed_nodeids(log) == ["benchmarks/test_x.py::test_y[a-1]", "benchmarks/test_x.py::test_z"]
    assert ab.failed_nodeids(tmp_path / "missing.log") == []


def test_a_benchmark_that_fails_in_the_current_code_fails_the_ab(pytester, tmp_path_factory, unwrapped):
    _project(pytester.path, -1)  # time.sleep(-1) raises: the current code is broken
    ref = tmp_path_factory.mktemp("ref-ok")
    _project(ref, 0.002)
    result = pytester.runpytest_subprocess(
        "--egbench",
        "--egbench-device",
        "cpu",
        "--egbench-rounds",
        "2",
        "--egbench-warmup",
        "0",
        "--egbench-ref-pairs",
        "1",
        "-p",
        "no:cacheprovider",
        f"--egbench-ref={ref}",
    )
    result.assert_outcomes(failed=1)
    unwrapped(result).fnmatch_lines(["*egbench: the benchmark failed in a process of the current code (see *current-0.log)*"])


def test_a_benchmark_that_fails_in_the_reference_is_not_compared_and_the_run_says_why(pytester, tmp_path_factory, unwrapped):
    """The reference's code is broken (its benchmark raises): the current code's benchmark is not
    compared, saying so, and the run's summary names what failed in the reference's process,
    whose log lives only in a temporary folder."""
    _project(pytester.path, 0.002)
    ref = tmp_path_factory.mktemp("ref-broken")
    _project(ref, -1)  # time.sleep(-1) raises
    args = ["--egbench", "--egbench-device", "cpu", "--egbench-rounds", "2", "--egbench-warmup", "0", "--egbench-ref-pairs", "1", "-p", "no:cacheprovider"]
    result = pytester.runpytest_subprocess(*args, f"--egbench-ref={ref}", "--egbench-json=ab.json")
    result.assert_outcomes(passed=1)
    unwrapped(result).fnmatch_lines([f"*the folder {ref} process of A/B pair 1 exited with status 1: failed there: test_bench.py::test_toy (log *ref-0.log)*"])
    doc = __import__("json").loads((pytester.path / "ab.json").read_text())
    decode = next(b for b in doc["benchmarks"] if b["name"] == "test_toy::decode")["extra_info"]["verdict"]
    assert decode["status"] == "not compared" and "the benchmark failed in the reference's process" in decode["message"]


def test_an_ab_process_that_exits_with_a_failure_is_described(tmp_path):
    log = tmp_path / "ref-0.log"
    log.write_text("collected 3 items\n\nINTERNALERROR> boom\n")
    assert ab.exit_line("REV x", 0, 0, [], log) is None
    assert ab.exit_line("REV x", 1, 5, [], log) is None  # nothing collected: a confirming pair of skipped benchmarks
    assert (
        ab.exit_line("REV x", 0, 3, [], log)
        == f"the REV x process of A/B pair 1 exited with status 3: its log names no failed test; it ends: INTERNALERROR> boom (log {log})"
    )
    assert "exited with status 1: failed there: a, b, c and 1 more (log" in (ab.exit_line("REV x", 1, 1, ["a", "b", "c", "d"], log) or "")


def test_ab_processes_run_torch_on_one_cpu_thread_unless_told_otherwise(tmp_path, monkeypatch):
    """The process waiting for its turn must not busy-wait with OpenMP threads on the CPUs of the
    timed one (measured: 60x slower CPU stages in lockstep); torch itself reports the count."""
    pytest.importorskip("torch")
    code = "import torch, pytest_egbench; print(torch.get_num_threads(), pytest_egbench.__file__)"

    def child_threads() -> list[str]:
        cmd, cwd, env = ab.process_command(ROOT, Path("."), Path("."), [], tmp_path, tmp_path / "o.json")
        return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout.split()

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads, package = child_threads()
    assert threads == "1" and Path(package).parent == ROOT / "pytest_egbench"
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert child_threads()[0] == "2"


def test_rounds_an_ab_gives_its_processes():
    # at least 24 paired rounds pooled over the pairs, never fewer than the default 8 a process
    assert ab.rounds_args(8, "default", 1) == ["--egbench-rounds", "24"]
    assert ab.rounds_args(8, "default", 2) == ["--egbench-rounds", "12"]
    assert ab.rounds_args(8, "default", 5) == ["--egbench-rounds", "8"]
    assert ab.rounds_args(30, "default", 1) == ["--egbench-rounds", "30"]
    assert ab.rounds_args(5, "command line --egbench-rounds", 1) == []  # the user's choice stands
    assert ab.rounds_args(5, "ini egbench_rounds", 2) == []


def test_wilcoxon_behind_the_paired_rounds_minimum():
    """Why 24: with the largest paired difference on the wrong side, the exact one-sided test
    reaches p < 0.01 only from 16 pairs on (scipy's exact distribution is the oracle)."""
    scipy_stats = pytest.importorskip("scipy.stats")
    np = pytest.importorskip("numpy")

    def p(n: int, wrong: int) -> float:
        d = np.arange(1.0, n + 1)
        d[n - wrong :] *= -1
        return float(scipy_stats.wilcoxon(d, alternative="greater", method="exact").pvalue)

    assert p(8, 1) > 0.01 and p(16, 1) < 0.01 and p(ab.MIN_PAIRED_ROUNDS, 2) < 0.01 < p(16, 2)


def _ab_of_the_same_code(pytester, tmp_path_factory, pairs: int, ini: str | None = None):
    """An A/B of the toy project against a folder holding the same code (both with ``ini`` as
    their pyproject.toml, if given), no --egbench-rounds; its result and the current side's decode."""
    _project(pytester.path, 0.002)
    ref = tmp_path_factory.mktemp("same-code")
    _project(ref, 0.002)
    if ini is not None:
        pytester.makepyprojecttoml(ini)
        (ref / "pyproject.toml").write_text(ini)
    args = ["--egbench", "--egbench-device", "cpu", "--egbench-warmup", "0", "--egbench-tolerance", "50%", "-p", "no:cacheprovider"]
    result = pytester.runpytest_subprocess(*args, "--egbench-ref-pairs", str(pairs), f"--egbench-ref={ref}", "--egbench-json=ab.json")
    result.assert_outcomes(passed=1)
    doc = __import__("json").loads((pytester.path / "ab.json").read_text())
    return result, next(b for b in doc["benchmarks"] if b["name"] == "test_toy::decode")


def test_an_ab_without_rounds_given_pools_24_paired_rounds(pytester, tmp_path_factory, unwrapped):
    result, decode = _ab_of_the_same_code(pytester, tmp_path_factory, pairs=2)
    unwrapped(result).fnmatch_lines(["*egbench A/B: 1 benchmark(s), 2 pair(s) of processes*, 12 steady rounds each: folder *"])
    assert len(decode["stats"]["data"]) == 24  # the current side: 2 processes x 12 rounds
    # the tables' heading counts the rounds its statistics are over, not the --egbench-rounds default of 8
    unwrapped(result).fnmatch_lines(["*median ?IQR? over 24 steady rounds (cold round*"])


def test_ab_processes_read_the_projects_ini_file(pytester, tmp_path_factory, unwrapped):
    """The A/B's processes write into a folder outside the project; pytest must still find the
    project's ini file there, as in the run that started them: its egbench_rounds = 5 (and no
    --egbench-rounds on the command line) gives each process 5 rounds, not the A/B's 24."""
    result, decode = _ab_of_the_same_code(pytester, tmp_path_factory, pairs=1, ini='[tool.pytest.ini_options]\negbench_rounds = "5"\n')
    unwrapped(result).fnmatch_lines(["*egbench A/B: 1 benchmark(s), 1 pair(s) of processes*, 5 steady rounds each: folder *"])
    assert len(decode["stats"]["data"]) == 5


# ------------------------------------------------------------------ many metrics, one run: Holm
def test_holm_adjusted_p_values_by_hand():
    """Holm (1979): sorted 0.005, 0.01, 0.03, 0.04 -> 4 x 0.005, 3 x 0.01, 2 x 0.03, max(that, 1 x 0.04),
    returned in the order given."""
    from pytest_egbench.verdict import holm_adjusted

    assert holm_adjusted([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjusted([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # 2 x 0.8 capped at 1, which the running maximum carries to 0.9
    assert holm_adjusted([]) == []
    with pytest.raises(ValueError, match="p-values must lie in"):
        holm_adjusted([0.5, 1.5])


def test_holm_keeps_the_chance_of_any_false_alarm_at_alpha():
    """The family-wise error rate, by simulation: 2000 runs of 50 metrics of unchanged code (p
    uniform on [0, 1]). Unadjusted, almost every run has some p < 0.05; adjusted, at most about
    5 % of runs (binomial bound: 3 standard errors)."""
    import numpy as np

    from pytest_egbench.verdict import holm_adjusted

    rng = np.random.default_rng(11)
    runs = rng.uniform(size=(2000, 50))
    raw = np.mean([min(row) < 0.05 for row in runs])
    adjusted = np.mean([min(holm_adjusted(list(row))) < 0.05 for row in runs])
    assert raw > 0.9
    assert adjusted < 0.05 + 3 * (0.05 * 0.95 / 2000) ** 0.5


def _side(name: str, metrics: dict[str, tuple[str, list[float]]]) -> ab.Side:
    benches = [
        {"fullname": n, "name": n, "extra_info": {"kind": kind, "unit": "s" if kind == "latency" else "tokens/s"}, "stats": {"data": data}}
        for n, (kind, data) in metrics.items()
    ]
    return ab.Side(name, Path("."), name, results=[{"benchmarks": benches}])


def test_the_family_is_every_speed_metric_of_the_run_and_its_adjusted_p_decides():
    """One pair of processes; in every paired round the current side is worse, so the exact
    one-sided Wilcoxon p is 2**-n for n rounds. Four speed metrics (n = 10, 8, 7, 6) make the
    family; a token count and a metric the reference lacks do not. Holm by hand: sorted p
    2**-10, 2**-8, 2**-7, 2**-6 times 4, 3, 2, 1, with a running maximum."""
    from types import SimpleNamespace

    from pytest_egbench.verdict import judge_ab

    def worse(n: int, up: bool = True) -> tuple[list[float], list[float]]:
        ref = [1.0 + 0.01 * i for i in range(n)]
        return ref, [r * (1.10 + 0.001 * i) if up else r / (1.10 + 0.001 * i) for i, r in enumerate(ref)]

    data = {"a": worse(8), "b": worse(10), "f": worse(7), "c": worse(6, up=False)}
    ref = {n: ("throughput" if n == "c" else "latency", r) for n, (r, _) in data.items()}
    cur = {n: ("throughput" if n == "c" else "latency", c) for n, (_, c) in data.items()}
    ref["tokens"] = cur["tokens"] = ("exact", [16.0] * 4)
    cur["new"] = ("latency", [1.0] * 4)
    sides = {"ref": _side("ref", ref), "current": _side("current", cur)}
    egb = SimpleNamespace(ab_family=None, ab_runs={n: ab.runs_by_metric(s) for n, s in sides.items()}, settings=SimpleNamespace(pvalue=ALPHA))
    family = ab.speed_family(egb, sides)
    expected = {"b": 4 * 2**-10, "a": 3 * 2**-8, "f": 2 * 2**-7, "c": 2 * 2**-7}  # c: max(2 * 2**-7, 1 * 2**-6)
    assert {n: p for n, (p, _) in family.items()} == pytest.approx(expected)
    assert {m for _, m in family.values()} == {4}
    assert ab.speed_family(egb, sides) is family  # once per run

    # metric a alone: p = 2**-8 < 0.01, a regression; in its family the adjusted p is 0.0117
    r, c = data["a"]
    alone = judge_ab("a", "latency", "s", [r], [c], reference=ab_reference("REV x"), tolerance=0.03, tolerance_abs=0.02, alpha=ALPHA)
    assert alone.status == REGRESSION and alone.p == pytest.approx(2**-8)
    in_family = judge_ab("a", "latency", "s", [r], [c], reference=ab_reference("REV x"), tolerance=0.03, tolerance_abs=0.02, alpha=ALPHA, family=family["a"])
    assert in_family.status == NOISE_ONLY and "over 4 comparisons" in in_family.message  # the adjusted p itself is checked above
    r, c = data["b"]
    kept = judge_ab("b", "latency", "s", [r], [c], reference=ab_reference("REV x"), tolerance=0.03, tolerance_abs=0.02, alpha=ALPHA, family=family["b"])
    assert kept.status == REGRESSION


def test_each_pair_is_read_by_its_own_paired_ratios():
    """A pair's direction is the median of its per-round ratios, the statistic of the pooled
    change (docs/machines.md): here every round of the odd pair is 10-20 % slower, or its
    reference round sat in a slow stretch; the ratio of that pair's two medians would read -60 %."""
    ref = _runs(0.010, pairs=3, rounds=9, seed=21)
    cur = [[r * 1.10 for r in run] for run in ref]
    ref.append([0.010] * 4 + [0.030] * 5)
    cur.append([0.012] * 5 + [0.033] * 4)  # ratios 1.2 x 4, 0.4, 1.1 x 4: median 1.1
    v = _judge(ref, cur)
    assert v.status == REGRESSION
    assert v.message.count("+10.0%") >= 4  # the four pairs, the odd one included


def test_fallback_ref_judges_the_whole_run_when_the_runs_like_this_machine_hold_too_few_benchmarks(pytester, monkeypatch, unwrapped):
    """The baseline holds two runs: one of another machine (its probes 20 times faster) with all
    ten benchmarks, and one like this machine (its calibration is fixed here, so that the CI
    machine's noise cannot choose the path) with only ``test_toy[0]``. Nine benchmarks would be
    inconclusive, more than the 8 that are judged one by one by an A/B, so the whole run is judged
    by one A/B against the baseline's commit, as where no run matches; every latency gets a
    verdict (``--egbench-require-baseline`` exits 0)."""
    import json
    import uuid

    _project(pytester.path, 0.002)
    bench = AB_BENCH.replace("def test_toy(stage_timer):", "@pytest.mark.parametrize('case', range(10))\ndef test_toy(stage_timer, case):")
    (pytester.path / "test_bench.py").write_text(bench)
    head = _commit(pytester.path, "test_bench.py", "mycode.py")
    _fixed_calibration(monkeypatch)
    common = ["--egbench", "--egbench-device", "cpu", "--egbench-rounds", "8", "--egbench-warmup", "1", "-p", "no:cacheprovider"]
    pytester.runpytest(*common, "--egbench-save").assert_outcomes(passed=10)
    (path,) = (pytester.path / "baselines").glob("*.json")
    doc = json.loads(path.read_text())
    like = json.loads(json.dumps(doc["runs"][0]))
    like["id"] = uuid.uuid4().hex
    for probe in doc["runs"][0]["calibration"]["probes"].values():
        probe["median"] *= 20
        probe["samples"] = [v * 20 for v in probe["samples"]]
    doc["runs"].append(like)
    for name, entry in doc["entries"].items():
        if name.startswith("test_bench.py::test_toy[0]::"):
            entry["runs"].append(list(entry["runs"][0]))
            entry["run_ids"].append(like["id"])
    path.write_text(json.dumps(doc))
    result = pytester.runpytest(*common, "--egbench-fallback-ref", "--egbench-ref-pairs", "1", "--egbench-tolerance", "25%", "--egbench-require-baseline")
    result.assert_outcomes(passed=10)
    assert result.ret == 0
    unwrapped(result).fnmatch_lines(
        [
            f"*egbench A/B: 10 benchmark(s), 1 pair(s) of processes*REV {head[:12]}*",
            "*--egbench-fallback-ref: the baseline's runs like this machine (1 of 2 calibrated) hold none of the latency entries of 9 of the 10 selected "
            f"benchmarks (test_bench.py::test_toy?1?, *), more than the 8 a run judges one by one by an A/B; judging by a same-machine A/B against the baseline's commit {head[:12]} instead*",
        ]
    )
    # with -k selecting four benchmarks only, three lack a run like this machine: judged one by one
    few = pytester.runpytest(*common, "--egbench-fallback-ref", "--egbench-ref-pairs", "1", "--egbench-tolerance", "25%", "-k", "toy and (0 or 1 or 2 or 3)")
    few.assert_outcomes(passed=4)
    assert "hold none of the latency entries" not in few.stdout.str()
