"""The run's state in ``config.stash`` and ``item.stash``: the keys, and a benchmark's labels.

Imported by the plugin's hooks and by the fixtures alike, so that neither imports the other for
them. Imports nothing heavy: plain ``pytest`` loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .models.registry import Registry
    from .options import Settings
    from .session import EgbenchSession

SETTINGS_KEY: pytest.StashKey[Settings] = pytest.StashKey()
SESSION_KEY: pytest.StashKey[EgbenchSession] = pytest.StashKey()
#: an item's stage timers, recorded when its body passed
TIMERS_KEY = pytest.StashKey[list]()
OUTPUT_ERRORS_KEY = pytest.StashKey[list]()
OUTPUT_WRITTEN_KEY = pytest.StashKey[list]()
#: Set once the stage and metric names the user gave were checked against the collected benchmarks.
NAMES_CHECKED_KEY = pytest.StashKey[bool]()
#: The model registry that was current before this run's (restored at ``pytest_unconfigure``).
PREVIOUS_REGISTRY_KEY: pytest.StashKey[Registry] = pytest.StashKey()


def item_labels(item: pytest.Item) -> dict[str, Any]:
    """How a benchmark's measurements are labelled: ``nodeid``, ``test`` (name with parameters),
    ``group`` (``egbench(group=...)``, default the test function) and ``params``."""
    marker = item.get_closest_marker("egbench")
    callspec = getattr(item, "callspec", None)
    return {
        "nodeid": item.nodeid,
        "test": item.name,
        "group": str((marker.kwargs.get("group") if marker else None) or getattr(item, "originalname", item.name)),
        "params": dict(callspec.params) if callspec else {},
    }


def xdist_worker(config: pytest.Config) -> tuple[int, int] | None:
    """``(index, count)`` when this process is a pytest-xdist worker, else ``None``."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return None
    return int(str(workerinput["workerid"]).lstrip("gw")), int(workerinput["workercount"])
