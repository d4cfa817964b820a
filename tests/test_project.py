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
    result = subprocess.run(
        [shutil.which("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(broken)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_readme_gives_two_commands_and_ci_runs_them():
    cpu_torch, setup, tests = _readme_commands()
    assert "pytest --egbench" in setup and tests == "pytest"
    ci = (ROOT / ".ci" / "run").read_text()
    install, main_job = setup.split(" && ")
    assert install in ci and main_job in ci
    assert re.search(r"^pytest$", ci, re.M), ".ci/run must call the README's test command"
    # the CPU-only step: PyTorch's CPU build from its own index, the same line as the CI workflow's
    assert "--index-url https://download.pytorch.org/whl/cpu" in cpu_torch
    assert cpu_torch in (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert cpu_torch.split(" --index-url")[0] in install, "the CPU step installs the torch that the set-up line pins"


def test_nightly_runs_on_the_gpu_runner_against_baselines():
    text = (ROOT / ".github" / "workflows" / "nightly-gpu.yml").read_text()
    assert "schedule:" in text and "workflow_dispatch:" in text
    assert "runs-on: [self-hosted, gpu]" in text
    assert "--egbench-baseline-dir=baselines" in text and "upload-artifact" in text


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


# -- references in the documentation ------------------------------------------------------------
# Oracle: the file system, and GitHub's rule for heading anchors (lower case; every character
# that is not a letter, digit, space, hyphen or underscore dropped; spaces to hyphens; a repeated
# heading gets -1, -2, ...).

MARKDOWN = sorted({ROOT / "README.md", *(ROOT / "docs").rglob("*.md")})
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
#: Where the repository's own paths begin; a code span starting elsewhere is not read as a path.
TOP_LEVEL = {p.name for p in ROOT.iterdir()} - {".git"}


def _anchors(markdown: Path) -> set[str]:
    """The heading anchors GitHub gives ``markdown``."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCE.sub("", markdown.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
        if seen[slug]:
            seen[f"{slug}-{seen[slug]}"] = 0
    return set(seen)


def _dangling(base: Path, target: str) -> str | None:
    """Why ``target`` (a relative link or path, maybe with ``#anchor``, read from folder ``base``)
    does not resolve, or None when it does. A bare ``#anchor`` is looked up in ``base`` itself."""
    path_part, _, anchor = target.partition("#")
    path = (base / path_part).resolve() if path_part else base
    if not path.exists():
        return f"{target}: no such file"
    if anchor and path.suffix == ".md" and anchor not in _anchors(path):
        return f"{target}: no heading with anchor #{anchor} in {path.relative_to(ROOT)}"
    return None


def test_anchor_rule_matches_github_examples(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Same-machine A/B\n## GPU: A/A and `--egbench-ref REV`\n## Notes\n## Notes\n```\n# not a heading\n```\n")
    assert _anchors(page) == {"same-machine-ab", "gpu-aa-and---egbench-ref-rev", "notes", "notes-1"}


@pytest.mark.parametrize("markdown", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(markdown):
    """Every relative link and image in README.md and docs/ names a file (and heading) that exists."""
    text = CODE_SPAN.sub("", FENCE.sub("", markdown.read_text()))
    targets = [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]
    problems = [f"{markdown.relative_to(ROOT)}: {p}" for t in targets if (p := _dangling(markdown if t.startswith("#") else markdown.parent, t))]
    assert not problems, "\n".join(problems)


def _path_spans(markdown: Path) -> list[str]:
    """Code spans of ``markdown`` that name a file or folder of this repository by its path from
    the root (``docs/design.md``, ``tools/aa_study.py``, ``docs/aa-study-*.md``, ``...lease{1,2}.json``);
    placeholders (``<fingerprint>``) and anything with a space are not paths."""
    spans = CODE_SPAN.findall(markdown.read_text())
    return [s for s in spans if "/" in s and s.split("/", 1)[0] in TOP_LEVEL and not re.search(r"[\s<>]|\.\.\.", s)]


@pytest.mark.parametrize("markdown", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_paths_named_in_the_docs_exist(markdown):
    problems = []
    for span in _path_spans(markdown):
        path, _, anchor = span.partition("#")
        head, brace, tail = path.partition("{")
        variants = [head + v + tail.split("}", 1)[1] for v in tail.split("}", 1)[0].split(",")] if brace else [path]
        for variant in variants:
            if not any(ROOT.glob(variant.rstrip("/"))):
                problems.append(f"{markdown.relative_to(ROOT)}: `{span}`: no such file or folder")
            elif anchor and (why := _dangling(ROOT, f"{variant}#{anchor}")):
                problems.append(f"{markdown.relative_to(ROOT)}: {why}")
    assert not problems, "\n".join(problems)


def _repository_text_files() -> list[Path]:
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    names = tracked.stdout.split("\0") if tracked.returncode == 0 else []
    files = [ROOT / n for n in names if n.endswith((".py", ".md", ".toml", ".yml", ".txt", ".cfg"))]
    files += [p for p in ROOT.glob("**/*.md") if ".git" not in p.parts]  # new files not yet added
    return sorted({p for p in files if p.is_file()})


def test_citations_of_the_docs_resolve():
    """Code, tests and docs cite the documentation as ``docs/<page>.md`` with an optional section
    anchor (the design notes as ``docs/design.md`` and a section), or a README section by its
    quoted heading; each page and section exists, and nothing cites the design notes under their
    old name, a file outside the repository."""
    old_name = "DESIGN" + ".md"  # spelled apart so that this file does not cite it
    readme_sections = set(re.findall(r"^#+\s+(.+?)\s*$", FENCE.sub("", (ROOT / "README.md").read_text()), re.M))
    problems = []
    for path in _repository_text_files():
        text = path.read_text(errors="replace")
        if old_name in text:
            problems.append(f"{path.relative_to(ROOT)}: cites {old_name}, which is not in the repository")
        for cited in sorted(set(re.findall(r"(?<![\w/.])docs/[\w/.-]+\.md(?:#[\w-]+)?", text))):
            if why := _dangling(ROOT, cited):
                problems.append(f"{path.relative_to(ROOT)}: {why}")
        for section in re.findall(r"README(?:\.md)?,? \(?\"([^\"]+)\"", text):
            if section not in readme_sections:
                problems.append(f'{path.relative_to(ROOT)}: README has no section "{section}"')
    assert not problems, "\n".join(problems)
