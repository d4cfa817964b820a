"""GPU state readings and the throttling flag, with nvidia-smi's output faked."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

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


class _FakeNvml:
    """pynvml with two GPUs on the host: index 0 idle at 345 MHz, index 1 (UUID GPU-bbbb) at 1980."""

    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 0, 1, 0
    gpus = {0: ("GPU-aaaa", 345), 1: ("GPU-bbbb", 1980)}

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        pass

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetHandleByUUID(self, uuid):
        return next(i for i, (u, _) in self.gpus.items() if u == uuid)

    def nvmlDeviceGetClockInfo(self, h, which):
        return self.gpus[h][1] if which == self.NVML_CLOCK_SM else 3201

    def nvmlDeviceGetMaxClockInfo(self, h, which):
        return 1980

    def nvmlDeviceGetTemperature(self, h, which):
        return 40

    def nvmlDeviceGetPowerUsage(self, h):
        return 120000

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return 0


def test_the_gpu_nvml_reads_is_the_one_torch_uses_under_cuda_visible_devices(monkeypatch):
    """CUDA_VISIBLE_DEVICES=1: torch's cuda:0 is the host's GPU 1; NVML numbers the host's GPUs,
    so cuda:0 must be read through its UUID, not as NVML's index 0."""
    torch = pytest.importorskip("torch")
    raw = bytes(range(16))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(uuid=SimpleNamespace(bytes=raw)))
    assert machine.nvml_id(torch.device("cuda", 0)) == "GPU-00010203-0405-0607-0809-0a0b0c0d0e0f"

    monkeypatch.setitem(sys.modules, "pynvml", _FakeNvml())
    assert machine.sm_clock_mhz("GPU-bbbb") == 1980.0 and machine.sm_clock_mhz(0) == 345.0
    assert machine.gpu_state("GPU-bbbb")["sm_mhz"] == 1980.0


@pytest.mark.parametrize(
    ("visible", "index", "expected"),
    [("2,3", 1, 3), ("GPU-aaaa,GPU-bbbb", 1, "GPU-bbbb"), ("", 1, 1), ("3", 2, 2)],
)
def test_without_a_uuid_from_torch_cuda_visible_devices_maps_the_index(monkeypatch, visible, index, expected):
    torch = pytest.importorskip("torch")

    def no_cuda(i):
        raise RuntimeError("no CUDA here")

    monkeypatch.setattr(torch.cuda, "get_device_properties", no_cuda)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert machine.nvml_id(index) == expected


def test_nvidia_smi_is_asked_for_the_gpu_by_its_uuid(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setattr(machine.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    seen = []

    def fake_run(cmd, **kwargs):
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout="1980\n", stderr="")

    monkeypatch.setattr(machine.subprocess, "run", fake_run)
    assert machine.sm_clock_mhz("GPU-bbbb") == 1980.0
    assert "--id=GPU-bbbb" in seen[0]
