"""Project files: workflow syntax (a real linter), CI entry point and README commands agree."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def test_both_workflows_exist():
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "nightly-gpu.yml"}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_passes_the_github_workflow_schema(workflow):
    """check-jsonschema with its vendored GitHub Actions workflow schema (SchemaStore), offline."""
    linter = shutil.which("check-jsonschema")
    assert linter, "check-jsonschema is in the test extra: python -m pip install -e '.[test]'"
    result = subprocess.run([linter, "--builtin-schema", "vendor.github-workflows", str(workflow)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_linter_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    steps: not-a-list\n")
    result = subprocess.run([shutil.which("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(broken)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_readme_gives_two_commands_and_ci_runs_them():
    setup, tests = _readme_commands()
    assert "pytest --egbench" in setup and tests == "pytest"
    ci = (ROOT / ".ci" / "run").read_text()
    install, main_job = setup.split(" && ")
    assert install in ci and main_job in ci
    assert re.search(r"^pytest$", ci, re.M), ".ci/run must call the README's test command"


def test_nightly_runs_on_the_gpu_runner_against_baselines():
    text = (ROOT / ".github" / "workflows" / "nightly-gpu.yml").read_text()
    assert "schedule:" in text and "workflow_dispatch:" in text
    assert "runs-on: [self-hosted, gpu]" in text
    assert "--egbench-baseline-dir baselines" in text and "upload-artifact" in text


def _lower_bounds() -> dict[str, str]:
    """``{name: version}`` of every ``>=`` bound of the direct dependencies a CPU install gets
    (``[project.dependencies]``, ``test`` and ``plot``), torch left out."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    bounds = {}
    for text in [*project["dependencies"], *extras["test"], *extras["plot"]]:
        req = Requirement(text)
        (low,) = [s.version for s in req.specifier if s.operator == ">="] or [None]
        assert low, f"{text}: every direct dependency has a lower bound"
        bounds[canonicalize_name(req.name)] = low
    del bounds["torch"]  # .ci/run installs torch==2.13.0, the one CPU wheel on the CI machine
    return bounds


def test_lowest_constraints_pin_every_lower_bound():
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    pins = {}
    for line in (ROOT / ".ci" / "constraints-lowest.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    for name, low in _lower_bounds().items():
        assert name in pins and Version(pins[name]) == Version(low), f"{name}>={low} in pyproject.toml, {pins.get(name)} in .ci/constraints-lowest.txt"


def test_ci_runs_the_tests_at_the_lowest_versions_too():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "-c .ci/constraints-lowest.txt" in ci and ci.rstrip().endswith("pytest")
    workflow = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert "-c .ci/constraints-lowest.txt" in workflow
    assert '".[test,plot,gpu]"' in (ROOT / ".github" / "workflows" / "nightly-gpu.yml").read_text()
