"""Registers the example adapter with pytest-egbench (docs/adapters.md)."""


def pytest_egbench_adapters(config):
    # "module:Class": imported only when a benchmark asks for the model, so plain pytest imports
    # no torch. This folder is on sys.path because its conftest.py is (pytest's default
    # import mode); a package would name its own module.
    return {"example": "example_adapter:ExampleAdapter"}
