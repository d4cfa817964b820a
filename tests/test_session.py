"""EgbenchSession.judge on synthetic measurements: which reference each metric is judged against
(a baseline entry, this run's control rounds, or nothing), and the wire format for pytest-xdist."""

from __future__ import annotations

import dataclasses

import pytest

from pytest_egbench.baselines import Baseline, Entry, RunRecord
from pytest_egbench.options import Settings
from pytest_egbench.session import EgbenchSession, measurements_from_timing
from pytest_egbench.timing import TimingResults
from pytest_egbench.verdict import CONTROL_REFERENCE, INCONCLUSIVE, PASS, REGRESSION, SETTINGS_DIFFER, RefKind

MACHINE = {"node": "test-host", "cpu": {"brand_raw": "Test CPU", "count": 2}, "egbench": {"libraries": {"torch": "2.13.0"}}}
NODE = "benchmarks/test_x.py::test_lm"
MS = 1_000_000
# eight rounds a side (the default), a little spread so that medians and IQRs are not degenerate
JITTER = [0, 3, 1, 4, 2, 5, 7, 6]


def results(decode_factor: float = 1.2) -> TimingResults:
    """Preprocess, prefill and decode with token counts; steady decode ``decode_factor`` x the
    control rounds' decode, every other stage the same in both."""

    def rounds(base: int, factor: float = 1.0) -> list[int]:
        return [round((base + j * 10_000) * factor) for j in JITTER]

    steady = {"preprocess": rounds(1 * MS), "prefill": rounds(20 * MS), "decode": rounds(30 * MS, decode_factor)}
    control = {"preprocess": rounds(1 * MS), "prefill": rounds(20 * MS), "decode": rounds(30 * MS)}
    tokens = {"preprocess": [None] * 8, "prefill": [637] * 8, "decode": [15] * 8}
    return TimingResults(["preprocess", "prefill", "decode"], steady, {}, {}, tokens, {}, control, dict(tokens))


def calibration(launch_us: float = 4.4) -> dict:
    return {
        "version": 1,
        "probes": {
            "launch": {"unit": "us", "median": launch_us, "spread": 0.01, "samples": [launch_us]},
            "python_ops": {"unit": "ns/op", "median": 30.0, "spread": 0.01, "samples": [30.0]},
        },
    }


def session(
    inject=(("decode", 0.2),), baseline_entries: dict[str, Entry] | None = None, baseline_calibration=calibration(), baseline_settings=None, **settings
) -> EgbenchSession:
    """A CPU session on MACHINE whose calibration is :func:`calibration`; its baseline (one run,
    id ``r1``) has ``baseline_entries``, ``baseline_calibration`` and ``baseline_settings``."""
    s = EgbenchSession(Settings(enabled=True, preset="tiny", quant="fp32", inject=tuple(inject), **settings).for_device("cpu"), "cpu")
    s._machine = MACHINE
    s.calibration = calibration()
    if baseline_entries is None:
        s._baselines = []
    else:
        for e in baseline_entries.values():
            e.run_ids = ["r1"] * len(e.runs)
        s._baselines = [
            Baseline(
                s.fingerprint,
                baseline_entries,
                runs=[RunRecord("r1", commit="abc1234def5678", settings=baseline_settings or {}, calibration=baseline_calibration)],
            )
        ]
    return s


def measured(egb: EgbenchSession, res: TimingResults | None = None):
    return measurements_from_timing(res or results(), nodeid=NODE, test="test_lm", group="lm", model="llama", params={}, extra_info={})


def test_measurements_carry_the_control_rounds_in_their_unit():
    ms = {m.metric: m for m in measured(session())}
    assert ms["decode"].control == pytest.approx([(30 * MS + j * 10_000) * 1e-9 for j in JITTER])
    assert ms["decode"].samples == pytest.approx([1.2 * v for v in ms["decode"].control])
    assert ms["tpot"].control == pytest.approx([v / 15 for v in ms["decode"].control])
    assert ms["decode_tokens_per_s"].control == pytest.approx([15 / v for v in ms["decode"].control])
    assert ms["total"].control and ms["ttft"].control and ms["prefill_tokens_per_s"].control
    assert ms["tokens.decode"].control == []  # exact counts have no control samples


def test_without_baseline_injected_metrics_are_judged_against_the_control():
    egb = session()
    verdicts, missing = egb.judge(measured(egb))
    by_metric = {v.metric: v for v in verdicts}
    # decode and everything made of it: the stage, total, TPOT, decode tokens/s
    assert set(by_metric) == {"decode", "total", "tpot", "decode_tokens_per_s"}
    assert all(v.reference == CONTROL_REFERENCE for v in verdicts)
    assert {m for m, v in by_metric.items() if v.status == REGRESSION} == {"decode", "total", "tpot", "decode_tokens_per_s"}
    # the others stay "not compared", as without injection
    assert sorted(missing) == sorted(["preprocess", "prefill", "ttft", "prefill_tokens_per_s", "tokens.prefill", "tokens.decode"])
    message = by_metric["decode"].message
    assert message.startswith("decode: control (this run's interleaved unchanged rounds) 30.04 ms [IQR ")
    # paired: every steady round with the control round before it; 8 of 8 slower gives p = 2**-8
    assert (
        "n=8], current 36.04 ms" in message and "change +20.0% (median of 8 paired ratios)" in message and "one-sided Wilcoxon signed-rank p=0.0039" in message
    )
    assert "(tolerance 5.0%, alpha 0.01): slower" in message  # CONTROL_TOLERANCE, not the CPU's 100 %


def test_an_injected_prefill_reaches_ttft_and_total_not_decode():
    egb = session(inject=(("prefill", 0.2),))
    verdicts, missing = egb.judge(measured(egb))
    assert {v.metric for v in verdicts} == {"prefill", "ttft", "total", "prefill_tokens_per_s"}
    assert "decode" in missing and "tpot" in missing


def test_an_unchanged_stage_passes_against_its_control():
    egb = session()
    verdicts, _ = egb.judge(measured(egb, results(decode_factor=1.0)))
    assert verdicts and all(v.status == PASS for v in verdicts)


def test_a_given_tolerance_wins_for_control_comparisons():
    egb = session(tolerance=0.3)
    verdicts, _ = egb.judge(measured(egb))
    assert all(v.status == PASS and "tolerance 30.0%" in v.message for v in verdicts)
    # the marker's tolerances win over the options
    verdicts, _ = egb.judge(measured(egb), {"decode": 0.1})
    assert {v.metric: v.status for v in verdicts}["decode"] == REGRESSION


def test_a_baseline_entry_is_used_and_the_control_ignored():
    # the baseline holds what the injected rounds measured: against it, nothing moved
    ms = measured(session())
    entries = {m.fullname: Entry(m.metric, m.unit, m.kind, [list(m.samples)]) for m in ms if m.metric in ("decode", "tokens.decode")}
    egb = session(baseline_entries=entries)
    verdicts, missing = egb.judge(measured(egb))
    by_metric = {v.metric: v for v in verdicts}
    decode = by_metric["decode"]
    assert decode.status == PASS and decode.reference.kind == RefKind.BASELINE
    # the reference as data: the baseline's fingerprint name and the saved run compared with
    assert decode.reference.label == egb.fingerprint_name() and decode.reference.run_ids == ("r1",)
    assert by_metric["decode"].message.startswith("decode: baseline ")
    assert "(tolerance 100.0%" in by_metric["decode"].message  # the CPU default against a baseline
    # metrics the baseline lacks still fall back to the control
    assert by_metric["tpot"].reference == CONTROL_REFERENCE and by_metric["tpot"].status == REGRESSION


def test_no_control_verdict_without_injection():
    egb = session(inject=())
    verdicts, missing = egb.judge(measured(egb))
    assert verdicts == [] and "decode" in missing and "total" in missing


def test_the_wire_format_keeps_the_control_rounds():
    egb = session()
    for m in measured(egb):
        egb.add(m)
    controller = session()
    controller.merge_wire(egb.to_wire())
    sent = {m.metric: m for m in egb.measurements}
    got = {m.metric: m for m in controller.measurements}
    assert got["decode"].control == sent["decode"].control and len(got["decode"].control) == 8
    assert {k: m.control for k, m in got.items()} == {k: m.control for k, m in sent.items()}


def test_each_measurement_keeps_the_device_it_was_measured_on_through_an_xdist_merge():
    worker = session()
    worker.device = "cuda:1"
    for m in measured(worker):
        worker.add(m)
    controller = session()
    controller.device = "cuda:0"
    controller.merge_wire(worker.to_wire())
    assert {m.extra_info["device"] for m in controller.measurements} == {"cuda:1"}
    from pytest_egbench.report import benchmark_json

    doc = benchmark_json(controller, {}, {})
    assert {b["extra_info"]["device"] for b in doc["benchmarks"]} == {"cuda:1"}


def _baseline_of(egb: EgbenchSession, metrics=("decode", "prefill", "tokens.decode")) -> dict[str, Entry]:
    return {m.fullname: Entry(m.metric, m.unit, m.kind, [list(m.samples)]) for m in measured(egb) if m.metric in metrics}


def test_a_machine_that_differs_makes_latency_inconclusive_and_exact_metrics_still_judged():
    egb = session(inject=(), baseline_entries=_baseline_of(session(inject=())), baseline_calibration=calibration(launch_us=9.7))
    verdicts, missing = egb.judge(measured(egb))
    by_metric = {v.metric: v for v in verdicts}
    assert by_metric["decode"].status == INCONCLUSIVE and by_metric["prefill"].status == INCONCLUSIVE
    assert "machine differs: kernel launch 4.4 us against 9.7 us in the baseline's run" in by_metric["decode"].message
    assert "--egbench-ref abc1234def56" in by_metric["decode"].message  # the remedy names the baseline's commit
    assert by_metric["tokens.decode"].status == PASS  # token counts do not depend on the machine
    # the same baseline on the same machine: judged
    same = session(inject=(), baseline_entries=_baseline_of(session(inject=())))
    assert {v.metric: v.status for v in same.judge(measured(same))[0]}["decode"] == PASS


def test_a_baseline_without_calibration_cannot_vouch_for_the_machine():
    egb = session(inject=(), baseline_entries=_baseline_of(session(inject=())), baseline_calibration=None)
    by_metric = {v.metric: v for v in egb.judge(measured(egb))[0]}
    assert by_metric["decode"].status == INCONCLUSIVE and "carry no machine calibration" in by_metric["decode"].message
    # unless the user says the machine is the one of the baseline
    trusting = session(inject=(), baseline_entries=_baseline_of(session(inject=())), baseline_calibration=None, ignore_machine=True)
    assert {v.metric: v.status for v in trusting.judge(measured(trusting))[0]}["decode"] == PASS


def test_other_settings_are_not_compared():
    egb = session(
        inject=(), baseline_entries=_baseline_of(session(inject=())), baseline_settings={"preset": "tiny", "quant": "fp32", "max_new_tokens": 32, "rounds": 3}
    )
    verdicts, _ = egb.judge(measured(egb))
    assert {v.status for v in verdicts} == {SETTINGS_DIFFER}
    assert "max_new_tokens 16 against 32" in verdicts[0].message
    # rounds alone do not make settings differ
    egb = session(
        inject=(), baseline_entries=_baseline_of(session(inject=())), baseline_settings={"preset": "tiny", "quant": "fp32", "max_new_tokens": 16, "rounds": 3}
    )
    assert SETTINGS_DIFFER not in {v.status for v in egb.judge(measured(egb))[0]}


def test_latency_is_judged_only_against_the_runs_from_machines_like_this_one():
    """A baseline holding a fast host's run (launch 4.4 us, decode 30 ms) and a slow host's (9.7 us,
    60 ms): on a fast host, a 45 ms decode is +50 % against the fast run -- a regression -- though
    it sits between the two runs' medians (tolerance 10 %: the CPU default of 100 % is not the point)."""
    egb = session(inject=(), tolerance=0.10)
    decode = next(m for m in measured(egb) if m.metric == "decode")
    fast, slow = [v * 1.0 for v in decode.samples], [v * 2.0 for v in decode.samples]
    entry = Entry("decode", "s", "latency", [fast, slow], run_ids=["fast", "slow"])
    egb._baselines = [
        Baseline(
            egb.fingerprint, {decode.fullname: entry}, runs=[RunRecord("fast", calibration=calibration(4.4)), RunRecord("slow", calibration=calibration(9.7))]
        )
    ]
    assert egb.machine_check().matching == frozenset({"fast"})
    current = [measurements_from_timing(results(decode_factor=1.0), nodeid=NODE, test="test_lm", group="lm", model="llama", params={}, extra_info={})]
    slower = [m for m in current[0] if m.metric == "decode"]
    slower[0].samples = [v * 1.5 for v in fast]
    (v,) = egb.judge(slower)[0]
    assert v.status == REGRESSION and "n=8]" in v.message and "over 2 runs" not in v.message
    # on a host like neither run: inconclusive, naming the nearest run's difference
    odd = session(inject=(), tolerance=0.10)
    odd.calibration = calibration(7.0)
    odd._baselines = egb._baselines
    (v,) = odd.judge(slower)[0]
    assert v.status == INCONCLUSIVE and "kernel launch 7 us against" in v.message


def test_a_metric_whose_runs_all_come_from_other_machines_is_inconclusive_with_their_figures():
    """The baseline's fast-host run (launch 4.4 us, like this machine) holds the prefill; its decode
    was saved only from the slow host's run (9.7 us). The machine matches the baseline, yet the
    decode has no run to be judged against: inconclusive, naming the slow run's launch figure."""
    egb = session(inject=(), tolerance=0.10)
    prefill, decode = (next(m for m in measured(egb) if m.metric == name) for name in ("prefill", "decode"))
    entries = {
        prefill.fullname: Entry("prefill", "s", "latency", [list(prefill.samples)], run_ids=["fast"]),
        decode.fullname: Entry("decode", "s", "latency", [list(decode.samples)], run_ids=["slow"]),
    }
    runs = [RunRecord("fast", calibration=calibration(4.4)), RunRecord("slow", calibration=calibration(9.7))]
    egb._baselines = [Baseline(egb.fingerprint, entries, runs=runs)]
    assert egb.machine_check().reason is None
    by_metric = {v.metric: v for v in egb.judge([prefill, decode])[0]}
    assert by_metric["prefill"].status == PASS
    assert by_metric["decode"].status == INCONCLUSIVE
    assert "none of this metric's 1 run(s)" in by_metric["decode"].message
    assert "kernel launch 4.4 us against 9.7 us in the baseline's run" in by_metric["decode"].message
    assert "1 of 2 calibrated" in by_metric["decode"].message


def _gpu_calibration(launch_us: float, copy_gbps: float) -> dict:
    cal = calibration(launch_us)
    cal["probes"]["device_copy"] = {"unit": "GB/s", "median": copy_gbps, "spread": 0.01, "samples": [copy_gbps]}
    return cal


def _compiled_session(runtime: str, baseline_calibration: dict, metrics=("decode", "tpot", "prefill")) -> EgbenchSession:
    """A CUDA session in ``runtime`` whose own calibration is a fast host (launch 4.4 us) and a
    4200 GB/s device copy; its baseline holds this run's own ``metrics`` under ``baseline_calibration``."""
    entries = _baseline_of(session(inject=()), metrics=metrics)
    for e in entries.values():
        e.run_ids = ["r1"]
    s = EgbenchSession(Settings(enabled=True, preset="tiny", quant="fp32", runtime=runtime).for_device("cuda"), "cuda")
    s._machine = MACHINE
    s.calibration = _gpu_calibration(4.4, 4200.0)
    s._baselines = [Baseline(s.fingerprint, entries, runs=[RunRecord("r1", commit="abc1234def5678", calibration=baseline_calibration)])]
    return s


def test_compiled_prefill_and_decode_are_judged_when_only_the_host_differs():
    """The baseline's host launched kernels in 9.7 us, this one in 4.4 us; the GPU's copy rate is
    the same. Eagerly every latency waits on the host: all inconclusive. In a compiled runtime
    prefill and decode replay CUDA graphs: they and their derived figures are judged; TTFT (which
    holds the eager preprocessing and vision tower) is not."""
    metrics = ("decode", "tpot", "prefill", "prefill_tokens_per_s", "ttft")
    slow_host = _gpu_calibration(9.7, 4200.0)
    eager = {v.metric: v for v in _compiled_session("eager", slow_host, metrics).judge(measured(session(inject=())))[0]}
    assert {eager[m].status for m in metrics} == {INCONCLUSIVE}
    compiled = _compiled_session("compiled", slow_host, metrics)
    by_metric = {v.metric: v for v in compiled.judge(measured(session(inject=())))[0]}
    assert {by_metric[m].status for m in ("decode", "tpot", "prefill", "prefill_tokens_per_s")} == {PASS}
    assert by_metric["ttft"].status == INCONCLUSIVE and "kernel launch 4.4 us against 9.7 us" in by_metric["ttft"].message
    # a GPU that differs (device copy 3000 against 4200 GB/s) makes them inconclusive too
    other_gpu = {v.metric: v for v in _compiled_session("compiled", _gpu_calibration(4.4, 3000.0), metrics).judge(measured(session(inject=())))[0]}
    assert other_gpu["decode"].status == INCONCLUSIVE and "device memory copy" in other_gpu["decode"].message
    assert other_gpu["prefill"].status == INCONCLUSIVE


def test_the_gate_leaves_latency_unjudged_and_still_judges_exact_counts():
    """A baseline whose decode was 3x faster: a regression by default; with ``--egbench-gate
    exact`` decode and its derived latencies get "not gated" and the token count is still judged
    (equal: pass; one token more: regression)."""
    from pytest_egbench.session import NOT_GATED, UNJUDGED

    entries = _baseline_of(session(inject=()), metrics=("decode", "tokens.decode"))
    decode_entry = next(e for e in entries.values() if e.metric == "decode")
    decode_entry.runs = [[v / 3 for v in decode_entry.runs[0]]]  # 200 % slower: past the CPU tolerance of 100 %
    default = session(inject=(), baseline_entries=entries)
    assert {v.metric: v.status for v in default.judge(measured(default))[0]}["decode"] == REGRESSION

    gated = session(inject=(), baseline_entries=entries, gate=("exact",))
    verdicts, missing = gated.judge(measured(gated))
    by_metric = {v.metric: v for v in verdicts}
    assert by_metric["decode"].status == NOT_GATED and "--egbench-gate exact" in by_metric["decode"].message
    assert by_metric["tpot"].status == NOT_GATED  # no baseline entry, yet not "not compared": not asked for
    assert by_metric["tokens.decode"].status == PASS
    assert NOT_GATED not in UNJUDGED  # --egbench-require-baseline does not count what was not asked for
    assert "tokens.decode" not in missing

    # --egbench-gate-exclude decode: that one metric by name, whatever its kind
    named = session(inject=(), baseline_entries=entries, gate_exclude=("decode",))
    by_metric = {v.metric: v for v in named.judge(measured(named))[0]}
    assert by_metric["decode"].status == NOT_GATED and "--egbench-gate-exclude decode" in by_metric["decode"].message
    assert by_metric["tokens.decode"].status == PASS

    count_entry = next(e for e in entries.values() if e.metric == "tokens.decode")
    count_entry.runs = [[v + 1 for v in count_entry.runs[0]]]
    worse = session(inject=(), baseline_entries=entries, gate=("exact",))
    assert {v.metric: v.status for v in worse.judge(measured(worse))[0]}["tokens.decode"] == REGRESSION


def test_the_fallback_looks_only_at_the_probes_of_what_is_gated():
    """``--egbench-fallback-ref`` asks whether the machine is like the baseline's runs on the
    probes the gated latencies need (:meth:`EgbenchSession.judged_probes`). A compiled run whose
    baseline holds prefill, decode and the eager preprocessing needs every probe; with
    preprocessing left out of the gate only the GPU's, so a host unlike the baseline's (kernel
    launch 9.7 against 4.4 us) is no reason to fall back, and a GPU unlike it is. Eager: every probe."""
    from pytest_egbench.calibration import GPU_PROBES

    metrics = ("decode", "prefill", "preprocess", "tokens.decode")
    slow_host = _compiled_session("compiled", _gpu_calibration(9.7, 4200.0), metrics)
    assert slow_host.judged_probes() is None
    assert "kernel launch 4.4 us against 9.7 us" in slow_host.machine_check(slow_host.judged_probes()).reason
    slow_host.settings = dataclasses.replace(slow_host.settings, gate_exclude=("preprocess",))
    assert slow_host.judged_probes() == GPU_PROBES
    assert slow_host.machine_check(slow_host.judged_probes()).reason is None
    other_gpu = _compiled_session("compiled", _gpu_calibration(4.4, 3000.0), metrics)
    other_gpu.settings = dataclasses.replace(other_gpu.settings, gate_exclude=("preprocess",))
    assert "device memory copy" in other_gpu.machine_check(other_gpu.judged_probes()).reason
    eager = _compiled_session("eager", _gpu_calibration(9.7, 4200.0), metrics)
    eager.settings = dataclasses.replace(eager.settings, gate_exclude=("preprocess",))
    assert eager.judged_probes() is None
    # nothing of latency or throughput gated: no probe needed
    exact_only = _compiled_session("eager", _gpu_calibration(9.7, 4200.0), metrics)
    exact_only.settings = dataclasses.replace(exact_only.settings, gate=("exact",))
    assert exact_only.judged_probes() == frozenset()
    assert exact_only.machine_check(exact_only.judged_probes()).reason is None
