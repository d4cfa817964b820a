"""``baselines history``: per-run summaries that outlive the sample window, and change points found
by ruptures in hand-built histories whose steps are known by construction."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from pytest_egbench import baselines, history
from pytest_egbench.baselines import Entry, RunRecord

pytest.importorskip("ruptures")

FP = {"device": "NVIDIA H200", "preset": "7b", "quant": "nf4", "torch": "2.11", "transformers": "5.17", "bitsandbytes": "0.50", "cuda": "13.0"}
KEY = "benchmarks/test_lm_stages.py::test_lm_stages::decode"


def _history(tmp_path: Path, levels: list[float], noise: float, seed: int = 0) -> Path:
    """A baseline of one run per level (oldest first), each of 8 rounds around its level with
    relative Gaussian noise ``noise``, saved one run at a time as --egbench-save does."""
    rng = random.Random(seed)
    path = None
    for i, level in enumerate(levels):
        rounds = [level * (1 + rng.gauss(0, noise)) for _ in range(8)]
        entries = {
            KEY: Entry("decode", "s", "latency", [rounds]),
            "benchmarks/test_lm_stages.py::test_lm_stages::tokens.decode": Entry("tokens.decode", "tokens", "exact", [[15.0] * 8]),
        }
        path, _ = baselines.save(tmp_path, FP, entries, run=RunRecord(f"run{i}", f"2026-11-{i + 1:02d}T06:00:00+00:00", f"{i:07x}"))
    assert path is not None
    return path


def test_a_20_percent_step_after_run_5_is_found_at_run_6(tmp_path):
    path = _history(tmp_path, [0.100] * 5 + [0.120] * 5, noise=0.01)
    t = history.trend(baselines.load(path), KEY)
    assert [p.number for p in t.points] == list(range(1, 11))
    assert t.change_points == [5] and t.points[5].number == 6
    out = "\n".join(history.trend_lines(t))
    # the step is +20 % by construction; segment medians of noisy runs land within a few percent
    line = next(x for x in out.splitlines() if x.startswith("change point at run 6"))
    change = float(line.rsplit("(", 1)[1].rstrip("%)"))
    assert 17 < change < 23


def test_no_step_no_change_point(tmp_path):
    """Flat histories of 10 runs with 2 % run-to-run noise: PELT with this penalty flags about 4 %
    of such histories (module docstring), so 20 histories give at most a few, and the 1 % noise a
    flat CPU/GPU history shows gives none."""
    flagged = 0
    for seed in range(20):
        rng = random.Random(seed)
        medians = [0.1 * (1 + rng.gauss(0, 0.02)) for _ in range(10)]
        flagged += bool(history.change_points(medians))
    assert flagged <= 3
    path = _history(tmp_path, [0.100] * 10, noise=0.01, seed=3)
    assert history.trend(baselines.load(path), KEY).change_points == []


def test_too_few_runs_give_a_clear_message(tmp_path, capsys):
    path = _history(tmp_path, [0.100, 0.100, 0.120, 0.120], noise=0.01)
    assert baselines.main(["history", str(path), "--metric", "decode"]) == 0
    out = capsys.readouterr().out
    assert f"change points: not looked for: 4 run(s): change points need at least {history.MIN_RUNS}" in out
    with pytest.raises(ValueError, match="need at least"):
        history.change_points([1.0] * (history.MIN_RUNS - 1))


@pytest.mark.parametrize("one_write", [False, True], ids=["saved one at a time", "added in one write"])
def test_summaries_outlive_the_sample_window(tmp_path, one_write):
    """8 runs of constant rounds (run i: every round i + 1 ms): the entry keeps the last 5 runs'
    samples, the history all 8 runs' medians, whether they were saved one by one or added at once
    (``add`` of a batch: the first 3 leave the window in the same write that adds them)."""
    runs = [(RunRecord(f"r{i}", f"2026-11-0{i + 1}", None), {KEY: Entry("decode", "s", "latency", [[(i + 1) * 1e-3] * 6])}) for i in range(8)]
    if one_write:
        baselines.save_runs(tmp_path, FP, runs)
    else:
        for record, entries in runs:
            baselines.save(tmp_path, FP, entries, run=record)
    b = baselines.load(next(tmp_path.glob("*.json")))
    assert len(b.entries[KEY].runs) == baselines.MAX_RUNS
    t = history.trend(b, KEY)
    assert [p.summary.median for p in t.points] == pytest.approx([(i + 1) * 1e-3 for i in range(8)], rel=1e-12)
    assert all(p.summary.n == 6 and p.summary.iqr == 0 for p in t.points)


def test_a_schema_3_file_shows_what_it_has(tmp_path):
    """A schema-3 baseline (no summaries) of 7 recorded runs, 2 of which left the sample window:
    the 5 in the window get summaries from their samples, the other 2 are counted as without."""
    ids = [f"r{i}" for i in range(7)]
    doc = {
        "schema_version": 3,
        "fingerprint": FP,
        "created": None,
        "commit": None,
        "runs": [{"id": i, "created": None, "commit": None, "settings": {}, "calibration": None} for i in ids],
        "entries": {
            KEY: {
                "metric": "decode",
                "unit": "s",
                "kind": "latency",
                "runs": [[0.1, 0.3, 0.2]] * 5,
                "run_ids": ids[2:],
                "model": None,
                "stage": "decode",
                "params": {},
            }
        },
    }
    path = tmp_path / "old.json"
    path.write_text(json.dumps(doc))
    t = history.trend(baselines.load(path), KEY)
    assert [p.number for p in t.points] == [3, 4, 5, 6, 7] and t.missing == 2
    assert all(p.summary.median == pytest.approx(0.2) and p.summary.n == 3 for p in t.points)
    assert "2 other run(s) without figures for it" in history.trend_lines(t)[0]


def test_history_command_plots_and_names_a_bad_metric(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = _history(tmp_path, [0.100] * 4 + [0.120] * 4, noise=0.01)
    png = tmp_path / "trend.png"
    assert baselines.main(["history", str(path), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    # no --metric: latency and throughput only (the exact token count is left out)
    assert KEY in out and "tokens.decode" not in out and "change point at run 5" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert baselines.main(["history", str(path), "--metric", "decdoe"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "'decdoe' selects no metric" in err and "decode" in err


def test_a_stored_summary_out_of_order_is_refused(tmp_path):
    path = _history(tmp_path, [0.1] * 2, noise=0.01)
    doc = json.loads(path.read_text())
    doc["runs"][0]["summaries"][KEY]["q1"] = 1.0  # above the median
    path.write_text(json.dumps(doc))
    with pytest.raises(baselines.BaselineError, match=r"runs\[0\] \(run0\): summary .*min <= q1 <= median"):
        baselines.load(path)
