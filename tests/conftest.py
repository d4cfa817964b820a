"""Test-suite configuration.

pytester's in-process runs restore ``sys.modules`` after each run, which drops modules first
imported inside the run; torch cannot be imported a second time in one process. Importing it here,
before any pytester run, keeps it loaded. (This is the test suite, not the plugin: the plugin itself
never imports torch without ``--egbench``, which tests/test_plugin.py checks in a subprocess.)
"""

import re

import pytest
import torch
from hypothesis import settings

# No time limit on a hypothesis example: the test suite asserts behaviour, not timings, and a busy
# CI machine once took 599 ms over an example that takes 1 ms (hypothesis' default deadline is
# 200 ms, and a miss is reported as a failure).
settings.register_profile("egbench", deadline=None)
settings.load_profile("egbench")

#: ulps one rounding step may contribute, relative to the largest value compared (see below)
ULPS_PER_OP = 4


def _assert_close_in_dtype(actual: torch.Tensor, expected: torch.Tensor, *, ops: int) -> None:
    """``torch.testing.assert_close`` with a tolerance derived from ``expected``'s dtype.

    For two computations of the same value from the same weights and inputs whose only
    difference is rounding: the kernels may sum in another order (a CPU's BLAS picks its SIMD
    path, blocking and thread split from the instruction set, the thread count and even the
    buffers' alignment -- a checkpoint read back from a memory-mapped file is not aligned like
    the tensors it was written from; on a 2-core AMD EPYC that moved logits by 9e-8). Each
    rounding step is off by at most half an ulp of the values it combines; along a chain of
    ``ops`` such steps the errors add up linearly in the worst case, so allow ``ULPS_PER_OP``
    ulps (``torch.finfo(dtype).eps``) per step, relative (rtol) and scaled by the largest
    ``|expected|`` (atol, for values near zero). For a tiny fp32 model that is ~1e-5: two
    orders of magnitude above rounding noise, far below what a wrong or missing weight changes.
    """
    tol = ULPS_PER_OP * ops * torch.finfo(expected.dtype).eps
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol * float(expected.abs().max()))


@pytest.fixture
def assert_close_in_dtype():
    """``assert_close_in_dtype(actual, expected, ops=N)``: equal up to rounding along ``N`` ops."""
    return _assert_close_in_dtype


@pytest.fixture
def unwrapped():
    """``unwrapped(result)``: a ``pytest.LineMatcher`` over a pytester result's stdout with the
    lines the egbench output wrapped at 120 columns joined back (a continuation line is indented
    by two spaces and replaces the space the wrap broke at)."""

    def match(result: pytest.RunResult) -> pytest.LineMatcher:
        return pytest.LineMatcher(re.sub(r"\n  (?=\S)", " ", result.stdout.str()).splitlines())

    return match
