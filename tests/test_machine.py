"""GPU state readings and the throttling flag, with nvidia-smi's output faked."""

from __future__ import annotations

import subprocess
import sys

from pytest_egbench import machine


def test_gpu_state_parses_nvidia_smi(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no NVML: the nvidia-smi path
    monkeypatch.setattr(machine.shutil, "which", lambda name: "/usr/bin/nvidia-smi")

    def fake_run(cmd, **kwargs):
        assert "--id=1" in cmd and any(c.startswith("--query-gpu=clocks.sm,") for c in cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout="1410, 1980, 3201, 71, 640.5, 0x0000000000000024\n", stderr="")

    monkeypatch.setattr(machine.subprocess, "run", fake_run)
    state = machine.gpu_state(1)
    assert state == {
        "sm_mhz": 1410.0,
        "sm_max_mhz": 1980.0,
        "mem_mhz": 3201.0,
        "temperature_c": 71.0,
        "power_w": 640.5,
        "slowdown": ["software power cap", "software thermal slowdown"],
        "source": "nvidia-smi",
    }
    assert machine.throttled(state) == "software power cap, software thermal slowdown (SM clock 1410 of 1980 MHz, 71 C, 640 W)"


def test_no_tool_no_state(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setattr(machine.shutil, "which", lambda name: None)
    assert machine.gpu_state(0) is None and machine.throttled(None) is None


def test_unthrottled_state_is_not_flagged():
    assert machine.throttled({"slowdown": [], "sm_mhz": 1980, "sm_max_mhz": 1980}) is None
