"""Machine calibration: the probes' structure on the CPU, and the comparison rule against
hand-computed ranges (pytest_egbench.calibration)."""

from __future__ import annotations

import pytest

from pytest_egbench.calibration import MIN_MARGIN, PROBES, calibrate, compare, summary_line


def _cal(**probes: tuple[float, float]) -> dict:
    """A calibration block with ``probe=(median, spread)``."""
    return {"version": 1, "device": "cuda:0", "probes": {k: {"unit": PROBES[k][0], "median": m, "spread": s, "samples": [m]} for k, (m, s) in probes.items()}}


def test_cpu_calibration_measures_the_host_probes_with_their_spread():
    torch = pytest.importorskip("torch")
    cal = calibrate(torch.device("cpu"), repeats=5)
    assert set(cal["probes"]) == {"python_ops", "launch", "eager_layer", "matmul", "device_copy"}  # no GPU probes on the CPU
    for name, probe in cal["probes"].items():
        assert len(probe["samples"]) == 5, name
        assert probe["median"] > 0 and probe["unit"] == PROBES[name][0]
        # spread: the second-largest |x / median - 1| of the 5 repeats (the farthest one left out)
        assert probe["spread"] == pytest.approx(sorted(abs(x / probe["median"] - 1) for x in probe["samples"])[-2])
    assert "machine calibration" in summary_line(cal) and "kernel launch" in summary_line(cal)


def test_a_slower_launch_than_every_baseline_run_differs_with_its_figures():
    refs = [_cal(launch=(4.4, 0.01)), _cal(launch=(4.6, 0.02))]
    diffs, missing = compare(_cal(launch=(9.7, 0.03)), refs)
    assert missing == []
    (d,) = diffs
    assert (d.probe, d.low, d.high, d.runs) == ("launch", 4.4, 4.6, 2)
    assert d.margin == MIN_MARGIN["cuda"]["launch"]  # every spread is below the floor
    assert d.change == pytest.approx(9.7 / 4.6 - 1)
    assert d.describe().startswith("kernel launch 9.7 us against 4.4-4.6 us in the baseline's 2 runs (+111%")


def test_inside_the_margin_is_the_same_machine_and_faster_also_differs():
    refs = [_cal(launch=(4.4, 0.01), matmul=(700.0, 0.001)), _cal(launch=(4.6, 0.01), matmul=(720.0, 0.001))]
    up, down = 1 + MIN_MARGIN["cuda"]["launch"], 1 - MIN_MARGIN["cuda"]["matmul"]
    # just inside the range widened by the floor, on both probes: the same machine
    assert compare(_cal(launch=(4.6 * up * 0.99, 0.0), matmul=(700.0 * down * 1.01, 0.0)), refs) == ([], [])
    # just outside: different (a faster host is a different machine too)
    diffs, _ = compare(_cal(launch=(4.4 * (1 - MIN_MARGIN["cuda"]["launch"]) * 0.99, 0.0), matmul=(700.0 * down * 0.99, 0.0)), refs)
    assert sorted(d.probe for d in diffs) == ["launch", "matmul"]
    assert {d.probe: d.change for d in diffs}["launch"] < 0


def test_the_margin_is_the_largest_spread_measured():
    floor = MIN_MARGIN["cuda"]["python_ops"]
    refs = [_cal(python_ops=(100.0, floor + 0.20))]
    # beyond the floor, inside the baseline's own (larger) spread
    assert compare(_cal(python_ops=(100.0 * (1 + floor + 0.10), 0.0)), refs) == ([], [])
    diffs, _ = compare(_cal(python_ops=(100.0 * (1 + floor + 0.10), 0.0)), [_cal(python_ops=(100.0, 0.0))])
    assert diffs and diffs[0].margin == floor


def test_the_cpu_floor_is_wider_than_the_gpu_one():
    assert all(MIN_MARGIN["cpu"][p] >= MIN_MARGIN["cuda"][p] for p in MIN_MARGIN["cpu"])
    cpu = {**_cal(launch=(4.4 * (1 + MIN_MARGIN["cuda"]["launch"]) * 1.1, 0.0)), "device": "cpu"}
    # beyond the CUDA floor, within the CPU's
    assert compare(cpu, [_cal(launch=(4.4, 0.0))]) == ([], [])
    assert compare({**cpu, "device": "cuda:0"}, [_cal(launch=(4.4, 0.0))])[0]


def test_baselines_without_calibration_compare_nothing():
    diffs, missing = compare(_cal(launch=(5.0, 0.0), matmul=(700.0, 0.0)), [None, {"probes": "garbage"}])
    assert diffs == [] and sorted(missing) == ["launch", "matmul"]
    # garbage or non-positive medians in a reference are ignored, not compared with
    diffs, missing = compare(_cal(launch=(5.0, 0.0)), [{"probes": {"launch": {"median": -1}}}])
    assert diffs == [] and missing == ["launch"]


def test_a_probe_too_noisy_in_this_run_cannot_vouch_for_the_machine():
    from pytest_egbench.calibration import MAX_SPREAD

    diffs, _ = compare(_cal(launch=(4.5, MAX_SPREAD * 24)), [_cal(launch=(4.4, 0.01))])
    (d,) = diffs
    assert d.noisy and "kernel launch too noisy on this machine to compare" in d.describe()
    assert compare(_cal(launch=(4.5, MAX_SPREAD * 0.5)), [_cal(launch=(4.4, 0.01))]) == ([], [])


def test_a_baseline_run_too_noisy_on_a_probe_cannot_vouch_for_the_machine():
    """A baseline saved beside CPU burners (launch spread 25 = 2500 %): its margin must not let a
    machine 20 times slower pass as the same; a quiet run beside it still vouches."""
    from pytest_egbench.calibration import MAX_SPREAD

    noisy_ref = _cal(launch=(0.22, MAX_SPREAD * 25))
    (d,), _ = compare(_cal(launch=(4.4, 0.01)), [noisy_ref])
    assert d.noisy and "kernel launch too noisy in the baseline's runs to compare" in d.describe()
    (d,), _ = compare(_cal(launch=(4.4, 0.01)), [noisy_ref, _cal(launch=(0.22, 0.02))])
    assert not d.noisy and d.change > 15  # 4.4 against 0.22 us: +1900 %
    assert compare(_cal(launch=(4.4, 0.01)), [noisy_ref, _cal(launch=(4.3, 0.02))]) == ([], [])
