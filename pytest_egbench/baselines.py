"""Baseline files: fingerprint, load (validated, migrated), save (atomic, merging).

A baseline file ``baselines/<fingerprint name>.json`` holds, for every metric, the steady-state
samples of the last :data:`MAX_RUNS` saved runs on one kind of machine::

    {"schema_version": 2,
     "fingerprint": {"device": "NVIDIA H200", "preset": "7b", "quant": "nf4", "torch": "2.11", ...},
     "created": "2026-11-21T06:00:00+00:00", "commit": "abc123...",
     "entries": {"benchmarks/test_x.py::test_y[eventgpt]::prefill":
                     {"metric": "prefill", "unit": "s", "kind": "latency",
                      "runs": [[...], [...]],
                      "model": "eventgpt", "stage": "prefill", "params": {...}}}}

Keeping runs apart lets a verdict see how far the baseline itself moved from run to run (another
process, another lease of the same GPU type): the tolerance is never below that spread.

Schema history (``migrate`` turns every older layout into the current one):

* version 0 -- a pytest-benchmark JSON results file written by ``--egbench-json`` (no
  ``schema_version`` key; ``benchmarks[]`` plus ``egbench.metrics``). Any results file can thus be
  promoted to a baseline.
* version 1 -- one run per entry, as ``"samples": [...]``.
* version 2 -- the layout above.

Standard library only: no torch, no pytest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2
#: Saved runs kept per metric; an older run drops out when a newer one is saved.
MAX_RUNS = 5
_FINGERPRINT_KEYS = ("device", "preset", "quant", "torch", "transformers", "bitsandbytes", "cuda")


class BaselineError(ValueError):
    """A baseline file that cannot be used; the message names the file and the problem."""


@dataclass
class Entry:
    """One metric's stored samples: ``runs[i]`` holds the steady-state rounds of the i-th saved run
    (oldest first)."""

    metric: str
    unit: str
    kind: str
    runs: list[list[float]]
    model: str | None = None
    stage: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def samples(self) -> list[float]:
        """Every run's samples, pooled."""
        return [v for run in self.runs for v in run]

    def with_run(self, samples: list[float]) -> Entry:
        """This entry with one more run (the oldest dropped beyond :data:`MAX_RUNS`)."""
        return Entry(self.metric, self.unit, self.kind, (self.runs + [list(samples)])[-MAX_RUNS:], self.model, self.stage, dict(self.params))


@dataclass
class Baseline:
    fingerprint: dict[str, Any]
    entries: dict[str, Entry]
    created: str | None = None
    commit: str | None = None
    path: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "fingerprint": self.fingerprint,
            "created": self.created,
            "commit": self.commit,
            "entries": {k: asdict(v) for k, v in sorted(self.entries.items())},
        }


def _major_minor(version: str | None) -> str | None:
    if not version:
        return None
    m = re.match(r"(\d+)\.(\d+)", version)
    return f"{m.group(1)}.{m.group(2)}" if m else version


def fingerprint(machine_info: Mapping[str, Any], preset: str, quant: str) -> dict[str, Any]:
    """What must be equal for two latency figures to be comparable.

    From ``machine_info`` (see :mod:`pytest_egbench.machine`): the GPU name, or for a CPU run the
    CPU brand, core count, host name and machine id (``/etc/machine-id``; VMs cloned from one
    image often share a host name); the major.minor versions of torch, transformers, and (for NF4/int8)
    bitsandbytes; the CUDA version on a GPU. Plus the preset and quantisation.
    """
    eg = machine_info.get("egbench", {})
    libs = eg.get("libraries", {})
    if eg.get("gpu_name"):
        device = eg["gpu_name"]
    else:
        # A CPU model name does not identify a shared cloud VM's speed (neighbours, host, turbo), so a
        # CPU baseline belongs to one host: on another machine latency is not compared (exact
        # metrics still are, see EgbenchSession.judge).
        cpu = machine_info.get("cpu", {}) or {}
        brand = cpu.get("brand_raw") or machine_info.get("processor") or machine_info.get("machine") or "cpu"
        host = machine_info.get("node") or "unknown host"
        machine_id = machine_info.get("egbench", {}).get("machine_id")
        device = f"CPU {brand} x{cpu.get('count', '?')} on {host}" + (f" [{machine_id}]" if machine_id else "")
    return {
        "device": device,
        "preset": preset,
        "quant": quant,
        "torch": _major_minor(libs.get("torch")),
        "transformers": _major_minor(libs.get("transformers")),
        "bitsandbytes": _major_minor(libs.get("bitsandbytes")) if quant in ("nf4", "int8") else None,
        "cuda": _major_minor(eg.get("cuda")),
    }


def fingerprint_name(fp: Mapping[str, Any]) -> str:
    """A readable, file-system safe name: ``nvidia-h200__7b-nf4__torch2.11-transformers5.17-bnb0.50-cuda13.0``."""

    def slug(text: str) -> str:
        return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")[:60]

    libs = [f"{k if k != 'bitsandbytes' else 'bnb'}{fp[k]}" for k in ("torch", "transformers", "bitsandbytes", "cuda") if fp.get(k)]
    return f"{slug(str(fp['device']))}__{fp['preset']}-{fp['quant']}__{'-'.join(libs)}"


def same_config(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Same preset and quantisation: exact metrics (token counts, KV bytes) must then agree."""
    return a.get("preset") == b.get("preset") and a.get("quant") == b.get("quant")


# --------------------------------------------------------------------------- reading


def _numbers(values: Any) -> bool:
    return isinstance(values, list) and bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf") for v in values)


def _entry(path: Path, key: str, raw: Any) -> Entry:
    if not isinstance(raw, Mapping):
        raise BaselineError(f"{path}: entry {key!r} is not an object")
    missing = [k for k in ("metric", "unit", "kind", "runs") if k not in raw]
    if missing:
        raise BaselineError(f"{path}: entry {key!r} lacks {', '.join(missing)}")
    runs = raw["runs"]
    if not isinstance(runs, list) or not runs or not all(_numbers(run) for run in runs):
        raise BaselineError(f"{path}: entry {key!r} needs runs: a non-empty list of non-empty lists of finite numbers")
    params = raw.get("params") or {}
    if not isinstance(params, Mapping):
        raise BaselineError(f"{path}: entry {key!r} has params that are not an object")
    return Entry(str(raw["metric"]), str(raw["unit"]), str(raw["kind"]), [[float(v) for v in run] for run in runs], raw.get("model"), raw.get("stage"), dict(params))


def _from_results_file(path: Path, doc: Mapping[str, Any]) -> dict[str, Any]:
    """Version 0 -> 1: a pytest-benchmark results file written by ``--egbench-json``. A run with
    an injected slowdown (``egbench.settings.inject``) is refused: it can never be a baseline."""
    settings = doc.get("egbench", {}).get("settings", {})
    machine = doc.get("machine_info")
    if not isinstance(machine, Mapping) or "preset" not in settings:
        raise BaselineError(f"{path}: neither a baseline (no schema_version) nor an egbench results file (no machine_info / egbench.settings)")
    if settings.get("inject"):
        raise BaselineError(f"{path}: a run with an injected slowdown (--egbench-inject {settings['inject']}) can never be a baseline")
    entries = {}
    for bench in list(doc.get("benchmarks", [])) + list(doc.get("egbench", {}).get("metrics", [])):
        extra = bench.get("extra_info", {})
        data = bench.get("stats", {}).get("data")
        if data is None:
            raise BaselineError(f"{path}: {bench.get('fullname')!r} has no raw samples (stats.data)")
        entries[bench["fullname"]] = {
            "metric": extra.get("metric"),
            "unit": extra.get("unit"),
            "kind": extra.get("kind"),
            "samples": data,
            "model": extra.get("model"),
            "stage": extra.get("stage"),
            "params": bench.get("params") or {},
        }
    return {
        "schema_version": 1,
        "fingerprint": fingerprint(machine, settings["preset"], settings["quant"]),
        "created": doc.get("datetime"),
        "commit": (doc.get("commit_info") or {}).get("id"),
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


def migrate(path: Path, doc: Any) -> dict[str, Any]:
    """Bring any known layout to the current schema; raises :class:`BaselineError` otherwise."""
    if not isinstance(doc, Mapping):
        raise BaselineError(f"{path}: the top level is not a JSON object")
    version = doc.get("schema_version", 0)
    if version == 0:
        doc = _from_results_file(path, doc)
        version = 1
    if version == 1:
        doc = _v1_to_v2(path, doc)
        version = 2
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise BaselineError(f"{path}: schema_version {version!r} is newer than this pytest-egbench understands ({SCHEMA_VERSION}); upgrade pytest-egbench")
    return dict(doc)


def load(path: Path) -> Baseline:
    """Read, migrate and validate one baseline file.

    Raises :class:`BaselineError` naming the file for unreadable JSON, an unknown or newer schema,
    a missing fingerprint, or an entry without finite samples.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BaselineError(f"{path}: not valid JSON ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(f"{path}: cannot be read ({exc})") from None
    doc = migrate(path, doc)
    fp = doc.get("fingerprint")
    if not isinstance(fp, Mapping) or any(k not in fp for k in ("device", "preset", "quant")):
        raise BaselineError(f"{path}: fingerprint missing or lacking device/preset/quant")
    entries_raw = doc.get("entries")
    if not isinstance(entries_raw, Mapping):
        raise BaselineError(f"{path}: 'entries' is not an object")
    entries = {str(k): _entry(path, str(k), v) for k, v in entries_raw.items()}
    return Baseline({k: fp.get(k) for k in _FINGERPRINT_KEYS}, entries, doc.get("created"), doc.get("commit"), path)


def load_dir(directory: Path) -> list[Baseline]:
    """Every ``*.json`` baseline in ``directory`` (none if it does not exist).

    A malformed file raises :class:`BaselineError` rather than being skipped in silence.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return [load(p) for p in sorted(directory.glob("*.json"))]


def find(baselines: Iterable[Baseline], fp: Mapping[str, Any]) -> Baseline | None:
    """The baseline whose fingerprint equals ``fp`` (all of :data:`_FINGERPRINT_KEYS`)."""
    for b in baselines:
        if all(b.fingerprint.get(k) == fp.get(k) for k in _FINGERPRINT_KEYS):
            return b
    return None


# --------------------------------------------------------------------------- writing


def save(directory: Path, fp: Mapping[str, Any], entries: Mapping[str, Entry], *, created: str, commit: str | None) -> Path:
    """Write (or update) the baseline of ``fp`` in ``directory``; returns its path.

    ``entries``: this run's measurements, one run each. A measured metric already in the file
    gains this run (keeping the last :data:`MAX_RUNS`); metrics this run did not measure are kept
    as they are. The file is written through a temporary file and a rename. An existing file that
    cannot be read raises :class:`BaselineError` and is left as it is.
    """
    from .atomic import write_json_atomic

    path = Path(directory) / f"{fingerprint_name(fp)}.json"
    merged: dict[str, Entry] = load(path).entries if path.exists() else {}
    for key, entry in entries.items():
        old = merged.get(key)
        merged[key] = old.with_run(entry.samples) if old is not None and (old.unit, old.kind) == (entry.unit, entry.kind) else entry
    write_json_atomic(path, Baseline(dict(fp), merged, created, commit).to_json())
    return path


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """``python -m pytest_egbench.baselines add FILE... [--dir DIR]``: add the runs in FILEs
    (baseline files of any schema, or ``--egbench-json`` results files) to the baselines in DIR,
    each under its own fingerprint. ``show DIR``: list the baselines and their runs."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m pytest_egbench.baselines", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="add runs from baseline or results files")
    add.add_argument("files", nargs="+", type=Path)
    add.add_argument("--dir", type=Path, default=Path("baselines"))
    show = sub.add_parser("show", help="list the baselines in a folder")
    show.add_argument("dir", type=Path, nargs="?", default=Path("baselines"))
    args = parser.parse_args(argv)
    try:
        if args.command == "add":
            for file in args.files:
                source = load(file)
                for run in range(max(len(e.runs) for e in source.entries.values())):
                    entries = {k: Entry(e.metric, e.unit, e.kind, [e.runs[run]], e.model, e.stage, e.params) for k, e in source.entries.items() if run < len(e.runs)}
                    path = save(args.dir, source.fingerprint, entries, created=source.created or "", commit=source.commit)
                print(f"{file}: {len(source.entries)} metrics added to {path}")
        else:
            for b in load_dir(args.dir):
                runs = max((len(e.runs) for e in b.entries.values()), default=0)
                print(f"{b.path.name}: {len(b.entries)} metrics, up to {runs} run(s), created {b.created}")
    except BaselineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
