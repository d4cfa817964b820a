"""Turning ``--egbench-device`` into a ``torch.device``, with clear errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import torch

    from .options import Settings


def resolve_device(settings: Settings, worker: tuple[int, int] | None = None) -> torch.device:
    """``auto`` -> ``cuda`` when CUDA is available, else ``cpu``; ``cuda[:N]`` must exist.

    ``worker``: ``(index, count)`` of a pytest-xdist worker. With ``auto`` or ``cuda`` (no index),
    worker i is pinned to ``cuda:i``, so that no two workers time on one GPU; more workers than
    GPUs is an error. An explicit ``cuda:N`` pins every worker to N (the user asked for it).

    Raises :class:`pytest.UsageError` naming the option (and where its value came from) when the
    asked-for GPU is missing.
    """
    import torch

    name = settings.device
    source = settings.sources.get("device", "default")
    if worker is not None and name in ("auto", "cuda") and torch.cuda.is_available():
        index, workers = worker
        count = torch.cuda.device_count()
        if workers > count:
            raise pytest.UsageError(
                f"pytest-xdist started {workers} workers but this machine has {count} CUDA device(s): use -n {count} or fewer, so that no two workers share a GPU"
            )
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    if name == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise pytest.UsageError(
            f"--egbench-device {name} ({source}): no CUDA device is available (torch {torch.__version__}, torch.cuda.is_available() is False)"
        )
    device = torch.device(name)
    index = 0 if device.index is None else device.index
    count = torch.cuda.device_count()
    if index >= count:
        raise pytest.UsageError(f"--egbench-device {name} ({source}): this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
    return torch.device("cuda", index)
