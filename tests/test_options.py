"""Options: parsing, validation messages, ini keys and precedence (pytester, in process)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pytest_egbench import options

SHOW = """
import pytest
from pytest_egbench.plugin import SETTINGS_KEY

def test_show(pytestconfig):
    s = pytestconfig.stash[SETTINGS_KEY]
    print("SETTINGS", s.device, s.rounds, s.warmup, s.tolerance, s.models, s.max_new_tokens, s.sources["rounds"], s.metric_tolerances)
"""


@pytest.mark.parametrize(
    "args, message",
    [
        (["--egbench-device", "tpu"], "argument --egbench-device: 'tpu' is not a device"),
        (["--egbench-device", "cuda:x"], "'cuda:x' is not a device"),
        (["--egbench-preset", "13b"], "argument --egbench-preset: '13b' is not a preset"),
        (["--egbench-quant", "gptq"], "argument --egbench-quant: 'gptq' is not a quantisation"),
        (["--egbench-rounds", "0"], "argument --egbench-rounds: '0' is below the minimum of 1"),
        (["--egbench-rounds", "many"], "argument --egbench-rounds: 'many' is not a whole number"),
        (["--egbench-warmup", "-1"], "argument --egbench-warmup: '-1' is below the minimum of 0"),
        (["--egbench-max-new-tokens", "0"], "argument --egbench-max-new-tokens"),
        (["--egbench-samples", "1.5"], "argument --egbench-samples: '1.5' is not a whole number"),
        (["--egbench-models", "eventgpt,gpt4"], "unknown model(s) gpt4"),
        (["--egbench-checkpoint", "eventgpt"], "'eventgpt' is not NAME=DIR"),
        (["--egbench-checkpoint", "llava=/no/such/dir"], "'/no/such/dir' is not a folder"),
        (["--egbench-checkpoint", "bert=/tmp"], "unknown model 'bert'"),
        (["--egbench-data", "/no/such/dir"], "argument --egbench-data: '/no/such/dir' is not an existing folder"),
        (["--egbench-tolerance", "five"], "argument --egbench-tolerance: 'five' is not a percentage"),
        (["--egbench-tolerance=-3%"], "outside 0%..1000%"),
        (["--egbench-metric-tolerance", "decode"], "'decode' is not METRIC=PERCENT"),
        (["--egbench-pvalue", "1.5"], "argument --egbench-pvalue: '1.5' is not strictly between 0 and 1"),
        (["--egbench-tolerance-abs", "2"], "argument --egbench-tolerance-abs: '2' is outside 0..1"),
        (["--egbench-gate", "rate,speed"], "argument --egbench-gate: 'rate,speed': unknown kind(s) 'speed'"),
        (["--egbench-gate", "info"], "unknown kind(s) 'info'"),
        (["--egbench-gate", ","], "',': no kind"),
        (["--egbench-gate-exclude", "vision,tt ft"], "argument --egbench-gate-exclude: 'vision,tt ft' is not a comma-separated list of metric names"),
        (
            ["--egbench", "--egbench-gate", "rate", "--egbench-inject", "decode=10%"],
            "--egbench-inject with --egbench-gate rate: --egbench-inject acts on latency verdicts",
        ),
        (["--egbench", "--egbench-gate", "exact,rate", "--egbench-fallback-ref"], "--egbench-fallback-ref with --egbench-gate exact,rate"),
    ],
)
def test_bad_values_fail_at_parsing_naming_option_and_value(pytester, args, message):
    pytester.makepyfile(test_a="def test_a(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_output_file_option_refuses_a_folder(pytester):
    pytester.mkdir("adir")
    result = pytester.runpytest("--egbench-json", "adir")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "argument --egbench-json: 'adir' is a folder" in result.stderr.str()


def test_defaults(pytester):
    pytester.makepyfile(test_show=SHOW)
    result = pytester.runpytest("-s")
    result.stdout.fnmatch_lines(
        ["*SETTINGS auto 8 2 None ('eventgpt', 'video_llava', 'llava', 'hf_llava', 'hf_video_llava', 'qwen2_vl', 'llava_onevision') 16 default ()"]
    )


def test_ini_values_apply_and_command_line_wins(pytester):
    pytester.makeini(
        """
        [pytest]
        egbench_rounds = 9
        egbench_warmup = 4
        egbench_tolerance = 7%
        egbench_models = llava, eventgpt
        egbench_metric_tolerance =
            decode=8%
            prefill=3
        """
    )
    pytester.makepyfile(test_show=SHOW)
    result = pytester.runpytest("-s", "--egbench-rounds", "12")
    result.stdout.fnmatch_lines(["*SETTINGS auto 12 4 0.07 ('llava', 'eventgpt') 16 command line --egbench-rounds (('decode', 0.08), ('prefill', 0.03))"])


def test_bad_ini_value_names_the_key_and_file(pytester):
    pytester.makeini("[pytest]\negbench_rounds = zero\n")
    pytester.makepyfile(test_a="def test_a(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ini option egbench_rounds in" in result.stderr.str() and "'zero' is not a whole number" in result.stderr.str()


def test_checkpoint_parses_to_name_and_path(tmp_path):
    assert options.parse_checkpoint(f"video-llava={tmp_path}") == ("video_llava", tmp_path)


def test_models_all_and_dedup():
    assert options.parse_models(" ALL ") == ("all",)
    assert options.parse_models("llava, llava,eventgpt") == ("llava", "eventgpt")
    assert options.parse_models("Video-LLaVA") == ("video_llava",)
    with pytest.raises(argparse.ArgumentTypeError, match="all stands alone"):
        options.parse_models("all,llava")


@pytest.mark.parametrize("text, value", [("5%", 0.05), ("5", 0.05), (" 12.5% ", 0.125), ("0", 0.0)])
def test_percent(text, value):
    assert options.parse_percent(text) == pytest.approx(value)


def test_metric_tolerance_override():
    s = options.Settings(tolerance=0.05, metric_tolerances=(("decode", 0.1),))
    assert s.tolerance_for("decode") == 0.1 and s.tolerance_for("prefill") == 0.05


def test_for_device_fills_preset_and_quant():
    cpu = options.Settings().for_device("cpu")
    cuda = options.Settings().for_device("cuda")
    assert (cpu.preset, cpu.quant, cpu.tolerance_for("decode")) == ("tiny", "fp32", 1.0)
    assert (cuda.preset, cuda.quant, cuda.tolerance_for("decode")) == ("7b", "nf4", 0.10)
    assert cuda.tolerance_for("prefill") == 0.05 and cpu.tolerance_for("prefill") == 1.0
    # the defaults are not written into the user's settings: they stay "not given"
    assert (cpu.tolerance, cpu.metric_tolerances) == (None, ())
    # an explicit global tolerance drops the per-metric defaults; an explicit metric one wins
    assert options.Settings(tolerance=0.07).for_device("cuda").tolerance_for("prefill") == 0.07
    assert options.Settings(metric_tolerances=(("prefill", 0.01),)).for_device("cuda").tolerance_for("prefill") == 0.01
    assert options.Settings(tolerance=0.1).for_device("cpu").tolerance_for("decode") == 0.1  # an explicit value wins


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_control_comparisons_use_the_given_tolerance_else_5_percent(device):
    """Device defaults absorb drift between runs; control rounds share the run, so 5 % unless the
    user said otherwise (globally or per metric)."""
    default = options.Settings().for_device(device)
    assert default.control_tolerance_for("decode") == options.CONTROL_TOLERANCE == 0.05
    assert default.control_tolerance_for("prefill") == 0.05  # CONTROL_TOLERANCE, whatever the device's defaults are
    assert default.explicit_tolerance_for("decode") is None
    given = options.Settings(tolerance=0.2, metric_tolerances=(("decode", 0.08),)).for_device(device)
    assert given.control_tolerance_for("decode") == 0.08 and given.control_tolerance_for("total") == 0.2
    assert given.tolerance_for("decode") == 0.08  # the same explicit values serve baseline comparisons


def test_ini_tolerance_counts_as_given_for_control_comparisons(pytester):
    pytester.makeini("[pytest]\negbench_metric_tolerance =\n    decode=12%\n")
    pytester.makepyfile(
        test_show="""
from pytest_egbench.plugin import SETTINGS_KEY

def test_show(pytestconfig):
    s = pytestconfig.stash[SETTINGS_KEY].for_device("cpu")
    print("CONTROL", s.control_tolerance_for("decode"), s.control_tolerance_for("prefill"), s.tolerance_for("prefill"))
"""
    )
    result = pytester.runpytest("-s")
    result.stdout.fnmatch_lines(["*CONTROL 0.12 0.05 1.0"])
    kept = options.Settings(preset="7b", quant="bf16").for_device("cpu")
    assert (kept.preset, kept.quant) == ("7b", "bf16")


def test_nf4_on_cpu_is_a_usage_error():
    with pytest.raises(pytest.UsageError, match="--egbench-quant nf4 .* needs a CUDA device"):
        options.Settings(quant="nf4", sources={"quant": "command line --egbench-quant"}).for_device("cpu")


def test_every_option_has_the_prefix_and_help():
    flags = [o.flag for o in options.OPTIONS]
    assert len(flags) == len(set(flags))
    assert all(f == "--egbench" or f.startswith("--egbench-") for f in flags)
    assert all(o.help for o in options.OPTIONS)
    assert {o.dest for o in options.OPTIONS} <= set(options.Settings.__dataclass_fields__)


def test_parsers_raise_argument_type_errors():
    with pytest.raises(argparse.ArgumentTypeError):
        options.parse_output_file(str(Path.cwd()))


def test_an_injected_run_takes_at_least_the_control_minimum_of_rounds():
    assert options.Settings(enabled=True, rounds=6).for_device("cpu").rounds == 6
    assert options.Settings(enabled=True, rounds=6, inject=(("decode", 0.2),)).for_device("cpu").rounds == options.CONTROL_MIN_ROUNDS
    assert options.Settings(enabled=True, rounds=20, inject=(("decode", 0.2),)).for_device("cpu").rounds == 20


def test_stage_and_derived_metric_names_have_one_home():
    """names.py is where the stage and derived-metric names live; the timer and the session use
    them rather than a copy (a drift here would make the name checks refuse real names)."""
    from pytest_egbench import catalog, names

    assert options.STAGES is names.STAGES
    assert names.DERIVED_METRICS is catalog.DERIVED_NAMES
    derived = catalog.derive(list(names.STAGES), {s: [1000] for s in names.STAGES}, {"prefill": [4], "decode": [3]})
    assert set(derived) == {"total", "ttft", "tpot", "prefill_tokens_per_s", "decode_tokens_per_s"}


# --------------------------------------------------------------------------- options that cannot act


@pytest.mark.parametrize("args", [["--egbench-save"], ["--egbench-json", "out.json"], ["--egbench-report", "out.md"], ["--egbench-inject", "decode=20%"]])
def test_an_output_or_action_option_without_egbench_is_a_usage_error(pytester, args):
    pytester.makepyfile(test_a="def test_a(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"{args[0]} needs --egbench" in result.stderr.str()
    assert not list(pytester.path.glob("out.*"))


BASELINE_RUN = ("--egbench", "--egbench-device", "cpu", "--egbench-rounds", "1", "--egbench-warmup", "0")


def test_a_baseline_dir_that_does_not_exist_is_a_usage_error(pytester):
    pytester.makepyfile(test_a="def test_a(): pass")
    missing = pytester.path / "baslines"
    result = pytester.runpytest(*BASELINE_RUN, "--egbench-baseline-dir", str(missing))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"--egbench-baseline-dir {missing}: no such folder" in result.stderr.str()


def test_a_baseline_dir_in_the_ini_that_does_not_exist_is_a_usage_error(pytester):
    pytester.makeini("[pytest]\negbench_baseline_dir = baselines/h200\n")
    pytester.makepyfile(test_a="def test_a(): pass")
    result = pytester.runpytest(*BASELINE_RUN)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"ini option egbench_baseline_dir in {pytester.path / 'tox.ini'}: {pytester.path / 'baselines' / 'h200'}: no such folder" in result.stderr.str()
    # without --egbench no baseline is read: a plain run is not stopped by the ini key
    assert pytester.runpytest().ret == pytest.ExitCode.OK


BENCH_ONE = """
import pytest
pytestmark = pytest.mark.egbench

def test_one(stage_timer):
    for rnd in stage_timer.rounds():
        with rnd.stage("prefill"):
            pass
"""


def test_a_missing_baseline_dir_is_fine_when_save_creates_it(pytester):
    pytester.makepyfile(test_one=BENCH_ONE)
    new = pytester.path / "new" / "baselines"
    result = pytester.runpytest(*BASELINE_RUN, "--egbench-baseline-dir", str(new), "--egbench-save")
    result.assert_outcomes(passed=1)
    assert len(list(new.glob("*.json"))) == 1


def test_a_missing_default_baseline_dir_is_fine(pytester):
    """A fresh project has no baselines/ yet: its benchmarks pass, listed as not compared, no
    usage error."""
    pytester.makepyfile(test_one=BENCH_ONE)
    assert not (pytester.path / "baselines").exists()
    result = pytester.runpytest(*BASELINE_RUN)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["not compared: no baseline for this machine's fingerprint*"])


# --------------------------------------------------------------------------- stage and metric names

NAMED = """
import pytest
pytestmark = pytest.mark.egbench(MARKER)

def test_named(stage_timer, egbench_record):
    for rnd in stage_timer.rounds():
        with rnd.stage("prefill", tokens=4):
            pass
        with rnd.stage("render"):
            pass
    egbench_record("my_bytes", 100, unit="bytes", kind="memory")
"""
NAMED_RUN = ("--egbench", "--egbench-device", "cpu", "--egbench-rounds", "1", "--egbench-warmup", "0")


def _named(pytester, marker="group='named'"):
    pytester.makepyfile(test_named=NAMED.replace("MARKER", marker))


def test_a_typo_in_an_injected_stage_is_a_usage_error_listing_the_stages(pytester):
    _named(pytester)
    result = pytester.runpytest(*NAMED_RUN, "--egbench-inject", "decod=50%")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert (
        "--egbench-inject decod=50%: no collected benchmark times a stage 'decod' (did you mean 'decode'?): the stages they time are load, preprocess, vision, prefill, decode ("
        in err
    )
    # nothing ran, and nothing claimed an injection that would not happen
    assert "injected slowdown" not in result.stdout.str() and "test_named.py" not in result.stdout.str()


def test_a_stage_is_injectable_once_its_benchmark_declares_it(pytester):
    _named(pytester)
    result = pytester.runpytest(*NAMED_RUN, "--egbench-inject", "render=50%")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--egbench-inject render=50%: no collected benchmark times a stage 'render'" in result.stderr.str()
    _named(pytester, "stages=['render'], metrics=['my_bytes']")
    result = pytester.runpytest(*NAMED_RUN, "--egbench-inject", "render=50%", "--egbench-metric-tolerance", "my_bytes=5%")
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), result.stderr.str()
    result.stdout.fnmatch_lines(["collected 1 item", "egbench: injected slowdown render=+50%, each steady round after an unchanged control round*"])


def test_an_undeclared_stage_or_recorded_metric_is_named_in_the_summary(pytester, unwrapped):
    _named(pytester)
    result = pytester.runpytest(*NAMED_RUN)
    unwrapped(result).fnmatch_lines(
        [
            "egbench: not declared in its egbench marker (stages=[[]...[]] for a stage, metrics=[[]...[]] for a recorded metric)* [[]NotDeclaredWarning[]]: 2 metric(s) in 1 benchmark(s): test_named (my_bytes, render)"
        ]
    )
    _named(pytester, "stages=['render'], metrics=['my_bytes']")
    assert "not declared in its egbench marker" not in pytester.runpytest(*NAMED_RUN).stdout.str()


def test_a_typo_in_a_metric_tolerance_is_a_usage_error_listing_the_metrics(pytester):
    _named(pytester, "metrics=['my_bytes']")
    result = pytester.runpytest(*NAMED_RUN, "--egbench-metric-tolerance", "decdoe=8%")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (
        "--egbench-metric-tolerance decdoe=8%: no collected benchmark produces a metric 'decdoe' that takes a tolerance (did you mean 'decode'?): "
        "the metrics they produce are load, preprocess, vision, prefill, decode, total, ttft, tpot, prefill_tokens_per_s, decode_tokens_per_s, my_bytes ("
    ) in result.stderr.str()


def test_gate_exclude_names_are_checked_against_the_collected_metrics(pytester):
    """``--egbench-gate-exclude`` takes the metrics the benchmarks produce, token counts included;
    a typo is a usage error naming the option (and the ini key), with the close match."""
    _named(pytester, "metrics=['my_bytes']")
    result = pytester.runpytest(*NAMED_RUN, "--egbench-gate-exclude", "vision,decdoe")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--egbench-gate-exclude decdoe: no collected benchmark produces a metric 'decdoe' (did you mean 'decode'?)" in result.stderr.str()
    assert "vision:" not in result.stderr.str()
    pytester.makeini("[pytest]\negbench_gate_exclude = tokens.decode,my_bytes,tpot\n")
    assert "no collected benchmark produces" not in pytester.runpytest(*NAMED_RUN).stderr.str()
    pytester.makeini("[pytest]\negbench_gate_exclude = tokens.render\n")
    result = pytester.runpytest(*NAMED_RUN)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"ini option egbench_gate_exclude in {pytester.path / 'tox.ini'}: tokens.render: no collected benchmark produces" in result.stderr.str()


def test_a_tolerance_for_a_token_count_is_refused_with_the_reason(pytester):
    _named(pytester)
    result = pytester.runpytest(*NAMED_RUN, "--egbench-metric-tolerance", "tokens.prefill=8%")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "'tokens.prefill' is a token count, an exact metric: it must equal the baseline, so no tolerance applies to it" in result.stderr.str()


def test_a_typo_in_the_ini_metric_tolerance_is_a_usage_error_naming_the_key(pytester):
    pytester.makeini("[pytest]\negbench_metric_tolerance =\n    decode=8%\n    decdoe=8%\n")
    _named(pytester)
    result = pytester.runpytest(*NAMED_RUN)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert f"ini option egbench_metric_tolerance in {pytester.path / 'tox.ini'}: decdoe=8%: no collected benchmark produces a metric 'decdoe'" in err
    assert "the metrics they produce are load, preprocess, vision, prefill, decode, total, ttft" in err
    assert "decode=8%" not in err.replace("decdoe=8%", "")  # the good line is not blamed
    # without --egbench no benchmark runs and the key is not checked: plain pytest is not stopped
    assert pytester.runpytest().ret == pytest.ExitCode.OK


def test_a_typo_in_the_marker_tolerances_is_a_usage_error_naming_the_test(pytester):
    _named(pytester, "tolerances={'decdoe': '8%'}")
    result = pytester.runpytest(*NAMED_RUN)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "test_named.py::test_named: egbench marker: tolerances decdoe=8%: no collected benchmark produces a metric 'decdoe'" in err
    assert "the metrics they produce are load, preprocess, vision, prefill, decode, total" in err
    _named(pytester, "tolerances={'decode': 'lots'}")
    result = pytester.runpytest(*NAMED_RUN)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "test_named.py::test_named: egbench marker: tolerances decode=lots: 'lots' is not a percentage" in result.stderr.str()


def test_a_declaration_that_is_not_a_list_of_names_is_a_usage_error(pytester):
    _named(pytester, "stages='render'")
    result = pytester.runpytest(*NAMED_RUN)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "test_named.py::test_named: egbench marker: stages= must be a list of names, got 'render'" in result.stderr.str()


def test_a_path_value_that_pytest_took_for_its_rootdir_is_named(tmp_path):
    """pytest picks its rootdir before it knows the plugin's options: in ``--egbench-baseline-dir
    PATH`` an existing PATH outside the project becomes a test path there, pytest finds no ini
    file (the project's lies below the rootdir it chose), and the message says to write ``=``."""
    project, outside = tmp_path / "proj", tmp_path / "bl"
    project.mkdir()
    outside.mkdir()
    (project / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = ''\n")
    args = ["--egbench", "--egbench-baseline-dir", str(outside)]
    why = options.rootdir_taken_from(args, project, tmp_path, None)
    assert why is not None and f"--egbench-baseline-dir={outside}" in why and str(project / "pyproject.toml") in why
    assert options.rootdir_taken_from(args, project, project, project / "pyproject.toml") is None  # pytest read the ini
    assert options.rootdir_taken_from(["--egbench", f"--egbench-baseline-dir={outside}"], project, tmp_path, None) is None
    assert options.rootdir_taken_from(["--egbench", "--egbench-baseline-dir", str(tmp_path / "missing")], project, tmp_path, None) is None
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n")  # no pytest section: pytest has no ini to miss
    assert options.rootdir_taken_from(args, project, tmp_path, None) is None


def test_a_baseline_folder_outside_the_project_given_as_two_arguments_stops_the_run(pytester, tmp_path_factory):
    pytester.makepyprojecttoml("[tool.pytest.ini_options]\naddopts = '-p no:cacheprovider'\n")
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    outside = tmp_path_factory.mktemp("baselines-elsewhere")
    result = pytester.runpytest_subprocess("--egbench", "--egbench-device", "cpu", "--egbench-baseline-dir", str(outside))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--egbench-baseline-dir {outside}: pytest took its rootdir*write --egbench-baseline-dir={outside}*"])
    again = pytester.runpytest_subprocess("--egbench", "--egbench-device", "cpu", f"--egbench-baseline-dir={outside}")
    assert again.ret == pytest.ExitCode.NO_TESTS_COLLECTED  # runs: --egbench deselects the one plain test
