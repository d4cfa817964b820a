"""Public fixtures of pytest-egbench, registered by the plugin in ``pytest_configure``.

Module level imports stay light (no torch); each fixture imports what it needs when it runs.
Fixtures are handed the run's collaborators (settings, the session's ``add_timing``) from
``config.stash`` instead of reaching into globals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .options import Settings
from .plugin import SESSION_KEY, SETTINGS_KEY, TIMERS_KEY

if TYPE_CHECKING:
    import torch

    from .session import EgbenchSession
    from .timing import StageTimer


def _session(config: pytest.Config) -> EgbenchSession:
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        pytest.skip("egbench fixtures need --egbench")
    return session


@pytest.fixture(scope="session")
def egbench_settings(pytestconfig: pytest.Config) -> Settings:
    """The run's resolved :class:`~pytest_egbench.options.Settings` (preset and quantisation
    already filled for the device when ``--egbench`` is on)."""
    return pytestconfig.stash[SETTINGS_KEY]


@pytest.fixture(scope="session")
def egbench_session(pytestconfig: pytest.Config) -> EgbenchSession:
    """The run-wide :class:`~pytest_egbench.session.EgbenchSession` (skips without ``--egbench``)."""
    return _session(pytestconfig)


@pytest.fixture(scope="session")
def egbench_device(egbench_session: EgbenchSession) -> torch.device:
    """The ``torch.device`` the suite benchmarks on (``--egbench-device``; ``auto`` resolved)."""
    return egbench_session.device


@pytest.fixture
def stage_timer(request: pytest.FixtureRequest, egbench_session: EgbenchSession) -> StageTimer:
    """A :class:`~pytest_egbench.timing.StageTimer` on the benchmark device.

    CUDA: stages are timed with CUDA events (``load`` and ``preprocess`` with the host clock after a
    device synchronisation); CPU: ``time.perf_counter_ns``. ``rounds()`` gives 1 cold round,
    ``--egbench-warmup`` warm-up rounds and ``--egbench-rounds`` steady rounds. Set
    ``stage_timer.extra_info["model"]`` to label the column in the stage table. When the test body
    passes, every stage, token count and derived metric (TTFT, TPOT, tokens/s) is recorded under the
    test's name and the group ``egbench(group=...)`` (default: the test function), then judged
    against the baseline (see the plugin's ``pytest_runtest_call``). ``--egbench-inject`` slowdowns
    are applied through the timer's stage hook.
    """
    from .timing import SlowdownInjector, StageTimer, clocks_for

    settings = egbench_session.settings
    device_clock, host_clock = clocks_for(egbench_session.device)
    hook = SlowdownInjector(dict(settings.inject), egbench_session.device) if settings.inject else None
    timer = StageTimer(device_clock, host_clock, rounds=settings.rounds, warmup=settings.warmup, stage_hook=hook)
    request.node.stash.setdefault(TIMERS_KEY, []).append(timer)
    return timer
