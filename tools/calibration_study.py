"""How much the machine calibration moves between processes on one machine.

Runs ``--processes`` separate Python processes one after the other, each measuring
``pytest_egbench.calibration.calibrate`` on ``--device``, and reports for every probe the median of
each process, the largest relative distance of one process's median from the median over the
processes (the *between-process spread*), and the largest within-process spread. The smallest margin
``calibration.compare`` allows (``MIN_MARGIN``) must cover the between-process spread, or an
unchanged machine would be called different.

    python tools/calibration_study.py --device cpu --processes 8 --out docs/measurements/calibration-cpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = "import json, sys, torch; from pytest_egbench.calibration import calibrate; print(json.dumps(calibrate(torch.device(sys.argv[1]))))"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    runs = []
    for i in range(args.processes):
        out = subprocess.run([sys.executable, "-c", CHILD, args.device], capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"process {i + 1}/{args.processes}: {runs[-1]['seconds']:.1f} s", file=sys.stderr)
    table = {}
    for probe in runs[0]["probes"]:
        medians = [r["probes"][probe]["median"] for r in runs if probe in r["probes"]]
        mid = statistics.median(medians)
        table[probe] = {
            "unit": runs[0]["probes"][probe]["unit"],
            "process_medians": medians,
            "between_process_spread": max(abs(m / mid - 1) for m in medians),
            "within_process_spread_max": max(r["probes"][probe]["spread"] for r in runs if probe in r["probes"]),
            "seconds": [r["seconds"] for r in runs],
        }
    lines = ["| probe | unit | median | between-process spread | largest within-process spread |", "|---|---|---:|---:|---:|"]
    for probe, row in table.items():
        lines.append(
            f"| {probe} | {row['unit']} | {statistics.median(row['process_medians']):.4g} | {row['between_process_spread']:.1%} | {row['within_process_spread_max']:.1%} |"
        )
    print("\n".join(lines))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"device": args.device, "processes": args.processes, "probes": table, "runs": runs}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
