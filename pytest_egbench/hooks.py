"""Hooks pytest-egbench adds to pytest (registered by the plugin's ``pytest_addhooks``).

Implement them in a ``conftest.py`` or a plugin, as any pytest hook.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Union

import pytest

if TYPE_CHECKING:
    from .models.base import ModelAdapter


def pytest_egbench_adapters(config: pytest.Config) -> Mapping[str, Union[str, type[ModelAdapter]]] | None:
    """Register model adapters: return ``{name: "module:Class"}`` (imported only when the model
    is used: plain ``pytest`` then imports no torch) or ``{name: AdapterClass}``.

    Called once, in ``pytest_configure``, for every implementation pytest knows then: plugins and
    the ``conftest.py`` files loaded at start-up (the rootdir's, and those of the test paths given
    on the command line or in ``testpaths``). ``--egbench-models`` and ``--egbench-checkpoint``
    then accept the names. Names are normalised (lower case, ``-`` as ``_``); a name another
    source registered for another class is a usage error naming both. The adapter interface:
    docs/adapters.md.
    """
