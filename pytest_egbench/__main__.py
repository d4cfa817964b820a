"""``python -m pytest_egbench``: commands on results files (no torch imported).

* ``export RESULTS.json --github-action-benchmark PREFIX``: write ``PREFIX-smaller.json`` and
  ``PREFIX-bigger.json`` for github-action-benchmark's ``customSmallerIsBetter`` and
  ``customBiggerIsBetter`` tools (:mod:`pytest_egbench.export`).
* ``compare A.json B.json [--ignore-machine]``: judge B (current) against A (reference) as
  ``pytest --egbench`` judges a run against a baseline, and print the same tables and verdicts
  (:mod:`pytest_egbench.compare`).

Exit status: 0 done (``compare``: no metric regressed); 1 ``compare`` found a regression; 2 a file
that cannot be read, used or written (one ``error:`` line naming it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .baselines import BaselineError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pytest_egbench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="write a results file in another tool's format")
    export.add_argument("results", type=Path, help="a results file written by --egbench-json")
    export.add_argument("--github-action-benchmark", type=Path, required=True, metavar="PREFIX", help="write PREFIX-smaller.json and PREFIX-bigger.json")
    compare = sub.add_parser("compare", help="judge results file B against results file A; exit status 1 on a regression")
    compare.add_argument("reference", type=Path, help="A: the reference (a results file, or a baseline file)")
    compare.add_argument("current", type=Path, help="B: the current results file")
    compare.add_argument(
        "--ignore-machine", action="store_true", help="judge latency even where the calibrations of A and B differ (as --egbench-ignore-machine)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command (see the module docstring); returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "export":
            from .export import write_github_action_benchmark

            for path, count in write_github_action_benchmark(args.results, args.github_action_benchmark):
                print(f"{path}: {count} metric(s)" + ("" if count else " (empty: github-action-benchmark refuses an empty list)"))
            return 0
        from .compare import main as compare_main

        return compare_main(args.reference, args.current, ignore_machine=args.ignore_machine)
    except (BaselineError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
