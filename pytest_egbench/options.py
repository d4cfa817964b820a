"""Command-line and ini options of pytest-egbench, declared once.

Every option is an :class:`OptionSpec`: the flag, its ini key (if it has one), a ``parse_*``
function, a default and help text. :func:`register` turns the table into one ``egbench`` option
group and ini keys; :func:`resolve` turns a parsed ``pytest.Config`` into a frozen
:class:`Settings`, in the order command line > ini file > default. The same ``parse_*`` function
validates both sources, so a bad value fails at argument parsing (command line) or at
configuration (ini) with a message naming the option, the source and the value.

This module imports neither torch nor anything heavy: it is loaded by plain ``pytest``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from . import names
from .argtypes import parse_non_negative_int, parse_positive_int
from .catalog import Kind
from .models.quant import QUANTS
from .models.registry import BUILTIN as _BUILTIN
from .models.runtime import RUNTIMES

#: ``--egbench-models all``: every model of the run's registry (:mod:`pytest_egbench.models.registry`).
ALL_MODELS: tuple[str, ...] = ("all",)
#: The built-in models, for the help text.
BUILTIN_MODELS: tuple[str, ...] = tuple(_BUILTIN)
#: Benchmark stages in pipeline order (their one home is :data:`pytest_egbench.names.STAGES`).
STAGES: tuple[str, ...] = names.STAGES
PRESETS: tuple[str, ...] = ("tiny", "7b")
#: Default relative latency tolerance per device type, from measurements (docs/studies.md,
#: docs/baselines.md; docs/aa-study-h100-nf4-warm.md). GPU: 10 %, with 5 % for prefill. In the A/A study
#: on an H100 (7B NF4, each run judged against a run of another process, 8 rounds after 2 warm-up
#: rounds, the machine warmed up), unchanged prefill was flagged in 0/48 comparisons at 5 % but
#: 3/48 at 3 %, and unchanged decode in 0/48 at 10 % but 1/48 at 5 %. CPU: 100 %: on a shared
#: 2-core VM the medians of ms-scale stages moved between runs of the suite by 33 % (median over
#: 86 latency metrics), 66 % (90th percentile) and up to +129 %, so a tighter CPU gate only raises
#: false alarms (the committed CPU baseline therefore holds no latency at all).
DEFAULT_TOLERANCE = {"cuda": 0.10, "cpu": 1.0}
#: Per-metric defaults on top of :data:`DEFAULT_TOLERANCE` (an explicit setting wins).
DEFAULT_METRIC_TOLERANCE = {"cuda": {"prefill": 0.05, "prefill_tokens_per_s": 0.05}, "cpu": {}}
#: Default relative tolerance of a comparison with the control rounds of an ``--egbench-inject``
#: run (the issue's base default), on any device. The device defaults above absorb the drift
#: *between* runs (clocks, host load, lease); control rounds are interleaved with the injected
#: ones in the same run, so they share that drift and it cancels. A tolerance the user gave
#: explicitly still wins.
CONTROL_TOLERANCE = 0.05
#: Steady rounds (and as many control rounds) an injected run takes at least: the paired test's
#: smallest p is 2**-n, and on this project's CPU VM, whose speed jumps between two levels during
#: a run, an injected +20 % decode was caught in 30/30 runs with 12 pairs, 23/30 with 8 and 12/30
#: with 6 unpaired (``tools/control_study.py``, docs/studies.md#control-rounds-why-paired-and-why-12-pairs).
CONTROL_MIN_ROUNDS = 12
#: Exit status of a run that passed but left a latency or throughput metric without a verdict
#: while ``--egbench-require-baseline`` was given (pytest's own statuses are 0-5).
EXIT_NOT_COMPARED = 6


# --------------------------------------------------------------------------- parsers
# Each parser takes the raw string and returns the parsed value or raises
# argparse.ArgumentTypeError with a message that quotes the value.


def parse_device(value: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (N a non-negative integer)."""
    v = value.strip().lower()
    if v in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", v):
        return v
    raise argparse.ArgumentTypeError(f"{value!r} is not a device: use auto, cpu, cuda or cuda:N")


def _choice(name: str, choices: Sequence[str]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        v = value.strip().lower()
        if v not in choices:
            raise argparse.ArgumentTypeError(f"{value!r} is not a {name}: choose from {', '.join(choices)}")
        return v

    parse.__name__ = f"parse_{name}"
    return parse


parse_preset = _choice("preset", PRESETS)
parse_quant = _choice("quantisation", QUANTS)
parse_runtime = _choice("runtime", RUNTIMES)


def _model_name(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def parse_models(value: str) -> tuple[str, ...]:
    """Comma-separated model names (normalised as the registry keys them: lower case, ``-`` as
    ``_``), deduplicated, or ``all`` (:data:`ALL_MODELS`). Whether each name is registered is
    checked once the registry is complete (the plugin's ``pytest_configure``): third-party adapters
    register after the command line is parsed."""
    names = [_model_name(n) for n in value.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{value!r} names no model: give model names or all")
    if "all" in names:
        if names != ["all"]:
            raise argparse.ArgumentTypeError(f"{value!r}: all stands alone")
        return ALL_MODELS
    return tuple(dict.fromkeys(names))


def parse_checkpoint(value: str) -> tuple[str, Path]:
    """``NAME=DIR``: a model name and an existing local folder (the name is checked against the
    registry once it is complete, as for :func:`parse_models`)."""
    name, sep, directory = value.partition("=")
    name = _model_name(name)
    if not sep or not name or not directory.strip():
        raise argparse.ArgumentTypeError(f"{value!r} is not NAME=DIR")
    path = Path(directory.strip()).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value!r}: {str(path)!r} is not a folder")
    return name, path


def parse_existing_dir(value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value!r} is not an existing folder")
    return path


def parse_dir(value: str) -> Path:
    """A folder that may not exist yet, but must not be a file."""
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value!r} exists and is not a folder")
    return path


def parse_output_file(value: str) -> Path:
    """A file to write: not a folder, and its parent folder (if it exists) is a folder."""
    path = Path(value).expanduser()
    if not value.strip() or path.is_dir():
        raise argparse.ArgumentTypeError(f"{value!r} is a folder, not a file to write")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{value!r}: {str(parent)!r} is not a folder")
    return path


def parse_percent(value: str) -> float:
    """``5%``, ``5`` (both 5 percent) -> 0.05. Must lie in [0, 1000] percent."""
    text = str(value).strip()
    number = text[:-1] if text.endswith("%") else text
    try:
        pct = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a percentage such as 5%") from None
    if not 0.0 <= pct <= 1000.0 or pct != pct:
        raise argparse.ArgumentTypeError(f"{value!r} is outside 0%..1000%")
    return pct / 100.0


def marked_tolerances(item: pytest.Item) -> dict[str, float]:
    """The per-metric relative tolerances of a pytest item's ``egbench`` marker
    (``tolerances={"decode": "10%"}``), as fractions; ``{}`` without them. Their names and values
    are checked at collection."""
    marker = item.get_closest_marker("egbench")
    return {k: parse_percent(str(v)) for k, v in ((marker.kwargs.get("tolerances") if marker else None) or {}).items()}


def format_percent(fraction: float) -> str:
    """``0.2`` -> ``"20%"``: a fraction as :func:`parse_percent` reads it back."""
    return f"{fraction * 100:g}%"


def parse_probability(value: str) -> float:
    """A number strictly between 0 and 1 (a p-value threshold)."""
    try:
        p = float(str(value).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0.0 < p < 1.0:
        raise argparse.ArgumentTypeError(f"{value!r} is not strictly between 0 and 1")
    return p


#: The metric kinds that can be gated (``--egbench-gate``): every :class:`~.catalog.Kind` but
#: ``info``, which is never gated.
GATED_KINDS: tuple[str, ...] = tuple(str(kind) for kind in Kind if kind is not Kind.INFO)


def parse_gate(value: str) -> tuple[str, ...]:
    """Comma-separated metric kinds from :data:`GATED_KINDS`, deduplicated, in that order, or
    ``all`` (every one of them)."""
    kinds = [k.strip().lower() for k in value.split(",") if k.strip()]
    if kinds == ["all"]:
        return GATED_KINDS
    unknown = [k for k in kinds if k not in GATED_KINDS]
    if not kinds or unknown:
        what = f"unknown kind(s) {', '.join(map(repr, unknown))}" if unknown else "no kind"
        raise argparse.ArgumentTypeError(f"{value!r}: {what}; give a comma-separated list of {', '.join(GATED_KINDS)}, or all")
    return tuple(k for k in GATED_KINDS if k in kinds)


def parse_abs_tolerance(value: str) -> float:
    """A non-negative absolute tolerance for rates in [0, 1] (acceptance, agreement)."""
    try:
        x = float(str(value).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0.0 <= x <= 1.0:
        raise argparse.ArgumentTypeError(f"{value!r} is outside 0..1")
    return x


def parse_metric_tolerance(value: str) -> tuple[str, float]:
    """``METRIC=PCT``, e.g. ``decode=8%``: a per-metric relative latency tolerance."""
    metric, sep, pct = value.partition("=")
    metric = metric.strip()
    if not sep or not metric or not re.fullmatch(r"[A-Za-z0-9_.\-/]+", metric):
        raise argparse.ArgumentTypeError(f"{value!r} is not METRIC=PERCENT (for example decode=8%)")
    return metric, parse_percent(pct)


def parse_metric_names(value: str) -> tuple[str, ...]:
    """Comma-separated metric names (``preprocess,vision,ttft``), deduplicated, in the order given;
    checked against the collected benchmarks' metrics when the run starts."""
    metrics = [m.strip() for m in value.split(",") if m.strip()]
    bad = [m for m in metrics if not re.fullmatch(r"[A-Za-z0-9_.\-/]+", m)]
    if not metrics or bad:
        raise argparse.ArgumentTypeError(f"{value!r} is not a comma-separated list of metric names (for example preprocess,vision)")
    return tuple(dict.fromkeys(metrics))


def parse_ref(value: str) -> str:
    """A git revision (``HEAD``, ``main~3``, a commit id) or a folder; checked for shape here and
    resolved (``git rev-parse``) when the run starts."""
    text = value.strip()
    if not text or text.startswith("-") or any(c.isspace() or ord(c) < 32 for c in text):
        raise argparse.ArgumentTypeError(f"{value!r} is not a git revision or a folder")
    return text


def parse_injection(value: str) -> tuple[str, float]:
    """``STAGE=PCT``, e.g. ``decode=20%``: a slowdown to inject into one stage (0 < PCT)."""
    stage, sep, pct = value.partition("=")
    stage = stage.strip()
    if not sep or not names.STAGE_NAME.fullmatch(stage):
        raise argparse.ArgumentTypeError(f"{value!r} is not STAGE=PERCENT (for example decode=20%)")
    fraction = parse_percent(pct)
    if fraction <= 0:
        raise argparse.ArgumentTypeError(f"{value!r}: the slowdown must be above 0%")
    return stage, fraction


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class OptionSpec:
    """One option: ``--egbench-<flag>`` on the command line, ``egbench_<flag>`` in the ini file."""

    dest: str
    flag: str
    help: str
    parse: Callable[[str], Any] | None = None  # None: a boolean switch
    default: Any = None
    ini: bool = True
    repeat: bool = False  # may be given several times; ini value is a list of lines
    metavar: str | None = None

    @property
    def ini_key(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("enabled", "--egbench", "run the egbench benchmark suite (tests marked egbench); without it they are skipped", ini=False),
    OptionSpec(
        "device",
        "--egbench-device",
        "device to benchmark on: auto (CUDA if present, else CPU), cpu, cuda or cuda:N (default auto)",
        parse_device,
        "auto",
        metavar="DEVICE",
    ),
    OptionSpec("preset", "--egbench-preset", "model sizes: tiny or 7b (default: tiny on CPU, 7b on CUDA)", parse_preset, metavar="PRESET"),
    OptionSpec("quant", "--egbench-quant", "weights: nf4, int8, bf16, fp16 or fp32 (default: nf4 on CUDA, fp32 on CPU)", parse_quant, metavar="QUANT"),
    OptionSpec(
        "runtime",
        "--egbench-runtime",
        "how the LM runs prefill and decode: eager (a growing KV cache, one eager forward per token), compiled (a static KV cache, "
        "torch.compile'd prefill and decode step, CUDA graphs) or compiled-tuned (compiled with inductor's coordinate-descent tuning: faster "
        "decode, 3x the compile time); the compiled ones need CUDA; docs/gpu.md#runtimes (default eager)",
        parse_runtime,
        "eager",
        metavar="RUNTIME",
    ),
    OptionSpec(
        "models",
        "--egbench-models",
        f"comma-separated models to run: built-in {', '.join(BUILTIN_MODELS)}, or the name of an adapter registered by an entry point or a conftest hook (docs/adapters.md), or all (default all)",
        parse_models,
        ALL_MODELS,
        metavar="LIST",
    ),
    OptionSpec(
        "checkpoints",
        "--egbench-checkpoint",
        "use real weights from a local folder for one model, NAME=DIR (repeatable)",
        parse_checkpoint,
        (),
        repeat=True,
        metavar="NAME=DIR",
    ),
    OptionSpec("data", "--egbench-data", "dataset folder (default: the bundled real samples)", parse_existing_dir, metavar="DIR"),
    OptionSpec(
        "samples",
        "--egbench-samples",
        "samples per kind: the first N with events and the first N with video, from the dataset's index (default 1)",
        parse_positive_int,
        1,
        metavar="N",
    ),
    OptionSpec(
        "rounds",
        "--egbench-rounds",
        "steady-state rounds per configuration (default 8, from the A/A study: docs/aa-study-h100-nf4-warm.md)",
        parse_positive_int,
        8,
        metavar="N",
    ),
    OptionSpec("warmup", "--egbench-warmup", "warm-up rounds after the cold first round, discarded (default 2)", parse_non_negative_int, 2, metavar="N"),
    OptionSpec(
        "max_new_tokens",
        "--egbench-max-new-tokens",
        "tokens generated per round: 1 from prefill, the rest in decode (default 16)",
        parse_positive_int,
        16,
        metavar="N",
    ),
    OptionSpec(
        "json", "--egbench-json", "write results in pytest-benchmark's JSON layout to PATH (needs --egbench)", parse_output_file, ini=False, metavar="PATH"
    ),
    OptionSpec("report", "--egbench-report", "write a markdown report to PATH (needs --egbench)", parse_output_file, ini=False, metavar="PATH"),
    OptionSpec(
        "baseline_dir",
        "--egbench-baseline-dir",
        "folder of baseline files (default: baselines/ under the rootdir, which may be missing; a folder given here must exist unless --egbench-save creates it)",
        parse_dir,
        metavar="DIR",
    ),
    OptionSpec("save", "--egbench-save", "save this run's results as the baseline of this machine's fingerprint (needs --egbench)", ini=False),
    OptionSpec(
        "tolerance",
        "--egbench-tolerance",
        "relative latency tolerance before a slowdown fails (default: 10% on CUDA with 5% for prefill, 100% on the CPU, 5% against the control rounds of --egbench-inject; see the README)",
        parse_percent,
        metavar="PCT",
    ),
    OptionSpec(
        "metric_tolerances",
        "--egbench-metric-tolerance",
        "per-metric latency tolerance METRIC=PCT, e.g. decode=8% (repeatable); METRIC: a stage, derived or declared metric of the collected benchmarks (docs/options.md#names)",
        parse_metric_tolerance,
        (),
        repeat=True,
        metavar="METRIC=PCT",
    ),
    OptionSpec(
        "tolerance_abs", "--egbench-tolerance-abs", "absolute tolerance for rates such as acceptance (default 0.02)", parse_abs_tolerance, 0.02, metavar="X"
    ),
    OptionSpec(
        "inject",
        "--egbench-inject",
        "add a calibrated delay of PCT to every steady-state round of STAGE, e.g. decode=20% (repeatable), each after an unchanged control round, to check that the gate catches a slowdown (without a baseline it is judged against the control rounds); STAGE: a stage the collected benchmarks time (docs/options.md#names); such a run cannot be saved; needs --egbench",
        parse_injection,
        (),
        ini=False,
        repeat=True,
        metavar="STAGE=PCT",
    ),
    OptionSpec(
        "gate",
        "--egbench-gate",
        f"comma-separated metric kinds that get a verdict: {', '.join(GATED_KINDS)}, or all (default all); metrics of the other kinds are recorded and listed as not gated, never failing the run (docs/judging.md#gate)",
        parse_gate,
        GATED_KINDS,
        metavar="KINDS",
    ),
    OptionSpec(
        "gate_exclude",
        "--egbench-gate-exclude",
        "comma-separated metric names recorded and listed as not gated, whatever their kind, e.g. preprocess,vision,ttft: the eager stages of a compiled-runtime run whose eager run gates them (docs/judging.md#gate); METRIC: a stage, derived or declared metric of the collected benchmarks (docs/options.md#names)",
        parse_metric_names,
        (),
        metavar="METRICS",
    ),
    OptionSpec(
        "require_baseline",
        "--egbench-require-baseline",
        f"fail the session (exit status {EXIT_NOT_COMPARED}) when any latency or throughput metric was not compared: no baseline entry, or inconclusive because the machine differs from the baseline's and no --egbench-ref was given",
    ),
    OptionSpec(
        "ref",
        "--egbench-ref",
        "judge every latency by a same-machine A/B against REV: a git revision (run from a temporary git worktree; your checkout is not touched) or a folder holding another checkout; the reference's code and this code run in interleaved processes on this machine",
        parse_ref,
        metavar="REV",
    ),
    OptionSpec(
        "ref_pairs",
        "--egbench-ref-pairs",
        "with --egbench-ref: pairs of processes (reference, current), the two of a pair run in lockstep (default 4; docs/machines.md#same-machine-ab)",
        parse_positive_int,
        4,
        metavar="N",
    ),
    OptionSpec(
        "ref_cpus",
        "--egbench-ref-cpus",
        "with --egbench-ref: pin every A/B process to these CPUs: auto (the last 4 this process may use), none, or a list such as 4-7 (default auto; Linux)",
        str,
        "auto",
        metavar="CPUS",
    ),
    OptionSpec(
        "ignore_machine",
        "--egbench-ignore-machine",
        "judge latency against a saved baseline even where this machine's calibration differs from the baseline's runs (or they carry none); the difference is still reported. For a machine you own and keep unchanged",
    ),
    OptionSpec(
        "fallback_ref",
        "--egbench-fallback-ref",
        "against a saved baseline: where this machine differs from the baseline's runs (or they carry no calibration), judge by a same-machine A/B (as --egbench-ref) against the commit of the baseline's newest run instead of calling latency inconclusive; where it matches, judge each benchmark that reads slower, or whose runs in the baseline all come from other machines, by an A/B of that benchmark against that commit (the nightly job's switch)",
    ),
    OptionSpec(
        "pvalue",
        "--egbench-pvalue",
        "significance level of the one-sided test: Mann-Whitney U against a baseline, Wilcoxon signed-rank against control rounds (default 0.01)",
        parse_probability,
        0.01,
        metavar="P",
    ),
)


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one run; ``None`` means "decided from the device" (see ``resolved_*``)."""

    enabled: bool = False
    device: str = "auto"
    preset: str | None = None
    quant: str | None = None
    runtime: str = "eager"
    #: registered model names once the plugin completed the registry (:data:`ALL_MODELS` before)
    models: tuple[str, ...] = ALL_MODELS
    checkpoints: tuple[tuple[str, Path], ...] = ()
    data: Path | None = None
    samples: int = 1
    rounds: int = 8
    warmup: int = 2
    max_new_tokens: int = 16
    json: Path | None = None
    report: Path | None = None
    baseline_dir: Path | None = None
    save: bool = False
    tolerance: float | None = None
    metric_tolerances: tuple[tuple[str, float], ...] = ()
    tolerance_abs: float = 0.02
    pvalue: float = 0.01
    #: the metric kinds judged (``--egbench-gate``); the others get :data:`~pytest_egbench.session.NOT_GATED`
    gate: tuple[str, ...] = GATED_KINDS
    #: metric names never judged whatever their kind (``--egbench-gate-exclude``)
    gate_exclude: tuple[str, ...] = ()
    inject: tuple[tuple[str, float], ...] = ()
    require_baseline: bool = False
    ref: str | None = None
    ref_pairs: int = 4
    ref_cpus: str = "auto"
    fallback_ref: bool = False
    ignore_machine: bool = False
    #: pytest-benchmark's ``--benchmark-disable`` (and no ``--benchmark-enable``): each benchmark's
    #: body runs once, 1 cold and 1 steady round, and nothing is recorded, judged or written
    untimed: bool = False
    #: "cuda" or "cpu" once :meth:`for_device` knows it: chooses the default tolerances
    device_type: str | None = None
    #: where each value came from ("command line", "ini", "default"), for messages
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def checkpoint_for(self, model: str) -> Path | None:
        return dict(self.checkpoints).get(model)

    def explicit_tolerance_for(self, metric: str) -> float | None:
        """The relative tolerance the user gave for ``metric`` (``--egbench-metric-tolerance`` or
        its ini key, else ``--egbench-tolerance`` or its ini key), or ``None`` when none was given.
        The egbench marker's ``tolerances=`` is per test and applied by the caller."""
        return dict(self.metric_tolerances).get(metric, self.tolerance)

    def tolerance_for(self, metric: str) -> float:
        """Relative tolerance of ``metric`` against a baseline: the user's
        (:meth:`explicit_tolerance_for`), else the device default (:data:`DEFAULT_METRIC_TOLERANCE`,
        :data:`DEFAULT_TOLERANCE`; CUDA's while the device is not known). Per-metric defaults apply
        only while no global tolerance was given."""
        explicit = self.explicit_tolerance_for(metric)
        if explicit is not None:
            return explicit
        kind = self.device_type or "cuda"
        return DEFAULT_METRIC_TOLERANCE[kind].get(metric, DEFAULT_TOLERANCE[kind])

    def control_tolerance_for(self, metric: str) -> float:
        """Relative tolerance of ``metric`` against this run's control rounds: the user's
        (:meth:`explicit_tolerance_for`), else :data:`CONTROL_TOLERANCE` (5 %), whatever the
        device."""
        explicit = self.explicit_tolerance_for(metric)
        return CONTROL_TOLERANCE if explicit is None else explicit

    def for_device(self, device_type: str) -> Settings:
        """Fill the device-dependent defaults: preset, quantisation, and the device type that
        chooses the default latency tolerance (:meth:`tolerance_for`); with ``inject``, raise
        ``rounds`` to at least :data:`CONTROL_MIN_ROUNDS`. ``tolerance`` and
        ``metric_tolerances`` stay what the user gave, so that :meth:`explicit_tolerance_for`
        can tell them from defaults.

        ``device_type`` is ``"cuda"`` or ``"cpu"``. NF4/int8 need CUDA (bitsandbytes' kernels), so
        asking for them on the CPU raises :class:`pytest.UsageError`.
        """
        from dataclasses import replace

        on_cuda = device_type == "cuda"
        preset = self.preset or ("7b" if on_cuda else "tiny")
        quant = self.quant or ("nf4" if on_cuda else "fp32")
        if not on_cuda and quant in ("nf4", "int8"):
            raise pytest.UsageError(
                f"--egbench-quant {quant} ({self.sources.get('quant', 'default')}) needs a CUDA device; this run is on the CPU: use fp32, bf16 or fp16"
            )
        if not on_cuda and self.runtime != "eager":
            raise pytest.UsageError(
                f"--egbench-runtime {self.runtime} ({self.sources.get('runtime', 'default')}) needs a CUDA device (its point is CUDA graphs); this run is on the CPU: use eager"
            )
        # an injected run takes at least CONTROL_MIN_ROUNDS pairs of control and steady rounds
        rounds = max(self.rounds, CONTROL_MIN_ROUNDS) if self.inject else self.rounds
        return replace(self, preset=preset, quant=quant, rounds=rounds, device_type="cuda" if on_cuda else "cpu")


def register(parser: pytest.Parser) -> None:
    """Add the ``egbench`` option group and the ini keys (called from ``pytest_addoption``)."""
    group = parser.getgroup("egbench", "multimodal LLM stage benchmarks (pytest-egbench)")
    for spec in OPTIONS:
        kwargs: dict[str, Any] = {"dest": f"egbench_{spec.dest}", "help": spec.help.replace("%", "%%")}
        if spec.parse is None:
            kwargs.update(action="store_true", default=False)
        else:
            kwargs.update(type=spec.parse, default=None, metavar=spec.metavar)
            if spec.repeat:
                kwargs["action"] = "append"
        group.addoption(spec.flag, **kwargs)
        if spec.ini:
            ini_type: Literal["linelist", "bool", "string"] = "linelist" if spec.repeat else ("bool" if spec.parse is None else "string")
            parser.addini(
                spec.ini_key,
                spec.help,
                type=ini_type,
                default=[] if spec.repeat else None,
            )


def _from_ini(config: pytest.Config, spec: OptionSpec) -> Any:
    raw = config.getini(spec.ini_key)
    if raw in (None, "", []):
        return None
    if spec.parse is None:
        return bool(raw)
    try:
        if spec.repeat:
            return tuple(spec.parse(line) for line in raw)
        value = spec.parse(str(raw))
    except argparse.ArgumentTypeError as exc:
        raise pytest.UsageError(f"ini option {spec.ini_key} in {config.inipath}: {exc}") from None
    if isinstance(value, Path) and not value.is_absolute():
        value = Path(config.rootpath, value)
    return value


def resolve(config: pytest.Config) -> Settings:
    """Settings from the command line, then the ini file, then the defaults.

    Raises :class:`pytest.UsageError` naming the ini key for a bad ini value.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in OPTIONS:
        cli = config.getoption(f"egbench_{spec.dest}")
        if spec.parse is None:
            if cli:
                values[spec.dest], sources[spec.dest] = True, f"command line {spec.flag}"
                continue
        elif cli is not None:
            values[spec.dest] = tuple(cli) if spec.repeat else cli
            sources[spec.dest] = f"command line {spec.flag}"
            continue
        ini = _from_ini(config, spec) if spec.ini else None
        if ini is not None:
            values[spec.dest], sources[spec.dest] = ini, f"ini {spec.ini_key}"
        else:
            sources[spec.dest] = "default"
            if spec.default is not None:
                values[spec.dest] = spec.default
    if "baseline_dir" not in values:
        values["baseline_dir"] = Path(config.rootpath, "baselines")
    _beside_pytest_benchmark(config, values, sources)
    return Settings(**values, sources=sources)


def _beside_pytest_benchmark(config: pytest.Config, values: dict[str, Any], sources: dict[str, str]) -> None:
    """Take in pytest-benchmark's options that act on egbench's benchmarks too
    (docs/pytest-benchmark.md): ``--benchmark-disable`` without ``--benchmark-enable`` makes the
    run untimed (1 steady round after the cold one, no warm-up). Raises
    :class:`pytest.UsageError` when ``--egbench-json`` and ``--benchmark-json`` name one file (the
    second writer would overwrite the first). Reads nothing when pytest-benchmark is not loaded."""
    if config.getoption("benchmark_disable", False) and not config.getoption("benchmark_enable", False):
        values.update(untimed=True, rounds=1, warmup=0)
        sources.update(untimed="--benchmark-disable", rounds="--benchmark-disable", warmup="--benchmark-disable")
    theirs, ours = config.getoption("benchmark_json", None), values.get("json")
    theirs = getattr(theirs, "name", theirs)  # a Path, or an open file before pytest-benchmark 5.3
    if theirs is not None and ours is not None and Path(theirs).resolve() == Path(ours).resolve():
        raise pytest.UsageError(
            f"--egbench-json and --benchmark-json both name {ours}: each writes its own benchmarks (egbench's, pytest-benchmark's); give two files"
        )


#: Options that act only in a benchmark run: without ``--egbench`` they would do nothing.
NEEDS_ENABLED: tuple[str, ...] = ("save", "json", "report", "inject", "ref", "require_baseline", "fallback_ref")


#: The ini files pytest reads its configuration from, and the section each must hold to count
#: (``None``: the file counts whatever it holds).
PYTEST_INI_FILES = (("pytest.ini", None), ("pyproject.toml", "[tool.pytest.ini_options]"), ("tox.ini", "[pytest]"), ("setup.cfg", "[tool:pytest]"))


def project_ini(start: Path) -> Path | None:
    """The pytest configuration file pytest would find from ``start`` (it or a folder above it
    holding one of :data:`PYTEST_INI_FILES` with its section), or ``None``."""
    for folder in (start, *start.parents):
        for name, section in PYTEST_INI_FILES:
            path = folder / name
            if path.is_file() and (section is None or section in path.read_text(encoding="utf-8", errors="replace")):
                return path
    return None


def rootdir_taken_from(args: Sequence[str], invocation_dir: Path, rootpath: Path, inipath: Path | None) -> str | None:
    """Why pytest's rootdir came from an egbench option's value, or ``None`` when it did not.

    pytest picks its rootdir before it knows a plugin's options, so in ``--egbench-baseline-dir
    PATH`` (two arguments, not ``--egbench-baseline-dir=PATH``) an existing ``PATH`` counts as a
    test path there: outside the project, the rootdir becomes a folder above both, the project's
    ini file is not read, node ids start with the project's folder name and no baseline entry
    matches (seen: 370 metrics "not compared"). Detected when pytest found no ini file
    (``inipath`` is ``None``) though ``invocation_dir`` lies under one (:func:`project_ini`) and an
    egbench option that takes a value was given one, as a separate argument, that exists."""
    if inipath is not None:
        return None
    ini = project_ini(invocation_dir)
    if ini is None:
        return None
    valued = {spec.flag for spec in OPTIONS if spec.parse is not None}
    for flag, value in zip(args, args[1:]):
        if flag in valued and (invocation_dir / value).exists():
            return (
                f"{flag} {value}: pytest took its rootdir ({rootpath}) from this value instead of reading {ini} (it treats a plugin option's "
                f"separate value as a test path while it picks the rootdir), so node ids would match no baseline: write {flag}={value}"
            )
    return None


def check(settings: Settings, inipath: Path | None = None) -> None:
    """Raise :class:`pytest.UsageError` for options that cannot act as given (one line each):

    * ``--egbench-save``, ``--egbench-json``, ``--egbench-report`` or ``--egbench-inject``
      without ``--egbench``;
    * ``--egbench-save`` with ``--egbench-inject``; ``--egbench-ref`` with either;
    * ``--egbench-inject``, ``--egbench-ref`` or ``--egbench-fallback-ref`` where
      ``--egbench-gate`` leaves latency out (they act on latency verdicts only);
    * ``--egbench-save``, ``--egbench-json``, ``--egbench-report``, ``--egbench-inject`` or
      ``--egbench-ref`` in an untimed run (pytest-benchmark's ``--benchmark-disable``);
    * with ``--egbench``, a baseline folder given on the command line or in the ini file that
      does not exist, unless ``--egbench-save`` will create it. The default folder (``baselines/``
      under the rootdir) may be missing: a fresh project has none.

    Stage and metric names are checked after collection (:mod:`pytest_egbench.names`).
    """
    by_dest = {spec.dest: spec for spec in OPTIONS}
    for dest in NEEDS_ENABLED:
        if getattr(settings, dest) and not settings.enabled:
            flag = by_dest[dest].flag
            raise pytest.UsageError(f"{flag} needs --egbench: without it the benchmarks are skipped and {flag} does nothing")
    if settings.save and settings.inject:
        raise pytest.UsageError("--egbench-save with --egbench-inject: a run with an injected slowdown can never be saved as a baseline")
    if settings.enabled and settings.untimed:
        for dest in ("save", "json", "report", "inject", "ref"):
            if getattr(settings, dest):
                flag = by_dest[dest].flag
                raise pytest.UsageError(
                    f"{flag} with --benchmark-disable: an untimed run measures nothing, so {flag} has nothing to act on; drop one, or add --benchmark-enable"
                )
    if settings.ref and (settings.save or settings.inject):
        raise pytest.UsageError(
            f"--egbench-ref with {'--egbench-save' if settings.save else '--egbench-inject'}: an A/B run is judged against the reference's processes; it is never saved and injects nothing"
        )
    if "latency" not in settings.gate:
        for dest in ("inject", "ref", "fallback_ref"):
            if getattr(settings, dest):
                flag = by_dest[dest].flag
                raise pytest.UsageError(
                    f"{flag} with --egbench-gate {','.join(settings.gate)}: {flag} acts on latency verdicts, and latency is not gated; add latency to --egbench-gate or drop {flag}"
                )
    source = settings.sources.get("baseline_dir", "default")
    path = settings.baseline_dir
    if settings.enabled and not settings.save and source != "default" and path is not None and not path.is_dir():
        where = f"ini option {by_dest['baseline_dir'].ini_key} in {inipath}:" if source.startswith("ini") else by_dest["baseline_dir"].flag
        raise pytest.UsageError(f"{where} {path}: no such folder (--egbench-save creates it; only the default, baselines/ under the rootdir, may be missing)")
