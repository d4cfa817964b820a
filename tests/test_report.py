"""JSON layout, atomic writes and the terminal stage table, on synthetic measurements."""

from __future__ import annotations

import json
import re

import pytest

from pytest_egbench.atomic import _umask, write_json_atomic
from pytest_egbench.options import Settings
from pytest_egbench.report import benchmark_json, markdown_report, render_markdown, render_text, stage_table, terminal_lines
from pytest_egbench.session import EgbenchSession, Measurement, measurements_from_timing
from pytest_egbench.timing import TimingResults
from pytest_egbench.verdict import BASELINE_REFERENCE, CONTROL_REFERENCE


def timing(scale: int = 1) -> TimingResults:
    ms = 1_000_000
    return TimingResults(
        stages=["load", "prefill", "decode"],
        steady={"load": [1 * ms * scale] * 3, "prefill": [4 * ms * scale, 5 * ms * scale, 6 * ms * scale], "decode": [15 * ms * scale] * 3},
        cold={"load": 9 * ms, "prefill": 40 * ms, "decode": 30 * ms},
        warmup={"load": [2 * ms], "prefill": [6 * ms], "decode": [16 * ms]},
        tokens={"load": [None] * 3, "prefill": [637] * 3, "decode": [15] * 3},
        cold_tokens={"prefill": 637, "decode": 15},
    )


def session_with(*models: str) -> EgbenchSession:
    session = EgbenchSession(Settings(enabled=True, preset="tiny", quant="fp32"), "cpu")
    session.device_block = {"device": "cpu", "gpu_name": None}
    for i, model in enumerate(models, start=1):
        session.add_timing(
            timing(i),
            nodeid=f"benchmarks/test_x.py::test_stages[{model}]",
            test=f"test_stages[{model}]",
            group="stages",
            model=model,
            params={"model": model},
            extra_info={"model": model},
        )
    return session


def test_measurements_from_timing_units_and_kinds():
    ms = {m.metric: m for m in measurements_from_timing(timing(), nodeid="n", test="t", group="g", model="m", params={}, extra_info={})}
    assert ms["prefill"].samples == pytest.approx([0.004, 0.005, 0.006]) and ms["prefill"].unit == "s"
    assert ms["prefill"].cold == pytest.approx(0.040) and ms["prefill"].warmup == pytest.approx([0.006])
    assert ms["tokens.prefill"].samples == [637.0] * 3 and ms["tokens.prefill"].kind == "exact"
    assert "tokens.load" not in ms
    assert ms["ttft"].samples == pytest.approx([0.005, 0.006, 0.007])
    assert ms["tpot"].samples == pytest.approx([0.001] * 3) and ms["tpot"].cold == pytest.approx(0.002)
    assert ms["decode_tokens_per_s"].unit == "tokens/s" and ms["decode_tokens_per_s"].samples == pytest.approx([1000.0] * 3)


def test_a_metric_recorded_twice_is_refused():
    session = session_with("eventgpt")
    with pytest.raises(ValueError, match="recorded twice"):
        session.add_timing(timing(), nodeid="benchmarks/test_x.py::test_stages[eventgpt]", test="t", group="stages", model="eventgpt", params={}, extra_info={})


def test_benchmark_json_layout():
    doc = benchmark_json(session_with("eventgpt"), {"node": "x", "egbench": {"gpu_name": None}}, {"id": "abc"})
    assert set(doc) >= {"machine_info", "commit_info", "benchmarks", "datetime", "version", "egbench"}
    names = {b["name"] for b in doc["benchmarks"]}
    assert names == {f"test_stages[eventgpt]::{m}" for m in ("load", "prefill", "decode", "total", "ttft", "tpot")}
    prefill = next(b for b in doc["benchmarks"] if b["name"].endswith("::prefill"))
    assert prefill["group"] == "stages" and prefill["fullname"] == "benchmarks/test_x.py::test_stages[eventgpt]::prefill"
    assert prefill["stats"]["data"] == pytest.approx([0.004, 0.005, 0.006]) and prefill["stats"]["median"] == pytest.approx(0.005)
    extra = prefill["extra_info"]
    assert (extra["model"], extra["stage"], extra["metric"], extra["unit"], extra["preset"], extra["quant"], extra["device"]) == (
        "eventgpt",
        "prefill",
        "prefill",
        "s",
        "tiny",
        "fp32",
        "cpu",
    )
    other = {m["name"]: m for m in doc["egbench"]["metrics"]}
    assert other["test_stages[eventgpt]::tokens.prefill"]["stats"]["median"] == 637
    assert doc["egbench"]["schema_version"] == 1
    json.dumps(doc, allow_nan=False)


def test_benchmark_json_carries_the_control_rounds():
    res = timing()
    res.control = {"load": [1_000_000] * 3, "prefill": [4_000_000] * 3, "decode": [10_000_000] * 3}
    res.control_tokens = dict(res.tokens)
    session = EgbenchSession(Settings(enabled=True, preset="tiny", quant="fp32", inject=(("decode", 0.5),)), "cpu")
    session.add_timing(res, nodeid="n", test="t", group="g", model="m", params={}, extra_info={})
    doc = benchmark_json(session, {"egbench": {}}, {})
    bench = {b["name"]: b for b in doc["benchmarks"]}
    assert bench["t::decode"]["extra_info"]["control"] == pytest.approx([0.010] * 3)
    assert bench["t::tpot"]["extra_info"]["control"] == pytest.approx([0.010 / 15] * 3)
    assert bench["t::decode"]["stats"]["data"] == pytest.approx([0.015] * 3)  # stats stay the steady rounds
    metrics = {m["name"]: m for m in doc["egbench"]["metrics"]}
    assert metrics["t::decode_tokens_per_s"]["extra_info"]["control"] == pytest.approx([1500.0] * 3)
    assert metrics["t::tokens.decode"]["extra_info"]["control"] == []
    assert doc["egbench"]["settings"]["inject"] == {"decode": 0.5}
    # without control rounds the field is an empty list
    plain = benchmark_json(session_with("eventgpt"), {"egbench": {}}, {})
    assert all(b["extra_info"]["control"] == [] for b in plain["benchmarks"])


def test_write_json_atomic_replaces_only_when_complete(tmp_path):
    path = tmp_path / "out" / "results.json"
    write_json_atomic(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})  # cannot be serialised
    with pytest.raises(ValueError):
        write_json_atomic(path, {"a": float("nan")})
    assert json.loads(path.read_text()) == {"a": 1}  # the old file is intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.json"]  # no temporary left
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not the temporary file's 0600


def test_stage_table_medians_shares_and_ratio():
    session = session_with("eventgpt", "llava")
    table = stage_table(session.measurements, ["load", "prefill", "decode"])
    assert table.header == ["stage", "1: eventgpt median [IQR] ms", "share", "2: llava median [IQR] ms", "share", "2 / 1"]
    rows = {r[0]: r for r in table.rows}
    assert list(rows) == ["load", "prefill", "decode", "total", "TTFT", "TPOT", "prefill tok/s", "decode tok/s", "cold total"]
    # eventgpt medians: load 1, prefill 5 (IQR of 4,5,6 by method 3: 5.75 - 4.25), decode 15 ms
    # -> shares 4.8 %, 23.8 %, 71.4 %
    assert rows["prefill"] == ["prefill", "5.00 [1.50]", "23.8%", "10.0 [3.00]", "23.8%", "2.00x"]  # llava: twice as slow
    assert rows["decode"][2] == "71.4%" and rows["load"][2] == "4.8%"
    assert rows["decode tok/s"][1:2] == ["1000 [0]"] and rows["decode tok/s"][-1] == "0.50x"
    assert rows["cold total"][1] == "79.0"
    text = render_text(table)
    assert len({len(line) for line in text[1:4]}) == 1  # aligned columns
    md = render_markdown(table)
    assert md[0].startswith("| stage | 1: eventgpt median") and md[1] == "|---|---:|---:|---:|---:|---:|"


def test_terminal_lines_head_and_groups():
    lines = terminal_lines(session_with("eventgpt"))
    assert lines[0].startswith("device cpu, preset tiny, weights fp32") and "[stages]" in lines


def test_non_time_group_gets_no_stage_table():
    session = EgbenchSession(Settings(enabled=True, preset="tiny", quant="fp32"))
    session.add(Measurement(nodeid="n", test="t", group="memory", metric="kv_bytes", unit="bytes", kind="exact", samples=[1.0]))
    assert stage_table(session.measurements, []) is None


def test_markdown_report_is_built_from_measurements():
    text = markdown_report(session_with("eventgpt"), {"egbench": {"gpu_name": None, "libraries": {"torch": "2.13.0"}}, "python_version": "3.11"})
    assert text.startswith("# egbench report") and "## stages" in text and "| prefill | 5.00 [1.50] | 23.8% |" in text
    assert "torch 2.13.0" in text


def _m(metric, value, unit, model, frames=None, kind="latency"):
    return Measurement(
        nodeid="n",
        test=f"t[{model}-{frames}]",
        group="g",
        metric=metric,
        unit=unit,
        kind=kind,
        samples=[value] * 3,
        model=model,
        params={} if frames is None else {"frames": frames},
    )


def test_scaling_table_rows_are_frames_and_columns_models():
    from pytest_egbench.report import scaling_table

    ms = [_m("tokens.prefill", 577 + f + 59, "tokens", "eventgpt", f, "exact") for f in (1, 2)] + [_m("prefill", 0.001 * f, "s", "eventgpt", f) for f in (1, 2)]
    ms += [_m("tokens.prefill", 257 * 8 + 19, "tokens", "video_llava", 8, "exact")]
    table = scaling_table(ms)
    assert table.header[:3] == ["frames", "eventgpt prompt tokens", "eventgpt prefill ms"]
    assert [r[0] for r in table.rows] == ["1", "2", "8"]
    assert table.rows[0][1:3] == ["637", "1.00 [0]"] and table.rows[2][1] == "-" and table.rows[2][4] == "2075"


def test_memory_table_in_mib():
    from pytest_egbench.report import memory_table

    table = memory_table(
        [
            _m("footprint_bytes", 4 * 2**30, "bytes", "eventgpt", kind="exact"),
            _m("kv_bytes_per_token", 2**19, "bytes", "eventgpt", kind="exact"),
            _m("model_peak.prefill", 2**30, "bytes", "eventgpt", kind="memory"),
        ]
    )
    assert table.header == ["model", "weights MiB", "KV KiB/token", "KV cache MiB", "peak prefill MiB"]
    assert table.rows == [["eventgpt", "4096.0", "512.0", "-", "1024.0"]]


def test_figures_table_puts_recorded_figures_side_by_side():
    from pytest_egbench.report import figures_table
    from pytest_egbench.session import Measurement

    def m(metric, value, unit, kind, model, stage=None):
        return Measurement(
            nodeid="n", test="test_acceptance", group="acceptance", metric=metric, unit=unit, kind=kind, samples=[value], model=model, stage=stage
        )

    table = figures_table(
        [
            m("decode", 0.01, "s", "latency", "a", stage="decode"),
            m("alpha_g2", 0.5, "fraction", "rate", "a"),
            m("predicted_speedup_g2", 1.25, "x", "info", "a"),
            m("alpha_g2", 0.25, "fraction", "rate", "b"),
        ]
    )
    assert table.header == ["figure", "a", "b"]
    assert table.rows == [["alpha_g2", "0.5 fraction", "0.25 fraction"], ["predicted_speedup_g2", "1.25 x", "-"]]
    assert figures_table([m("decode", 0.01, "s", "latency", "a", stage="decode")]) is None


# --------------------------------------------------------------------------- plots and writing outputs


def _crowded_session(stages=25, configurations=12, groups=6):
    """More stages (25), configurations (12 per group) and groups (6) than any palette has colours:
    the stage bars once ended in ``KeyError: 'speculative_g1'`` past tab10's ten."""
    session = EgbenchSession(Settings(enabled=True, preset="tiny", quant="fp32"), "cpu")
    session.device_block = {"device": "cpu", "gpu_name": None}
    names = [f"speculative_g{i}" for i in range(1, stages + 1)]
    for g in range(groups):
        for c in range(configurations):
            for k, stage in enumerate(names):
                session.add(
                    Measurement(
                        nodeid=f"n{g}-{c}",
                        test=f"test_g{g}[cfg{c}]",
                        group=f"group{g}",
                        metric=stage,
                        unit="s",
                        kind="latency",
                        samples=[1e-3 * (1 + k % 5)] * 3,
                        model=f"model{c}",
                        stage=stage,
                    )
                )
    return session


def test_stage_bars_take_any_number_of_stages_configurations_and_groups(tmp_path):
    pytest.importorskip("matplotlib")
    from pytest_egbench.report import plot_stage_bars

    png = plot_stage_bars(_crowded_session(), tmp_path / "bars.png")
    assert png == tmp_path / "bars.png" and png.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_styles_stay_distinct_past_the_palette():
    pytest.importorskip("matplotlib")
    from pytest_egbench.report import _styles

    assert len(set(_styles(160))) == 160  # 20 colours x 8 variants
    assert len(_styles(1000)) == 1000  # and then repeat rather than fail


def test_token_scaling_plot_takes_many_models(tmp_path):
    pytest.importorskip("matplotlib")
    from pytest_egbench.report import plot_token_scaling

    session = EgbenchSession(Settings(enabled=True, preset="tiny", quant="fp32"), "cpu")
    for model in range(15):
        for frames in (1, 2, 4, 8):
            session.add(
                Measurement(
                    nodeid=f"n[{model}-{frames}]",
                    test=f"t[{model}-{frames}]",
                    group="token_scaling",
                    metric="prefill",
                    unit="s",
                    kind="latency",
                    samples=[1e-3 * frames] * 3,
                    model=f"model{model}",
                    params={"frames": frames},
                )
            )
    png = plot_token_scaling(session, tmp_path / "scaling.png")
    assert png.stat().st_size > 1000


def _outputs_session(tmp_path, **settings):
    session = _crowded_session(stages=12, configurations=2, groups=2)
    session.settings = Settings(enabled=True, preset="tiny", quant="fp32", json=tmp_path / "run.json", report=tmp_path / "report.md", **settings)
    session._machine = {"egbench": {"gpu_name": None}}  # no probing of this machine
    return session


def test_write_outputs_writes_every_file_with_more_stages_than_tab10(tmp_path):
    pytest.importorskip("matplotlib")
    from pytest_egbench.outputs import write_outputs

    written, errors = write_outputs(_outputs_session(tmp_path))
    assert errors == []
    assert written == [tmp_path / "run.json", tmp_path / "report.md"]
    assert "![stages](report-stages.png)" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "report-stages.png").stat().st_size > 0


def test_a_failing_plot_is_an_error_line_and_loses_nothing(tmp_path, monkeypatch):
    from pytest_egbench import outputs, report

    def broken(session, path):
        raise KeyError("speculative_g1")

    monkeypatch.setattr(report, "plot_stage_bars", broken)
    written, errors = outputs.write_outputs(_outputs_session(tmp_path))
    assert written == [tmp_path / "run.json", tmp_path / "report.md"]  # JSON first, then the report
    assert len(json.loads((tmp_path / "run.json").read_text())["benchmarks"]) == 2 * 2 * 12
    text = (tmp_path / "report.md").read_text()
    assert "## group0" in text and "![stages]" not in text
    assert len(errors) == 1 and "could not draw the stages plot (KeyError: 'speculative_g1')" in errors[0]
    assert str(tmp_path / "report-stages.png") in errors[0]


def test_any_error_in_one_output_keeps_the_others(tmp_path, monkeypatch):
    from pytest_egbench import outputs, report

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the report")

    monkeypatch.setattr(report, "markdown_report", broken)
    written, errors = outputs.write_outputs(_outputs_session(tmp_path))
    assert written == [tmp_path / "run.json"] and (tmp_path / "run.json").stat().st_size > 0
    assert errors == [f"--egbench-report {tmp_path / 'report.md'}: could not write the results: RuntimeError: a bug in the report"]
    assert not (tmp_path / "report.md").exists()


# --------------------------------------------------------------------------- verdict tables (issue 14, items 9 and 10)


def _judged_session(long_names: bool = False) -> EgbenchSession:
    """Two configurations of stages; eventgpt's prefill regressed, llava's decode improved, the
    rest not compared (statuses set as the plugin sets them)."""
    session = session_with("eventgpt", "llava")
    for m in session.measurements:
        status = {("eventgpt", "prefill"): "regression", ("llava", "decode"): "improvement", ("eventgpt", "tpot"): "pass"}.get(
            (m.model, m.metric), "not compared"
        )
        session.record_verdict(m, status, BASELINE_REFERENCE if status != "not compared" else None, f"{m.metric}: x: y")
    if long_names:
        stages = [f"speculative_gamma_{g}_with_a_long_name" for g in range(1, 9)]
        for k in range(3):
            res = TimingResults(
                stages=stages,
                steady={s: [1_000_000 * (g + 1)] * 3 for g, s in enumerate(stages)},
                cold={s: 1_000_000 for s in stages},
                warmup={},
                tokens={s: [None] * 3 for s in stages},
                cold_tokens={},
            )
            params = {"sample": "dsec_sample1_50ms_and_a_much_longer_sample_name", "target_name": "video_llava", "frames": 8 * k}
            session.add_timing(
                res,
                nodeid=f"n::t[{k}]",
                test=f"test_acceptance_with_a_long_name[{k}]",
                group="acceptance_with_a_long_group_name_" + "x" * 100,
                model="eventgpt->video_llava",
                params=params,
                extra_info={},
            )
    return session


def test_verdict_table_has_configurations_as_rows_stages_as_columns_and_each_verdict_beside_its_number():
    from pytest_egbench.report import metric_rows, verdict_grids

    ((title, grid),) = verdict_grids(metric_rows(_judged_session()))
    assert title == "stages"
    assert grid.header[:4] == ["configuration", "load", "prefill", "decode"] and "TTFT" in grid.header and grid.header[-1] == "cold total"
    rows = {r[0]: dict(zip(grid.header, r)) for r in grid.rows}
    assert list(rows) == ["eventgpt", "llava"]
    # medians by hand: eventgpt prefill 4,5,6 ms -> 5.00, IQR 1.50; llava decode 30 ms, IQR 0
    assert rows["eventgpt"]["prefill"] == "5.00 [1.50] !"  # regression
    assert rows["llava"]["decode"] == "30.0 [0] +"  # improvement
    assert rows["eventgpt"]["TPOT"].endswith(" =") and rows["eventgpt"]["load"].endswith(" -")
    assert rows["eventgpt"]["cold total"] == "79.0"  # 9 + 40 + 30 ms


def test_terminal_lines_fit_120_columns_with_long_names_and_abbreviate_with_a_legend():
    session = _judged_session(long_names=True)
    lines = terminal_lines(session)
    assert max(map(len, lines)) <= 120
    text = "\n".join(lines)
    # the long stage names are keyed, the legend spells them out; nothing is cut
    assert "speculative_gamma_8_with_a_long_name" in text.replace("\n   ", " ")
    assert any(line.startswith("marks: ") and "! regression" in line for line in lines)


def _markdown_tables(text: str) -> list[list[list[str]]]:
    """Every table of a markdown text, as rows of cells (the |---| line dropped)."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            if not set(line) <= set("|-: "):
                current.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
        elif current:
            tables.append(current)
            current = []
    return tables


def test_markdown_report_starts_with_the_verdict_table():
    text = markdown_report(_judged_session(), {"egbench": {"gpu_name": None}})
    first = _markdown_tables(text)[0]
    assert first[0][:4] == ["configuration", "load", "prefill", "decode"]
    by_config = {r[0]: dict(zip(first[0], r)) for r in first[1:]}
    assert by_config["eventgpt"]["prefill"] == "5.00 [1.50] !" and by_config["llava"]["decode"] == "30.0 [0] +"


def test_the_report_lands_in_the_github_step_summary_with_plots_beside_it(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from pytest_egbench.outputs import write_outputs

    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    session = _judged_session()
    session.settings = Settings(enabled=True, preset="tiny", quant="fp32", report=tmp_path / "report.md")
    session._machine = {"egbench": {"gpu_name": None}}
    written, errors = write_outputs(session)
    assert errors == [] and written == [tmp_path / "report.md", summary]
    text = summary.read_text()
    assert text.startswith("earlier step\n# egbench report")  # appended
    first = _markdown_tables(text)[0]
    assert first[0][:3] == ["configuration", "load", "prefill"] and first[1][2] == "5.00 [1.50] !"
    assert "![" not in text and "report-ref-stages.png" in text  # named, not linked
    png = tmp_path / "report-ref-stages.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![stages against its reference](report-ref-stages.png)" in (tmp_path / "report.md").read_text()


def test_metric_rows_carry_the_ci_and_the_reference_they_were_judged_against():
    from pytest_egbench.report import metric_rows

    session = session_with("eventgpt")
    decode = next(m for m in session.measurements if m.metric == "decode")
    decode.samples = [0.015, 0.016, 0.017, 0.018, 0.019, 0.020, 0.021]
    decode.control = [0.010, 0.011, 0.012, 0.013, 0.014, 0.015, 0.016]
    session.record_verdict(decode, "regression", CONTROL_REFERENCE, "decode: x")
    row = next(r for r in metric_rows(session, references=True) if r.metric == "decode")
    assert (row.unit, row.status, row.reference) == ("ms", "regression", CONTROL_REFERENCE.name)
    assert row.value == pytest.approx(18.0) and row.ci[0] <= 18.0 <= row.ci[1] and row.ci[0] >= 15.0 and row.ci[1] <= 21.0
    # the control rounds' median 13 ms and quartiles (as pytest_benchmark.stats.Stats gives them)
    from pytest_benchmark.stats import Stats

    oracle = Stats()
    for v in (10, 11, 12, 13, 14, 15, 16):
        oracle.update(v)
    assert row.ref_value == pytest.approx(13.0) and row.ref_spread == pytest.approx((oracle.q1, oracle.q3))
    load = next(r for r in metric_rows(session, references=True) if r.metric == "load")
    assert load.ref_value is None and load.status is None  # not judged: nothing to draw beside it


def _roofline_session(calibration=None, gpu="NVIDIA H200"):
    session = EgbenchSession(Settings(enabled=True, preset="7b", quant="bf16", runtime="compiled"), "cuda")
    session.device_block = {"device": "cuda", "gpu_name": gpu}
    session.calibration = calibration
    ms = 1_000_000
    results = TimingResults(
        stages=["prefill", "decode"],
        steady={"prefill": [20 * ms] * 3, "decode": [75 * ms] * 3},
        cold={"prefill": 30 * ms, "decode": 80 * ms},
        warmup={"prefill": [21 * ms], "decode": [76 * ms]},
        tokens={"prefill": [637] * 3, "decode": [15] * 3},
        cold_tokens={"prefill": 637, "decode": 15},
    )
    extra = {"runtime": "compiled", "compile_s": 31.25, "decode_bytes_per_token": 1.2e10, "prefill_flops": 8.0e12}
    session.add_timing(results, nodeid="b.py::test_lm_stages", test="test_lm_stages", group="lm", model=None, params={}, extra_info=extra)
    return session


def test_roofline_table_by_hand():
    from pytest_egbench.report import roofline_table, session_peaks

    session = _roofline_session()
    peaks = session_peaks(session)
    assert peaks is not None and peaks.source == "datasheet H200"  # no calibration in this run
    table = roofline_table(session.measurements, peaks)
    assert table.header == ["configuration", "runtime", "compile s", "TPOT ms", "decode GB/s", "of peak", "prefill ms", "TFLOP/s", "of peak"]
    # TPOT 75 ms / 15 tokens = 5 ms; 1.2e10 B / 5 ms = 2400 GB/s = 50 % of 4.8 TB/s;
    # 8e12 FLOPs / 20 ms = 400 TFLOP/s = 40 % of 989.4
    assert table.rows == [["lm_stages", "compiled", "31.2", "5.00", "2400", "50%", "20.0", "400", "40%"]]
    lines = terminal_lines(session)
    assert "[lm roofline (peaks: 4800 GB/s, 989 TFLOP/s bf16, from the datasheet H200)]" in lines
    # the calibration wins where it measured the device; shares of 4000 GB/s and 800 TFLOP/s
    calibrated = _roofline_session({"device": "cuda", "probes": {"device_copy": {"median": 4000.0}, "matmul": {"median": 800.0}}})
    row = roofline_table(calibrated.measurements, session_peaks(calibrated)).rows[0]
    assert row[5] == "60%" and row[8] == "50%"
    # no peak known: figures without shares, and the title says so
    unknown = _roofline_session(gpu="Some GPU")
    assert roofline_table(unknown.measurements, session_peaks(unknown)).rows[0][4:6] == ["2400", "-"]
    assert any("no peak known for this device" in line for line in terminal_lines(unknown))
    assert "## lm roofline (peaks: 4800 GB/s" in markdown_report(session, {"egbench": {}})


def test_no_roofline_table_without_its_figures():
    from pytest_egbench.report import roofline_table

    assert roofline_table(session_with("eventgpt").measurements, None) is None
    assert not any("roofline" in line for line in terminal_lines(session_with("eventgpt")))
