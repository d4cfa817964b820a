"""Baseline files: fingerprint, load (validated, migrated), save (locked, atomic, merging).

A baseline file ``baselines/<fingerprint name>.json`` holds, for every metric, the steady-state
samples of the last :data:`MAX_RUNS` saved runs on one kind of machine, and the record of every
run ever saved to it::

    {"schema_version": 4,
     "fingerprint": {"device": "NVIDIA H200", "preset": "7b", "quant": "nf4", "torch": "2.11", ...},
     "created": "2026-11-21T06:00:00+00:00", "commit": "abc123...",
     "runs": [{"id": "9f0c...", "created": "...", "commit": "...",
               "settings": {"preset": "7b", "rounds": 8, ...}, "calibration": null,
               "summaries": {"benchmarks/test_x.py::test_y[eventgpt]::prefill":
                                 {"metric": "prefill", "unit": "s", "kind": "latency", "n": 8,
                                  "median": 0.0212, "q1": 0.0211, "q3": 0.0213,
                                  "min": 0.0210, "max": 0.0215}, ...}}, ...],
     "entries": {"benchmarks/test_x.py::test_y[eventgpt]::prefill":
                     {"metric": "prefill", "unit": "s", "kind": "latency",
                      "runs": [[...], [...]], "run_ids": ["9f0c...", "41aa..."],
                      "model": "eventgpt", "stage": "prefill", "params": {...}}}}

Keeping runs apart lets a verdict see how far the baseline itself moved from run to run (another
process, another lease of the same GPU type): the tolerance is never below that spread. ``runs``
at the top is the history, oldest first: a run's record stays after its samples dropped out of
every entry's window, and with it the summary of each metric it measured (``summaries``: median,
quartiles, extremes, n, unit, kind; what ``python -m pytest_egbench.baselines history`` draws), so
the history of a metric does not depend on the samples of the last :data:`MAX_RUNS` runs.
``created``/``commit`` at the top are those of the last run saved.

Schema history (``migrate`` turns every older layout into the current one):

* version 0 -- a pytest-benchmark JSON results file written by ``--egbench-json`` (no
  ``schema_version`` key; ``benchmarks[]`` plus ``egbench.metrics``). Any results file can thus be
  promoted to a baseline: one run, with the file's ``egbench.run_id`` (a file written before run
  ids existed gets an id hashed from its content, so adding it twice still adds it once).
* version 1 -- one run per entry, as ``"samples": [...]``.
* version 2 -- ``"runs": [[...], ...]`` per entry, no run ids. Migrated runs are aligned from the
  newest (an entry with fewer runs than the file's longest has missed the oldest ones) and each
  run position gets an id hashed from its samples in every entry, its position, and the file's
  ``created``/``commit``; its record has the file's ``created``/``commit``, no settings and no
  calibration.
* version 3 -- the layout above without ``summaries`` in the run records.
* version 4 -- the layout above. A run record without ``summaries`` (one migrated from an older
  version) gets them, on reading, from the samples of that run still in the entries' windows; a
  run whose samples all dropped out keeps none (its history shows its date and commit only).
  Older pytest-egbench versions refuse a version-4 file instead of dropping the summaries when
  they rewrite it.

Writers (``--egbench-save`` through :func:`save`, ``python -m pytest_egbench.baselines add``)
hold a lock file ``<name>.json.lock`` beside the baseline around read-merge-write, so concurrent
writers never lose a run; the write itself goes through a temporary file and a rename.

Standard library and :mod:`pytest_egbench.stats` only (plus ``filelock`` for writing): no torch, no pytest.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from . import catalog

SCHEMA_VERSION = 4
#: Saved runs kept per metric; an older run drops out when a newer one is saved.
MAX_RUNS = 5
_FINGERPRINT_KEYS = ("device", "preset", "quant", "runtime", "torch", "transformers", "bitsandbytes", "cuda")
#: Metric kinds a baseline entry may have (:class:`pytest_egbench.catalog.Kind`).
KINDS = catalog.KINDS
#: Fingerprint fields that go into the file name as they are, and what they may hold.
_NAME_FIELDS = ("preset", "quant", "runtime", "torch", "transformers", "bitsandbytes", "cuda")
_SAFE_FIELD = re.compile(r"[A-Za-z0-9._+-]{1,64}")
_SAFE_DEVICE_SLUG = re.compile(r"[a-z0-9][a-z0-9.-]*")
_RUN_ID = re.compile(r"[A-Za-z0-9._:+-]{1,128}")
#: How deep the opaque ``settings`` / ``calibration`` objects of a run record may nest.
_MAX_DEPTH = 32
#: Seconds a writer waits for another writer's lock on the same baseline before giving up.
LOCK_TIMEOUT_S = 300.0


class BaselineError(ValueError):
    """A baseline file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class MetricSummary:
    """One metric of one saved run, as a trend needs it: ``n`` samples (steady rounds) summarised
    by their median, quartiles (pytest-benchmark's definition, :func:`pytest_egbench.stats.summarize`)
    and extremes, all in ``unit`` (seconds for latencies); ``kind`` as in :data:`KINDS`."""

    metric: str
    unit: str
    kind: str
    n: int
    median: float
    q1: float
    q3: float
    min: float
    max: float

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @classmethod
    def of(cls, entry: Entry) -> MetricSummary:
        """The summary of ``entry``'s samples, every run pooled (``ValueError`` for none)."""
        from .stats import summarize

        s = summarize(entry.samples)
        return cls(entry.metric, entry.unit, entry.kind, s.n, s.median, s.q1, s.q3, s.min, s.max)


@dataclass
class RunRecord:
    """One saved run: its id, when and at which commit it ran, the settings that make two runs
    comparable (:meth:`pytest_egbench.session.EgbenchSession.run_info`: preset, quant, rounds,
    warmup, max_new_tokens, ...; ``{}`` for runs migrated from schema 1/2), an opaque
    calibration object (or ``None``) describing the machine's speed at the time, and the summary
    of each metric it measured, by entry key (filled in by :func:`save_runs`)."""

    id: str
    created: str | None = None
    commit: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    summaries: dict[str, MetricSummary] = field(default_factory=dict)


@dataclass
class Entry:
    """One metric's stored samples: ``runs[i]`` holds the steady-state rounds of the i-th saved run
    (oldest first), ``run_ids[i]`` that run's id (empty for an entry not yet in a file)."""

    metric: str
    unit: str
    kind: str
    runs: list[list[float]]
    model: str | None = None
    stage: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)

    @property
    def samples(self) -> list[float]:
        """Every run's samples, pooled."""
        return [v for run in self.runs for v in run]

    def with_run(self, samples: list[float], run_id: str) -> Entry:
        """This entry with one more run (the oldest dropped beyond :data:`MAX_RUNS`)."""
        return Entry(
            self.metric,
            self.unit,
            self.kind,
            (self.runs + [list(samples)])[-MAX_RUNS:],
            self.model,
            self.stage,
            dict(self.params),
            (self.run_ids + [run_id])[-MAX_RUNS:],
        )


@dataclass
class Baseline:
    fingerprint: dict[str, Any]
    entries: dict[str, Entry]
    created: str | None = None
    commit: str | None = None
    path: Path | None = None
    #: Every run saved to this baseline, oldest first (the history; see :meth:`run_records_in_window`).
    runs: list[RunRecord] = field(default_factory=list)

    def run_records_in_window(self) -> list[RunRecord]:
        """The records of the runs that still hold samples in some entry (oldest first)."""
        held = {run_id for entry in self.entries.values() for run_id in entry.run_ids}
        return [r for r in self.runs if r.id in held]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "fingerprint": self.fingerprint,
            "created": self.created,
            "commit": self.commit,
            "runs": [asdict(r) for r in self.runs],
            "entries": {
                k: {
                    "metric": e.metric,
                    "unit": e.unit,
                    "kind": e.kind,
                    "runs": e.runs,
                    "run_ids": e.run_ids,
                    "model": e.model,
                    "stage": e.stage,
                    "params": e.params,
                }
                for k, e in sorted(self.entries.items())
            },
        }


def _major_minor(version: Any) -> str | None:
    if not version:
        return None
    version = str(version)
    m = re.match(r"(\d+)\.(\d+)", version)
    return f"{m.group(1)}.{m.group(2)}" if m else version


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def fingerprint(machine_info: Mapping[str, Any], preset: str, quant: str, runtime: str = "eager") -> dict[str, Any]:
    """What must be equal for two latency figures to be comparable.

    From ``machine_info`` (see :mod:`pytest_egbench.machine`): the GPU name, or for a CPU run the
    CPU brand, core count, host name and machine id (``/etc/machine-id``; VMs cloned from one
    image often share a host name); the major.minor versions of torch, transformers, and (for NF4/int8)
    bitsandbytes; the CUDA version on a GPU. Plus the preset, the quantisation and, for any runtime
    but the default ``eager``, the runtime (``--egbench-runtime``): absent means eager, so that the
    fingerprints and file names of baselines saved before runtimes existed stay what they were.
    """
    eg = _mapping(machine_info.get("egbench"))
    libs = _mapping(eg.get("libraries"))
    if eg.get("gpu_name"):
        device = str(eg["gpu_name"])
    else:
        # A CPU model name does not identify a shared cloud VM's speed (neighbours, host, turbo), so a
        # CPU baseline belongs to one host: on another machine latency is not compared (exact
        # metrics still are, see EgbenchSession.judge).
        cpu = _mapping(machine_info.get("cpu"))
        brand = cpu.get("brand_raw") or machine_info.get("processor") or machine_info.get("machine") or "cpu"
        host = machine_info.get("node") or "unknown host"
        machine_id = eg.get("machine_id")
        device = f"CPU {brand} x{cpu.get('count', '?')} on {host}" + (f" [{machine_id}]" if machine_id else "")
    fp = {
        "device": device,
        "preset": preset,
        "quant": quant,
        "torch": _major_minor(libs.get("torch")),
        "transformers": _major_minor(libs.get("transformers")),
        "bitsandbytes": _major_minor(libs.get("bitsandbytes")) if quant in ("nf4", "int8") else None,
        "cuda": _major_minor(eg.get("cuda")),
    }
    if runtime != "eager":
        fp["runtime"] = runtime
    return fp


def normalised_fingerprint(fp: Mapping[str, Any]) -> dict[str, Any]:
    """``fp`` with exactly the fingerprint fields (missing ones ``None``), except ``runtime``,
    which is there only for a runtime other than eager (:func:`fingerprint`)."""
    out = {k: fp.get(k) for k in _FINGERPRINT_KEYS}
    if out["runtime"] in (None, "eager"):
        del out["runtime"]
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")[:60]


def check_fingerprint(fp: Mapping[str, Any], source: object = None) -> None:
    """Raise :class:`BaselineError` (naming ``source`` and the field) unless every field that goes
    into the file name is safe there: ``device`` a non-empty string whose slug starts with a letter
    or digit; ``preset`` and ``quant`` (required) and the library versions (optional) 1-64
    characters of ``A-Z a-z 0-9 . _ + -`` without ``..``."""
    where = "" if source is None else f"{source}: "
    device = fp.get("device")
    if not isinstance(device, str) or not device.strip() or len(device) > 256 or not _SAFE_DEVICE_SLUG.fullmatch(_slug(device)):
        raise BaselineError(
            f"{where}fingerprint field 'device' = {device!r} cannot name a baseline file (a string of at most 256 characters with a letter or digit first)"
        )
    for key in _NAME_FIELDS:
        value = fp.get(key)
        if value is None and key not in ("preset", "quant"):  # runtime: absent means eager
            continue
        if not isinstance(value, str) or not _SAFE_FIELD.fullmatch(value) or ".." in value:
            raise BaselineError(
                f"{where}fingerprint field {key!r} = {value!r} cannot go into a baseline file name (1-64 characters of A-Z a-z 0-9 . _ + -, no '..')"
            )


def fingerprint_name(fp: Mapping[str, Any], source: object = None) -> str:
    """A readable, file-system safe name: ``nvidia-h200__7b-nf4__torch2.11-transformers5.17-bnb0.50-cuda13.0``.

    Built only from validated fields (:func:`check_fingerprint`); a field that could not go into a
    file name raises :class:`BaselineError` naming ``source``.
    """
    check_fingerprint(fp, source)
    libs = [f"{k if k != 'bitsandbytes' else 'bnb'}{fp[k]}" for k in ("torch", "transformers", "bitsandbytes", "cuda") if fp.get(k)]
    runtime = f"-{fp['runtime']}" if fp.get("runtime") else ""
    return f"{_slug(str(fp['device']))}__{fp['preset']}-{fp['quant']}{runtime}__{'-'.join(libs)}"


def same_config(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Same preset, quantisation and runtime: exact metrics (token counts, KV bytes) must then
    agree (the compiled runtime's static KV cache holds more positions than the eager one's)."""
    return a.get("preset") == b.get("preset") and a.get("quant") == b.get("quant") and a.get("runtime", "eager") == b.get("runtime", "eager")


# --------------------------------------------------------------------------- reading


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` (not a number, a bool, NaN, inf, or an integer too
    large for a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def _depth_ok(value: Any, limit: int = _MAX_DEPTH) -> bool:
    """Whether ``value`` nests at most ``limit`` containers deep (iteratively: no recursion)."""
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (Mapping, list)):
            if depth >= limit:
                return False
            stack.extend((x, depth + 1) for x in (v.values() if isinstance(v, Mapping) else v))
    return True


def _opt_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _entry(path: Path, key: str, raw: Any) -> Entry:
    if not isinstance(raw, Mapping):
        raise BaselineError(f"{path}: entry {key!r} is not an object")
    missing = [k for k in ("metric", "unit", "kind", "runs") if k not in raw]
    if missing:
        raise BaselineError(f"{path}: entry {key!r} lacks {', '.join(missing)}")
    if not all(isinstance(raw[k], str) for k in ("metric", "unit", "kind")) or not _opt_str(raw.get("model")) or not _opt_str(raw.get("stage")):
        raise BaselineError(f"{path}: entry {key!r}: metric, unit and kind must be strings, model and stage strings or null")
    try:
        kind = catalog.parse_kind(raw["kind"], f"{path}: entry {key!r}")
    except ValueError as exc:
        raise BaselineError(str(exc)) from None
    runs_raw = raw["runs"]
    if not isinstance(runs_raw, list) or not runs_raw or not all(isinstance(run, list) and run for run in runs_raw):
        raise BaselineError(f"{path}: entry {key!r} needs runs: a non-empty list of non-empty lists of finite numbers")
    runs = [[_finite(v) for v in run] for run in runs_raw]
    if any(v is None for run in runs for v in run):
        raise BaselineError(f"{path}: entry {key!r} needs runs: a non-empty list of non-empty lists of finite numbers")
    why = catalog.value_error(kind, [v for run in runs for v in run])  # type: ignore[misc]
    if why:
        raise BaselineError(f"{path}: entry {key!r} ({kind}, {raw['unit']}) {why}")
    run_ids = raw.get("run_ids")
    if not isinstance(run_ids, list) or len(run_ids) != len(runs) or not all(isinstance(i, str) for i in run_ids) or len(set(run_ids)) != len(run_ids):
        raise BaselineError(f"{path}: entry {key!r} needs run_ids: one distinct string per run ({len(runs)})")
    params = raw.get("params") or {}
    if not isinstance(params, Mapping) or not all(isinstance(v, (str, int, float, bool)) or v is None for v in params.values()):
        raise BaselineError(f"{path}: entry {key!r} has params that are not an object of strings, numbers, booleans or nulls")
    if any(isinstance(v, float) and not math.isfinite(v) for v in params.values()) or any(isinstance(v, int) and _finite(v) is None for v in params.values()):
        raise BaselineError(f"{path}: entry {key!r} has a parameter that is not a finite number")
    return Entry(raw["metric"], raw["unit"], kind, runs, raw.get("model"), raw.get("stage"), dict(params), list(run_ids))  # type: ignore[arg-type]


def _record(path: Path, index: int, raw: Any) -> RunRecord:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str) or not _RUN_ID.fullmatch(raw["id"]):
        raise BaselineError(f"{path}: runs[{index}] needs an id (1-128 characters of A-Z a-z 0-9 . _ : + -)")
    settings = {} if raw.get("settings") is None else raw["settings"]
    calibration = raw.get("calibration")
    if not _opt_str(raw.get("created")) or not _opt_str(raw.get("commit")):
        raise BaselineError(f"{path}: runs[{index}] ({raw['id']}): created and commit must be strings or null")
    if not isinstance(settings, Mapping) or not (calibration is None or isinstance(calibration, Mapping)):
        raise BaselineError(f"{path}: runs[{index}] ({raw['id']}): settings must be an object, calibration an object or null")
    if not _depth_ok(settings) or not _depth_ok(calibration):
        raise BaselineError(f"{path}: runs[{index}] ({raw['id']}): settings or calibration nest more than {_MAX_DEPTH} levels deep")
    summaries = raw.get("summaries") or {}
    if not isinstance(summaries, Mapping):
        raise BaselineError(f"{path}: runs[{index}] ({raw['id']}): summaries must be an object of metric summaries")
    checked = {str(key): _summary(f"{path}: runs[{index}] ({raw['id']}): summary {key!r}", value) for key, value in summaries.items()}
    return RunRecord(raw["id"], raw.get("created"), raw.get("commit"), dict(settings), None if calibration is None else dict(calibration), checked)


_SUMMARY_NUMBERS = ("median", "q1", "q3", "min", "max")


def _summary(where: str, raw: Any) -> MetricSummary:
    """A stored :class:`MetricSummary`, checked: strings, a known kind, ``n`` a positive integer,
    finite numbers in the kind's range, ``min <= q1 <= median <= q3 <= max``."""
    if not isinstance(raw, Mapping) or not all(isinstance(raw.get(k), str) for k in ("metric", "unit", "kind")):
        raise BaselineError(f"{where}: needs metric, unit and kind as strings")
    if raw["kind"] not in KINDS:
        raise BaselineError(f"{where}: unknown kind {raw['kind']!r} (known: {', '.join(KINDS)})")
    n = raw.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise BaselineError(f"{where}: n = {n!r} is not a positive integer")
    found = [_finite(raw.get(k)) for k in _SUMMARY_NUMBERS]
    values = [v for v in found if v is not None]
    if len(values) != len(found):
        raise BaselineError(f"{where}: {', '.join(_SUMMARY_NUMBERS)} must be finite numbers")
    median, q1, q3, low, high = values
    if not low <= q1 <= median <= q3 <= high:
        raise BaselineError(f"{where}: needs min <= q1 <= median <= q3 <= max")
    why = catalog.value_error(catalog.Kind(raw["kind"]), [low, high])
    if why:
        raise BaselineError(f"{where}: {why}")
    return MetricSummary(raw["metric"], raw["unit"], raw["kind"], n, median, q1, q3, low, high)


def _content_id(*parts: Any) -> str:
    """A deterministic run id: the first 32 hex digits of a SHA-256 over ``parts`` as JSON."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:32]


def _from_results_file(path: Path, doc: Mapping[str, Any]) -> dict[str, Any]:
    """Version 0 -> 3: a pytest-benchmark results file written by ``--egbench-json``, as one run.
    A run with an injected slowdown (``egbench.settings.inject``) is refused: it can never be a
    baseline."""
    eg = _mapping(doc.get("egbench"))
    settings = _mapping(eg.get("settings"))
    machine = doc.get("machine_info")
    if not isinstance(machine, Mapping) or "preset" not in settings:
        raise BaselineError(f"{path}: neither a baseline (no schema_version) nor an egbench results file (no machine_info / egbench.settings)")
    if settings.get("inject"):
        raise BaselineError(f"{path}: a run with an injected slowdown (--egbench-inject {settings['inject']}) can never be a baseline")
    if not isinstance(settings["preset"], str) or not isinstance(settings.get("quant"), str):
        raise BaselineError(f"{path}: egbench.settings.preset and .quant must be strings")
    run_id = eg.get("run_id")
    if run_id is None:
        run_id = _content_id("results file", doc)
    elif not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise BaselineError(f"{path}: egbench.run_id {run_id!r} is not a run id (1-128 characters of A-Z a-z 0-9 . _ : + -)")
    benches, metrics = doc.get("benchmarks", []), eg.get("metrics", [])
    if not isinstance(benches, list) or not isinstance(metrics, list):
        raise BaselineError(f"{path}: 'benchmarks' and 'egbench.metrics' must be lists")
    entries = {}
    for bench in benches + metrics:
        if not isinstance(bench, Mapping) or not isinstance(bench.get("fullname"), str):
            raise BaselineError(f"{path}: a benchmark that is not an object with a fullname")
        extra = _mapping(bench.get("extra_info"))
        data = _mapping(bench.get("stats")).get("data")
        if data is None:
            raise BaselineError(f"{path}: {bench.get('fullname')!r} has no raw samples (stats.data)")
        entries[bench["fullname"]] = {
            "metric": extra.get("metric"),
            "unit": extra.get("unit"),
            "kind": extra.get("kind"),
            "runs": [data],
            "run_ids": [run_id],
            "model": extra.get("model"),
            "stage": extra.get("stage"),
            "params": bench.get("params") or {},
        }
    created = doc.get("datetime")
    commit = _mapping(doc.get("commit_info")).get("id")
    record = {"id": run_id, "created": created, "commit": commit, "settings": dict(settings), "calibration": eg.get("calibration")}
    return {
        "schema_version": 3,
        "fingerprint": fingerprint(machine, settings["preset"], settings["quant"], settings.get("runtime", "eager")),
        "created": created,
        "commit": commit,
        "runs": [record],
        "entries": entries,
    }


def _v1_to_v2(path: Path, doc: Mapping[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: each entry's ``samples`` become its single run."""
    entries = doc.get("entries")
    if not isinstance(entries, Mapping):
        raise BaselineError(f"{path}: 'entries' is not an object")
    converted = {}
    for key, raw in entries.items():
        if not isinstance(raw, Mapping) or "samples" not in raw:
            raise BaselineError(f"{path}: entry {key!r} lacks samples (schema_version 1)")
        converted[key] = {**{k: v for k, v in raw.items() if k != "samples"}, "runs": [raw["samples"]]}
    return {**doc, "schema_version": 2, "entries": converted}


def _v2_to_v3(path: Path, doc: Mapping[str, Any]) -> dict[str, Any]:
    """Version 2 -> 3: run ids and records. Runs are aligned from the newest: of a file whose
    longest entry has n runs, an entry with k runs holds positions n-k .. n-1. Position p's id is
    hashed from its samples in every entry, p, and the file's created/commit (deterministic: the
    same file always migrates to the same ids)."""
    entries = doc.get("entries")
    if not isinstance(entries, Mapping):
        raise BaselineError(f"{path}: 'entries' is not an object")
    runs_of = {key: raw["runs"] for key, raw in entries.items() if isinstance(raw, Mapping) and isinstance(raw.get("runs"), list)}
    n = max((len(runs) for runs in runs_of.values()), default=0)
    created, commit = doc.get("created"), doc.get("commit")
    by_position: list[dict[str, Any]] = [{} for _ in range(n)]
    for key, runs in runs_of.items():
        for i, run in enumerate(runs):
            by_position[n - len(runs) + i][key] = run
    ids = [_content_id("schema 2 run", p, created, commit, samples) for p, samples in enumerate(by_position)]
    converted = {key: ({**raw, "run_ids": ids[n - len(runs_of[key]) :]} if key in runs_of else raw) for key, raw in entries.items()}
    records: list[dict[str, Any]] = [{"id": i, "created": created, "commit": commit, "settings": {}, "calibration": None} for i in ids]
    return {**doc, "schema_version": 3, "runs": records, "entries": converted}


def migrate(path: Path, doc: Any) -> dict[str, Any]:
    """Bring any known layout to the current schema; raises :class:`BaselineError` otherwise."""
    if not isinstance(doc, Mapping):
        raise BaselineError(f"{path}: the top level is not a JSON object")
    version = doc.get("schema_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise BaselineError(f"{path}: schema_version {version!r} is not a version this pytest-egbench knows (0 to {SCHEMA_VERSION})")
    if version > SCHEMA_VERSION:
        raise BaselineError(f"{path}: schema_version {version!r} is newer than this pytest-egbench understands ({SCHEMA_VERSION}); upgrade pytest-egbench")
    if version == 0:
        return _from_results_file(path, doc)
    if version == 1:
        doc = _v1_to_v2(path, doc)
        version = 2
    if version == 2:
        doc = _v2_to_v3(path, doc)
    # 3 -> 4: run records gain optional summaries, filled in from the samples once the document is
    # checked (_with_summaries)
    return {**doc, "schema_version": SCHEMA_VERSION}


def _from_document(path: Path, doc: Mapping[str, Any]) -> Baseline:
    """Validate a schema-3 document."""
    fp = doc.get("fingerprint")
    if not isinstance(fp, Mapping) or any(k not in fp for k in ("device", "preset", "quant")):
        raise BaselineError(f"{path}: fingerprint missing or lacking device/preset/quant")
    fp = normalised_fingerprint(fp)
    check_fingerprint(fp, path)
    if not _opt_str(doc.get("created")) or not _opt_str(doc.get("commit")):
        raise BaselineError(f"{path}: created and commit must be strings or null")
    runs_raw = doc.get("runs")
    if not isinstance(runs_raw, list):
        raise BaselineError(f"{path}: 'runs' is not a list of run records")
    records = [_record(path, i, raw) for i, raw in enumerate(runs_raw)]
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise BaselineError(f"{path}: a run id appears twice in 'runs'")
    entries_raw = doc.get("entries")
    if not isinstance(entries_raw, Mapping):
        raise BaselineError(f"{path}: 'entries' is not an object")
    entries = {str(k): _entry(path, str(k), v) for k, v in entries_raw.items()}
    known = set(ids)
    for key, entry in entries.items():
        unknown = [i for i in entry.run_ids if i not in known]
        if unknown:
            raise BaselineError(f"{path}: entry {key!r} holds run {unknown[0]!r}, which is not in 'runs'")
    return Baseline(fp, entries, doc.get("created"), doc.get("commit"), path, _with_summaries(records, entries))


def _with_summaries(records: list[RunRecord], entries: Mapping[str, Entry]) -> list[RunRecord]:
    """``records``, each without summaries given them from its samples still in ``entries``."""
    out = []
    for record in records:
        if not record.summaries:
            held = {k: MetricSummary.of(_one_run(e, record.id)) for k, e in entries.items() if record.id in e.run_ids}
            record = replace(record, summaries=held)
        out.append(record)
    return out


def _one_run(entry: Entry, run_id: str) -> Entry:
    """``entry`` holding only the samples of run ``run_id`` (which it must hold)."""
    return Entry(entry.metric, entry.unit, entry.kind, [entry.runs[entry.run_ids.index(run_id)]], entry.model, entry.stage, dict(entry.params))


def load(path: Path) -> Baseline:
    """Read, migrate and validate one baseline (or results) file.

    Raises :class:`BaselineError` naming the file for unreadable or non-UTF-8 content, invalid
    JSON (also nested too deeply, or an integer too long to read), an unknown or newer schema, a
    fingerprint missing or unfit for a file name, an unknown metric kind, or a value that is not
    finite or out of its kind's range (latencies and throughputs > 0, exact and memory values
    >= 0, rates in [0, 1]).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BaselineError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BaselineError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise BaselineError(f"{path}: not readable JSON (nested too deeply)") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise BaselineError(f"{path}: not readable JSON ({exc})") from None
    try:
        return _from_document(path, migrate(path, doc))
    except (TypeError, AttributeError, KeyError, OverflowError, RecursionError) as exc:  # a layout no check above foresaw
        raise BaselineError(f"{path}: malformed ({type(exc).__name__}: {exc})") from None


def load_dir(directory: Path) -> list[Baseline]:
    """Every ``*.json`` baseline in ``directory`` (none if it does not exist).

    A malformed file raises :class:`BaselineError` rather than being skipped in silence, and so
    does a file whose name is not its fingerprint's name (a renamed copy would otherwise shadow
    the real baseline, or be judged against as another machine's).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob("*.json")):
        baseline = load(path)
        expected = f"{fingerprint_name(baseline.fingerprint, path)}.json"
        if path.name != expected:
            raise BaselineError(f"{path}: the fingerprint inside names this baseline {expected}, not {path.name} (a renamed copy? rename it back or remove it)")
        found.append(baseline)
    return found


def find(baselines: Iterable[Baseline], fp: Mapping[str, Any]) -> Baseline | None:
    """The baseline whose fingerprint equals ``fp`` (all of :data:`_FINGERPRINT_KEYS`)."""
    for b in baselines:
        if all(b.fingerprint.get(k) == fp.get(k) for k in _FINGERPRINT_KEYS):
            return b
    return None


# --------------------------------------------------------------------------- writing


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold ``<path>.lock`` (an OS file lock: released when the process dies, even by SIGKILL),
    and remove the temporary files a killed writer of ``path`` left behind."""
    from filelock import FileLock, Timeout

    lock = FileLock(f"{path}.lock", timeout=LOCK_TIMEOUT_S)
    try:
        lock.acquire()
    except Timeout:
        raise BaselineError(f"{path}: another process held {path.name}.lock for {LOCK_TIMEOUT_S:.0f} s; is a writer stuck?") from None
    try:
        # every writer of this baseline holds the lock while its temporary file exists (see
        # atomic.py for the name), so any such file seen now is a dead writer's
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        yield
    finally:
        lock.release()


def save_runs(directory: Path, fp: Mapping[str, Any], runs: Sequence[tuple[RunRecord, Mapping[str, Entry]]]) -> tuple[Path, list[str]]:
    """Add ``runs`` (oldest first; each a record and that run's entries) to the baseline of ``fp``
    in ``directory`` in one locked read-merge-write; returns its path and the ids added.

    A run whose id the file already records adds nothing. A run with no entries adds only its
    record (the history of a source file). Nothing is written when nothing was added.
    """
    from .atomic import write_json_atomic

    directory = Path(directory)
    fp = normalised_fingerprint(fp)
    path = directory / f"{fingerprint_name(fp, directory)}.json"
    directory.mkdir(parents=True, exist_ok=True)
    if path.resolve().parent != directory.resolve():
        raise BaselineError(f"{path}: resolves to {path.resolve()}, outside {directory}; refusing to write there")
    with _locked(path):
        current = load(path) if path.exists() else Baseline(fp, {}, path=path)
        if current.fingerprint != fp:
            raise BaselineError(f"{path}: holds fingerprint {current.fingerprint}, not {fp}")
        entries = dict(current.entries)
        records = list(current.runs)
        known = {r.id for r in records}
        added: list[str] = []
        for record, new in runs:
            if record.id in known:
                continue
            known.add(record.id)
            # the summaries it carries (a run added from another baseline) win over its samples
            records.append(replace(record, summaries={**{k: MetricSummary.of(e) for k, e in new.items()}, **record.summaries}))
            added.append(record.id)
            for key, entry in new.items():
                old = entries.get(key)
                if old is not None and (old.unit, old.kind) == (entry.unit, entry.kind):
                    entries[key] = old.with_run(entry.samples, record.id)
                else:
                    entries[key] = Entry(entry.metric, entry.unit, entry.kind, [list(entry.samples)], entry.model, entry.stage, dict(entry.params), [record.id])
        if not added:
            return path, added
        last = records[-1]
        document = Baseline(fp, entries, last.created, last.commit, path, records).to_json()
        _from_document(path, json.loads(json.dumps(document)))  # refuse to write what load would refuse
        write_json_atomic(path, document)
    return path, added


def save(directory: Path, fp: Mapping[str, Any], entries: Mapping[str, Entry], *, run: RunRecord) -> tuple[Path, bool]:
    """Add one run to the baseline of ``fp`` in ``directory`` (created if missing); returns its
    path and whether anything was added (``False`` when the file already holds ``run.id``).

    ``entries``: this run's measurements (each entry's samples pooled into one run). A measured
    metric already in the file gains this run (keeping the last :data:`MAX_RUNS`); metrics this
    run did not measure are kept as they are. The read-merge-write holds the baseline's lock file,
    and the write goes through a temporary file and a rename. An existing file that cannot be
    read raises :class:`BaselineError` and is left as it is; so do no entries, a fingerprint unfit
    for a file name, or a value out of its kind's range.
    """
    if not entries:
        raise BaselineError(f"{Path(directory) / fingerprint_name(fp, directory)}.json: nothing to save (no metric was measured)")
    path, added = save_runs(directory, fp, [(run, entries)])
    return path, bool(added)


def _runs_of(source: Baseline) -> list[tuple[RunRecord, dict[str, Entry]]]:
    """A baseline's runs, oldest first, each with the entries that hold its samples."""
    out = []
    for record in source.runs:
        entries = {k: _one_run(e, record.id) for k, e in source.entries.items() if record.id in e.run_ids}
        out.append((record, entries))
    return out


# --------------------------------------------------------------------------- command line


def constraints(baseline: Baseline) -> str:
    """pip constraints (``torch==2.11.*`` ...) pinning the major.minor versions of the libraries in
    ``baseline``'s fingerprint, so that a nightly job installs what the baseline was measured
    with and a library upgrade does not silently move the gate to a fingerprint with no baseline.
    CUDA is not pinned here (it comes with the torch build); the comment names it."""
    fp = baseline.fingerprint
    lines = [f"# libraries of baseline {baseline.path.name if baseline.path else fingerprint_name(fp)} (python -m pytest_egbench.baselines constraints)"]
    if fp.get("cuda"):
        lines.append(f"# CUDA {fp['cuda']}: install the torch build for it")
    for name in ("torch", "transformers", "bitsandbytes"):
        if fp.get(name):
            lines.append(f"{name}=={fp[name]}.*")
    return "\n".join(lines) + "\n"


def _parser() -> Any:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pytest_egbench.baselines", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="add runs from baseline or results files")
    add.add_argument("files", nargs="+", type=Path)
    add.add_argument("--dir", type=Path, default=Path("baselines"))
    show = sub.add_parser("show", help="list the baselines in a folder")
    show.add_argument("dir", type=Path, nargs="?", default=Path("baselines"))
    pins = sub.add_parser("constraints", help="pip constraints pinning the libraries of a baseline's fingerprint")
    pins.add_argument("file", type=Path)
    history = sub.add_parser("history", help="a metric's trend over the saved runs, with change points (pytest_egbench/history.py)")
    history.add_argument("file", type=Path)
    history.add_argument(
        "--metric",
        action="append",
        default=[],
        metavar="NAME",
        help="a metric name (decode), a full entry key or a glob; repeatable (default: every latency and throughput metric)",
    )
    history.add_argument("--plot", type=Path, metavar="PNG", help="also draw the trends into this PNG (needs matplotlib)")
    return parser


def _add(files: Sequence[Path], directory: Path) -> None:
    """``add``: every file read and checked before anything is written; one locked
    read-merge-write per baseline (a kill leaves the old or the new file)."""
    sources = [(file, load(file)) for file in files]
    for file, source in sources:
        if not source.entries:
            raise BaselineError(f"{file}: has no entries: nothing to add")
        fingerprint_name(source.fingerprint, file)
    groups: dict[tuple[Any, ...], list[tuple[Path, Baseline]]] = {}
    for file, source in sources:
        groups.setdefault(tuple(source.fingerprint.get(k) for k in _FINGERPRINT_KEYS), []).append((file, source))
    for group in groups.values():
        path, added = save_runs(directory, group[0][1].fingerprint, [run for _, source in group for run in _runs_of(source)])
        new = set(added)
        for file, source in group:
            ids = [r.id for r in source.runs]
            fresh = [i for i in ids if i in new]
            new -= set(fresh)
            print(f"{file}: {len(fresh)} of {len(ids)} run(s) added ({len(ids) - len(fresh)} already there), {len(source.entries)} metrics, to {path}")


def main(argv: list[str] | None = None) -> int:
    """``python -m pytest_egbench.baselines add FILE... [--dir DIR]``: add the runs in FILEs
    (baseline files of any schema, or ``--egbench-json`` results files) to the baselines in DIR,
    each under its own fingerprint; a run already there (same run id) is not added again.
    ``show DIR``: list the baselines and their runs. ``constraints FILE``: print pip constraints
    pinning the libraries of FILE's fingerprint (:func:`constraints`). ``history FILE [--metric
    NAME ...] [--plot PNG]``: each metric's trend over FILE's saved runs and its change points
    (:mod:`pytest_egbench.history`). Exit status 2 with one ``error:`` line for a file that cannot
    be used (or, for ``history``, a metric name that selects nothing, or ruptures/matplotlib
    missing)."""
    import sys

    args = _parser().parse_args(argv)
    try:
        if args.command == "add":
            _add(args.files, args.dir)
        elif args.command == "constraints":
            print(constraints(load(args.file)), end="")
        elif args.command == "history":
            from .history import command

            print("\n".join(command(load(args.file), args.metric, args.plot)))
        else:
            for b in load_dir(args.dir):
                runs = max((len(e.runs) for e in b.entries.values()), default=0)
                print(
                    f"{(b.path or Path('?')).name}: {len(b.entries)} metrics, up to {runs} run(s), {len(b.run_records_in_window())} in the window of {len(b.runs)} recorded, created {b.created}"
                )
    except (BaselineError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"error: {args.command} needs {exc.name or exc} (pip install 'pytest-egbench[plot]')", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
