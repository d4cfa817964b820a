"""``python -m pytest_egbench export`` (github-action-benchmark's custom JSON, checked against the
format's documented fields) and ``compare`` (the judge of ``pytest --egbench`` on two files)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from pytest_egbench.__main__ import main

GOLDEN = Path(__file__).parent / "golden" / "results-v0-h200.json"
ROOT = Path(__file__).resolve().parents[1]

#: github-action-benchmark's custom tools (customSmallerIsBetter / customBiggerIsBetter), from its
#: README, which says: "Every entry in the JSON file you provide only needs to provide name, unit, and value.
#: You can also provide optional range (results' variance) and extra"; and from its TypeScript type
#: BenchmarkResult {name: string; value: number; range?: string; unit: string; extra?: string}.
CUSTOM_FORMAT = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["name", "unit", "value"],
        "properties": {
            "name": {"type": "string"},
            "unit": {"type": "string"},
            "value": {"type": "number"},
            "range": {"type": "string"},
            "extra": {"type": "string"},
        },
        "additionalProperties": False,
    },
}


def _golden() -> dict:
    return json.loads(GOLDEN.read_text())


def test_export_writes_both_files_in_the_documented_format(tmp_path, capsys):
    assert main(["export", str(GOLDEN), "--github-action-benchmark", str(tmp_path / "bench")]) == 0
    smaller = json.loads((tmp_path / "bench-smaller.json").read_text())
    bigger = json.loads((tmp_path / "bench-bigger.json").read_text())
    jsonschema.validate(smaller, CUSTOM_FORMAT)
    jsonschema.validate(bigger, CUSTOM_FORMAT)
    doc = _golden()
    by_name = {b["fullname"]: b for b in doc["benchmarks"] + doc["egbench"]["metrics"]}
    decode = next(e for e in smaller if e["name"].endswith("::decode"))
    # the value is the median of the steady rounds, seconds shown in ms
    assert decode["unit"] == "ms" and decode["value"] == pytest.approx(statistics.median(by_name[decode["name"]]["stats"]["data"]) * 1e3, rel=1e-12)
    # every latency goes to smaller-is-better, every throughput to bigger-is-better, nothing else
    kinds = {name: b["extra_info"]["kind"] for name, b in by_name.items()}
    assert {e["name"] for e in smaller} == {n for n, k in kinds.items() if k == "latency"}
    assert {e["name"] for e in bigger} == {n for n, k in kinds.items() if k == "throughput"}
    # token counts have no direction: no entry of their own, named in their benchmark's extra
    assert not any("tokens.prefill" in e["name"] for e in smaller + bigger)
    assert "tokens.prefill 637" in decode["extra"] and "tokens.decode 15" in decode["extra"]
    assert "bench-smaller.json: 10 metric(s)" in capsys.readouterr().out


def test_compare_exit_status_follows_the_verdict(tmp_path, capsys):
    slower = _golden()
    for b in slower["benchmarks"]:
        if b["fullname"].endswith("::decode"):
            b["stats"]["data"] = [v * 1.3 for v in b["stats"]["data"]]
    b_path = tmp_path / "b.json"
    b_path.write_text(json.dumps(slower))
    # the golden run carries no calibration, so nothing vouches for the machine: as pytest --egbench
    # does, latency is inconclusive unless --ignore-machine
    assert main(["compare", str(GOLDEN), str(b_path)]) == 0
    assert "inconclusive" in capsys.readouterr().out
    assert main(["compare", str(GOLDEN), str(GOLDEN), "--ignore-machine"]) == 0
    assert "regression" not in capsys.readouterr().out
    assert main(["compare", str(GOLDEN), str(b_path), "--ignore-machine"]) == 1
    out = capsys.readouterr().out
    assert "[lm]" in out and "1 regression" in out and "decode: baseline" in out and "+30.0%" in out


def test_compare_names_a_file_it_cannot_use(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["compare", str(GOLDEN), str(bad)]) == 2
    assert f"error: {bad}: not valid JSON" in capsys.readouterr().err


def test_the_command_line_does_not_import_torch(tmp_path):
    code = f"import sys; from pytest_egbench.__main__ import main; main(['compare', {str(GOLDEN)!r}, {str(GOLDEN)!r}]); main(['export', {str(GOLDEN)!r}, '--github-action-benchmark', {str(tmp_path / 'x')!r}]); print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    ).stdout
    assert out.strip().splitlines()[-1] == "False"
