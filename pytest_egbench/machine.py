"""What machine a run happened on: pytest-benchmark's ``machine_info`` plus a GPU fingerprint.

pytest-benchmark's machine id (OS, Python, CPU) cannot tell two GPUs apart, so ``machine_info``
gains an ``egbench`` block: device, GPU name, memory, compute capability, driver, CUDA, and the
torch, transformers and bitsandbytes versions that decide the speed of a forward pass.
Library versions come from package metadata, so nothing here imports transformers or
bitsandbytes; torch is imported only to ask about a CUDA device.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import metadata
from typing import Any
from uuid import UUID

LIBRARIES = ("torch", "transformers", "bitsandbytes", "av", "numpy", "pytest-benchmark")


def library_versions() -> dict[str, str | None]:
    """Installed versions of :data:`LIBRARIES` (``None`` when one is not installed)."""
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _nvml(read: Any) -> Any:
    """``read(pynvml)`` inside an NVML session; ``None`` when NVML (``nvidia-ml-py``) is missing
    or fails."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return read(pynvml)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # NVML missing or unusable: the caller falls back to nvidia-smi
        return None


def _smi_query(fields: str, *args: str, timeout_s: float = 10.0) -> list[str] | None:
    """The first line of ``nvidia-smi --query-gpu=FIELDS`` split on commas; ``None`` if the tool
    is missing or fails."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, *args, f"--query-gpu={fields}", "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=timeout_s, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines()
    return [v.strip() for v in lines[0].split(",")] if lines else None


def nvidia_driver_version() -> str | None:
    """The NVIDIA driver version from NVML (``nvidia-ml-py``) or ``nvidia-smi``; ``None`` if neither answers."""
    version = _nvml(lambda nv: nv.nvmlSystemGetDriverVersion())
    if version is not None:
        return version.decode() if isinstance(version, bytes) else str(version)
    row = _smi_query("driver_version")
    return row[0] if row else None


def device_info(device: Any) -> dict[str, Any]:
    """Fingerprint fields of ``device`` (a ``torch.device``).

    CUDA: ``gpu_name``, ``gpu_memory_bytes``, ``gpu_capability`` ("9.0"), ``gpu_count``,
    ``driver``, ``cuda`` (the CUDA version torch was built with). CPU: ``gpu_name`` is ``None``.
    """
    import torch

    info: dict[str, Any] = {"device": str(device), "torch_cuda": torch.version.cuda}
    if getattr(device, "type", None) == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu_name=props.name,
            gpu_memory_bytes=int(props.total_memory),
            gpu_capability=f"{props.major}.{props.minor}",
            gpu_count=torch.cuda.device_count(),
            driver=nvidia_driver_version(),
            cuda=torch.version.cuda,
        )
    else:
        info.update(gpu_name=None, gpu_memory_bytes=None, gpu_capability=None, gpu_count=0, driver=None, cuda=None)
    return info


def nvml_id(device: Any) -> int | str:
    """How NVML and ``nvidia-smi --id=`` name the physical GPU behind the CUDA ``device`` (a
    ``torch.device`` or index): ``"GPU-<uuid>"`` from torch's device properties where torch gives
    the UUID, else the ``CUDA_VISIBLE_DEVICES`` entry the index selects (a physical index, or the
    UUID written there), else the index itself.

    Why: NVML and ``nvidia-smi`` number every GPU of the host and ignore ``CUDA_VISIBLE_DEVICES``,
    which torch applies. With ``CUDA_VISIBLE_DEVICES=1`` torch's ``cuda:0`` is the host's GPU 1,
    and reading NVML's GPU 0 read the neighbour: on an H200 x2 host (2026-11-30) the calibration of
    a run on GPU 1 recorded an SM clock of 345 MHz under load, its idle neighbour's.
    """
    index = getattr(device, "index", device)
    index = int(index) if index is not None else 0
    try:
        import torch

        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    except Exception:  # no torch, no CUDA, or an index torch does not know: the environment decides
        uuid = None
    if uuid is not None:
        raw = getattr(uuid, "bytes", None)  # torch's CUuuid: 16 bytes
        text = str(UUID(bytes=bytes(raw))) if raw is not None and len(bytes(raw)) == 16 else str(uuid)
        if text:
            return text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if index < len(visible):
        chosen = visible[index]
        return int(chosen) if chosen.isdigit() else chosen
    return index


def _nvml_handle(nv: Any, gpu: int | str) -> Any:
    """NVML's handle of ``gpu`` (an index of the host's GPUs, or a ``GPU-``/``MIG-`` UUID)."""
    return nv.nvmlDeviceGetHandleByIndex(gpu) if isinstance(gpu, int) else nv.nvmlDeviceGetHandleByUUID(gpu)


def machine_id() -> str | None:
    """The first 12 characters of ``/etc/machine-id`` (systemd's per-installation id), if any."""
    try:
        text = open("/etc/machine-id", encoding="ascii").read().strip()
    except OSError:
        return None
    return text[:12] or None


def machine_info(device_block: dict[str, Any] | None, run: dict[str, Any]) -> dict[str, Any]:
    """pytest-benchmark's ``machine_info`` with an ``egbench`` block added.

    ``device_block``: :func:`device_info` of the benchmarked device (``None`` if no benchmark ran);
    ``run``: preset, quant, dtype and similar settings that make numbers comparable.
    """
    from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info

    info = pytest_benchmark_generate_machine_info()
    info["egbench"] = {**(device_block or {}), **run, "machine_id": machine_id(), "libraries": library_versions()}
    return info


def commit_info() -> dict[str, Any]:
    """pytest-benchmark's ``commit_info`` (git id, time, dirty flag, branch)."""
    from pytest_benchmark.utils import get_commit_info

    return get_commit_info("pytest-egbench")


#: NVML clock-event (throttle) reasons that mean the GPU ran slower than it could.
_SLOWDOWN_REASONS = {
    0x4: "software power cap",
    0x8: "hardware slowdown",
    0x20: "software thermal slowdown",
    0x40: "hardware thermal slowdown",
    0x80: "hardware power brake",
}


def gpu_state(gpu: int | str) -> dict[str, Any] | None:
    """SM and memory clocks (MHz), the SM clock's maximum (MHz), temperature (C), power (W) and
    active slowdown reasons of GPU ``gpu`` (as :func:`nvml_id` names it: a host index or a UUID):
    NVML (``nvidia-ml-py``) when present, else ``nvidia-smi``; ``None`` when neither answers."""

    def read(nv: Any) -> dict[str, Any]:
        h = _nvml_handle(nv, gpu)
        reasons = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or nv.nvmlDeviceGetCurrentClocksThrottleReasons
        return _state(
            nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),
            nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_SM),
            nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM),
            nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU),
            nv.nvmlDeviceGetPowerUsage(h) / 1000.0,
            int(reasons(h)),
            "nvml",
        )

    state = _nvml(read)
    if state is not None:
        return state
    row = _smi_query("clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw,clocks_event_reasons.active", f"--id={gpu}")
    try:
        sm, sm_max, mem, temp, power, mask = row  # type: ignore[misc]
        return _state(float(sm), float(sm_max), float(mem), float(temp), float(power), int(mask, 16) if mask.startswith("0x") else 0, "nvidia-smi")
    except (TypeError, ValueError):
        return None


def sm_clock_mhz(gpu: int | str) -> float | None:
    """The current SM clock (MHz) of GPU ``gpu`` (as :func:`nvml_id` names it) from NVML or
    ``nvidia-smi``; ``None`` when neither answers."""
    mhz = _nvml(lambda nv: nv.nvmlDeviceGetClockInfo(_nvml_handle(nv, gpu), nv.NVML_CLOCK_SM))
    if mhz is not None:
        return float(mhz)
    row = _smi_query("clocks.sm", f"--id={gpu}")
    try:
        return float(row[0]) if row else None
    except ValueError:
        return None


def _state(sm: float, sm_max: float, mem: float, temp: float, power: float, mask: int, source: str) -> dict[str, Any]:
    return {
        "sm_mhz": sm,
        "sm_max_mhz": sm_max,
        "mem_mhz": mem,
        "temperature_c": temp,
        "power_w": power,
        "slowdown": [t for bit, t in _SLOWDOWN_REASONS.items() if mask & bit],
        "source": source,
    }


def throttled(after: dict[str, Any] | None) -> str | None:
    """Why a benchmark's GPU ran slowed down, from the state read at its end; ``None`` if it did
    not (or nothing could be read)."""
    if not after or not after.get("slowdown"):
        return None
    return f"{', '.join(after['slowdown'])} (SM clock {after['sm_mhz']:.0f} of {after['sm_max_mhz']:.0f} MHz, {after['temperature_c']:.0f} C, {after['power_w']:.0f} W)"
