"""Measure what concurrent and killed baseline writers do to a baseline file.

    python tools/baseline_races.py [--tries 20] [--kills 40] [--out DIR]

Three experiments, each in a fresh temporary folder, with real processes (this checkout's
``pytest_egbench`` first on ``PYTHONPATH``):

* *concurrent save*: two processes call ``baselines.save`` (what ``--egbench-save`` runs) with
  different runs on one ~500 KB baseline, released at the same moment; per try, the runs that
  are not in the file afterwards are lost.
* *concurrent add*: two ``python -m pytest_egbench.baselines add`` commands, started together,
  add different one-run files to one baseline of ~4 KB and of ~1.6 MB.
* *kill -9*: a writer (``save`` of one run, or ``add`` of a 3-run file) on a ~1.6 MB baseline
  killed with SIGKILL at a random moment of its life; per kill, the file must be the old one byte
  for byte or the complete new one (anything else is *partial*). Temporary files left beside the
  baseline are counted before the next write, which must remove them.

Prints one line per experiment: tries, runs lost, partial files, leftover temporary files.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_egbench import baselines  # noqa: E402
from pytest_egbench.baselines import BaselineError, Entry, RunRecord  # noqa: E402

FP = {"device": "NVIDIA H200", "preset": "7b", "quant": "nf4", "torch": "2.11", "transformers": "5.17", "bitsandbytes": "0.50", "cuda": "13.0"}
NAME = baselines.fingerprint_name(FP) + ".json"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

SAVER = r"""
import json, os, sys, time
from pathlib import Path
from pytest_egbench import baselines
from pytest_egbench.baselines import Entry, RunRecord
job = json.loads(sys.argv[1])
samples = json.loads(Path(job["samples"]).read_text())
entries = {k: Entry(k.split("::")[-1], "s", "latency", [v]) for k, v in samples.items()}
print("ready", flush=True)
while job.get("go") and not os.path.exists(job["go"]):
    time.sleep(0.0005)
baselines.save(Path(job["dir"]), job["fp"], entries, run=RunRecord(job["run_id"], "now", None, {}, None))
"""


def samples(n_entries: int, n_samples: int, seed: int) -> dict[str, list[float]]:
    rng = random.Random(seed)
    return {f"benchmarks/test_big.py::test_big[m{i}]::stage{i}": [rng.uniform(0.001, 1.0) for _ in range(n_samples)] for i in range(n_entries)}


def entries(s: dict[str, list[float]]) -> dict[str, Entry]:
    return {k: Entry(k.split("::")[-1], "s", "latency", [v]) for k, v in s.items()}


def baseline(folder: Path, runs: int, n_entries: int, n_samples: int, prefix: str) -> Path:
    path, _ = baselines.save_runs(
        folder, FP, [(RunRecord(f"{prefix}{r}", f"t{r}"), entries(samples(n_entries, n_samples, hash((prefix, r)) % 2**32))) for r in range(runs)]
    )
    return path


def run_ids(path: Path) -> list[str] | None:
    try:
        return [r.id for r in baselines.load(path).runs]
    except BaselineError:
        return None


def temps(folder: Path) -> list[Path]:
    return list(folder.glob(f".{NAME}.*.tmp"))


def concurrent_save(work: Path, tries: int) -> str:
    folder = work / "save"
    path = baseline(folder, 5, 100, 30, "old")
    size = path.stat().st_size
    for i in range(2):
        (work / f"s{i}.json").write_text(json.dumps(samples(100, 30, 1000 + i)))
    lost = partial = 0
    for t in range(tries):
        go = work / f"go-save-{t}"
        procs = []
        for i in range(2):
            job = {"dir": str(folder), "fp": FP, "run_id": f"t{t}p{i}", "samples": str(work / f"s{i}.json"), "go": str(go)}
            proc = subprocess.Popen([sys.executable, "-c", SAVER, json.dumps(job)], stdout=subprocess.PIPE, text=True, env=ENV)
            assert proc.stdout.readline().strip() == "ready"
            procs.append(proc)
        go.touch()
        for proc in procs:
            proc.wait()
            proc.stdout.close()
        ids = run_ids(path)
        if ids is None:
            partial += 1
            continue
        lost += sum(f"t{t}p{i}" not in ids for i in range(2))
    return f"concurrent save (baselines.save, {size / 1e3:.0f} KB baseline): {tries} tries, {lost} runs lost, {partial} partial files"


def concurrent_add(work: Path, tries: int, n_entries: int, runs: int, n_samples: int, label: str) -> str:
    folder = work / f"add-{label}"
    path = baseline(folder, runs, n_entries, n_samples, "old")
    size = path.stat().st_size
    lost = partial = 0
    for t in range(tries):
        sources = [baseline(work / f"src-{label}-{t}-{i}", 1, n_entries, n_samples, f"t{t}p{i}-") for i in range(2)]
        procs = [
            subprocess.Popen([sys.executable, "-m", "pytest_egbench.baselines", "add", str(src), "--dir", str(folder)], stdout=subprocess.DEVNULL, env=ENV)
            for src in sources
        ]
        for proc in procs:
            proc.wait()
        ids = run_ids(path)
        if ids is None:
            partial += 1
            continue
        lost += sum(f"t{t}p{i}-0" not in ids for i in range(2))
    return f"concurrent add (python -m pytest_egbench.baselines add, {size / 1e3:.1f} KB baseline): {tries} tries, {lost} runs lost, {partial} partial files"


def kills(work: Path, n: int, mode: str) -> str:
    folder = work / f"kill-{mode}"
    path = baseline(folder, 2, 500, 60, "old")
    old, old_ids = path.read_bytes(), run_ids(path)
    if mode == "save":
        (work / "k.json").write_text(json.dumps(samples(500, 60, 7)))
        new_ids = ["k"]
        job = {"dir": str(folder), "fp": FP, "run_id": "k", "samples": str(work / "k.json")}

        def start() -> subprocess.Popen:
            return subprocess.Popen([sys.executable, "-c", SAVER, json.dumps(job)], stdout=subprocess.DEVNULL, env=ENV)
    else:
        source = baseline(work / "kill-src", 3, 500, 60, "new")
        new_ids = [r.id for r in baselines.load(source).runs]

        def start() -> subprocess.Popen:
            return subprocess.Popen(
                [sys.executable, "-m", "pytest_egbench.baselines", "add", str(source), "--dir", str(folder)], stdout=subprocess.DEVNULL, env=ENV
            )

    # how long an unkilled writer lives, to spread the kills over its life
    t0 = time.perf_counter()
    start().wait()
    life = time.perf_counter() - t0
    rng = random.Random(mode)
    outcomes = {"old": 0, "new": 0, "partial": 0}
    seen: set[str] = set()
    biggest = 0
    for _ in range(n):
        # start from the old file; a killed writer's temporary files stay until the next writer
        # takes the lock
        found = temps(folder)
        seen.update(p.name for p in found)
        biggest = max([biggest] + [p.stat().st_size for p in found])
        path.write_bytes(old)
        proc = start()
        time.sleep(rng.uniform(0, life))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = path.read_bytes()
        ids = run_ids(path)
        outcomes["old" if now == old else "new" if ids == old_ids + new_ids else "partial"] += 1
    found = temps(folder)
    seen.update(p.name for p in found)
    biggest = max([biggest] + [p.stat().st_size for p in found])
    baselines.save(folder, FP, entries(samples(500, 60, 99)), run=RunRecord("after"))
    remaining = len(temps(folder))
    return (
        f"kill -9 during {mode} ({len(old) / 1e6:.1f} MB baseline, writer life {life:.2f} s): {n} kills, "
        f"{outcomes['old']} old / {outcomes['new']} new / {outcomes['partial']} partial files; "
        f"temporary files left by killed writers {len(seen)} (largest {biggest / 1e6:.1f} MB), left after the next unkilled write {remaining}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--kills", type=int, default=40, help="kills per writer kind (save, add)")
    parser.add_argument("--out", type=Path, default=None, help="keep the work folder here")
    args = parser.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="egbench-races-"))
    work.mkdir(parents=True, exist_ok=True)
    print(concurrent_save(work, args.tries), flush=True)
    print(concurrent_add(work, args.tries, 6, 1, 10, "small"), flush=True)
    print(concurrent_add(work, args.tries, 320, 5, 30, "large"), flush=True)
    print(kills(work, args.kills, "save"), flush=True)
    print(kills(work, args.kills, "add"), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
