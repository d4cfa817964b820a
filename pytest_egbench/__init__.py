"""pytest-egbench: stage-by-stage benchmarks of multimodal LLM inference, gated by baselines.

Importing this package is cheap (no torch); see ``pytest_egbench.plugin`` for the entry point.
"""

__version__ = "0.1.0"
