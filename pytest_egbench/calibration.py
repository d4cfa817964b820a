"""Machine calibration: how fast this machine is on the resources the stages use, and whether it
is the same machine (within the probe's own spread) as the one a baseline was measured on.

Leased and shared GPU machines change under one GPU name: on a new H200 host an unchanged suite
read every stage 30-170 % slower (kernel launch 7.9-11 us, 2 M Python additions 250 ms). A latency
verdict against a baseline from another machine then judges the machine, not the code. So every
run measures the machine first (:func:`calibrate`, a few seconds, before the first benchmark),
stores the figures in ``machine_info.egbench.calibration`` and with every run saved to a baseline,
and :func:`compare` decides, resource by resource, whether this machine differs from the
baseline's runs by more than the probe's spread. The plugin then calls latency verdicts against
that baseline *inconclusive* (neither pass nor failure) and says which resource moved, by how much.

Probes (one function each, each repeated ``repeats`` times, interleaved, after one discarded
warm-up pass; figures are the median of the repeats):

=================  ==========  =====================================================================
probe              unit        what it measures (stages that depend on it)
=================  ==========  =====================================================================
``python_ops``     ns/op       host interpreter speed: 200,000 integer additions in a Python loop
                               (load, preprocess, eager decode's per-layer host work)
``launch``         us          one tiny op dispatched from Python (CUDA: a 1-element ``add``
                               kernel launched, host time per launch over 200 queued launches;
                               CPU: the same op run on the CPU) (eager decode)
``eager_layer``    us          one eager layer of a 32-layer stack of ``Linear(256, 256)`` + SiLU
                               + residual modules called from Python on a 1-token input, wall time
                               per layer with one synchronisation per stack (eager decode: module
                               calls, dispatch and launches, what a host-bound decode spends)
``h2d``            GB/s        host-to-device copy of 64 MiB from pinned memory (CUDA only;
                               preprocess)
``matmul``         TFLOP/s     bf16 4096^3 matmuls on CUDA, fp32 512^3 on the CPU (prefill, vision)
``device_copy``    GB/s        copy of a 1 GiB (CUDA) or 64 MiB (CPU) tensor, bytes read plus
                               written over the time (decode reads the weights once a token)
``sm_clock``       MHz         SM clock read from NVML while matmuls run (CUDA only)
=================  ==========  =====================================================================

The probe's spread (``spread``) is the largest relative distance of one repeat from the median
of the repeats, the farthest repeat left out when there are at least 4. Within one process that under-states the spread between processes on the same
machine, so the margin used by :func:`compare` is never below :data:`MIN_MARGIN` (the spread of
the probes between processes on one machine, measured by ``tools/calibration_study.py``;
docs/machines.md#machine-calibration).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Version of the calibration block (stored in results files and baselines).
CALIBRATION_VERSION = 1
#: Probe name -> (unit, higher is better, label used in messages).
PROBES: dict[str, tuple[str, bool, str]] = {
    "python_ops": ("ns/op", False, "Python op"),
    "launch": ("us", False, "kernel launch"),
    "eager_layer": ("us", False, "eager layer"),
    "h2d": ("GB/s", True, "host-to-device copy"),
    "matmul": ("TFLOP/s", True, "matmul"),
    "device_copy": ("GB/s", True, "device memory copy"),
    "sm_clock": ("MHz", True, "SM clock under load"),
}
#: Smallest relative margin :func:`compare` allows on a probe, whatever the repeats' own spread, per
#: device type: the spread of each probe's median between separate processes on one machine (the
#: same lease, minutes apart), rounded up. Measured by ``tools/calibration_study.py``
#: (docs/machines.md#machine-calibration; ``docs/measurements/calibration-*.json``). On this project's shared 2-core
#: CPU VM, loaded by other work, the medians moved between processes by 41 % (Python ops), 69 %
#: (launch), 48 % (matmul) and 10 % (memory copy): a CPU calibration can only tell machines apart
#: that differ by more than that. On an H200 lease (5 processes): Python ops 34 %, launch 16 %,
#: host-to-device copy 1.3 %, matmul 1.0 %, device copy 0.4 %, SM clock 0 %.
MIN_MARGIN: dict[str, dict[str, float]] = {
    "cuda": {"python_ops": 0.40, "launch": 0.25, "eager_layer": 0.25, "h2d": 0.05, "matmul": 0.03, "device_copy": 0.03, "sm_clock": 0.03},
    "cpu": {"python_ops": 0.50, "launch": 0.75, "eager_layer": 0.75, "matmul": 0.50, "device_copy": 0.25},
}


#: A probe whose repeats in this run spread by more than this (relative) cannot vouch for the
#: machine: its margin would swallow any difference. Seen on this project's 2-core VM beside CPU
#: burners: kernel launch ±2426 %.
MAX_SPREAD = 1.0


def min_margin(probe: str, device: str | None) -> float:
    """:data:`MIN_MARGIN` of ``probe`` for the device type of ``device`` (``"cuda:0"``, ``"cpu"``;
    CUDA's when unknown), 0.10 for a probe it does not list."""
    kind = "cpu" if str(device or "cuda").startswith("cpu") else "cuda"
    return MIN_MARGIN[kind].get(probe, 0.10)


@dataclass(frozen=True)
class ProbeResult:
    """One probe's repeats: ``samples`` in ``unit``; ``median``; ``spread`` (see :attr:`spread`)."""

    name: str
    unit: str
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """The largest ``|x / median - 1|`` over the repeats, leaving out the single farthest one
        when there are at least 4 (one repeat hit by a neighbour's burst would otherwise set the
        margin for the whole run)."""
        med = self.median
        if not med:
            return 0.0
        deviations = sorted(abs(x / med - 1) for x in self.samples)
        return deviations[-2] if len(deviations) >= 4 else deviations[-1]

    def to_json(self) -> dict[str, Any]:
        return {"unit": self.unit, "median": self.median, "spread": self.spread, "samples": list(self.samples)}


# --------------------------------------------------------------------------- probes


def _python_ops(n: int = 200_000) -> float:
    """ns per integer addition in a plain Python loop."""
    start = time.perf_counter_ns()
    total = 0
    for i in range(n):
        total += i
    return (time.perf_counter_ns() - start) / n


def _launch(torch: Any, device: Any, n: int = 200) -> float:
    """us of host time per 1-element ``add`` (CUDA: launches queued, synchronised once after)."""
    x = torch.ones(1, device=device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter_ns()
    for _ in range(n):
        x.add_(1.0)
    elapsed = time.perf_counter_ns() - start
    sync()
    return elapsed / n / 1e3


def _timed(torch: Any, device: Any, work: Callable[[], object], reps: int) -> float:
    """Seconds per call of ``work`` (CUDA events on the GPU, ``perf_counter`` on the CPU)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            work()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / reps
    t0 = time.perf_counter()
    for _ in range(reps):
        work()
    return (time.perf_counter() - t0) / reps


def _Residual(torch: Any) -> Any:
    """``x + silu(linear(x))``: a module call with a few kernels, like one piece of a decoder layer."""

    class Residual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(256, 256)

        def forward(self, x: Any) -> Any:
            return x + torch.nn.functional.silu(self.linear(x))

    return Residual()


class _Probes:
    """The tensors of the probes, made once, and one method per probe."""

    def __init__(self, device: Any) -> None:
        import torch

        self.torch, self.device = torch, device
        on_cuda = device.type == "cuda"
        self.n = 4096 if on_cuda else 512
        dtype = torch.bfloat16 if on_cuda else torch.float32
        self.a = torch.randn(self.n, self.n, device=device, dtype=dtype)
        self.b = torch.randn(self.n, self.n, device=device, dtype=dtype)
        copy_bytes = (1 << 30) if on_cuda else (64 << 20)
        self.src = torch.empty(copy_bytes, dtype=torch.uint8, device=device)
        self.dst = torch.empty_like(self.src)
        self.host = torch.empty(64 << 20, dtype=torch.uint8).pin_memory() if on_cuda else None
        torch.manual_seed(0)
        self.stack = torch.nn.Sequential(*[_Residual(torch) for _ in range(32)]).to(device).eval()
        self.token = torch.randn(1, 1, 256, device=device) * 0.01
        self.dev = torch.empty(64 << 20, dtype=torch.uint8, device=device) if on_cuda else None

    def eager_layer(self) -> float:
        """us of wall time per layer of an eager 32-layer stack (one synchronisation per stack)."""
        torch = self.torch
        sync = (lambda: torch.cuda.synchronize(self.device)) if self.device.type == "cuda" else (lambda: None)
        with torch.inference_mode():
            x = self.token
            sync()
            start = time.perf_counter_ns()
            for _ in range(4):
                x = self.stack(x)
            sync()
        return (time.perf_counter_ns() - start) / (4 * len(self.stack)) / 1e3

    def matmul(self) -> float:
        reps = 20 if self.device.type == "cuda" else 4
        seconds = _timed(self.torch, self.device, lambda: self.torch.mm(self.a, self.b), reps)
        return 2 * self.n**3 / seconds / 1e12

    def device_copy(self) -> float:
        reps = 10 if self.device.type == "cuda" else 4
        seconds = _timed(self.torch, self.device, lambda: self.dst.copy_(self.src), reps)
        return 2 * self.src.numel() / seconds / 1e9

    def h2d(self) -> float:
        host, dev = self.host, self.dev
        if host is None or dev is None:  # allocated on CUDA only, and h2d is measured on CUDA only
            raise RuntimeError("h2d needs a CUDA device: no pinned host buffer or device buffer was allocated")
        seconds = _timed(self.torch, self.device, lambda: dev.copy_(host, non_blocking=True), 10)
        return host.numel() / seconds / 1e9

    def sm_clock(self) -> float | None:
        """SM clock (MHz) read from NVML while about 100 ms of matmuls are queued."""
        from .machine import nvml_id, sm_clock_mhz

        for _ in range(60):
            self.torch.mm(self.a, self.b)
        time.sleep(0.02)  # let the queue start running before reading the clock
        mhz = sm_clock_mhz(nvml_id(self.device))
        self.torch.cuda.synchronize(self.device)
        return mhz


def calibrate(device: Any, *, repeats: int = 5) -> dict[str, Any]:
    """Measure this machine on :data:`PROBES` (those that apply to ``device``).

    ``device``: a ``torch.device`` (CPU or CUDA). Runs one discarded pass, then ``repeats``
    interleaved passes. Returns the calibration block::

        {"version": 1, "device": "cuda:0", "repeats": 5, "seconds": 2.1,
         "probes": {"launch": {"unit": "us", "median": 4.4, "spread": 0.03, "samples": [...]}, ...}}

    A probe that cannot run (NVML missing for ``sm_clock``) is left out. Takes about 1-3 s on an
    H200 and 1-2 s on a 2-core CPU.
    """
    import torch

    t0 = time.perf_counter()
    probes = _Probes(device)
    calls: dict[str, Callable[[], float | None]] = {
        "python_ops": _python_ops,
        "launch": lambda: _launch(torch, device),
        "eager_layer": probes.eager_layer,
        "matmul": probes.matmul,
        "device_copy": probes.device_copy,
    }
    if device.type == "cuda":
        calls["h2d"] = probes.h2d
        calls["sm_clock"] = probes.sm_clock
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for rep in range(repeats + 1):
        for name, call in calls.items():
            value = call()
            if rep and value is not None:
                samples[name].append(float(value))
    results = {name: ProbeResult(name, PROBES[name][0], tuple(values)) for name, values in samples.items() if values}
    del probes
    return {
        "version": CALIBRATION_VERSION,
        "device": str(device),
        "repeats": repeats,
        "seconds": round(time.perf_counter() - t0, 3),
        "probes": {name: r.to_json() for name, r in results.items()},
    }


# --------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class Difference:
    """One probe on which this machine differs from a baseline's runs.

    ``current``: this run's median; ``low``/``high``: the lowest and highest median of the
    baseline's runs; ``margin``: the relative margin allowed (the probe's spread, never below
    :data:`MIN_MARGIN`); ``runs``: how many baseline runs carried the probe.
    """

    probe: str
    current: float
    low: float
    high: float
    margin: float
    runs: int
    #: the probe's own spread was above :data:`MAX_SPREAD` (in this run, or in every baseline run
    #: that carries it): too noisy to compare
    noisy: bool = False
    #: where it was too noisy: "on this machine" or "in the baseline's runs"
    noisy_where: str = "on this machine"

    @property
    def change(self) -> float:
        """Relative distance of ``current`` from the nearer end of the baseline's range."""
        ref = self.high if self.current > self.high else self.low
        return self.current / ref - 1

    def describe(self) -> str:
        unit, _, label = PROBES.get(self.probe, ("", True, self.probe))
        if self.noisy:
            return f"{label} too noisy {self.noisy_where} to compare (its repeats spread ±{self.margin:.0%}, more than {MAX_SPREAD:.0%})"
        span = f"{_num(self.low)} {unit}" if self.low == self.high else f"{_num(self.low)}-{_num(self.high)} {unit}"
        runs = f"the baseline's {self.runs} runs" if self.runs > 1 else "the baseline's run"
        return f"{label} {_num(self.current)} {unit} against {span} in {runs} ({self.change:+.0%}; probe spread allowed {self.margin:.0%})"


def _num(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def _medians(calibration: Mapping[str, Any] | None) -> dict[str, tuple[float, float]]:
    """``{probe: (median, spread)}`` of a calibration block (empty for ``None`` or garbage)."""
    if not isinstance(calibration, Mapping) or not isinstance(calibration.get("probes"), Mapping):
        return {}
    out = {}
    for name, raw in calibration["probes"].items():
        try:
            median, spread = float(raw["median"]), float(raw.get("spread", 0.0))
        except (KeyError, TypeError, ValueError):
            continue
        if median > 0 and median == median and median != float("inf") and spread >= 0:
            out[str(name)] = (median, spread)
    return out


def probe_medians(calibration: Mapping[str, Any] | None) -> dict[str, float]:
    """``{probe: median}`` of a calibration block (empty for ``None`` or a block without probes);
    units in :data:`PROBES`."""
    return {name: median for name, (median, _) in _medians(calibration).items()}


#: The probes of the GPU itself: memory bandwidth, matmul rate, SM clock.
GPU_PROBES = frozenset({"matmul", "device_copy", "sm_clock"})
#: Metrics of the stages a compiled runtime replays as CUDA graphs: prefill (one graph for the
#: prompt) and decode (one a token), and the figures derived from them alone.
GRAPH_METRICS = frozenset({"prefill", "prefill_tokens_per_s", "decode", "tpot", "decode_tokens_per_s"})


def probes_for(metric: str, runtime: str) -> frozenset[str] | None:
    """The probes whose difference makes ``metric`` inconclusive against a baseline of another
    machine: ``None`` (all of them) but for prefill and decode in a compiled runtime
    (:data:`GRAPH_METRICS`), where only the GPU's (:data:`GPU_PROBES`).

    There the host copies the input into the graph's buffer and launches one CUDA-graph replay,
    and does not wait for the GPU in between. Measured on an H200 (7B NF4, 637-token prompt,
    docs/measurements/h200-session14.md): a prefill call takes the host 1.04 ms
    [IQR 1.00-1.09] for 23 ms of GPU work, and the device idles 0.80 ms of a 23.3-23.7 ms profiled
    replay (gaps between the graph's own kernels, median 0.38 us); a decode step takes the host
    0.26 ms for 4.6 ms of GPU work, a margin of 17x. Before session 14 the prefill went through
    torch.compile's CUDA-graph trees after an eager reset of the static cache, 3.9-4.3 ms of host
    time before the graph started, and moved by up to 7.5 % between leases with the same GPU
    probes, so it kept every probe then. Every other stage (load, preprocess, the vision tower,
    which stay eager in both runtimes), the sums that contain them (TTFT, total) and eager decode
    wait on the host and keep every probe."""
    if runtime != "eager" and metric in GRAPH_METRICS:
        return GPU_PROBES
    return None


def only_probes(calibration: Mapping[str, Any] | None, probes: frozenset[str] | None) -> Mapping[str, Any] | None:
    """``calibration`` with only ``probes`` (all when ``None``)."""
    if probes is None or not isinstance(calibration, Mapping) or not isinstance(calibration.get("probes"), Mapping):
        return calibration
    return {**calibration, "probes": {k: v for k, v in calibration["probes"].items() if k in probes}}


def compare(current: Mapping[str, Any] | None, references: Sequence[Mapping[str, Any] | None]) -> tuple[list[Difference], list[str]]:
    """Probes on which ``current`` lies outside the range of ``references`` (the calibrations of
    a baseline's runs), and the probes that could not be compared.

    A probe differs when this run's median is below ``low * (1 - margin)`` or above
    ``high * (1 + margin)``, ``low``/``high`` being the smallest and largest median among the
    reference runs and ``margin`` the largest of this run's and the references' spreads, never
    below :func:`min_margin` for the device of ``current``. A probe whose own spread in this run
    exceeds :data:`MAX_SPREAD` differs too (too noisy to vouch for the machine); a reference run
    whose spread on the probe exceeds it is left out of the range, and a probe left with no
    reference run differs (a baseline saved on a loaded machine cannot vouch either: seen with a
    launch probe spread of thousands of percent, whose margin let a 20 times faster baseline pass
    as the same machine). Faster counts as different as well as slower: on a faster machine a
    real slowdown of the code can hide. Returns ``(differences, not_compared)``; ``not_compared``
    lists probes this run measured that no reference carries (empty ``references`` or references
    without calibration: every probe).
    """
    mine = _medians(current)
    refs = [_medians(r) for r in references]
    device = current.get("device") if isinstance(current, Mapping) else None
    differences: list[Difference] = []
    not_compared: list[str] = []
    for probe, (value, spread) in mine.items():
        carried = [r[probe] for r in refs if probe in r]
        if not carried:
            not_compared.append(probe)
            continue
        values = [(v, s) for v, s in carried if s <= MAX_SPREAD]
        low, high = min(v for v, _ in carried), max(v for v, _ in carried)
        if spread > MAX_SPREAD:
            differences.append(Difference(probe, value, low, high, spread, len(carried), noisy=True))
            continue
        if not values:
            differences.append(Difference(probe, value, low, high, min(s for _, s in carried), len(carried), noisy=True, noisy_where="in the baseline's runs"))
            continue
        low, high = min(v for v, _ in values), max(v for v, _ in values)
        margin = max([spread, min_margin(probe, device)] + [s for _, s in values])
        if value < low * (1 - margin) or value > high * (1 + margin):
            differences.append(Difference(probe, value, low, high, margin, len(values)))
    return differences, not_compared


def nearest_differences(current: Mapping[str, Any] | None, references: Sequence[Mapping[str, Any] | None]) -> list[Difference]:
    """Why ``current`` is like none of ``references`` (calibrations of runs that :func:`compare`
    does not match one by one): the probes on which it lies outside their range, or, inside the
    range but like none of them, the differences from the nearest one (fewest probes apart)."""
    diffs, _ = compare(current, references)
    if diffs or not references:
        return diffs
    return min((compare(current, [r])[0] for r in references), key=len)


def summary_line(calibration: Mapping[str, Any] | None) -> str:
    """One line for the terminal header: each probe's median and spread."""
    parts = []
    for probe, (median, spread) in _medians(calibration).items():
        unit = PROBES.get(probe, ("",))[0]
        parts.append(f"{PROBES.get(probe, ('', True, probe))[2]} {_num(median)} {unit} (±{spread:.0%})")
    seconds = calibration.get("seconds") if isinstance(calibration, Mapping) else None
    took = f" in {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
    return f"machine calibration{took}: " + ", ".join(parts) if parts else "machine calibration: none"
