"""Round-by-round lockstep of the two processes of an A/B pair (``--egbench-ref``).

Why: on leased GPU machines the host's speed drifts in steps that last seconds to minutes. One
process decoded at 800 ms a round for six rounds, then 627 and 477 ms; the process after it ran at
397 ms (H200 lease 3, ``docs/measurements/ab-study-h200-lease3.md``). Whole processes run one after
the other therefore differ by up to 2.2x with no code change, and a 5 % slowdown drowns. So the
reference process and the current process of a pair run *at the same time*, both loaded, and take
turns round by round: while one times a round, the other is blocked in a ``read`` (no CPU, no GPU
work in flight), and the k-th rounds of the two sides are seconds apart, on the same host state.

Protocol, over two pipes per child, driven by the parent (:class:`Mediator`):

* before each round (cold and warm-up rounds included) a child sends ``B <label>`` (label: the
  benchmark's node id and the round's index) and blocks until the parent answers ``G`` (go);
* after the round (its device work synchronised) it sends ``E`` and blocks until ``C`` (continue);
* the parent waits for ``B`` from both sides with the same label, lets the side whose turn is first
  time its round, then the other, then releases both. The first side alternates from round to
  round (A B, B A, A B, ...: a linear drift falls on both sides alike).

If the two sides ever disagree (different labels: a benchmark skipped or failed on one side only),
or one side exits, the parent answers ``U`` (unpaired) to every later message and both sides run
on freely; each child's results file says how many rounds were paired and why the pairing stopped
(``egbench.lockstep``), and the A/B verdicts say so.

A child finds its pipe ends in the environment variable :data:`ENV` (``"READ_FD,WRITE_FD"``, then
``",CPU,SET"`` when the pair is pinned, SET the pair's CPUs joined by ``:``); without it every call
here is a no-op. A pinned child starts unpinned: what it does before its first round (importing,
loading the model, compiling -- a compiled runtime's inductor compiles with many threads, and two
processes compiling at once on four pinned CPUs took four times as long, H200 lease B) runs on all
the machine's CPUs. So does a later compilation between rounds (:func:`outside_rounds`). At its first round every thread of the process is pinned to the pair's SET and
the main thread (the one that times the rounds) to the one CPU; threads started later inherit
that: on a leased H200 host the same eager decode round took
390 or 790 ms within one process, as its thread moved between the pinned CPUs
(``docs/measurements/ab-lockstep-h200.md``), and one CPU for both sides' timing threads makes that
a property of the machine both sides share. POSIX only (``pass_fds``); elsewhere the parent runs the
pair's processes one after the other.
"""

from __future__ import annotations

import io
import os
import select
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

#: Environment variable naming a child's pipe ends: ``"READ_FD,WRITE_FD"``.
ENV = "EGBENCH_LOCKSTEP"


class Client:
    """The child's end: :meth:`begin` before a round, :meth:`end` after it (device synchronised).

    ``paired_turns`` counts the rounds (and :func:`turn` blocks) timed while the peer waited; ``unpaired`` is ``None`` while
    the pairing holds, else the reason it stopped.
    """

    def __init__(self, reader: IO[bytes], writer: IO[bytes], cpu: int | None = None, cpus: frozenset[int] | None = None) -> None:
        self._reader, self._writer = reader, writer
        self._cpu = cpu
        self._cpus = cpus
        #: set at the first pinned round: the CPUs the process had before (restored by :meth:`unpin`)
        self._home: frozenset[int] | None = None
        self.pinned = False
        self._open = False
        self.paired_turns = 0
        self.unpaired: str | None = None

    def _ask(self, message: str, expect: str) -> bool:
        """Send ``message``; block for the answer. False (and unpaired from now on) unless it is
        ``expect``."""
        if self.unpaired is not None:
            return False
        try:
            self._writer.write(message.encode("utf-8", "replace") + b"\n")
            self._writer.flush()
            answer = self._reader.readline().decode("utf-8", "replace").strip()
        except OSError as exc:
            answer = f"pipe error ({exc})"
        if answer == expect:
            return True
        self.unpaired = answer[2:] if answer.startswith("U ") else (answer or "the A/B parent closed the pipe")
        return False

    def begin(self, label: str, *, pin: bool = True) -> None:
        """Block until it is this process's turn to time the round ``label``. The first call with
        ``pin`` (a timer's round) pins every thread to the pair's CPUs and the calling one to its
        own; an exclusive :func:`turn` (``pin=False``: the machine calibration at session start)
        leaves the process as it is, so that loading and compiling before the first round still
        use every CPU."""
        if self._open:
            self.end()
        if pin and not self.pinned and (self._cpus or self._cpu is not None):
            self._home = frozenset(os.sched_getaffinity(0))
            self.repin()
        if self._ask(f"B {label.replace(chr(10), ' ')}", "G"):
            self._open = True

    @property
    def in_turn(self) -> bool:
        """Between :meth:`begin` and :meth:`end`: this process is timing its turn."""
        return self._open

    def repin(self) -> None:
        """Pin every thread to the pair's CPUs and the calling thread (the one that times the
        rounds) to its own CPU; threads started since the last pinning are pinned too."""
        if self._cpus:
            pin_threads(self._cpus)
        if self._cpu is not None:
            os.sched_setaffinity(0, {self._cpu})  # pid 0: the calling thread only
        self.pinned = True

    def unpin(self) -> None:
        """Give every thread back the CPUs the process had before its first pinned round (a no-op
        before it); :meth:`repin` undoes it."""
        if self.pinned and self._home:
            pin_threads(self._home)
            self.pinned = False

    def end(self) -> None:
        """This round is timed and its device work finished: hand the turn over, block until the
        peer's round is timed too."""
        if not self._open:
            return
        self._open = False
        self.paired_turns += 1
        self._ask("E", "C")

    def summary(self) -> dict[str, Any]:
        """For the results file: ``{"paired_turns": int, "unpaired": reason or None}``."""
        return {"paired_turns": self.paired_turns, "unpaired": self.unpaired}


def current_nodeid() -> str:
    """The node id of the test pytest is running (``PYTEST_CURRENT_TEST`` without its phase), or
    ``""`` outside a test."""
    return os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]


def turn_label(what: str) -> str:
    """A turn's label: ``NODEID#WHAT`` inside a test, so that the parent knows which benchmark
    the turn belonged to (:func:`label_nodeid`), else ``WHAT``."""
    nodeid = current_nodeid()
    return f"{nodeid}#{what}" if nodeid else what


def label_nodeid(label: str) -> str:
    """The benchmark node id a round's label names (``NODEID#INDEX``, :func:`turn_label`); ``""``
    for a turn outside any test (the machine calibration)."""
    return label.rsplit("#", 1)[0] if "#" in label else ""


@contextmanager
def turn(label: str) -> Iterator[None]:
    """Time something outside a :class:`~pytest_egbench.timing.StageTimer` round (the machine
    calibration, a benchmark's own reference measurement) exclusively: in one process of a
    lockstep pair the ``with`` block runs while the other side waits in its own ``turn(label)``;
    elsewhere it just runs. The block must leave no device work in flight (synchronise)."""
    peer = client()
    if peer is None:
        yield
        return
    peer.begin(turn_label(label), pin=False)
    try:
        yield
    finally:
        peer.end()


@contextmanager
def outside_rounds() -> Iterator[None]:
    """Run the ``with`` block on every CPU the process had before its first pinned round, then pin
    again: for work between rounds that needs many CPUs and times nothing, a compiled runtime's
    compilation (:meth:`~pytest_egbench.models.runtime.CompiledLM.prepare`). A no-op outside
    a pinned lockstep pair, before the first round (the process is not pinned yet) and inside a
    timed turn (whose CPUs must not change).

    Why: a pinned process has all its threads on the pair's four CPUs and its main thread on one
    CPU, the same one as its peer's; both sides compile the next model at the same time, before
    its first round, so their tracing and code generation shared that one CPU and those four. The
    peer times nothing meanwhile: its next round waits for this side's request with the same label.
    """
    peer = client()
    if peer is None or not peer.pinned or peer.in_turn:  # inside a timed turn the pinning stays
        yield
        return
    peer.unpin()
    try:
        yield
    finally:
        peer.repin()


_CLIENT: Client | None = None
_LOOKED = False


def client() -> Client | None:
    """This process's :class:`Client` when it runs as one side of a lockstep pair, else ``None``.
    A malformed :data:`ENV` raises ``ValueError`` naming it."""
    global _CLIENT, _LOOKED
    if not _LOOKED:
        _LOOKED = True
        spec = os.environ.get(ENV)
        if spec:
            try:
                fields = spec.split(",")
                if len(fields) not in (2, 3, 4):
                    raise ValueError
                rfd, wfd, *cpu = (int(x) for x in fields[:3])
                cpus = frozenset(int(x) for x in fields[3].split(":")) if len(fields) == 4 else None
            except ValueError:
                raise ValueError(f"{ENV}={spec!r}: expected 'READ_FD,WRITE_FD', 'READ_FD,WRITE_FD,CPU' or 'READ_FD,WRITE_FD,CPU,CPU:CPU:...'") from None
            _CLIENT = Client(io.open(rfd, "rb", buffering=0), io.open(wfd, "wb", buffering=0), cpu[0] if cpu else None, cpus)
    return _CLIENT


@dataclass
class _Child:
    name: str
    proc: subprocess.Popen[bytes]
    to_child: int
    from_child: IO[bytes]
    started: float
    waiting: str | None = None  # the unanswered message, if any
    alive: bool = True
    seconds: float = 0.0
    said: bool = False  # sent a message: got as far as its first round


#: pytest exit statuses that end a process before it could time anything worth pairing with: it was
#: interrupted (2), pytest failed internally (3), or it refused its arguments (4). Tests failing (1)
#: and nothing collected (5: a reference without the benchmark) are results, not these.
BROKEN_START = frozenset({2, 3, 4})


class Mediator:
    """Runs child processes in lockstep (see the module docstring; two for an A/B, more for a
    study) and returns when all have exited. Round ``k``'s turns go in ``order`` rotated by ``k``
    (two sides: A B, B A, A B, ...)."""

    def __init__(self, children: list[_Child], order: Sequence[str]) -> None:
        self.children = {c.name: c for c in children}
        self.order = list(order)
        self.unpaired: str | None = None
        self.slot = 0
        self.paired_turns = 0
        #: node ids of the benchmarks with at least one turn paired
        self.paired_nodeids: set[str] = set()
        #: node ids of the benchmarks whose pairing stopped partway (a turn pending or running
        #: when it stopped): their rounds are not all paired
        self.broken_nodeids: set[str] = set()
        self._running: str | None = None  # the label of the turn being taken
        #: the others were stopped: a child exited before its first round (:meth:`_abort_on_broken_start`)
        self.stopped = False
        #: children that exited before their first round whose exit status was read
        self._exits_read: set[str] = set()

    def fully_paired(self) -> list[str]:
        """Node ids of the benchmarks every one of whose turns was paired (sorted)."""
        return sorted(n for n in self.paired_nodeids - self.broken_nodeids if n)

    def _send(self, child: _Child, message: str) -> None:
        child.waiting = None
        try:
            os.write(child.to_child, message.encode() + b"\n")
        except OSError:
            pass  # the child is gone; its exit is seen on its pipe

    def _stop(self, why: str) -> None:
        """Pairing off: answer every waiting child, and every later message, with ``U``."""
        if self.unpaired is None:
            self.unpaired = why
            pending = [c.waiting[2:] for c in self.children.values() if c.waiting and c.waiting.startswith("B ")]
            self.broken_nodeids.update(label_nodeid(label) for label in [*pending, *([self._running] if self._running else [])])
        for c in self.children.values():
            if c.waiting is not None:
                self._send(c, f"U {self.unpaired}")

    def _read(self, child: _Child) -> None:
        line = child.from_child.readline()
        if not line:
            child.alive = False
            child.seconds = time.perf_counter() - child.started
            return
        child.waiting = line.decode("utf-8", "replace").strip()
        child.said = True
        if self.unpaired is not None:
            self._send(child, f"U {self.unpaired}")

    def _abort_on_broken_start(self) -> None:
        """A child that exited before its first round with a status of :data:`BROKEN_START` (it
        refused its arguments, say) leaves nothing to pair the others' rounds with: stop them now
        rather than let them time every benchmark alone (seen: a reference revision older than an
        option the nightly passed stopped at once, and the current code ran 350 s on an H200 for
        nothing)."""
        if self.stopped:
            return
        for c in self.children.values():
            if c.alive or c.said or c.name in self._exits_read:
                continue
            try:
                status = c.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                continue
            self._exits_read.add(c.name)
            if status in BROKEN_START or status < 0:
                self.unpaired = None  # this is the reason, whatever stopped the pairing before
                self.stopped = True
                self._stop(f"stopped: the {c.name} process exited with status {status} before its first round")
                for other in self.children.values():
                    if other.alive and other.proc.poll() is None:
                        other.proc.terminate()
                return

    def _step(self) -> None:
        """Advance the protocol as far as the messages received allow."""
        shift = self.slot % len(self.order)
        turns = [self.children[n] for n in self.order[shift:] + self.order[:shift]]
        gone = [c.name for c in turns if not c.alive]
        if gone and any(c.waiting is not None for c in turns):
            self._stop(f"the {' and '.join(gone)} process exited")
        if self.unpaired is not None or any(c.waiting is None or not c.waiting.startswith("B ") for c in turns):
            return
        if len({c.waiting for c in turns}) > 1:
            self._stop("the sides disagree: " + ", ".join(f"{c.name} at {(c.waiting or '')[2:]!r}" for c in turns))
            return
        self._running = (turns[0].waiting or "")[2:]
        for turn in turns:
            self._send(turn, "G")
            while turn.alive and turn.waiting is None:
                self._read(turn)
            if not turn.alive:
                self._stop(f"the {turn.name} process exited during its turn")
            if self.unpaired is not None:
                return
            if turn.waiting != "E":
                self._stop(f"the {turn.name} process sent {turn.waiting!r} during its turn")
                return
        self.slot += 1
        self.paired_turns += 1
        self.paired_nodeids.add(label_nodeid(self._running))
        self._running = None
        for c in turns:
            self._send(c, "C")

    def run(self) -> None:
        while any(c.alive for c in self.children.values()):
            live = {c.from_child.fileno(): c for c in self.children.values() if c.alive}
            ready, _, _ = select.select(list(live), [], [])
            for fd in ready:
                self._read(live[fd])
            self._abort_on_broken_start()
            self._step()
        for c in self.children.values():
            c.proc.wait()


def pin_threads(cpus: frozenset[int]) -> None:
    """Pin every thread of this process to ``cpus`` (Linux: each task in ``/proc/self/task``;
    elsewhere the calling thread only). A thread that ended meanwhile is skipped."""
    tasks = Path("/proc/self/task")
    tids = [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [0]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except (ProcessLookupError, PermissionError):
            continue


def pin_preexec(cpus: frozenset[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` pinning a child process to ``cpus`` (Linux ``sched_setaffinity``), or
    ``None`` for no pinning."""
    return (lambda: os.sched_setaffinity(0, cpus)) if cpus else None


def run_pair(
    commands: Sequence[tuple[str, list[str], Path, dict[str, str], Path]],
    order: Sequence[str],
    cpus: frozenset[int] | None = None,
) -> tuple[dict[str, tuple[int, float]], dict[str, Any]]:
    """Run the ``(name, argv, cwd, env, log)`` commands at once, in lockstep, round ``k``'s turns
    in ``order`` rotated by ``k``.

    Returns ``({name: (exit status, seconds)}, {"paired_turns": n, "unpaired": reason or None,
    "paired_nodeids": [...] or None})``: ``paired_nodeids`` the benchmarks every round of which
    was timed in a paired turn (:meth:`Mediator.fully_paired`); ``None`` where lockstep is not
    available (not POSIX: every benchmark's rounds are paired by index, as documented).
    ``cpus``: from its first round on, every child is pinned to these CPUs, and its timing thread
    to the highest of them (see the module docstring). Not POSIX: they run one after the other, in ``order``, unpaired.
    """
    if os.name != "posix":
        out = {}
        for name, argv, cwd, env, log in sorted(commands, key=lambda c: list(order).index(c[0])):
            t0 = time.perf_counter()
            with open(log, "w", encoding="utf-8") as fh:
                status = subprocess.run(argv, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
            out[name] = (status, time.perf_counter() - t0)
        return out, {"paired_turns": 0, "unpaired": "lockstep needs POSIX pipes; the processes ran one after the other", "paired_nodeids": None}
    children = []
    try:
        for name, argv, cwd, env, log in commands:
            to_r, to_w = os.pipe()
            from_r, from_w = os.pipe()
            pinning = f",{max(cpus)}," + ":".join(str(c) for c in sorted(cpus)) if cpus else ""
            child_env = dict(env, **{ENV: f"{to_r},{from_w}{pinning}"})
            with open(log, "w", encoding="utf-8") as fh:
                proc = subprocess.Popen(argv, cwd=cwd, env=child_env, stdout=fh, stderr=subprocess.STDOUT, pass_fds=(to_r, from_w))
            os.close(to_r)
            os.close(from_w)
            children.append(_Child(name, proc, to_w, io.open(from_r, "rb", buffering=0), time.perf_counter()))
        mediator = Mediator(children, order)
        mediator.run()
    finally:
        for c in children:
            if c.proc.poll() is None:
                c.proc.kill()
                c.proc.wait()
            os.close(c.to_child)
            c.from_child.close()
    summary = {"paired_turns": mediator.paired_turns, "unpaired": mediator.unpaired, "paired_nodeids": mediator.fully_paired()}
    return {c.name: (c.proc.returncode, c.seconds) for c in children}, summary
