"""Test-suite configuration.

pytester's in-process runs restore ``sys.modules`` after each run, which drops modules first
imported inside the run; torch cannot be imported a second time in one process. Importing it here,
before any pytester run, keeps it loaded. (This is the test suite, not the plugin: the plugin itself
never imports torch without ``--egbench``, which tests/test_plugin.py checks in a subprocess.)
"""

import torch  # noqa: F401
