"""Baseline files and verdicts, without pytest machinery: synthetic samples, golden files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_egbench import baselines
from pytest_egbench.baselines import BaselineError, Entry, RunRecord
from pytest_egbench.verdict import BASELINE_REFERENCE, CONTROL_REFERENCE, IMPROVEMENT, NOISE_ONLY, PASS, REGRESSION, judge

GOLDEN = Path(__file__).parent / "golden"
FP = {"device": "NVIDIA H200", "preset": "7b", "quant": "nf4", "torch": "2.11", "transformers": "5.17", "bitsandbytes": "0.50", "cuda": "13.0"}


def test_fingerprint_from_machine_info():
    machine = {
        "egbench": {
            "gpu_name": "NVIDIA H100 80GB HBM3",
            "cuda": "13.0",
            "libraries": {"torch": "2.11.0+cu130", "transformers": "5.17.0", "bitsandbytes": "0.50.2"},
        }
    }
    fp = baselines.fingerprint(machine, "7b", "nf4")
    assert fp == {
        "device": "NVIDIA H100 80GB HBM3",
        "preset": "7b",
        "quant": "nf4",
        "torch": "2.11",
        "transformers": "5.17",
        "bitsandbytes": "0.50",
        "cuda": "13.0",
    }
    assert baselines.fingerprint_name(fp) == "nvidia-h100-80gb-hbm3__7b-nf4__torch2.11-transformers5.17-bnb0.50-cuda13.0"
    # bitsandbytes does not matter for unquantised weights; a CPU is named by brand and cores
    cpu = baselines.fingerprint(
        {"node": "ci-42", "cpu": {"brand_raw": "AMD EPYC 9554", "count": 2}, "egbench": {"libraries": {"torch": "2.13.0"}}}, "tiny", "fp32"
    )
    assert cpu["device"] == "CPU AMD EPYC 9554 x2 on ci-42" and cpu["bitsandbytes"] is None


def test_save_merges_and_keeps_other_entries(tmp_path):
    a = {"t::prefill": Entry("prefill", "s", "latency", [[1.0, 2.0]]), "t::vision": Entry("vision", "s", "latency", [[7.0]])}
    b = {"t::decode": Entry("decode", "s", "latency", [[3.0]]), "t::prefill": Entry("prefill", "s", "latency", [[5.0]])}
    path, added = baselines.save(tmp_path, FP, a, run=RunRecord("r1", "c1", "x"))
    assert added and baselines.save(tmp_path, FP, b, run=RunRecord("r2", "c2", "y")) == (path, True)
    loaded = baselines.load(path)
    # prefill gained a run, decode is new, vision (not measured the second time) is kept
    assert loaded.entries["t::prefill"].runs == [[1.0, 2.0], [5.0]] and loaded.entries["t::prefill"].samples == [1.0, 2.0, 5.0]
    assert loaded.entries["t::decode"].runs == [[3.0]] and loaded.entries["t::vision"].runs == [[7.0]]
    assert loaded.created == "c2" and loaded.commit == "y" and loaded.fingerprint == FP
    assert loaded.entries["t::prefill"].run_ids == ["r1", "r2"] and loaded.entries["t::vision"].run_ids == ["r1"]
    first = loaded.runs[0]
    assert [r.id for r in loaded.runs] == ["r1", "r2"] and (first.id, first.created, first.commit, first.settings, first.calibration) == (
        "r1",
        "c1",
        "x",
        {},
        None,
    )
    # each run keeps its own summary of what it measured: r1's prefill was [1, 2] (median 1.5), r2's [5]
    assert (first.summaries["t::prefill"].median, first.summaries["t::prefill"].n) == (1.5, 2) and set(first.summaries) == {"t::prefill", "t::vision"}
    assert loaded.runs[1].summaries["t::prefill"].median == 5.0 and set(loaded.runs[1].summaries) == {"t::decode", "t::prefill"}
    assert baselines.find([loaded], FP) is loaded and baselines.find([loaded], {**FP, "device": "x"}) is None


def test_save_refuses_to_merge_into_a_broken_file_and_keeps_it(tmp_path):
    path = tmp_path / f"{baselines.fingerprint_name(FP)}.json"
    path.write_text("{broken")
    with pytest.raises(BaselineError, match="not valid JSON"):
        baselines.save(tmp_path, FP, {"t::x": Entry("x", "s", "latency", [[1.0]])}, run=RunRecord("r", "c"))
    assert path.read_text() == "{broken"


@pytest.mark.parametrize(
    "content, problem",
    [
        ("[]", "top level is not a JSON object"),
        ('{"schema_version": 99}', "newer than this pytest-egbench understands"),
        ('{"schema_version": 1, "entries": {}}', "fingerprint missing"),
        (
            '{"schema_version": 2, "fingerprint": {"device": "d", "preset": "p", "quant": "q"}, "entries": {"k": {"metric": "m"}}}',
            "entry 'k' lacks unit, kind, runs",
        ),
        (
            '{"schema_version": 2, "fingerprint": {"device": "d", "preset": "p", "quant": "q"}, "entries": {"k": {"metric": "m", "unit": "s", "kind": "latency", "runs": [[]]}}}',
            "non-empty lists of finite numbers",
        ),
        (
            '{"schema_version": 2, "fingerprint": {"device": "d", "preset": "p", "quant": "q"}, "entries": {"k": {"metric": "m", "unit": "s", "kind": "latency", "runs": [["1"]]}}}',
            "non-empty lists of finite numbers",
        ),
        (
            '{"schema_version": 1, "fingerprint": {"device": "d", "preset": "p", "quant": "q"}, "entries": {"k": {"metric": "m"}}}',
            "entry 'k' lacks samples (schema_version 1)",
        ),
        ('{"machine_info": {}}', "neither a baseline"),
    ],
)
def test_malformed_files_name_the_file_and_problem(tmp_path, content, problem):
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(BaselineError) as info:
        baselines.load(path)
    assert str(path) in str(info.value) and problem in str(info.value)


def test_golden_results_file_migrates_from_version_0(tmp_path):
    """A pytest-benchmark results file of an H200 run (kept as golden data) loads as a baseline."""
    b = baselines.load(GOLDEN / "results-v0-h200.json")
    assert b.fingerprint["device"] == "NVIDIA H200" and b.fingerprint["preset"] == "7b" and b.fingerprint["quant"] == "bf16"
    prefill = b.entries["benchmarks/test_lm_stages.py::test_lm_stages::prefill"]
    assert prefill.kind == "latency" and prefill.unit == "s" and len(prefill.samples) == 6
    assert b.entries["benchmarks/test_lm_stages.py::test_lm_stages::tokens.prefill"].samples == [637.0] * 6
    # and saving it writes the current schema
    out, added = baselines.save(tmp_path, b.fingerprint, b.entries, run=b.runs[0])
    assert added and json.loads(out.read_text())["schema_version"] == baselines.SCHEMA_VERSION


def test_golden_version_1_baseline_migrates():
    """A schema-1 baseline saved by an H200 run (kept as golden data): each entry becomes one run."""
    b = baselines.load(GOLDEN / "baseline-v1-h200-nf4.json")
    assert b.fingerprint["quant"] == "nf4"
    decode = b.entries["benchmarks/test_lm_stages.py::test_lm_stages::decode"]
    assert len(decode.runs) == 1 and len(decode.runs[0]) == 6


def test_runs_beyond_the_limit_drop_the_oldest(tmp_path):
    for i in range(baselines.MAX_RUNS + 2):
        path, _ = baselines.save(tmp_path, FP, {"t::x": Entry("x", "s", "latency", [[float(i + 1)]])}, run=RunRecord(f"r{i}", str(i)))
    b = baselines.load(path)
    assert b.entries["t::x"].runs == [[float(i + 1)] for i in range(2, baselines.MAX_RUNS + 2)]
    # the records of the runs that dropped out stay: they are the history
    assert [r.id for r in b.runs] == [f"r{i}" for i in range(baselines.MAX_RUNS + 2)]
    assert [r.id for r in b.run_records_in_window()] == [f"r{i}" for i in range(2, baselines.MAX_RUNS + 2)]


def test_load_dir_missing_folder_is_empty(tmp_path):
    assert baselines.load_dir(tmp_path / "nope") == []


# --------------------------------------------------------------------------- verdicts

BASE = [10.0, 10.1, 9.9, 10.05, 9.95, 10.02]
KW = dict(tolerance=0.05, tolerance_abs=0.02, alpha=0.01)


def test_same_samples_pass():
    assert judge("prefill", "latency", "s", [BASE], BASE, **KW).status == PASS


def test_clear_slowdown_is_a_regression_with_the_numbers():
    v = judge("decode", "latency", "s", [BASE], [x * 1.2 for x in BASE], **KW)
    assert v.status == REGRESSION and v.change == pytest.approx(0.2, abs=0.01) and v.p == pytest.approx(1 / 924)
    assert (
        v.message.startswith("decode: baseline 1.001e+04 ms [IQR 100 ms, n=6], current 1.201e+04 ms")
        and "change +20.0%" in v.message
        and "p=0.00108" in v.message
    )


def test_the_message_names_the_reference():
    v = judge("decode", "latency", "s", [BASE], [x * 1.2 for x in BASE], **KW, reference=CONTROL_REFERENCE)
    assert v.status == REGRESSION and v.reference == CONTROL_REFERENCE
    assert v.message.startswith("decode: control (this run's interleaved unchanged rounds) 1.001e+04 ms [IQR 100 ms, n=6], current 1.201e+04 ms")
    assert "baseline" not in v.message
    assert judge("decode", "latency", "s", [BASE], BASE, **KW).reference == BASELINE_REFERENCE


def test_an_improvement_over_the_control_does_not_ask_to_save():
    v = judge("decode", "latency", "s", [BASE], [x * 0.8 for x in BASE], **KW, reference=CONTROL_REFERENCE)
    assert v.status == IMPROVEMENT and "--egbench-save" not in v.message and v.message.endswith("improved beyond the tolerance")


def test_slowdown_within_tolerance_passes():
    assert judge("decode", "latency", "s", [BASE], [x * 1.03 for x in BASE], **KW).status == PASS


def test_beyond_tolerance_but_not_significant():
    noisy = [10.0, 14.0, 9.0, 15.0, 9.5, 16.0]
    v = judge("decode", "latency", "s", [BASE], noisy, **KW)
    assert v.status == NOISE_ONLY and v.p > 0.01


def test_few_rounds_use_the_tolerance_alone_and_warn():
    v = judge("decode", "latency", "s", [[10.0, 10.0, 10.0]], [12.0, 12.0, 12.0], **KW)
    assert v.status == REGRESSION and "only 3 rounds" in v.warning


def test_improvement_is_reported_not_failed():
    v = judge("decode", "latency", "s", [BASE], [x * 0.8 for x in BASE], **KW)
    assert v.status == IMPROVEMENT and "add runs with --egbench-save" in v.message


def test_throughput_drop_is_a_regression():
    v = judge("decode_tokens_per_s", "throughput", "tokens/s", [BASE], [x * 0.8 for x in BASE], **KW)
    assert v.status == REGRESSION and "lower throughput" in v.message


def test_exact_metrics_must_be_equal():
    assert judge("tokens.prefill", "exact", "tokens", [[637.0] * 3], [637.0] * 6, **KW).status == PASS
    assert judge("tokens.prefill", "exact", "tokens", [[637.0] * 3], [638.0] * 6, **KW).status == REGRESSION


def test_rates_use_the_absolute_tolerance():
    assert judge("alpha", "rate", "ratio", [[0.5] * 6], [0.49] * 6, **KW).status == PASS
    assert judge("alpha", "rate", "ratio", [[0.5] * 6], [0.45] * 6, **KW).status == REGRESSION
    assert judge("alpha", "rate", "ratio", [[0.5] * 6], [0.6] * 6, **KW).status == IMPROVEMENT


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown kind .vibes. .allowed: latency, throughput"):
        judge("x", "vibes", "s", [[1.0]], [1.0], **KW)


def test_run_to_run_spread_widens_the_tolerance():
    from pytest_egbench.verdict import run_spread

    runs = [[10.0] * 6, [11.0] * 6]  # two saved runs 10 % apart: pooled median 10.5
    assert run_spread(runs) == pytest.approx(0.5 / 10.5)
    # spread 4.8 % < 5 %: the tolerance stays 5 %, and +7 % over the pooled median fails
    assert judge("decode", "latency", "s", runs, [11.235] * 6, **KW).status == REGRESSION
    wide = [[10.0] * 6, [13.0] * 6]  # 13 % spread around the pooled 11.5
    v = judge("decode", "latency", "s", wide, [12.5] * 6, **KW)  # +8.7 %: inside that spread
    assert v.status == PASS and "raised to the baseline's run-to-run spread" in v.message


def test_command_line_adds_a_results_file_as_a_run(tmp_path, capsys):
    assert baselines.main(["add", str(GOLDEN / "results-v0-h200.json"), "--dir", str(tmp_path)]) == 0
    # the same file again adds nothing (its run id, hashed from its content, is already there) ...
    assert baselines.main(["add", str(GOLDEN / "results-v0-h200.json"), "--dir", str(tmp_path)]) == 0
    (b,) = baselines.load_dir(tmp_path)
    assert len(b.entries["benchmarks/test_lm_stages.py::test_lm_stages::prefill"].runs) == 1
    # ... another run does
    doc = json.loads((GOLDEN / "results-v0-h200.json").read_text())
    doc["datetime"] = "another run"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "other.json").write_text(json.dumps(doc))
    assert baselines.main(["add", str(tmp_path / "src" / "other.json"), "--dir", str(tmp_path)]) == 0
    (b,) = baselines.load_dir(tmp_path)
    assert len(b.entries["benchmarks/test_lm_stages.py::test_lm_stages::prefill"].runs) == 2
    assert baselines.main(["show", str(tmp_path)]) == 0
    assert "up to 2 run(s)" in capsys.readouterr().out


def test_an_injected_results_file_is_never_a_baseline(tmp_path, capsys):
    doc = json.loads((GOLDEN / "results-v0-h200.json").read_text())
    doc["egbench"]["settings"]["inject"] = {"decode": 0.2}
    injected = tmp_path / "injected.json"
    injected.write_text(json.dumps(doc))
    with pytest.raises(BaselineError, match="injected slowdown .* can never be a baseline"):
        baselines.load(injected)
    assert baselines.main(["add", str(injected), "--dir", str(tmp_path / "out")]) == 2
    assert "can never be a baseline" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_command_line_reports_a_bad_file(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert baselines.main(["add", str(bad), "--dir", str(tmp_path / "out")]) == 2
    assert "bad.json: not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_paired_control_comparison_sees_through_a_drift_that_hides_it_unpaired():
    # the machine switches between two speeds during the run (as this project's CPU VM does):
    # every steady round is 20 % slower than the control round just before it
    control = [28.0, 28.4, 18.2, 28.1, 19.0, 28.6, 18.5, 28.3]
    current = [c * 1.2 for c in control]
    unpaired = judge("decode", "latency", "s", [control], current, **KW, reference=CONTROL_REFERENCE)
    paired = judge("decode", "latency", "s", [control], current, **KW, reference=CONTROL_REFERENCE, paired=True)
    assert unpaired.status != REGRESSION  # the two speeds overlap: Mann-Whitney p is large
    assert paired.status == REGRESSION and paired.change == pytest.approx(0.2) and paired.p == pytest.approx(2**-8)
    assert "(median of 8 paired ratios)" in paired.message and "one-sided Wilcoxon signed-rank p=0.0039" in paired.message
    # unchanged rounds are never a regression
    assert judge("decode", "latency", "s", [control], control, **KW, paired=True).status == PASS


def test_paired_needs_one_reference_run_of_equal_length():
    with pytest.raises(ValueError, match="paired"):
        judge("decode", "latency", "s", [[1.0, 2.0]], [1.0], **KW, paired=True)
    with pytest.raises(ValueError, match="paired"):
        judge("decode", "latency", "s", [[1.0], [2.0]], [1.0, 2.0], **KW, paired=True)


def test_paired_with_too_few_pairs_warns_and_uses_the_tolerance_alone():
    v = judge("decode", "latency", "s", [BASE], [x * 1.2 for x in BASE], **KW, paired=True)  # 6 pairs: p >= 1/64
    assert v.status == REGRESSION and v.warning and "only 6 pairs" in v.warning


def test_constraints_pin_the_libraries_of_the_fingerprint(tmp_path, capsys):
    from pytest_egbench import baselines

    fp = {"device": "NVIDIA H200", "preset": "7b", "quant": "nf4", "torch": "2.11", "transformers": "5.17", "bitsandbytes": "0.50", "cuda": "13.0"}
    text = baselines.constraints(baselines.Baseline(fp, {}))
    pins = [line for line in text.splitlines() if not line.startswith("#")]
    assert pins == ["torch==2.11.*", "transformers==5.17.*", "bitsandbytes==0.50.*"]
    # a CPU fingerprint has no bitsandbytes and no CUDA
    cpu = baselines.constraints(baselines.Baseline({**fp, "device": "CPU x", "quant": "fp32", "bitsandbytes": None, "cuda": None}, {}))
    assert [line for line in cpu.splitlines() if not line.startswith("#")] == ["torch==2.11.*", "transformers==5.17.*"]


def test_the_runtime_joins_the_fingerprint_only_when_it_is_not_eager():
    machine = {"egbench": {"gpu_name": "NVIDIA H200", "cuda": "13.0", "libraries": {"torch": "2.11.0", "transformers": "5.17.0", "bitsandbytes": "0.50.2"}}}
    eager = baselines.fingerprint(machine, "7b", "nf4")
    assert eager == baselines.fingerprint(machine, "7b", "nf4", "eager") and "runtime" not in eager
    # a baseline saved before runtimes existed keeps its name; a compiled one gets its own file
    assert baselines.fingerprint_name(eager) == "nvidia-h200__7b-nf4__torch2.11-transformers5.17-bnb0.50-cuda13.0"
    compiled = baselines.fingerprint(machine, "7b", "nf4", "compiled")
    assert compiled == {**eager, "runtime": "compiled"}
    assert baselines.fingerprint_name(compiled) == "nvidia-h200__7b-nf4-compiled__torch2.11-transformers5.17-bnb0.50-cuda13.0"
    # exact metrics (KV bytes: the static cache holds more positions) compare only within one runtime
    assert baselines.same_config(eager, {**eager, "runtime": "eager"})
    assert not baselines.same_config(eager, compiled)
    with pytest.raises(BaselineError, match="'runtime'"):
        baselines.fingerprint_name({**eager, "runtime": "../x"})
