"""Speed-up of speculative decoding, predicted from acceptance and cost, and measured.

Standard library only. The prediction is Leviathan, Kalman and Matias, "Fast Inference from
Transformers via Speculative Decoding", ICML 2023, Theorem 3.8 (expected walltime improvement)::

    speedup = (1 - alpha ** (gamma + 1)) / ((1 - alpha) * (gamma * c + 1))

with ``alpha`` the acceptance rate, ``gamma`` the tokens proposed per target step and ``c`` the
cost of one draft forward divided by the cost of one target forward (per token, both measured).
The numerator over ``1 - alpha`` is the expected number of tokens per target step (their Eq. 1);
at ``alpha = 1`` it is ``gamma + 1``. The formula assumes i.i.d. acceptance per position.
"""

from __future__ import annotations

import math


def expected_tokens_per_step(alpha: float, gamma: int) -> float:
    """Expected tokens produced per target forward, ``(1 - alpha^(gamma+1)) / (1 - alpha)``
    (Leviathan et al. 2023, Eq. 1); ``gamma + 1`` at ``alpha = 1``. Raises ``ValueError`` for
    ``alpha`` outside 0..1 or ``gamma < 0``."""
    if not 0.0 <= alpha <= 1.0 or math.isnan(alpha):
        raise ValueError(f"alpha must be in 0..1, got {alpha}")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    if alpha == 1.0:
        return float(gamma + 1)
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


def predicted_speedup(alpha: float, gamma: int, c: float) -> float:
    """Expected walltime speed-up over the target alone (Leviathan et al. 2023, Theorem 3.8):
    ``(1 - alpha^(gamma+1)) / ((1 - alpha)(gamma c + 1))``; at ``alpha = 1``:
    ``(gamma + 1) / (gamma c + 1)``. ``c`` (dimensionless, >= 0): draft forward time / target
    forward time. Raises ``ValueError`` for a bad ``alpha``, ``gamma`` or ``c``."""
    if not c >= 0 or math.isinf(c):
        raise ValueError(f"c must be a finite number >= 0, got {c}")
    return expected_tokens_per_step(alpha, gamma) / (gamma * c + 1.0)


def measured_speedup(target_s_per_token: float, speculative_s_per_token: float) -> float:
    """Target-alone time per generated token over speculative time per generated token (any one
    unit for both). Raises ``ValueError`` unless both are > 0."""
    if not (target_s_per_token > 0 and speculative_s_per_token > 0):
        raise ValueError(f"times per token must be > 0, got {target_s_per_token} and {speculative_s_per_token}")
    return target_s_per_token / speculative_s_per_token
