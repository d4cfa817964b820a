"""The plugin end to end, through pytester: markers, skipping, selection, JSON, summary."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

BENCH = """
import time
import pytest

pytestmark = pytest.mark.egbench(group="toy")

@pytest.mark.parametrize("model", ["fast", "slow"])
def test_toy(stage_timer, model):
    stage_timer.extra_info["model"] = model
    for rnd in stage_timer.rounds():
        with rnd.stage("load"):
            time.sleep(0.0005)
        with rnd.stage("prefill", tokens=10):
            time.sleep(0.001 if model == "fast" else 0.002)
        with rnd.stage("decode", tokens=4):
            time.sleep(0.002)
"""

PLAIN = """
def test_plain():
    pass
"""


def test_benchmarks_skip_with_reason_without_flag(pytester):
    pytester.makepyfile(test_bench=BENCH, test_plain=PLAIN)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*SKIPPED*egbench benchmark: run with --egbench*"])
    assert "= egbench =" not in result.stdout.str()


def test_flag_runs_benchmarks_only_and_prints_the_stage_table(pytester):
    pytester.makepyfile(test_bench=BENCH, test_plain=PLAIN)
    result = pytester.runpytest("--egbench", "--egbench-rounds", "3", "--egbench-warmup", "1", "--egbench-device", "cpu")
    result.assert_outcomes(passed=2, deselected=1)  # measured; nothing to compare with, which the summary lists
    # configurations as rows, stages then derived metrics as columns (split where too wide), each
    # number "median [IQR]" with its verdict mark ("-": not compared)
    result.stdout.fnmatch_lines(
        [
            "egbench: device cpu, preset tiny, weights fp32, rounds 3 after 1 cold + 1 warm-up*",
            "*= egbench =*",
            "device cpu, preset tiny, weights fp32; median [[]IQR[]] over 3 steady rounds*",
            "marks: - not compared",
            "[[]toy[]]",
            "configuration *load *prefill *decode*",
            "fast *[[]*[]] - *[[]*[]] - *[[]*[]] -*",
            "slow *[[]*[]] - *[[]*[]] - *[[]*[]] -*",
        ]
    )
    titles = " ".join(line for line in result.stdout.lines if line.startswith("configuration "))
    for title in ("total", "TTFT", "TPOT", "prefill tok/s", "decode tok/s", "cold total"):
        assert title in titles


def test_json_is_pytest_benchmark_format_and_compare_reads_it(pytester, unwrapped):
    pytester.makepyfile(test_bench=BENCH)
    out = pytester.path / "results" / "run.json"
    result = pytester.runpytest("--egbench", "--egbench-rounds", "3", "--egbench-warmup", "0", "--egbench-device", "cpu", f"--egbench-json={out}")
    result.assert_outcomes(passed=2)
    unwrapped(result).fnmatch_lines([f"egbench: wrote {out}"])
    doc = json.loads(out.read_text())
    names = sorted(b["name"] for b in doc["benchmarks"])
    assert "test_toy[fast]::prefill" in names and "test_toy[slow]::tpot" in names
    bench = next(b for b in doc["benchmarks"] if b["name"] == "test_toy[slow]::prefill")
    assert bench["group"] == "toy" and bench["params"] == {"model": "slow"}
    assert len(bench["stats"]["data"]) == 3 and bench["stats"]["rounds"] == 3
    assert bench["stats"]["min"] >= 0.002  # slept 2 ms: time.sleep never returns early
    assert bench["extra_info"]["stage"] == "prefill" and bench["extra_info"]["unit"] == "s"
    gpu = doc["machine_info"]["egbench"]
    assert {"gpu_name", "gpu_memory_bytes", "driver", "cuda", "libraries"} <= set(gpu)
    assert {"torch", "transformers", "bitsandbytes"} <= set(gpu["libraries"])
    assert doc["commit_info"]["project"] == "pytest-egbench"
    tokens = {m["name"]: m["stats"]["median"] for m in doc["egbench"]["metrics"]}
    assert tokens["test_toy[fast]::tokens.prefill"] == 10 and tokens["test_toy[fast]::tokens.decode"] == 4
    cli = shutil.which("pytest-benchmark")
    assert cli, "pytest-benchmark's command-line tool is part of the test environment"
    compare = subprocess.run([cli, "compare", str(out)], capture_output=True, text=True, timeout=120)
    assert compare.returncode == 0, compare.stderr
    assert "test_toy[slow]::prefill" in compare.stdout


def test_write_error_exit_status(pytester):
    pytester.makepyfile(
        test_bench="""
import pytest
pytestmark = pytest.mark.egbench

def test_one(stage_timer, pytestconfig):
    (pytestconfig.rootpath / "blocked").write_text("not a folder")
    for rnd in stage_timer.rounds():
        with rnd.stage("prefill"):
            pass
"""
    )
    result = pytester.runpytest("--egbench", "--egbench-rounds", "1", "--egbench-device", "cpu", "--egbench-json=blocked/run.json")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stdout.fnmatch_lines(["egbench: ERROR --egbench-json blocked/run.json: could not write the results: blocked is a file, not a folder", "*1 passed*"])
    assert (pytester.path / "blocked").read_text() == "not a folder"


def test_failing_benchmark_records_nothing(pytester):
    pytester.makepyfile(
        test_bench="""
import pytest
pytestmark = pytest.mark.egbench

def test_fails(stage_timer):
    for rnd in stage_timer.rounds():
        with rnd.stage("prefill"):
            pass
    assert False, "a broken benchmark"
"""
    )
    result = pytester.runpytest("--egbench", "--egbench-rounds", "1", "--egbench-device", "cpu")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["no benchmark recorded a measurement"])


def test_gpu_marker_skips_with_reason(pytester, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    pytester.makepyfile(test_g="import pytest\n@pytest.mark.gpu\ndef test_g(): pass\n")
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*needs a CUDA GPU: torch.cuda.is_available() is False*"])
    result = pytester.runpytest("-rs", "--egbench-device", "cpu")
    result.stdout.fnmatch_lines(["*needs a CUDA GPU: --egbench-device cpu was given*"])


def test_cuda_device_without_cuda_is_a_usage_error(pytester, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    pytester.makepyfile(test_a="def test_a(): pass")
    result = pytester.runpytest("--egbench", "--egbench-device", "cuda:1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--egbench-device cuda:1 (command line --egbench-device): no CUDA device is available" in result.stderr.str()


def test_fixtures_skip_without_flag(pytester):
    pytester.makepyfile(test_f="def test_f(stage_timer): pass\n")
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*egbench fixtures need --egbench*"])


def test_markers_are_registered_with_help(pytester):
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(
        ["@pytest.mark.egbench(group=None, stages=(), metrics=(), tolerances=None, alternatives=False): a benchmark*", "@pytest.mark.gpu: needs a CUDA device*"]
    )


def test_options_are_in_one_group(pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["multimodal LLM stage benchmarks (pytest-egbench):", "*--egbench *", "*--egbench-device=DEVICE*"])


def test_plain_pytest_does_not_import_torch(pytester):
    pytester.makepyfile(
        test_probe="""
import sys
import pytest

@pytest.mark.egbench
def test_bench(stage_timer):
    pass

def test_no_torch():
    heavy = [m for m in ("torch", "transformers", "bitsandbytes", "av", "numpy") if m in sys.modules]
    assert heavy == [], f"imported without --egbench: {heavy}"
"""
    )
    result = pytester.runpytest_subprocess("-p", "pytest_egbench.plugin" if "pytest_egbench.plugin" not in _entry_points() else "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1)


def _entry_points() -> set[str]:
    from importlib.metadata import entry_points

    return {ep.value for ep in entry_points(group="pytest11")}


def test_entry_point_is_registered():
    assert "pytest_egbench.plugin" in _entry_points()


def test_module_import_is_light():
    code = "import sys, pytest_egbench.plugin, pytest_egbench.fixtures; print(sorted(m for m in ('torch', 'numpy', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_report_file_is_written(pytester):
    pytester.makepyfile(test_bench=BENCH)
    out = pytester.path / "report.md"
    result = pytester.runpytest("--egbench", "--egbench-rounds", "2", "--egbench-device", "cpu", f"--egbench-report={out}")
    result.assert_outcomes(passed=2)
    text = out.read_text()
    assert text.startswith("# egbench report") and "## toy" in text and "| prefill |" in text
    assert "![stages](report-stages.png)" in text
    assert (pytester.path / "report-stages.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


MANY_STAGES = """
import pytest

pytestmark = pytest.mark.egbench(group="spec")

def test_many(stage_timer):
    for rnd in stage_timer.rounds():
        for g in range(1, 13):
            with rnd.stage(f"speculative_g{g}"):
                pass
"""


def test_more_stages_than_colours_end_in_a_report_not_an_internal_error(pytester):
    """The whole suite once ended in INTERNALERROR ``KeyError: 'speculative_g1'`` (twelve stage
    names zipped onto tab10's ten colours) and lost the report; now every file is written."""
    pytester.makepyfile(test_many=MANY_STAGES)
    out = pytester.path / "report.md"
    result = pytester.runpytest(
        "--egbench", "--egbench-rounds", "2", "--egbench-device", "cpu", f"--egbench-report={out}", f"--egbench-json={pytester.path / 'run.json'}"
    )
    assert result.ret == pytest.ExitCode.OK
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert "speculative_g12" in out.read_text() and (pytester.path / "report-stages.png").stat().st_size > 0
    assert (pytester.path / "run.json").stat().st_size > 0


# --------------------------------------------------------------------------- baselines and verdicts

GATED = """
import time
import pytest

pytestmark = pytest.mark.egbench(group="gate")

def _work(seconds):
    # spin, not sleep: on a busy CPU a sleeping process wakes late, and later after a round that
    # burnt CPU (an injected busy wait) than after one that slept, which made the control rounds
    # read up to twice their time; a deadline spin takes its time whatever ran before it
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

def test_gate(stage_timer):
    stage_timer.extra_info["model"] = "toy"
    for rnd in stage_timer.rounds():
        with rnd.stage("prefill", tokens=TOKENS):
            _work(0.002)
        with rnd.stage("decode", tokens=4):
            _work(0.004)
"""
RUN = ("--egbench", "--egbench-device", "cpu", "--egbench-rounds", "6", "--egbench-warmup", "1")
#: rounds for a paired judgement against the control rounds (see the test without a baseline)
PAIRS = ("--egbench-rounds", "24")


def _gated(pytester, tokens=10):
    pytester.makepyfile(test_gate=GATED.replace("TOKENS", str(tokens)))


def _assert_significant(output: str, start: str, alpha: float = 0.01) -> None:
    """The verdict line beginning with ``start`` is a slowdown (positive change, "slower") with
    a p-value below ``alpha``. Not one p-value's text: with real timings on a loaded machine a
    pair or two can come out of order (p = 2**-12 for 12 pairs all in order, 2 * 2**-12 with one
    out of order, ...) while the slowdown is still caught."""
    line = next(line for line in output.splitlines() if line.lstrip(" E>").startswith(start))
    match = re.search(r"change \+(?P<change>[0-9.]+)%.* p=(?P<p>[0-9.e+-]+) \(tolerance [0-9.]+%, alpha (?P<alpha>[0-9.]+)\): slower", line)
    assert match, line
    assert float(match["change"]) > 0 and float(match["p"]) < alpha and float(match["alpha"]) == alpha, line


def test_no_baseline_passes_and_lists_what_was_not_compared(pytester, unwrapped):
    """No silent passes: a benchmark with nothing to compare with passes, and the summary says
    which metrics were not compared and why; --egbench-require-baseline turns that into exit 6."""
    _gated(pytester)
    result = pytester.runpytest(*RUN)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    unwrapped(result).fnmatch_lines(
        [
            "verdicts: 9 not compared",
            "not compared: no baseline for this machine's fingerprint cpu-*__tiny-fp32__torch* in *baselines: 9 metric(s) in 1 benchmark(s): test_gate (prefill, tokens.prefill, decode, *)",
        ]
    )
    result = pytester.runpytest(*RUN, "--egbench-require-baseline")
    result.assert_outcomes(passed=1)
    assert result.ret == 6
    result.stdout.fnmatch_lines(["*ERROR --egbench-require-baseline: 7 latency/throughput metric(s) got no verdict (listed above); exit status 6"])


def test_a_machine_that_differs_from_the_baselines_is_inconclusive_not_a_failure(pytester, unwrapped):
    """Judge the machine before the code: the saved run's kernel launch is made 20 times faster
    than this machine's, so latency is inconclusive (named in the summary and the JSON), token
    counts are still compared, and --egbench-require-baseline exits 6. (Beside CPU burners the
    launch probe's own repeats can spread by hundreds of percent: then the message says it is too
    noisy to compare rather than giving the difference; inconclusive either way.)"""
    _gated(pytester)
    pytester.runpytest(*RUN, "--egbench-save").assert_outcomes(passed=1)
    (path,) = (pytester.path / "baselines").glob("*.json")
    doc = json.loads(path.read_text())
    launch = doc["runs"][0]["calibration"]["probes"]["launch"]
    launch["median"] /= 20
    launch["samples"] = [v / 20 for v in launch["samples"]]
    path.write_text(json.dumps(doc))
    out = pytester.path / "run.json"
    result = pytester.runpytest(*RUN, f"--egbench-json={out}")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    unwrapped(result).fnmatch_lines(
        [
            "verdicts: *7 inconclusive*",
            "inconclusive: inconclusive against baseline cpu-*: machine differs: *kernel launch *. Compare on this machine instead: --egbench-ref *: 7 metric(s) in 1 benchmark(s): test_gate (prefill, decode, *)",
        ]
    )
    results = json.loads(out.read_text())
    verdicts = {b["name"]: b["extra_info"]["verdict"]["status"] for b in results["benchmarks"] + results["egbench"]["metrics"]}
    assert verdicts["test_gate::decode"] == "inconclusive" and verdicts["test_gate::tokens.decode"] == "pass"
    assert pytester.runpytest(*RUN, "--egbench-require-baseline").ret == 6


def test_save_then_compare_passes(pytester):
    _gated(pytester)
    result = pytester.runpytest(*RUN, "--egbench-save", "--egbench-json", "results.json")
    result.assert_outcomes(passed=1)
    files = list((pytester.path / "baselines").glob("*.json"))
    assert len(files) == 1 and files[0].name.startswith("cpu-") and "__tiny-fp32__" in files[0].name
    doc = json.loads(files[0].read_text())
    assert doc["schema_version"] == 4 and doc["fingerprint"]["preset"] == "tiny"
    assert [len(run) for run in doc["entries"]["test_gate.py::test_gate::prefill"]["runs"]] == [6]
    # one run record, whose id is the results file's: adding that file later adds nothing
    (run,) = doc["runs"]
    assert run["settings"]["preset"] == "tiny" and run["created"]
    assert {"python_ops", "launch", "matmul", "device_copy"} <= set(run["calibration"]["probes"])  # the machine, measured before the run
    assert doc["entries"]["test_gate.py::test_gate::prefill"]["run_ids"] == [run["id"]]
    assert json.loads((pytester.path / "results.json").read_text())["egbench"]["run_id"] == run["id"]
    from pytest_egbench import baselines

    assert baselines.main(["add", str(pytester.path / "results.json"), "--dir", str(pytester.path / "baselines")]) == 0
    assert json.loads(files[0].read_text()) == doc
    # compared with its own baseline (a wide tolerance: this checks the pass path, not the noise)
    result = pytester.runpytest(*RUN, "--egbench-tolerance=300%", "-rP")
    result.assert_outcomes(passed=1)


def test_injected_decode_slowdown_fails_with_the_numbers(pytester):
    _gated(pytester)
    pytester.runpytest(*RUN, "--egbench-save").assert_outcomes(passed=1)
    # +100 %: far beyond the noise of a shared CI machine, so the test cannot flake; the machine
    # check is off because this test is about the baseline's gate, not about this VM's noise
    result = pytester.runpytest(*RUN, "--egbench-inject", "decode=100%", "--egbench-tolerance=20%", "--egbench-ignore-machine")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*egbench: * metric(s) regressed against baseline cpu-*",
            # the baseline's 6 rounds against the injected run's 12 (CONTROL_MIN_ROUNDS)
            "*decode: baseline * ms [[]IQR *, n=6[]], current * ms [[]IQR *, n=12[]], change +*% [[]95% CI +*% to +*%[]], one-sided Mann-Whitney p=* (tolerance 20.0%, alpha 0.01): slower*",
        ]
    )
    _assert_significant(result.stdout.str(), "decode: baseline ")


def test_injected_slowdown_without_baseline_fails_against_the_control_rounds(pytester, unwrapped):
    """A fresh machine: no baseline, so the injected run is judged against its own interleaved
    control rounds, at 5 %; the same benchmark without injection is skipped as before."""
    _gated(pytester)
    out = pytester.path / "run.json"
    # +100 %: far beyond the noise of a shared CI machine. 24 pairs, not the 12 that RUN's 6 rounds
    # are raised to (CONTROL_MIN_ROUNDS; the test above checks that raise): on a loaded machine a
    # stall in a control round flips the pair of largest rank, and that alone takes 12 pairs' exact
    # p to 0.017; 24 pairs stay below alpha 0.01 with the three largest flipped
    result = pytester.runpytest(*RUN, *PAIRS, "--egbench-inject", "decode=100%", f"--egbench-json={out}")
    result.assert_outcomes(failed=1)
    unwrapped(result).fnmatch_lines(
        [
            "egbench: device cpu*rounds 24 after*",
            "collected 1 item",
            "egbench: injected slowdown decode=+100%, each steady round after an unchanged control round (at least 12 rounds when injecting)",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            # decode, TPOT and decode tok/s; total too unless a stall in prefill (a 2 ms sleep
            # beside CPU burners) flips enough of its pairs: it is still judged against the control
            "*egbench: [34] metric(s) regressed against this run's control rounds:",
            "*decode: control (this run's interleaved unchanged rounds) * ms [[]IQR *, n=24[]], current * ms [[]IQR *, n=24[]], change +*% (median of 24 paired ratios) [[]95% CI +*% to +*%[]], one-sided Wilcoxon signed-rank p=* (tolerance 5.0%, alpha 0.01): slower*",
        ]
    )
    failure = result.stdout.str()
    _assert_significant(failure, "decode: control ")
    for metric in ("tpot", "decode_tokens_per_s"):
        assert f"{metric}: control (this run's interleaved unchanged rounds)" in failure
    assert "prefill: control" not in failure and "ttft: control" not in failure and "regressed against baseline" not in failure
    doc = json.loads(out.read_text())
    verdicts = {b["name"]: b["extra_info"]["verdict"] for b in doc["benchmarks"] + doc["egbench"]["metrics"]}
    assert verdicts["test_gate::total"]["reference"].startswith("control") and verdicts["test_gate::prefill"]["status"] == "not compared"
    decode = next(b for b in doc["benchmarks"] if b["name"] == "test_gate::decode")
    assert decode["stats"]["rounds"] == 24 and len(decode["extra_info"]["control"]) == 24
    assert sorted(decode["stats"]["data"])[6] > 1.5 * sorted(decode["extra_info"]["control"])[6]  # +100 % of 4 ms of work
    result = pytester.runpytest(*RUN)
    result.assert_outcomes(passed=1)
    unwrapped(result).fnmatch_lines(["not compared: no baseline for this machine's fingerprint cpu-*"])


def test_a_metric_the_baseline_lacks_is_judged_against_the_control(pytester):
    _gated(pytester)
    pytester.runpytest(*RUN, "--egbench-save").assert_outcomes(passed=1)
    (path,) = (pytester.path / "baselines").glob("*.json")
    doc = json.loads(path.read_text())
    del doc["entries"]["test_gate.py::test_gate::tpot"]
    path.write_text(json.dumps(doc))
    result = pytester.runpytest(*RUN, *PAIRS, "--egbench-inject", "decode=100%", "--egbench-tolerance=20%", "--egbench-ignore-machine")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*egbench: * metric(s) regressed against baseline cpu-* and this run's control rounds:",
            "*decode: baseline * ms*(tolerance 20.0%*",
            "*tpot: control (this run's interleaved unchanged rounds) *(tolerance 20.0%*",
        ]
    )


def test_an_injected_run_cannot_be_saved(pytester):
    _gated(pytester)
    result = pytester.runpytest(*RUN, "--egbench-inject", "decode=20%", "--egbench-save")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "can never be saved" in result.stderr.str()


def test_exact_metric_change_fails_even_from_another_machines_baseline(pytester):
    _gated(pytester, tokens=10)
    pytester.runpytest(*RUN, "--egbench-save").assert_outcomes(passed=1)
    (path,) = (pytester.path / "baselines").glob("*.json")
    doc = json.loads(path.read_text())
    doc["fingerprint"]["device"] = "CPU another machine x64"
    path.unlink()
    from pytest_egbench.baselines import fingerprint_name

    (pytester.path / "baselines" / f"{fingerprint_name(doc['fingerprint'])}.json").write_text(json.dumps(doc))
    _gated(pytester, tokens=11)
    result = pytester.runpytest(*RUN)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*tokens.prefill: baseline 10 tokens*current 11 tokens*exact metric changed*"])


def test_a_malformed_baseline_stops_the_run_naming_the_file(pytester):
    _gated(pytester)
    (pytester.path / "baselines").mkdir()
    (pytester.path / "baselines" / "broken.json").write_text("{not json")
    result = pytester.runpytest(*RUN)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "broken.json: not valid JSON" in result.stderr.str()


def test_a_failing_run_saves_nothing(pytester):
    pytester.makepyfile(
        test_f="""
import pytest
pytestmark = pytest.mark.egbench

def test_ok(stage_timer):
    for rnd in stage_timer.rounds():
        with rnd.stage("prefill"):
            pass

def test_broken():
    assert False
"""
    )
    result = pytester.runpytest(*RUN, "--egbench-save")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*--egbench-save: 1 test(s) failed, so no baseline was saved*"])
    assert not (pytester.path / "baselines").exists()


# --------------------------------------------------------------------------- pytest-xdist


def test_xdist_workers_merge_into_one_json_and_table(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_bench=BENCH)
    out = pytester.path / "merged.json"
    result = pytester.runpytest_subprocess(
        "--egbench",
        "-n",
        "2",
        "--egbench-device",
        "cpu",
        "--egbench-rounds",
        "2",
        "--egbench-warmup",
        "0",
        f"--egbench-json={out}",
        "-p",
        "pytest_egbench.plugin" if "pytest_egbench.plugin" not in _entry_points() else "no:cacheprovider",
    )
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*= egbench =*", "[[]toy[]]", "configuration *load*", "fast *", "slow *"])
    doc = json.loads(out.read_text())
    names = {b["name"] for b in doc["benchmarks"]}
    assert {"test_toy[fast]::prefill", "test_toy[slow]::prefill"} <= names
    assert len(doc["machine_info"]["egbench"]["workers"]) == 2


def test_more_workers_than_gpus_is_refused(monkeypatch):
    torch = pytest.importorskip("torch")
    from pytest_egbench.device import resolve_device
    from pytest_egbench.options import Settings

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    pinned = []
    monkeypatch.setattr(torch.cuda, "set_device", pinned.append)
    assert resolve_device(Settings(device="auto"), (1, 2)) == torch.device("cuda", 1) and pinned == [1]
    with pytest.raises(pytest.UsageError, match="3 workers but this machine has 2 CUDA device"):
        resolve_device(Settings(device="cuda"), (0, 3))
    assert resolve_device(Settings(device="cpu"), (1, 2)) == torch.device("cpu")


LONG_NAMES = """
import pytest

STAGES = [f"speculative_decoding_at_gamma_{g}_with_draft" for g in range(1, 9)]
pytestmark = pytest.mark.egbench(group="a_group_with_a_rather_long_name_" + "x" * 90, stages=STAGES)

@pytest.mark.parametrize("sample", ["dsec_sample1_50ms_recorded_on_a_rainy_day_" + "y" * 60, "cup"])
@pytest.mark.parametrize("frames", [1, 8])
def test_with_a_long_name(stage_timer, sample, frames):
    stage_timer.extra_info["model"] = "eventgpt->video_llava_with_a_long_adapter_name"
    for rnd in stage_timer.rounds():
        for stage in STAGES:
            with rnd.stage(stage):
                pass
        with rnd.stage("prefill", tokens=10):
            pass
        with rnd.stage("decode", tokens=4):
            pass
        with rnd.stage("an_undeclared_stage_which_gets_a_long_note"):
            pass
"""


def test_the_whole_output_fits_120_columns_with_long_names(pytester):
    """Issue 14: no line of a --egbench run is wider than 120 columns (header, tables, verdict
    lines, notes), however long the stage, parameter and group names; long names get keys with
    a legend and nothing is cut."""
    pytester.makepyfile(test_long=LONG_NAMES)
    # pytest's own notice that the already imported plugin cannot be assert-rewritten (a fresh
    # editable install) is pytest's line, not egbench's output
    result = pytester.runpytest(
        "--egbench", "--egbench-rounds", "2", "--egbench-warmup", "1", "--egbench-device", "cpu", "-W", "ignore::pytest.PytestAssertRewriteWarning"
    )
    result.assert_outcomes(passed=4)
    lines = result.stdout.lines
    # pytest 8 lists each warned test's node id on a line of its own in its warnings summary: the
    # user's own test names, which no plugin can wrap; every other line must fit
    widest = max((line for line in lines if not re.fullmatch(r"test_long\.py::\S+", line)), key=len)
    assert len(widest) <= 120, widest
    text = "\n".join(lines)
    joined = re.sub(r"\n +", " ", text)  # wrapped lines and legend continuations joined
    assert "speculative_decoding_at_gamma_8_with_draft" in joined
    assert "sample=dsec_sample1_50ms_recorded_on_a_rainy_day_" + "y" * 60 in joined.replace(" ", "")
    assert any(line.startswith("benchmark: ") for line in lines)  # pytest-benchmark's header, wrapped
    assert "not compared" in text and "marks: " in text
    assert "[NotDeclaredWarning]" in joined and "not declared in its egbench marker" in joined  # the folded note, wrapped
