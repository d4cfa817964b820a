"""Attacks on the files pytest-egbench reads and writes, each kept as a test.

Baselines (this section): concurrent writers, kill -9 during a write, file names from untrusted
fingerprints, values out of range, duplicate runs, renamed copies, input that used to end in a
traceback, and atomic writes aimed at links and device nodes. The writers run as real processes
(``subprocess``): locks and renames are what is tested, and those only matter between processes.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_egbench import baselines
from pytest_egbench.atomic import NotARegularFileError, write_json_atomic, write_text_atomic
from pytest_egbench.baselines import BaselineError, Entry, RunRecord

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"
FP = {"device": "NVIDIA H200", "preset": "7b", "quant": "nf4", "torch": "2.11", "transformers": "5.17", "bitsandbytes": "0.50", "cuda": "13.0"}
NAME = baselines.fingerprint_name(FP) + ".json"

# A writer process: prints "ready" once imported, waits for the go file (if any), then either
# saves one run (as --egbench-save does) or runs the `add` command line.
CHILD = r"""
import json, os, sys, time
from pathlib import Path
from pytest_egbench import baselines
from pytest_egbench.baselines import Entry, RunRecord
job = json.loads(sys.argv[1])
print("ready", flush=True)
if job.get("go"):
    while not os.path.exists(job["go"]):
        time.sleep(0.001)
if job["mode"] == "save":
    samples = json.loads(Path(job["samples"]).read_text())
    entries = {k: Entry(k.split("::")[-1], "s", "latency", [v]) for k, v in samples.items()}
    baselines.save(Path(job["dir"]), job["fp"], entries, run=RunRecord(job["run_id"], "now", None, {"preset": "7b"}, None))
    sys.exit(0)
sys.exit(baselines.main(["add", *job["files"], "--dir", job["dir"]]))
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _start(job: dict) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(job)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def _samples(n_entries: int, n_samples: int, seed: int) -> dict[str, list[float]]:
    rng = random.Random(seed)
    return {f"benchmarks/test_big.py::test_big[m{i}]::stage{i}": [rng.uniform(0.001, 1.0) for _ in range(n_samples)] for i in range(n_entries)}


def _entries(samples: dict[str, list[float]]) -> dict[str, Entry]:
    return {k: Entry(k.split("::")[-1], "s", "latency", [v]) for k, v in samples.items()}


def _big_baseline(folder: Path, runs: int, n_entries: int, n_samples: int, prefix: str = "old") -> Path:
    """A baseline of ``runs`` runs (ids ``<prefix>0``...), each ``n_entries`` x ``n_samples``."""
    records = [(RunRecord(f"{prefix}{r}", f"t{r}", None, {}, None), _entries(_samples(n_entries, n_samples, r))) for r in range(runs)]
    path, _ = baselines.save_runs(folder, FP, records)
    return path


def _run_ids(path: Path) -> list[str]:
    return [r.id for r in baselines.load(path).runs]


def _one_line_error(proc: subprocess.CompletedProcess, name: str) -> str:
    """The command failed with exit status 2 and one line on stderr naming the file."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert name in proc.stderr
    return proc.stderr


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest_egbench.baselines", *args], capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=120)


# --------------------------------------------------------------------------- concurrent writers


def test_concurrent_saves_keep_both_runs(tmp_path):
    """Two processes save different runs to one baseline at the same moment (--egbench-save's
    path, baselines.save), five times over: every run is kept (without the lock, the second
    rename wins and the first run is lost)."""
    folder = tmp_path / "baselines"
    path = _big_baseline(folder, runs=1, n_entries=150, n_samples=30)
    for i in range(2):
        (tmp_path / f"s{i}.json").write_text(json.dumps(_samples(150, 30, 100 + i)))
    expected = _run_ids(path)
    for attempt in range(5):
        go = tmp_path / f"go{attempt}"
        procs = [
            _start({"mode": "save", "dir": str(folder), "fp": FP, "run_id": f"a{attempt}p{i}", "samples": str(tmp_path / f"s{i}.json"), "go": str(go)})
            for i in range(2)
        ]
        go.touch()
        for proc in procs:
            assert proc.wait(timeout=120) == 0, proc.stderr.read()
        expected += [f"a{attempt}p0", f"a{attempt}p1"]
        assert sorted(_run_ids(path)) == sorted(expected)
    b = baselines.load(path)
    # each entry keeps the last MAX_RUNS runs, the records keep them all
    assert all(len(e.runs) == baselines.MAX_RUNS for e in b.entries.values()) and len(b.runs) == 11


def test_concurrent_adds_keep_both_runs(tmp_path):
    """Two `baselines add` commands add different files to one baseline at the same moment, five
    times over: every run is kept."""
    folder = tmp_path / "baselines"
    _big_baseline(folder, runs=1, n_entries=150, n_samples=30)
    path = folder / NAME
    expected = _run_ids(path)
    for attempt in range(5):
        sources = [_big_baseline(tmp_path / f"src{attempt}-{i}", runs=1, n_entries=150, n_samples=30, prefix=f"a{attempt}p{i}-") for i in range(2)]
        go = tmp_path / f"go{attempt}"
        procs = [_start({"mode": "add", "dir": str(folder), "files": [str(src)], "go": str(go)}) for src in sources]
        go.touch()
        for proc in procs:
            assert proc.wait(timeout=120) == 0, proc.stderr.read()
        expected += [f"a{attempt}p0-0", f"a{attempt}p1-0"]
        assert sorted(_run_ids(path)) == sorted(expected)


# --------------------------------------------------------------------------- kill -9


def _kill_at_random(job: dict, seconds: float, rng: random.Random) -> None:
    proc = _start(job)
    time.sleep(rng.uniform(0, seconds))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdout.close()
    proc.stderr.close()


def _check_old_or_new(path: Path, old: bytes, old_ids: list[str], new_ids: list[str]) -> str:
    """The baseline is the old file, byte for byte, or the complete new one."""
    now = path.read_bytes()
    if now == old:
        return "old"
    b = baselines.load(path)
    assert [r.id for r in b.runs] == old_ids + new_ids, "a partial merge"
    assert all(e.run_ids[-len(new_ids) :] == new_ids for e in b.entries.values()), "an entry without the new runs"
    return "new"


@pytest.mark.parametrize("mode", ["save", "add"])
def test_kill_9_leaves_the_old_or_the_new_file_and_a_later_write_cleans_up(tmp_path, mode):
    """A writer killed (SIGKILL) at a random moment, eight times: the baseline is always the old
    file or the whole new one (an `add` of a 3-run file: never 1 or 2 of its runs), and the next
    write removes the temporary files killed writers left."""
    folder = tmp_path / "baselines"
    path = _big_baseline(folder, runs=2, n_entries=300, n_samples=40)
    stale = folder / f".{NAME}.planted.tmp"  # as a writer killed mid-write leaves it
    stale.write_text("{partial")
    if mode == "save":
        (tmp_path / "s.json").write_text(json.dumps(_samples(300, 40, 7)))
    else:
        source = _big_baseline(tmp_path / "src", runs=3, n_entries=300, n_samples=40, prefix="new")
    # how long one write takes here, to spread the kills over it
    start = time.perf_counter()
    baselines.save_runs(tmp_path / "timing", FP, [(RunRecord(f"t{i}"), _entries(_samples(300, 40, i))) for i in range(3)])
    seconds = 2 * (time.perf_counter() - start) + 0.05
    rng = random.Random(1)
    old, old_ids = path.read_bytes(), _run_ids(path)
    new_ids = ["k"] if mode == "save" else ["new0", "new1", "new2"]
    job = (
        {"mode": "save", "dir": str(folder), "fp": FP, "run_id": "k", "samples": str(tmp_path / "s.json")}
        if mode == "save"
        else {"mode": "add", "dir": str(folder), "files": [str(source)]}
    )
    outcomes = []
    for _ in range(8):
        path.write_bytes(old)  # every try starts from the old file (no writer is alive now)
        _kill_at_random(job, seconds, rng)
        outcomes.append(_check_old_or_new(path, old, old_ids, new_ids))
    path.write_bytes(old)
    # a later write holds the lock, so every temporary file of this baseline is a dead writer's
    baselines.save(folder, FP, _entries(_samples(300, 40, 99)), run=RunRecord("after"))
    assert not list(folder.glob(f".{NAME}.*.tmp")) and not stale.exists()
    assert _run_ids(path)[-1] == "after"


# --------------------------------------------------------------------------- untrusted names and values


def _results_file(tmp_path: Path, name: str = "results.json", **settings) -> Path:
    doc = json.loads((GOLDEN / "results-v0-h200.json").read_text())
    doc["egbench"]["settings"].update(settings)
    out = tmp_path / name
    out.write_text(json.dumps(doc))
    return out


@pytest.mark.parametrize(
    "field, value",
    [("preset", "x/../../../tmp/egbench-escape"), ("quant", "../x"), ("preset", ""), ("quant", "a" * 65), ("preset", "x\\y"), ("quant", "..")],
)
def test_path_escape_in_a_fingerprint_is_refused(tmp_path, field, value):
    """A crafted results file's preset/quant used to go into the baseline file name as they were
    (`preset = "x/../../../tmp/..."` wrote outside the folder); now it is a BaselineError naming
    the file and the field, and nothing is written."""
    evil = _results_file(tmp_path, **{field: value})
    with pytest.raises(BaselineError) as info:
        baselines.load(evil)
    assert str(evil) in str(info.value) and f"fingerprint field {field!r}" in str(info.value)
    assert baselines.main(["add", str(evil), "--dir", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists() and not list(Path("/tmp").glob("egbench-escape*"))
    with pytest.raises(BaselineError, match=f"fingerprint field {field!r}"):
        baselines.save(tmp_path / "out", {**FP, field: value}, {"t::x": Entry("x", "s", "latency", [[1.0]])}, run=RunRecord("r"))
    assert not (tmp_path / "out").exists()


def test_a_library_version_with_a_path_is_refused(tmp_path):
    path = tmp_path / "b.json"
    doc = baselines.Baseline({**FP, "torch": "2.11/../../x"}, {}).to_json()
    path.write_text(json.dumps(doc))
    with pytest.raises(BaselineError, match="fingerprint field 'torch'"):
        baselines.load(path)


def test_save_never_writes_outside_the_folder(tmp_path):
    """A baseline file that is a link to somewhere else is not written through."""
    folder = tmp_path / "baselines"
    elsewhere, _ = baselines.save(tmp_path / "elsewhere", FP, {"t::x": Entry("x", "s", "latency", [[1.0]])}, run=RunRecord("r0"))
    before = elsewhere.read_bytes()
    folder.mkdir()
    (folder / NAME).symlink_to(elsewhere)
    with pytest.raises(BaselineError, match="refusing to write there"):
        baselines.save(folder, FP, {"t::x": Entry("x", "s", "latency", [[2.0]])}, run=RunRecord("r1"))
    assert elsewhere.read_bytes() == before


def _baseline_with(tmp_path: Path, kind: str, unit: str, values: list) -> Path:
    path = tmp_path / NAME
    doc = baselines.Baseline(dict(FP), {"t::m": Entry("m", unit, kind, [[1.0]], run_ids=["r"])}, runs=[RunRecord("r")]).to_json()
    doc["entries"]["t::m"]["runs"] = [values]
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    "kind, unit, values, problem",
    [
        ("latency", "s", [0.1, 0.0], "latencies must be > 0"),
        ("latency", "s", [-0.5], "latencies must be > 0"),
        ("throughput", "tokens/s", [0], "throughputs must be > 0"),
        ("exact", "tokens", [-1], "exact values must be >= 0"),
        ("memory", "bytes", [-1.0], "memory values must be >= 0"),
        ("rate", "fraction", [1.5], "rates must lie in [0, 1]"),
        ("vibes", "s", [1.0], "unknown kind 'vibes'"),
    ],
)
def test_values_out_of_range_are_refused(tmp_path, kind, unit, values, problem):
    """A baseline whose latencies are 0 or negative used to load, and then a +500 % slowdown
    passed against it; so did any kind nobody knows."""
    path = _baseline_with(tmp_path, kind, unit, values)
    with pytest.raises(BaselineError) as info:
        baselines.load(path)
    assert str(path) in str(info.value) and problem in str(info.value)


def test_zero_latency_gate_no_longer_passes_a_slowdown(tmp_path):
    """The attack end to end: the zero-latency baseline is refused before any verdict."""
    path = _baseline_with(tmp_path, "latency", "s", [0.0] * 6)
    with pytest.raises(BaselineError, match="latencies must be > 0"):
        baselines.load_dir(path.parent)
    # and a run measuring 0 cannot be saved either (nothing load would refuse is written)
    with pytest.raises(BaselineError, match="latencies must be > 0"):
        baselines.save(tmp_path / "out", FP, {"t::x": Entry("x", "s", "latency", [[0.0]])}, run=RunRecord("r"))
    assert not (tmp_path / "out" / NAME).exists()


def test_the_known_kinds_are_the_sessions():
    from pytest_egbench import session

    assert set(baselines.KINDS) == {session.LATENCY, session.THROUGHPUT, session.EXACT, session.RATE, session.INFO, session.MEMORY}


def _session(tmp_path: Path, torch_version: str = "2.13.0"):
    from pytest_egbench.options import Settings
    from pytest_egbench.session import EgbenchSession, Measurement

    egb = EgbenchSession(
        Settings(enabled=True, preset="tiny", quant="fp32", baseline_dir=tmp_path / "baselines", json=tmp_path / "results.json").for_device("cpu"), "cpu"
    )
    egb._machine = {"node": "test-host", "cpu": {"brand_raw": "Test CPU", "count": 2}, "egbench": {"libraries": {"torch": torch_version}}}
    egb.add(Measurement(nodeid="t.py::t", test="t", group="g", metric="prefill", unit="s", kind="latency", samples=[0.1, 0.2]))
    return egb


def test_a_session_fingerprint_unfit_for_a_file_name_is_an_output_error_not_a_crash(tmp_path):
    from pytest_egbench.outputs import write_outputs

    written, errors = write_outputs(_session(tmp_path, torch_version="../../evil"), save=True)
    assert written == [tmp_path / "results.json"] and len(errors) == 1 and "fingerprint field 'torch'" in errors[0]
    assert not (tmp_path / "baselines").exists()


def test_a_saved_run_and_its_results_file_share_the_run_id(tmp_path):
    from pytest_egbench.outputs import write_outputs

    egb = _session(tmp_path)
    egb.calibration = {"matmul_ms": 1.5}
    written, errors = write_outputs(egb, save=True)
    assert not errors and len(written) == 2
    record = egb.run_record()
    assert record.id == egb.run_id and len(egb.run_id) == 32 and record.settings == egb.run_info() and record.calibration == {"matmul_ms": 1.5}
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["egbench"]["run_id"] == egb.run_id and results["egbench"]["calibration"] == {"matmul_ms": 1.5}
    (b,) = baselines.load_dir(tmp_path / "baselines")
    assert [r.id for r in b.runs] == [egb.run_id] and b.runs[0].calibration == {"matmul_ms": 1.5} and b.runs[0].settings["preset"] == "tiny"
    assert b.run_records_in_window() == b.runs
    # adding the results file of the saved run adds nothing
    before = b.path.read_bytes()
    assert baselines.main(["add", str(tmp_path / "results.json"), "--dir", str(tmp_path / "baselines")]) == 0
    assert b.path.read_bytes() == before


# --------------------------------------------------------------------------- duplicates and copies


def test_adding_the_same_results_file_twice_stores_it_once(tmp_path, capsys):
    """A results file without a run id (written before ids existed) gets one hashed from its
    content; one with ``egbench.run_id`` keeps it. Either way a second `add` adds nothing."""
    legacy = GOLDEN / "results-v0-h200.json"
    with_id = _results_file(tmp_path)
    doc = json.loads(with_id.read_text())
    doc["egbench"]["run_id"] = "0123abcd" * 4
    with_id.write_text(json.dumps(doc))
    folder = tmp_path / "out"
    for _ in range(2):
        assert baselines.main(["add", str(legacy), str(with_id), "--dir", str(folder)]) == 0
    (b,) = baselines.load_dir(folder)
    assert [r.id for r in b.runs] == [baselines.load(legacy).runs[0].id, "0123abcd" * 4]
    assert all(len(e.runs) == 2 for e in b.entries.values())
    assert "0 of 1 run(s) added (1 already there)" in capsys.readouterr().out
    # the id of a legacy file is its content's: the same file always has the same id
    assert baselines.load(legacy).runs[0].id == baselines.load(legacy).runs[0].id
    # save() says whether it added anything
    assert baselines.save(folder, b.fingerprint, {"t::x": Entry("x", "s", "latency", [[1.0]])}, run=b.runs[0]) == (folder / b.path.name, False)


def test_a_renamed_copy_of_a_baseline_is_refused(tmp_path):
    """A copy of a baseline under another name used to shadow the real one (or pass for another
    machine's); the fingerprint inside is now checked against the file name."""
    path, _ = baselines.save(tmp_path, FP, {"t::x": Entry("x", "s", "latency", [[1.0]])}, run=RunRecord("r"))
    copy = tmp_path / "aaa-nvidia-h200__7b-nf4.json"  # sorts first
    copy.write_bytes(path.read_bytes())
    with pytest.raises(BaselineError) as info:
        baselines.load_dir(tmp_path)
    assert str(copy) in str(info.value) and NAME in str(info.value)
    proc = _cli("show", str(tmp_path))
    _one_line_error(proc, copy.name)


def test_lock_files_are_not_baselines(tmp_path):
    baselines.save(tmp_path, FP, {"t::x": Entry("x", "s", "latency", [[1.0]])}, run=RunRecord("r"))
    (tmp_path / f"{NAME}.lock").write_text("not json")
    assert [b.path.name for b in baselines.load_dir(tmp_path)] == [NAME]


def test_committed_baselines_keep_every_sample_through_add(tmp_path):
    """The committed files (schema 2, or 3) load; adding them to an empty folder writes the current schema
    with every sample, in order, under the same run ids, and every run record (the history, also
    of runs whose samples left the window)."""
    committed = sorted((ROOT / "baselines").glob("*.json"))
    assert baselines.main(["add", *map(str, committed), "--dir", str(tmp_path)]) == 0
    for path in committed:
        before, after = baselines.load(path), baselines.load(tmp_path / path.name)
        assert json.loads((tmp_path / path.name).read_text())["schema_version"] == baselines.SCHEMA_VERSION == 4
        assert {k: (e.runs, e.run_ids) for k, e in after.entries.items()} == {k: (e.runs, e.run_ids) for k, e in before.entries.items()}
        assert after.runs == before.runs == baselines.load(path).runs
        assert {r.id for r in before.run_records_in_window()} == {rid for e in before.entries.values() for rid in e.run_ids}


def test_schema_2_runs_with_equal_samples_get_distinct_ids(tmp_path):
    path = tmp_path / "b.json"
    fp = {"device": "d", "preset": "p", "quant": "q"}
    path.write_text(
        json.dumps(
            {
                "schema_version": 2,
                "fingerprint": fp,
                "created": "c",
                "commit": None,
                "entries": {"k": {"metric": "m", "unit": "tokens", "kind": "exact", "runs": [[5.0], [5.0]]}},
            }
        )
    )
    b = baselines.load(path)
    assert len({r.id for r in b.runs}) == 2 and b.entries["k"].run_ids == [r.id for r in b.runs]


def test_schema_2_runs_are_aligned_from_the_newest(tmp_path):
    """An entry with fewer runs than the file's longest missed the oldest ones (a metric added
    later): its runs share the ids of the newest positions."""
    path = tmp_path / "b.json"
    fp = {"device": "d", "preset": "p", "quant": "q"}
    entries = {
        "old": {"metric": "a", "unit": "s", "kind": "latency", "runs": [[1.0], [2.0], [3.0]]},
        "new": {"metric": "b", "unit": "s", "kind": "latency", "runs": [[4.0]]},
    }
    path.write_text(json.dumps({"schema_version": 2, "fingerprint": fp, "created": "c", "commit": "x", "entries": entries}))
    b = baselines.load(path)
    assert b.entries["new"].run_ids == b.entries["old"].run_ids[-1:] and [r.id for r in b.runs] == b.entries["old"].run_ids
    assert all((r.created, r.commit, r.settings, r.calibration) == ("c", "x", {}, None) for r in b.runs)


# --------------------------------------------------------------------------- input that used to end in a traceback


def _write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def _results_text(**change) -> str:
    doc = json.loads((GOLDEN / "results-v0-h200.json").read_text())
    doc.update(change)
    return json.dumps(doc)


BAD_INPUT = {
    "deeply nested JSON": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "deeply nested inside a results file": (
        _results_text(commit_info={"id": "x", "deep": "@@"}).replace('"@@"', "[" * 50_000 + "]" * 50_000),
        "nested too deeply",
    ),
    "a huge float (1e999 parses to inf)": (_results_text().replace('"data": [', '"data": [1e999, ', 1), "finite numbers"),
    # Python >= 3.10.7 refuses to read an integer of more than 4300 digits; older ones read it
    "a huge integer": (_results_text().replace('"data": [', '"data": [' + "9" * 5000 + ", ", 1), "not readable JSON|finite numbers"),
    "a 400-digit integer (too large for a float)": (_results_text().replace('"data": [', '"data": [' + "9" * 400 + ", ", 1), "finite numbers"),
    "non-UTF-8 bytes": (b'{"schema_version": 2, "fingerprint": "\xff\xfe"}', "not UTF-8"),
    "a results file with no entries": (_results_text(benchmarks=[], egbench={"settings": {"preset": "7b", "quant": "bf16"}}), "no entries"),
    "a baseline with no entries": (json.dumps({"schema_version": 3, "fingerprint": FP, "runs": [], "entries": {}}), "no entries"),
    "an unknown kind": (
        json.dumps({"schema_version": 2, "fingerprint": FP, "entries": {"k": {"metric": "m", "unit": "s", "kind": "vibes", "runs": [[1.0]]}}}),
        "unknown kind",
    ),
    "benchmarks that are not objects": (_results_text(benchmarks=[1, 2]), "not an object with a fullname"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_from_the_command_line(tmp_path, case):
    """`python -m pytest_egbench.baselines add` of each bad file: exit status 2, one line
    `error: <file>: <problem>` on stderr, no traceback, nothing written."""
    data, problem = BAD_INPUT[case]
    bad = _write(tmp_path / "bad.json", data)
    stderr = _one_line_error(_cli("add", str(bad), "--dir", str(tmp_path / "out")), str(bad))
    assert re.search(problem, stderr), stderr
    assert not (tmp_path / "out").exists()


def test_bad_input_in_the_baseline_folder_is_one_line_from_show(tmp_path):
    _write(tmp_path / NAME, "[" * 100_000)
    assert "nested too deeply" in _one_line_error(_cli("show", str(tmp_path)), NAME)


# --------------------------------------------------------------------------- atomic writes aimed at links and devices


def test_atomic_write_through_a_symlink_keeps_the_link(tmp_path):
    """`--egbench-json` pointed at a link used to replace the link with a regular file."""
    target = tmp_path / "real" / "results.json"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "results.json"
    link.symlink_to(target)
    write_json_atomic(link, {"a": 1})
    assert link.is_symlink() and json.loads(target.read_text()) == {"a": 1}
    write_text_atomic(link, "report")
    assert link.is_symlink() and target.read_text() == "report"
    # a dangling link: its target is created
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "made.json")
    write_json_atomic(dangling, [1])
    assert dangling.is_symlink() and json.loads((tmp_path / "made.json").read_text()) == [1]
    assert not list(tmp_path.rglob("*.tmp"))


def _null_device(tmp_path: Path) -> Path:
    """A character device like /dev/null that a broken writer could replace without harm: a node
    made in ``tmp_path`` (c 1 3) where this process may make one (root), else the real /dev/null
    only where this process could not replace it anyway (no write access to /dev). Running as
    root without CAP_MKNOD: skipped, rather than risk the machine's /dev/null."""
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        return node
    except (OSError, AttributeError):
        pass
    real = Path("/dev/null")
    if real.exists() and stat.S_ISCHR(real.stat().st_mode) and not os.access("/dev", os.W_OK):
        return real
    pytest.skip("cannot make a device node here, and /dev is writable: not risking /dev/null")


@pytest.mark.parametrize("special", ["device node like /dev/null", "fifo", "folder", "link to a device node"])
def test_atomic_write_refuses_a_device_node_fifo_or_folder(tmp_path, special):
    """`--egbench-json /dev/null` used to replace the device node with a regular file."""
    if special.startswith("device node"):
        path = _null_device(tmp_path)
    elif special == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs on this platform")
        path = tmp_path / "fifo"
        os.mkfifo(path)
    elif special == "folder":
        path = tmp_path / "folder"
        path.mkdir()
    else:
        path = tmp_path / "null.json"
        path.symlink_to(_null_device(tmp_path))
    before = os.lstat(path)
    with pytest.raises(NotARegularFileError) as info:
        write_json_atomic(path, {"a": 1})
    assert isinstance(info.value, OSError) and "not a regular file" in str(info.value) and str(path) in str(info.value)
    after = os.lstat(path)
    assert (after.st_mode, after.st_ino, after.st_rdev) == (before.st_mode, before.st_ino, before.st_rdev)
    assert not list(tmp_path.glob(".*.tmp"))
