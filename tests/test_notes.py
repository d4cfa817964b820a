"""Notes as pytest warnings (pytest_egbench.notes), a typo in a recorded kind, and benchmarks whose
stages are alternatives: end to end with pytester on the CPU."""

from __future__ import annotations

import json

import pytest

# pytest's own notice that the already imported plugin cannot be assert-rewritten (seen with a
# fresh editable install) is not one of ours: these tests count egbench's warnings
RUN = (
    "--egbench",
    "--egbench-device",
    "cpu",
    "--egbench-rounds",
    "2",
    "--egbench-warmup",
    "0",
    "-p",
    "no:cacheprovider",
    "-W",
    "ignore::pytest.PytestAssertRewriteWarning",
)
#: Four benchmarks, each recording two latency metrics its marker does not declare.
UNDECLARED = """
import pytest
pytestmark = pytest.mark.egbench(group="g")

@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_rec(n, egbench_record):
    egbench_record("a_s", [0.1, 0.1], unit="s", kind="latency")
    egbench_record("b_s", [0.2, 0.2], unit="s", kind="latency")
"""
WARNING = "pytest_egbench.notes.EgbenchWarning"
LINE = "egbench: not declared in its egbench marker *[[]NotDeclaredWarning[]]: "


def test_notes_fold_into_one_line_per_kind_with_an_exact_count(pytester, unwrapped):
    pytester.makepyfile(test_rec=UNDECLARED)
    result = pytester.runpytest(*RUN)
    result.assert_outcomes(passed=4, warnings=4)
    # 4 benchmarks x 2 metrics; the first three named, then how many more
    unwrapped(result).fnmatch_lines(
        [LINE + "8 metric(s) in 4 benchmark(s): test_rec[[]1[]] (a_s, b_s); test_rec[[]2[]] (a_s, b_s); test_rec[[]3[]] (a_s, b_s); and 1 more benchmark(s)"]
    )
    out = result.stdout.str()
    assert out.count("[NotDeclaredWarning]") == 1
    # pytest's own warnings summary folds them too: the same text, given once for the four tests
    assert out.count("NotDeclaredWarning: egbench: not declared") == 1


def test_an_egbench_warning_made_an_error_fails_the_run(pytester):
    pytester.makepyfile(test_rec=UNDECLARED)
    result = pytester.runpytest(*RUN, "-W", f"error::{WARNING}")
    result.assert_outcomes(failed=4)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*NotDeclaredWarning: egbench: not declared*"])


def test_an_ignored_kind_of_note_is_left_out_of_the_summary(pytester):
    pytester.makepyfile(test_rec=UNDECLARED)
    result = pytester.runpytest(*RUN, "-W", "ignore::pytest_egbench.notes.NotDeclaredWarning")
    result.assert_outcomes(passed=4)
    assert "NotDeclaredWarning" not in result.stdout.str()


def test_a_typo_in_a_recorded_kind_fails_the_benchmark_and_saves_nothing(pytester, tmp_path):
    pytester.makepyfile(
        test_typo="""
        import pytest
        pytestmark = pytest.mark.egbench(group="g", metrics=["x"])

        def test_typo(egbench_record):
            egbench_record("x", 0.5, unit="s", kind="latncy")
    """
    )
    result = pytester.runpytest(*RUN, "--egbench-save", f"--egbench-baseline-dir={tmp_path}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ValueError: egbench_record('x'): unknown kind 'latncy' (allowed: latency, throughput, exact, rate, memory, info)*"])
    assert list(tmp_path.iterdir()) == []


ALTERNATIVES = """
import pytest
pytestmark = pytest.mark.egbench(group="alt", stages=["draft", "target"], MARK)

def test_alt(stage_timer):
    for rnd in stage_timer.rounds():
        with rnd.stage("draft"):
            pass
        with rnd.stage("target"):
            pass
"""


@pytest.mark.parametrize("alternatives", [True, False])
def test_alternative_stages_get_no_total_and_no_share(pytester, alternatives):
    pytester.makepyfile(test_alt=ALTERNATIVES.replace("MARK", f"alternatives={alternatives}"))
    result = pytester.runpytest(*RUN, "--egbench-json=out.json", "--egbench-report=report.md")
    result.assert_outcomes(passed=1)
    metrics = {b["extra_info"]["metric"] for b in json.loads((pytester.path / "out.json").read_text())["benchmarks"]}
    header = next(line for line in result.stdout.str().split("[alt]")[1].splitlines() if line.startswith("configuration")).split()
    # the share column lives in the report's detail tables: a "share" column header there
    report_headers = {cell.strip() for line in (pytester.path / "report.md").read_text().splitlines() if line.startswith("|") for cell in line.split("|")}
    if alternatives:
        assert metrics == {"draft", "target"}
        assert "total" not in header and "share" not in report_headers
    else:
        assert metrics == {"draft", "target", "total"}
        assert "total" in header and "share" in report_headers


def test_alternatives_must_be_a_boolean(pytester):
    pytester.makepyfile(test_alt=ALTERNATIVES.replace("MARK", "alternatives='yes'"))
    result = pytester.runpytest(*RUN)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "alternatives= must be True or False, got 'yes'" in result.stderr.str()
