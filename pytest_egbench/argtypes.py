"""Value parsers shared by the command lines (pytest's options, ``python -m pytest_egbench.data``).

Each takes the raw string and returns the parsed value or raises ``argparse.ArgumentTypeError``
with a message that quotes the value. Standard library only.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def int_at_least(minimum: int) -> Callable[[str], int]:
    """A parser of whole numbers ``>= minimum``; raises ``ArgumentTypeError`` for anything else."""

    def parse(value: str) -> int:
        try:
            n = int(str(value).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"{value!r} is below the minimum of {minimum}")
        return n

    parse.__name__ = f"parse_int_ge_{minimum}"
    return parse


parse_positive_int = int_at_least(1)
parse_non_negative_int = int_at_least(0)
