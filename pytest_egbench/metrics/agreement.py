"""Output agreement: position-wise equality of two independently generated outputs.

This is what the origin reports called "acceptance". It is *not* speculative acceptance (no
model verifies anything: two models each generate on their own and the outputs are lined up), so
it is reported under its own name, "output agreement" (docs/design.md#output-agreement). Only
generated tokens are compared: a BOS token both prompts start with would be a free
match, so a leading ``bos_id`` is dropped from each output before comparing. Standard library only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: The name this metric is reported under (never "acceptance").
METRIC_NAME = "output_agreement"


@dataclass(frozen=True)
class OutputAgreement:
    """``matches``: positions where both outputs hold the same token; ``positions``: the longer
    output's length (a position only one output reached counts as a disagreement);
    ``common_prefix``: tokens equal from the start until the first difference."""

    matches: int
    positions: int
    common_prefix: int

    @property
    def rate(self) -> float:
        """``matches / positions`` in 0..1; 0.0 for two empty outputs (nothing agreed on)."""
        return self.matches / self.positions if self.positions else 0.0


def _generated(tokens: Sequence[int], bos_id: int | None) -> list[int]:
    out = [int(t) for t in tokens]
    if bos_id is not None and out and out[0] == bos_id:
        out = out[1:]
    return out


def output_agreement(a: Sequence[int], b: Sequence[int], *, bos_id: int | None = None) -> OutputAgreement:
    """Position-wise agreement of two generated outputs ``a`` and ``b`` (token ids, any length).

    ``bos_id``: when given, a leading BOS is dropped from each output first, so that it never
    counts as a match. Pass generated tokens only (no prompt). Raises ``TypeError`` for
    non-integer tokens.
    """
    for seq in (a, b):
        for t in seq:
            if isinstance(t, float) or not hasattr(t, "__index__"):
                raise TypeError(f"tokens must be integers, got {t!r}")
    x, y = _generated(a, bos_id), _generated(b, bos_id)
    matches = sum(p == q for p, q in zip(x, y))
    prefix = 0
    for p, q in zip(x, y):
        if p != q:
            break
        prefix += 1
    return OutputAgreement(matches=matches, positions=max(len(x), len(y)), common_prefix=prefix)
