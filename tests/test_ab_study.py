"""tools/ab_study.py: the deliberate slowdown reaches the code the benchmarks run, and replayed
studies are judged round by round.

Oracles: a busy wait of known length (a lower bound on the time a slowed call takes, on any
machine), the runtime's own call forms (``prepare`` passes ``vocab_size`` by position), and
synthetic studies built by hand with a known slowdown and a known number of rounds per arm.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ab_study():
    spec = importlib.util.spec_from_file_location("ab_study", ROOT / "tools" / "ab_study.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _doc(prefill: np.ndarray, decode: np.ndarray) -> dict:
    bench = "benchmarks/test_lm_stages.py::test_lm_stages"
    return {"benchmarks": [{"fullname": f"{bench}::{m}", "stats": {"data": list(map(float, d))}} for m, d in (("prefill", prefill), ("decode", decode))]}


def _raw(path: Path, arms: dict[str, float], rounds: int, rng: np.random.Generator) -> Path:
    """A study of ``rounds`` rounds whose arm ``name`` is ``factor`` times slower than ``ref``
    (24 samples a process, 0.5 % noise)."""
    docs: dict[str, list] = {n: [] for n in arms}
    for _ in range(rounds):
        for name, factor in arms.items():
            docs[name].append(_doc(0.016 * factor * rng.normal(1, 0.005, 24), 0.076 * factor * rng.normal(1, 0.005, 24)))
    raw = {"rounds_done": rounds, "docs": docs, "seconds": {n: [60.0] * rounds for n in arms}}
    path.write_text(json.dumps(raw))
    return path


def test_replay_joins_studies_with_different_arms(ab_study, tmp_path):
    rng = np.random.default_rng(7)
    # the first study had an A/A arm, the second (--no-same) did not: the A/A arm is judged on the
    # first study's 3 rounds, the slowed arm on all 3 + 7
    first = _raw(tmp_path / "a.json", {"ref": 1.0, "same": 1.0, "slow0.1": 1.10}, 3, rng)
    second = _raw(tmp_path / "b.json", {"ref": 1.0, "slow0.1": 1.10}, 7, rng)
    out = tmp_path / "out"
    assert ab_study.main(["--out", str(out), "--replay", str(first), "--replay", str(second), "--k", "1"]) == 0
    rows = {(r["metric"], r["arm"]): r for r in json.loads((out / "summary.json").read_text())}
    for metric in ("prefill", "decode"):
        assert rows[metric, "same"]["tries"] == 3 and rows[metric, "same"]["slower"] == 0
        assert rows[metric, "slow0.1"]["tries"] == 10 and rows[metric, "slow0.1"]["slower"] == 10
        assert all(0.08 < c < 0.12 for c in rows[metric, "slow0.1"]["changes"])


def test_replay_names_a_file_without_a_reference(ab_study, tmp_path):
    bad = _raw(tmp_path / "bad.json", {"slow0.1": 1.1}, 2, np.random.default_rng(0))
    with pytest.raises(SystemExit, match="bad.json: no ref arm"):
        ab_study.main(["--out", str(tmp_path / "out"), "--replay", str(bad)])


SLOWED_CALLS = """
import json, sys, time
import torch
from pytest_egbench.models import generation
from pytest_egbench.models.llama import dummy_llama
from pytest_egbench.models.runtime import CompiledLM

lm = dummy_llama("tiny", "fp32", "cpu")
ids = torch.zeros(1, 9, dtype=torch.long)
out = {}
# the compiled runtime, called as the benchmarks call it (prepare passes vocab_size by position)
runtime = CompiledLM(lm)
runtime.prepare(9, 4, 50)
start = time.perf_counter(); token, cache, _ = runtime.prefill(input_ids=ids); out["compiled prefill"] = time.perf_counter() - start
start = time.perf_counter(); produced = runtime.decode(token, cache, 4, vocab_size=50); out["compiled decode"] = time.perf_counter() - start
assert produced.shape == (1, 4), produced.shape
# the eager path
start = time.perf_counter(); token, cache, _ = generation.prefill_with_logits(lm, input_ids=ids); out["eager prefill"] = time.perf_counter() - start
start = time.perf_counter(); produced = generation.decode(lm, token, cache, 4); out["eager decode"] = time.perf_counter() - start
assert produced.shape[-1] == 4, produced.shape
print(json.dumps(out))
"""


def test_slowed_copy_slows_every_call_the_benchmarks_make(ab_study, tmp_path):
    pytest.importorskip("torch")
    prefill_s, decode_s = 0.3, 0.5
    copy = ab_study.slowed_copy(tmp_path / "slow", prefill_s, decode_s)
    env = {**os.environ, "PYTHONPATH": str(copy)}
    proc = subprocess.run([sys.executable, "-c", SLOWED_CALLS], cwd=copy, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seconds = json.loads(proc.stdout.strip().splitlines()[-1])
    # a busy wait of the given length is a lower bound on each slowed call, on any machine
    assert seconds["compiled prefill"] >= prefill_s and seconds["eager prefill"] >= prefill_s
    assert seconds["compiled decode"] >= decode_s and seconds["eager decode"] >= decode_s
