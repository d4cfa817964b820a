"""egbench beside pytest-benchmark, through pytester: which tests run, skip or are deselected for
each combination of ``--egbench`` and pytest-benchmark's ``--benchmark-only``,
``--benchmark-skip`` and ``--benchmark-disable``, and which file each ``--*-json`` writes.

The oracle is pytest-benchmark's documented meaning of its options (its ``--help``: "--benchmark-only:
Only run benchmarks. This overrides --benchmark-skip."; "--benchmark-skip: Skip running any tests
that contain benchmarks."; "--benchmark-disable: Benchmarked functions are only ran once and no
stats are reported.") extended to egbench's benchmarks as docs/pytest-benchmark.md states.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("pytest_benchmark")

#: one project holding all three kinds of test; the egbench body counts its calls and rounds
MIXED = """
import pytest

def test_plain():
    pass

def test_micro(benchmark):
    assert benchmark.pedantic(sum, args=(range(10),), rounds=2, iterations=1) == 45

@pytest.mark.egbench(group="toy")
def test_egb(stage_timer, egbench_record, pytestconfig):
    egbench_record("widgets", 3, unit="count", kind="info")
    log = pytestconfig.rootpath / "calls.log"
    with open(log, "a") as fh:
        fh.write("call\\n")
        for rnd in stage_timer.rounds():
            fh.write("round\\n")
            with rnd.stage("prefill", tokens=3):
                sum(range(1000))
"""

#: quick egbench settings for every run that enables it
FAST = ("--egbench-device", "cpu", "--egbench-rounds", "2", "--egbench-warmup", "0")


def _outcomes(pytester: pytest.Pytester, *args: str) -> dict[str, str]:
    """Test name -> "passed", "failed", "deselected" or "skipped: REASON" of an in-process run."""
    reprec = pytester.inline_run("-p", "no:cacheprovider", *args)
    out: dict[str, str] = {}
    for rep in reprec.getreports("pytest_runtest_logreport"):
        name = rep.nodeid.rpartition("::")[2]
        if rep.skipped:
            out[name] = f"skipped: {str(rep.longrepr[2]).removeprefix('Skipped: ')}"  # type: ignore[index]
        elif rep.failed:
            out[name] = "failed"
        elif rep.when == "call":
            out[name] = "passed"
    for call in reprec.getcalls("pytest_deselected"):
        for item in call.items:
            out[item.name] = "deselected"
    return out


def _calls(pytester: pytest.Pytester) -> tuple[int, int]:
    """(calls, rounds) the egbench body logged, then the log is removed."""
    log = pytester.path / "calls.log"
    lines = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines.count("call"), lines.count("round")


EGBENCH_SKIP = "skipped: egbench benchmark: run with --egbench"


def test_without_egbench_pytest_benchmark_options_act_as_documented(pytester):
    pytester.makepyfile(test_mixed=MIXED)
    assert _outcomes(pytester) == {"test_plain": "passed", "test_micro": "passed", "test_egb": EGBENCH_SKIP}
    only = _outcomes(pytester, "--benchmark-only")
    assert only["test_micro"] == "passed" and only["test_egb"] == EGBENCH_SKIP
    assert only["test_plain"].startswith("skipped:") and "--benchmark-only" in only["test_plain"]
    skip = _outcomes(pytester, "--benchmark-skip")
    assert skip["test_plain"] == "passed" and skip["test_egb"] == EGBENCH_SKIP
    assert skip["test_micro"].startswith("skipped:") and "--benchmark-skip" in skip["test_micro"]
    assert _outcomes(pytester, "--benchmark-disable") == {"test_plain": "passed", "test_micro": "passed", "test_egb": EGBENCH_SKIP}
    assert _calls(pytester) == (0, 0)


def test_egbench_keeps_its_benchmarks_and_drops_pytest_benchmarks_unless_asked(pytester):
    pytester.makepyfile(test_mixed=MIXED)
    assert _outcomes(pytester, "--egbench", *FAST) == {"test_plain": "deselected", "test_micro": "deselected", "test_egb": "passed"}
    # --benchmark-only: every benchmark of either kind runs, the plain test does not
    assert _outcomes(pytester, "--egbench", "--benchmark-only", *FAST) == {"test_plain": "deselected", "test_micro": "passed", "test_egb": "passed"}
    # --benchmark-skip (often in addopts): --egbench asks for egbench's, as --benchmark-only overrides it
    assert _outcomes(pytester, "--egbench", "--benchmark-skip", *FAST) == {"test_plain": "deselected", "test_micro": "deselected", "test_egb": "passed"}
    assert _calls(pytester) == (3, 3 * 3)  # three timed runs: 1 cold + 2 steady rounds each


def test_a_pytest_benchmark_test_named_on_the_command_line_runs_with_egbench(pytester):
    pytester.makepyfile(test_mixed=MIXED)
    named = _outcomes(pytester, "--egbench", *FAST, "test_mixed.py::test_micro", "test_mixed.py::test_egb", "test_mixed.py::test_plain")
    assert named == {"test_micro": "passed", "test_egb": "passed", "test_plain": "deselected"}
    # the whole file does not name its tests
    assert _outcomes(pytester, "--egbench", *FAST, "test_mixed.py")["test_micro"] == "deselected"
    # named, and --benchmark-skip: skipped by pytest-benchmark, as without --egbench
    skip = _outcomes(pytester, "--egbench", "--benchmark-skip", *FAST, "test_mixed.py::test_micro")
    assert skip["test_micro"].startswith("skipped:") and "--benchmark-skip" in skip["test_micro"]


def test_a_named_test_in_a_class_or_with_parameters(pytester):
    pytester.makepyfile(
        test_cls="""
import pytest

class TestMicro:
    @pytest.mark.parametrize("n", [1, 2])
    def test_sum(self, benchmark, n):
        benchmark.pedantic(sum, args=(range(n),), rounds=1, iterations=1)
"""
    )
    assert _outcomes(pytester, "--egbench", *FAST, "test_cls.py::TestMicro") == {"test_sum[1]": "passed", "test_sum[2]": "passed"}
    assert _outcomes(pytester, "--egbench", *FAST, "test_cls.py::TestMicro::test_sum[2]") == {"test_sum[2]": "passed"}
    both = _outcomes(pytester, "--egbench", *FAST, "test_cls.py::TestMicro::test_sum")
    assert both == {"test_sum[1]": "passed", "test_sum[2]": "passed"}


def test_benchmark_disable_runs_the_egbench_body_once_untimed(pytester, unwrapped):
    pytester.makepyfile(test_mixed=MIXED)
    result = pytester.runpytest("-p", "no:cacheprovider", "--egbench", "--benchmark-disable", *FAST, "test_mixed.py::test_egb")
    result.assert_outcomes(passed=1)
    assert _calls(pytester) == (1, 2)  # one call; its loop: the cold round and one steady round
    unwrapped(result).fnmatch_lines(
        ["no benchmark recorded a measurement", "egbench: --benchmark-disable: each benchmark ran its body once*--benchmark-enable overrides*"]
    )
    assert "[toy]" not in result.stdout.str()
    # --benchmark-enable overrides it (pytest-benchmark's own rule): timed and tabled again
    result = pytester.runpytest("-p", "no:cacheprovider", "--egbench", "--benchmark-disable", "--benchmark-enable", *FAST, "test_mixed.py::test_egb")
    result.assert_outcomes(passed=1)
    assert _calls(pytester) == (1, 3)
    result.stdout.fnmatch_lines(["[[]toy[]]", "configuration *prefill *"])
    assert "--benchmark-disable" not in result.stdout.str()


@pytest.mark.parametrize(
    "option",
    [("--egbench-save",), ("--egbench-json", "out.json"), ("--egbench-report", "r.md"), ("--egbench-inject", "prefill=20%"), ("--egbench-ref", "HEAD")],
)
def test_an_untimed_run_refuses_what_needs_measurements(pytester, option):
    pytester.makepyfile(test_mixed=MIXED)
    result = pytester.runpytest("--egbench", "--benchmark-disable", *FAST, *option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"{option[0]} with --benchmark-disable: an untimed run measures nothing" in result.stderr.str()


def test_each_json_holds_its_own_benchmarks(pytester):
    pytester.makepyfile(test_mixed=MIXED)
    ours, theirs = pytester.path / "egbench.json", pytester.path / "pb.json"
    result = pytester.runpytest("-p", "no:cacheprovider", "--egbench", "--benchmark-only", *FAST, f"--egbench-json={ours}", f"--benchmark-json={theirs}")
    result.assert_outcomes(passed=2, deselected=1)
    egb = {b["name"] for b in json.loads(ours.read_text())["benchmarks"]}
    pb = {b["name"] for b in json.loads(theirs.read_text())["benchmarks"]}
    assert pb == {"test_micro"}
    assert "test_egb::prefill" in egb and not any(name.startswith("test_micro") for name in egb)
    same = pytester.runpytest("--egbench", *FAST, f"--egbench-json={ours}", f"--benchmark-json={ours}")
    assert same.ret == pytest.ExitCode.USAGE_ERROR
    assert f"--egbench-json and --benchmark-json both name {ours}" in same.stderr.str()


def test_an_ab_run_refuses_pytest_benchmark_tests(pytester):
    pytester.makepyfile(test_mixed=MIXED)
    result = pytester.runpytest("--egbench", "--benchmark-only", *FAST, "--egbench-ref", "HEAD")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--egbench-ref judges egbench benchmarks only" in result.stderr.str() and "test_mixed.py::test_micro" in result.stderr.str()


def test_egbench_runs_without_pytest_benchmark_loaded(pytester):
    pytester.makepyfile(
        test_mixed=MIXED.replace("def test_micro(benchmark):\n    assert benchmark.pedantic(sum, args=(range(10),), rounds=2, iterations=1) == 45\n", "")
    )
    assert _outcomes(pytester, "-p", "no:benchmark", "--egbench", *FAST) == {"test_plain": "deselected", "test_egb": "passed"}


def test_pytest_benchmark_options_without_egbench_import_no_torch(pytester):
    pytester.makepyfile(
        test_probe="""
import sys
import pytest

@pytest.mark.egbench
def test_bench(stage_timer):
    pass

def test_no_torch(benchmark):
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    heavy = [m for m in ("torch", "transformers", "bitsandbytes", "av", "numpy") if m in sys.modules]
    assert heavy == [], f"imported without --egbench: {heavy}"
"""
    )
    for option in ("--benchmark-only", "--benchmark-disable"):
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", option)
        result.assert_outcomes(passed=1, skipped=1)
