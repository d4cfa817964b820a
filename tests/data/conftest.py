"""Fixtures of the data-layer tests: the real sample files committed in ``data/sources/``."""

from __future__ import annotations

from pathlib import Path

import pytest

SOURCES = Path(__file__).resolve().parents[2] / "data" / "sources"


@pytest.fixture(scope="session")
def dsec_npy() -> Path:
    """132,268 real DSEC events, EventGPT's pickled-dict ``.npy`` layout (CC BY-SA 4.0)."""
    return SOURCES / "dsec_sample1_50ms.npy"


@pytest.fixture(scope="session")
def cup_mp4() -> Path:
    """Real H.264 video, 640 x 480, 217 frames (OpenCV samples, Apache-2.0)."""
    return SOURCES / "cup.mp4"


@pytest.fixture(scope="session")
def tree_avi() -> Path:
    """Real Cinepak video, 320 x 240: the header says 444 frames, 68 decode (OpenCV samples)."""
    return SOURCES / "tree.avi"
