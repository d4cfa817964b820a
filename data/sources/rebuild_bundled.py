"""Rebuild the bundled default dataset (pytest_egbench/data/bundled/) from the files beside this
script. Run from anywhere: ``python data/sources/rebuild_bundled.py``. See PROVENANCE.md."""

from __future__ import annotations

import sys
from pathlib import Path

SOURCES = Path(__file__).resolve().parent
ROOT = SOURCES.parents[1]
sys.path.insert(0, str(ROOT))

from pytest_egbench.data.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(
        main(
            [
                "build",
                str(ROOT / "pytest_egbench" / "data" / "bundled"),
                "--events",
                str(SOURCES / "dsec_sample1_50ms.npy"),
                "--video",
                str(SOURCES / "cup.mp4"),
                "--clip-ms",
                "1000",
                "--max-clips",
                "1",
                "--copy",
                str(SOURCES / "PROVENANCE.md"),
                "--force",
            ]
        )
    )
