"""The lockstep of an A/B pair (pytest_egbench.lockstep): while one process times a round the
others wait, turns rotate round by round, and any disagreement or exit ends the pairing without a
hang. The oracle is the protocol's definition: a shared append-only journal of what each process
did inside its rounds must read as the strict sequence the definition gives."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pytest_egbench import lockstep

pytestmark = pytest.mark.skipif(os.name != "posix", reason="lockstep pairs processes through POSIX pipes")

CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pytest_egbench.timing import PerfCounterClock, StageTimer
    from pytest_egbench import lockstep

    name, journal, rounds, stop_after = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    import threading
    affinity = (lambda: sorted(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else (lambda: None)
    print("START", affinity())
    worker_done, worker_seen = threading.Event(), []
    worker = threading.Thread(target=lambda: worker_done.wait() and worker_seen.append(affinity()), daemon=True)
    worker.start()  # a thread that exists before the first round, as a compiler's or loader's
    if os.environ.get("TURN_FIRST"):
        with lockstep.turn("machine calibration"):  # an exclusive turn at session start
            print("IN TURN", affinity())
    timer = StageTimer(PerfCounterClock(), rounds=rounds, warmup=1)
    for i, rnd in enumerate(timer.rounds()):
        if i == stop_after:
            sys.exit(3)
        with rnd.stage("prefill"):
            with open(journal, "a") as fh:
                fh.write(f"{name} start {rnd.index}\\n")
            time.sleep(0.02)  # long enough that an unpaired neighbour would write in between
            with open(journal, "a") as fh:
                fh.write(f"{name} end {rnd.index}\\n")
    timer.results()
    if os.environ.get("BETWEEN"):  # work between two benchmarks that needs every CPU, as compiling
        late_go, late_seen = threading.Event(), []
        with lockstep.outside_rounds():
            print("BETWEEN", affinity())
            late = threading.Thread(target=lambda: late_go.wait() and late_seen.append(affinity()), daemon=True)
            late.start()  # a thread started while unpinned, as a compiler's pool
        print("AFTER", affinity())
        late_go.set()
        late.join()
        print("LATE", late_seen[0])
    if os.environ.get("SECOND_TEST"):  # a second benchmark; the process exits in its round SECOND_STOP
        os.environ["PYTEST_CURRENT_TEST"] = os.environ["SECOND_TEST"] + " (call)"
        second = StageTimer(PerfCounterClock(), rounds=rounds, warmup=1)
        for i, rnd in enumerate(second.rounds()):
            if i == int(os.environ.get("SECOND_STOP", 10**6)):
                sys.exit(3)
            with rnd.stage("prefill"):
                pass
        second.results()
    print("SUMMARY", lockstep.client().summary() if lockstep.client() else None)
    print("AFFINITY", affinity())
    worker_done.set()
    worker.join()
    print("WORKER", worker_seen[0])
    """
)


def _commands(
    tmp_path: Path,
    names: list[str],
    rounds: int = 3,
    stop_after: dict[str, int] | None = None,
    labels: dict[str, str] | None = None,
    turn_first: bool = False,
    between: bool = False,
):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    journal = tmp_path / "journal.txt"
    cmds = []
    for n in names:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), PYTEST_CURRENT_TEST=(labels or {}).get(n, "bench.py::test_x (call)"))
        if turn_first:
            env["TURN_FIRST"] = "1"
        if between:
            env["BETWEEN"] = "1"
        argv = [sys.executable, str(script), n, str(journal), str(rounds), str((stop_after or {}).get(n, 10**6))]
        cmds.append((n, argv, tmp_path, env, tmp_path / f"{n}.log"))
    return cmds, journal


def _turns(journal: Path) -> list[tuple[str, int]]:
    """(name, round) per turn; asserts that every start is followed by its own end (no overlap)."""
    lines = journal.read_text().split()
    events = [tuple(lines[i : i + 3]) for i in range(0, len(lines), 3)]
    turns = []
    for start, end in zip(events[::2], events[1::2]):
        assert start[1] == "start" and end[1] == "end" and start[0] == end[0] and start[2] == end[2], f"overlapping rounds: {events}"
    for start in events[::2]:
        turns.append((start[0], int(start[2])))
    return turns


def test_two_processes_take_turns_round_by_round_and_never_overlap(tmp_path):
    cmds, journal = _commands(tmp_path, ["ref", "current"], rounds=3)
    done, summary = lockstep.run_pair(cmds, ["ref", "current"])
    assert {n: status for n, (status, _) in done.items()} == {"ref": 0, "current": 0}
    # 1 cold + 1 warm-up + 3 steady rounds; the first turn alternates: A B, B A, A B, B A, A B
    expected = []
    for r in range(5):
        expected += [("ref", r), ("current", r)] if r % 2 == 0 else [("current", r), ("ref", r)]
    assert _turns(journal) == expected
    assert summary == {"paired_turns": 5, "unpaired": None, "paired_nodeids": ["bench.py::test_x"]}
    for n in ("ref", "current"):
        assert "SUMMARY {'paired_turns': 5, 'unpaired': None}" in (tmp_path / f"{n}.log").read_text()


def test_three_processes_rotate_the_first_turn(tmp_path):
    cmds, journal = _commands(tmp_path, ["a", "b", "c"], rounds=1)
    lockstep.run_pair(cmds, ["a", "b", "c"])
    turns = [n for n, _ in _turns(journal)]
    assert turns == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_sides_at_different_benchmarks_stop_pairing_and_both_finish(tmp_path):
    cmds, _ = _commands(tmp_path, ["ref", "current"], labels={"current": "bench.py::test_other (call)"})
    done, summary = lockstep.run_pair(cmds, ["ref", "current"])
    assert all(status == 0 for status, _ in done.values())
    assert summary["paired_turns"] == 0
    assert "disagree" in summary["unpaired"] and "test_other" in summary["unpaired"]
    assert summary["paired_nodeids"] == []  # neither benchmark had a round paired
    assert "'paired_turns': 0" in (tmp_path / "ref.log").read_text()


def test_a_side_that_exits_releases_the_other(tmp_path):
    cmds, journal = _commands(tmp_path, ["ref", "current"], rounds=3, stop_after={"current": 2})
    done, summary = lockstep.run_pair(cmds, ["ref", "current"])
    assert done["current"][0] == 3 and done["ref"][0] == 0
    assert summary["paired_turns"] == 2 and "current process exited" in summary["unpaired"]
    assert summary["paired_nodeids"] == []  # two of its five rounds were paired: not all
    ref_rounds = [r for n, r in _turns(journal) if n == "ref"]
    assert ref_rounds == [0, 1, 2, 3, 4]  # the survivor ran all its rounds


def test_a_side_that_refuses_its_arguments_stops_the_other_at_once(tmp_path):
    """A process that exits with pytest's usage-error status (4) before its first round leaves the
    other nothing to pair with: it is stopped (terminated) instead of timing every round alone.
    One that exits 5 (nothing collected: a reference without the benchmark) does not stop it."""
    cmds, journal = _commands(tmp_path, ["ref", "current"], rounds=200)
    name, _, cwd, env, log = cmds[0]
    cmds[0] = (name, [sys.executable, "-c", "import sys; sys.exit(4)"], cwd, env, log)
    t0 = time.perf_counter()
    done, summary = lockstep.run_pair(cmds, ["ref", "current"])
    assert done["ref"][0] == 4 and done["current"][0] != 0
    assert summary["unpaired"] == "stopped: the ref process exited with status 4 before its first round"
    timed = _turns(journal) if journal.exists() else []  # stopped before it wrote a round, most likely
    assert len([n for n, _ in timed if n == "current"]) < 202  # not all of its 1 + 1 + 200 rounds
    assert time.perf_counter() - t0 < 60
    (tmp_path / "b").mkdir()
    cmds, journal = _commands(tmp_path / "b", ["ref", "current"], rounds=3)
    name, _, cwd, env, log = cmds[0]
    cmds[0] = (name, [sys.executable, "-c", "import sys; sys.exit(5)"], cwd, env, log)
    done, summary = lockstep.run_pair(cmds, ["ref", "current"])
    assert done["ref"][0] == 5 and done["current"][0] == 0
    assert [r for n, r in _turns(journal) if n == "current"] == [0, 1, 2, 3, 4]


def test_only_benchmarks_with_every_round_paired_are_named(tmp_path):
    """Two benchmarks in each process; the current side exits in the second's round 2: the first
    benchmark's five rounds were all paired, the second's were not (its first two were, the rest
    of the survivor's ran alone)."""
    cmds, _ = _commands(tmp_path, ["ref", "current"], rounds=3)
    for name, _, _, env, _ in cmds:
        env["SECOND_TEST"] = "bench.py::test_y"
        if name == "current":
            env["SECOND_STOP"] = "2"
    done, summary = lockstep.run_pair(cmds, ["ref", "current"])
    assert done["current"][0] == 3 and done["ref"][0] == 0
    assert summary["paired_turns"] == 5 + 2
    assert summary["paired_nodeids"] == ["bench.py::test_x"]


def test_a_turn_inside_a_test_is_labelled_with_its_node_id(monkeypatch):
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "benchmarks/test_timer.py::test_timer_overhead (call)")
    label = lockstep.turn_label("timer overhead")
    assert lockstep.label_nodeid(label) == "benchmarks/test_timer.py::test_timer_overhead"
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    assert lockstep.label_nodeid(lockstep.turn_label("machine calibration")) == ""


def test_no_pairing_outside_an_ab_process(monkeypatch):
    monkeypatch.setattr(lockstep, "_LOOKED", False)
    monkeypatch.delenv(lockstep.ENV, raising=False)
    assert lockstep.client() is None


def test_a_malformed_environment_variable_is_named(monkeypatch):
    monkeypatch.setattr(lockstep, "_LOOKED", False)
    for bad in ("three", "3,4,5,6:x", "3,4,5,6,7"):
        monkeypatch.setattr(lockstep, "_LOOKED", False)
        monkeypatch.setenv(lockstep.ENV, bad)
        with pytest.raises(ValueError, match=lockstep.ENV):
            lockstep.client()


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs Linux sched_setaffinity")
def test_a_pinned_pair_times_its_rounds_on_one_cpu(tmp_path):
    cpus = frozenset(os.sched_getaffinity(0))
    cmds, _ = _commands(tmp_path, ["ref", "current"], rounds=1)
    lockstep.run_pair(cmds, ["ref", "current"], cpus)
    for n in ("ref", "current"):
        assert f"AFFINITY [{max(cpus)}]" in (tmp_path / f"{n}.log").read_text()


def _pinned_to_the_last_cpu(tmp_path: Path, **options: bool) -> tuple[list[int], list[str]]:
    """Run a pair of one-round children pinned to this process's last CPU: (this process's CPUs,
    the two children's logs)."""
    have = sorted(os.sched_getaffinity(0))
    cmds, _ = _commands(tmp_path, ["ref", "current"], rounds=1, **options)
    lockstep.run_pair(cmds, ["ref", "current"], frozenset(have[-1:]))
    return have, [(tmp_path / f"{n}.log").read_text() for n in ("ref", "current")]


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs Linux and two CPUs")
def test_a_pinned_pair_starts_unpinned_and_pins_every_thread_at_its_first_round(tmp_path):
    """Loading and compiling before the first round use all the CPUs, also after an exclusive
    turn (the machine calibration); from the first round on every thread, not only the timing
    one, keeps to the pair's CPUs."""
    have, logs = _pinned_to_the_last_cpu(tmp_path, turn_first=True)
    for log in logs:
        assert f"START {have}" in log
        assert f"IN TURN {have}" in log  # the calibration's turn does not pin: loading after it uses every CPU
        assert f"AFFINITY {have[-1:]}" in log and f"WORKER {have[-1:]}" in log


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs Linux and two CPUs")
def test_work_between_rounds_runs_on_every_cpu_and_the_process_is_pinned_again_after_it(tmp_path):
    """lockstep.outside_rounds (a compiled runtime's compilation between benchmarks): inside it the
    pinned process has all its CPUs back; after it every thread, also one started inside, keeps to
    the pair's CPUs and the timing thread to its one CPU again."""
    have, logs = _pinned_to_the_last_cpu(tmp_path, between=True)
    for log in logs:
        assert f"BETWEEN {have}" in log, log
        assert f"AFTER {have[-1:]}" in log and f"LATE {have[-1:]}" in log, log


def test_outside_rounds_is_a_no_op_outside_a_pair(monkeypatch):
    monkeypatch.setattr(lockstep, "_CLIENT", None)
    monkeypatch.setattr(lockstep, "_LOOKED", True)
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    with lockstep.outside_rounds():
        inside = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    assert inside == before


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs Linux and two CPUs")
def test_inside_a_timed_turn_the_pinning_stays(monkeypatch):
    """A compilation that happened inside a timed round must not move the timing thread."""
    import io

    have = frozenset(os.sched_getaffinity(0))
    last = max(have)
    peer = lockstep.Client(io.BytesIO(b"G\nC\n"), io.BytesIO(), cpu=last, cpus=frozenset({last}))
    monkeypatch.setattr(lockstep, "_CLIENT", peer)
    monkeypatch.setattr(lockstep, "_LOOKED", True)
    try:
        peer.begin("bench.py::test_x#0")
        assert peer.in_turn and os.sched_getaffinity(0) == {last}
        with lockstep.outside_rounds():
            assert os.sched_getaffinity(0) == {last}
        peer.end()
        with lockstep.outside_rounds():
            assert os.sched_getaffinity(0) == have
        assert os.sched_getaffinity(0) == {last}
    finally:
        lockstep.pin_threads(have)
