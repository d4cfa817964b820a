"""The speculative-decoding tests need torch and transformers (tiny models in :mod:`tiny_lms`)."""

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
