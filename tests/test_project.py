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
