"""Same-machine A/B against a reference revision (``--egbench-ref REV``).

A saved baseline answers "is this run slower than runs on *that* machine?"; on leased machines
the host under one GPU name changes from night to night, so the answer often measures the
machine. An A/B answers "is this code slower than REV's code on *this* machine, now?": the
reference's code and the current code run in separate pytest processes, in pairs: the two
processes of a pair run at the same time and take turns round by round
(:mod:`pytest_egbench.lockstep`: while one times a round the other waits, and the first turn
alternates, A B, B A, A B, ...), so that the host's drift falls on both sides alike; every latency
is judged by the paired change between them (:func:`pytest_egbench.verdict.judge_ab`), as ``asv
continuous`` and Chromium's Pinpoint do.

* The reference runs from a ``git worktree`` of REV in a temporary folder (``git worktree add
  --detach``, removed afterwards); the user's checkout and working tree are never touched. REV may
  also be a folder holding another checkout, used as it is.
* Each process is ``python -m pytest`` with the user's own arguments, minus the options that only
  the parent acts on (:data:`PARENT_ONLY`), plus ``--egbench-json`` to a temporary file and an
  empty baseline folder, with ``PYTHONPATH`` set to its checkout so that its own
  ``pytest_egbench`` and its own ``benchmarks/`` are the code under test.
* The parent collects the same benchmarks, runs none itself, and turns each into a verdict item
  (:class:`AbItem`) judged from the processes' results.

No torch here: the children import it, the parent need not.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import lockstep

if TYPE_CHECKING:
    from .session import EgbenchSession, Measurement
    from .verdict import Reference as Against
    from .verdict import Verdict

#: Options only the parent acts on; each is dropped from the children's arguments, with its value
#: when it takes one.
PARENT_ONLY = {
    "--egbench-ref": True,
    "--egbench-ref-pairs": True,
    "--egbench-require-baseline": False,
    "--egbench-json": True,
    "--egbench-report": True,
    "--egbench-save": False,
    "--egbench-baseline-dir": True,
    "--egbench-fallback-ref": False,
    "--egbench-ref-cpus": True,
    # what gets a verdict is the parent's business; a reference revision older than an option
    # would stop at it (seen: --egbench-gate-exclude against the commit of the baseline's run)
    "--egbench-gate": True,
    "--egbench-gate-exclude": True,
    "--rootdir": True,
}


class RefError(Exception):
    """A reference that cannot be prepared or run; the message names it and the problem."""


@dataclass
class Reference:
    """A checkout to run as the reference: ``root`` (its repository root), ``label`` (how
    verdicts name it, e.g. ``REV main~1 (abc1234)``), ``commit`` (full id when known) and the
    temporary worktree to remove afterwards (``None`` for a user's folder)."""

    root: Path
    label: str
    commit: str | None = None
    worktree_of: Path | None = None

    def cleanup(self) -> None:
        """Remove the temporary worktree (nothing for a user's folder)."""
        if self.worktree_of is None:
            return
        subprocess.run(["git", "-C", str(self.worktree_of), "worktree", "remove", "--force", str(self.root)], capture_output=True, text=True)
        shutil.rmtree(self.root, ignore_errors=True)
        subprocess.run(["git", "-C", str(self.worktree_of), "worktree", "prune"], capture_output=True, text=True)


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RefError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"git {' '.join(args)} failed")
    return out.stdout.strip()


def prepare(ref: str, rootdir: Path) -> Reference:
    """The reference checkout for ``--egbench-ref REF``: an existing folder as it is, else a git
    revision of the repository holding ``rootdir`` checked out into a temporary worktree.

    Raises :class:`RefError` naming ``ref`` when it is neither (git's own message quoted).
    """
    folder = Path(ref).expanduser()
    if folder.is_dir():  # a folder wins over a revision of the same name
        commit = None
        try:
            commit = _git(folder, "rev-parse", "HEAD")
        except (RefError, OSError):
            pass
        short = f" ({commit[:12]})" if commit else ""
        return Reference(folder.resolve(), f"folder {folder}{short}", commit)
    if shutil.which("git") is None:
        raise RefError(f"--egbench-ref {ref}: not a folder, and git is not installed to read it as a revision")
    try:
        top = Path(_git(rootdir, "rev-parse", "--show-toplevel"))
        commit = _git(top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except RefError as exc:
        raise RefError(f"--egbench-ref {ref}: neither a folder nor a git revision of {rootdir} ({exc})") from None
    if not commit:
        raise RefError(f"--egbench-ref {ref}: neither a folder nor a git revision of {rootdir}")
    tmp = Path(tempfile.mkdtemp(prefix="egbench-ref-"))
    worktree = tmp / "checkout"
    try:
        _git(top, "worktree", "add", "--detach", str(worktree), commit)
    except RefError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RefError(f"--egbench-ref {ref}: could not check out {commit[:12]} into a temporary worktree ({exc})") from None
    return Reference(worktree, f"REV {ref} ({commit[:12]})" if not commit.startswith(ref) else f"REV {commit[:12]}", commit, worktree_of=top)


def child_args(args: Sequence[str]) -> list[str]:
    """``args`` without :data:`PARENT_ONLY` options (``--opt value`` and ``--opt=value`` forms)."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in PARENT_ONLY:
            skip = PARENT_ONLY[name] and "=" not in arg
            continue
        out.append(arg)
    return out


#: Paired rounds an A/B pools over its process pairs at the least, unless ``--egbench-rounds`` is
#: given: the exact one-sided Wilcoxon signed-rank test then still reaches p < 0.01 with the round
#: pair of the largest difference on the wrong side (n = 8: p = 0.098; 16: 0.0026; 24: < 0.0001,
#: and 0.0011 with two such pairs). Measured in the compiled runtime on an H200: a 5 % slower decode
#: with one noisy reference round of 8 read p = 0.039 (docs/measurements/compiled-runtime-h200.md).
MIN_PAIRED_ROUNDS = 24


def rounds_args(rounds: int, source: str, pairs: int) -> list[str]:
    """The ``--egbench-rounds`` an A/B's processes get beside the user's arguments: none when the
    user set the rounds (``source`` is not ``"default"``), else enough steady rounds per process
    that ``pairs`` pairs pool at least :data:`MIN_PAIRED_ROUNDS` paired rounds (never fewer than
    ``rounds``): 24 with one pair, 12 with two, 8 (the default) with three or more."""
    if source != "default":
        return []
    return ["--egbench-rounds", str(max(rounds, -(-MIN_PAIRED_ROUNDS // pairs)))]


@dataclass
class Side:
    """One side of the A/B: its checkout, label, and each process's results document."""

    name: str
    root: Path
    label: str
    results: list[dict[str, Any]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    #: node id -> the first log in which that benchmark failed or errored
    failed: dict[str, Path] = field(default_factory=dict)
    #: each pair's lockstep summary (:func:`~pytest_egbench.lockstep.run_pair`), shared by the
    #: two sides: which benchmarks had every round paired, and why pairing stopped
    lockstep: list[dict[str, Any]] = field(default_factory=list)
    #: one line for each of its processes that exited with a failure status (:func:`exit_line`)
    troubles: list[str] = field(default_factory=list)


def turn_order(pair: int) -> list[str]:
    """The sides in the order of their turns in round 0 of ``pair``: ``ref`` first in even pairs,
    ``current`` first in odd ones (and within a pair the first turn alternates round by round)."""
    return ["ref", "current"] if pair % 2 == 0 else ["current", "ref"]


def _inside(path: Path, root: Path) -> Path:
    """``path`` relative to ``root`` (``.`` when it is not inside)."""
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError:
        return Path(".")


def run(
    reference: Reference,
    current_root: Path,
    rootdir: Path,
    invocation_dir: Path,
    args: Sequence[str],
    pairs: int,
    workdir: Path,
    progress: Callable[[str], None],
    cpus: frozenset[int] | None = None,
    *,
    sides: dict[str, Side] | None = None,
    why: str = "",
) -> dict[str, Side]:
    """Run ``pairs`` pairs of processes, one pair after the other; the two processes of a pair
    (``python -m pytest ARGS --rootdir=R --egbench-json=... --egbench-baseline-dir=EMPTY`` in each
    side's checkout, ``PYTHONPATH`` set to it) run at the same time and take turns round by round
    (:mod:`pytest_egbench.lockstep`), the reference taking the first turn in even pairs and the
    current code in odd ones. ``current_root`` is the folder of the current code that
    ``reference.root`` corresponds to (the repository's top for a revision, pytest's ``rootdir``
    for a folder); the reference's processes start in, and take as ``rootdir``, the same places
    relative to its root as this run, so that both sides' benchmarks get the same node ids.
    Returns the two sides with every process's results and each pair's lockstep summary. A process
    that writes no results file raises :class:`RefError` naming its log; a process whose
    benchmarks failed is kept (its failed benchmarks have no results, and their verdict items say
    so). ``sides``: the sides of pairs already run, to which these pairs are added (their indices
    continue: the confirming pair of :func:`unconfirmed`'s benchmarks), ``why`` a note for the
    progress line.
    """
    if sides is None:
        sides = {"ref": Side("ref", reference.root, reference.label), "current": Side("current", current_root, "current code")}
    first = len(sides["current"].results)
    empty = workdir / "no-baselines"
    empty.mkdir(parents=True, exist_ok=True)
    rel_root, rel_cwd = _inside(rootdir, current_root), _inside(invocation_dir, current_root)
    base = child_args(args)
    for pair in range(first, first + pairs):
        order = turn_order(pair)
        progress(
            f"egbench A/B: pair {pair + 1}/{first + pairs}{why}: {sides['ref'].label} and the current code, in lockstep ({sides[order[0]].label} first) ..."
        )
        commands = [
            (name, *process_command(side.root, rel_root, rel_cwd, base, empty, workdir / f"{name}-{pair}.json"), workdir / f"{name}-{pair}.log")
            for name, side in sides.items()
        ]
        done, paired = lockstep.run_pair(commands, order, cpus)
        # a side that broke at its start (refused its arguments: the other was stopped then) first,
        # so that the error raised for a missing results file names it, not the stopped one
        for name, side in sorted(sides.items(), key=lambda kv: done[kv[0]][0] not in lockstep.BROKEN_START):
            side.lockstep.append(paired)
            status, seconds = done[name]
            out, log = workdir / f"{name}-{pair}.json", workdir / f"{name}-{pair}.log"
            side.seconds.append(seconds)
            side.logs.append(log)
            failed = failed_nodeids(log)
            for nodeid in failed:
                side.failed.setdefault(nodeid, log)
            line = exit_line(side.label, pair, status, failed, log)
            if line:
                side.troubles.append(line)
            # every benchmark of the process failed: no results file, and each verdict item says so
            side.results.append({} if failed and not out.exists() else read_results(side.label, status, out, log))
        side_text = ", ".join(f"{s.label} {s.seconds[-1]:.1f} s (exit status {done[n][0]})" for n, s in sides.items())
        how = f"{paired['paired_turns']} turns paired" + (f", then unpaired: {paired['unpaired']}" if paired["unpaired"] else "")
        progress(f"egbench A/B: pair {pair + 1}/{first + pairs}: {side_text}; {how}")
    return sides


#: The OpenMP thread count of an A/B process (torch's CPU ops), unless the environment sets it. The
#: processes of a pair take turns on the same CPUs; with more than one thread, the OpenMP threads of
#: the process waiting for its turn busy-wait on the CPUs the timed process needs. Measured on a
#: 2-CPU VM, LM benchmark of the tiny preset: prefill 612-625 ms and decode 716-724 ms a round in
#: lockstep against 5.4 and 16.3 ms alone, so that a 5 % slowdown read as +0.1 %; with one thread
#: 7.0-7.8 and 15.4-17.0 ms (docs/machines.md#same-machine-ab).
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def process_command(root: Path, rel_root: Path, rel_cwd: Path, args: Sequence[str], baseline_dir: Path, out: Path) -> tuple[list[str], Path, dict[str, str]]:
    """``(argv, cwd, env)`` of one benchmark process of the checkout at ``root``: ``python -m
    pytest ARGS -p no:cacheprovider -rfE --rootdir=ROOT/REL_ROOT --egbench-json=OUT
    --egbench-baseline-dir=BASELINE_DIR``, started in ``root / rel_cwd`` (or the rootdir when that
    folder is missing), ``PYTHONPATH`` = ``root`` first, and torch's CPU ops on one thread
    (:data:`ONE_THREAD`, where the environment does not set them)."""
    child_root = root / rel_root
    cwd = root / rel_cwd if (root / rel_cwd).is_dir() else child_root
    env = {**ONE_THREAD, **os.environ}
    env["PYTHONPATH"] = os.pathsep.join([str(root), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    env.pop("PYTEST_ADDOPTS", None)
    env.pop(lockstep.ENV, None)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        *args,
        "-p",
        "no:cacheprovider",
        "-rfE",
        f"--rootdir={child_root}",
        # '=' forms: pytest takes a separate value for a test path while it looks for the ini
        # file, and a folder outside the project would then hide the project's ini from it
        f"--egbench-json={out}",
        f"--egbench-baseline-dir={baseline_dir}",
    ]
    return cmd, cwd, env


def run_process(
    root: Path, rel_root: Path, rel_cwd: Path, args: Sequence[str], baseline_dir: Path, out: Path, log: Path, cpus: frozenset[int] | None = None
) -> tuple[int, float]:
    """One benchmark process of the checkout at ``root`` on its own (:func:`_command`), output to
    ``log``, pinned to ``cpus`` when given. Returns ``(exit status, seconds)``."""
    cmd, cwd, env = process_command(root, rel_root, rel_cwd, args, baseline_dir, out)
    t0 = time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, preexec_fn=lockstep.pin_preexec(cpus))
    return proc.returncode, time.perf_counter() - t0


def pinned_cpus(spec: str) -> frozenset[int] | None:
    """The CPUs every A/B process is pinned to (``--egbench-ref-cpus``), or ``None`` for none.

    ``auto``: the last ``min(4, n)`` of the ``n`` CPUs this process may run on (CPU 0, which often
    takes the interrupts, last of all); ``none``: no pinning; else a list such as ``4-7`` or
    ``4,5,6,7``, which must lie within this process's CPUs. Where the platform has no
    ``sched_setaffinity`` (macOS, Windows) ``auto`` gives ``None``; a list raises
    :class:`RefError`.

    Why: on leased GPU machines the same process ran eager decode 2.2 times slower than its
    neighbour (397 against 890 ms, H200 lease 3, ``docs/measurements/ab-study-h200-lease3.md``);
    three processes pinned to the same 4 CPUs gave 446-507 ms, three unpinned 430-775 ms (lease 4,
    ``docs/measurements/h200-pinning-lease4.json``). Both sides of an A/B then share the same
    CPUs, whatever they are worth.
    """
    text = spec.strip().lower()
    if text == "none":
        return None
    have = getattr(os, "sched_getaffinity", None)
    if have is None:
        if text == "auto":
            return None
        raise RefError(f"--egbench-ref-cpus {spec}: this platform cannot pin processes to CPUs")
    allowed = sorted(have(0))
    if text == "auto":
        return frozenset(allowed[-min(4, len(allowed)) :])
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise RefError(f"--egbench-ref-cpus {spec}: not a CPU list such as 4-7 or 4,5,6,7") from None
    if not cpus or not cpus <= set(allowed):
        raise RefError(
            f"--egbench-ref-cpus {spec}: CPUs {sorted(cpus - set(allowed)) or '(none)'} are not among this process's CPUs {allowed[0]}-{allowed[-1]}"
        )
    return frozenset(cpus)


def failed_nodeids(log: Path) -> list[str]:
    """Node ids of the benchmarks a process reported as failed or errored (its ``-rfE`` short
    summary: ``FAILED <nodeid> - ...`` / ``ERROR <nodeid> - ...``)."""
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    return [line.split()[1] for line in text.splitlines() if line.startswith(("FAILED ", "ERROR ")) and len(line.split()) > 1]


def exit_line(label: str, pair: int, status: int, failed: Sequence[str], log: Path) -> str | None:
    """What to tell the user about an A/B process that exited with ``status``: ``None`` for 0 and
    for pytest's 5 (nothing collected: a confirming pair of benchmarks skipped there), else which
    tests failed there (``failed``, from its log) or, when its log names none, the log's last line.
    The processes' logs live in a temporary folder; this line is what outlives it."""
    if status in (0, 5):
        return None
    if failed:
        what = "failed there: " + ", ".join(failed[:3]) + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
    else:
        lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines() if log.exists() else []
        what = f"its log names no failed test; it ends: {lines[-1].strip() if lines else '(empty)'}"
    return f"the {label} process of A/B pair {pair + 1} exited with status {status}: {what} (log {log})"


def read_results(label: str, status: int, out: Path, log: Path) -> dict[str, Any]:
    """The results document a process wrote; :class:`RefError` naming its log when there is none
    or it cannot be read."""
    if not out.exists():
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        raise RefError(f"--egbench-ref: the {label} process exited with status {status} and wrote no results (log {log}): {' | '.join(tail)}")
    try:
        doc = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RefError(f"--egbench-ref: results of the {label} process unreadable ({out}: {exc})") from None
    if not isinstance(doc, dict):
        raise RefError(f"--egbench-ref: results of the {label} process are not a JSON object ({out})")
    return doc


def entries(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every metric of a results document (``benchmarks[]`` and ``egbench.metrics``) by full name."""
    out = {}
    for bench in list(doc.get("benchmarks") or []) + list((doc.get("egbench") or {}).get("metrics") or []):
        if isinstance(bench, dict) and isinstance(bench.get("fullname"), str):
            out[bench["fullname"]] = bench
    return out


def runs_by_metric(side: Side) -> dict[str, dict[int, list[float]]]:
    """``{fullname: {pair index: that process's samples}}`` (a metric a process did not produce is
    absent from its dict)."""
    out: dict[str, dict[int, list[float]]] = {}
    for pair, doc in enumerate(side.results):
        for name, bench in entries(doc).items():
            data = (bench.get("stats") or {}).get("data")
            if isinstance(data, list) and data:
                out.setdefault(name, {})[pair] = [float(v) for v in data]
    return out


# --------------------------------------------------------------------------- pytest side


class AbItem(pytest.Item):
    """Stands in for one benchmark in an ``--egbench-ref`` run: the benchmark itself ran in the
    child processes; this item judges its metrics, current against reference, and fails on a
    regression like the benchmark would."""

    def __init__(self, *, original: pytest.Item, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.original_nodeid = original.nodeid
        self.own_markers = list(original.own_markers)
        self.keywords.update(original.keywords)
        # the benchmark's own location: pytest reports a skip from a copied skip mark there, and
        # needs a line number to do so
        self._location = original.reportinfo()[:2]

    def reportinfo(self) -> tuple[Any, int | None, str]:
        path, line = self._location
        return path, line if line is not None else 0, self.name

    def runtest(self) -> None:
        from .stash import SESSION_KEY

        egb = self.config.stash[SESSION_KEY]
        outcome = egb.ab_outcome
        if outcome is None:
            pytest.fail("egbench: the A/B processes did not run", pytrace=False)
        if isinstance(outcome, str):
            pytest.fail(f"egbench: {outcome}", pytrace=False)
        judge_item(self, egb, outcome)


def measurement_from_entry(bench: dict[str, Any], samples: list[float], nodeid: str) -> Measurement:
    """A :class:`~pytest_egbench.session.Measurement` rebuilt from a results-file entry, with
    ``samples`` (the current side's processes pooled)."""
    from .session import Measurement

    extra = dict(bench.get("extra_info") or {})
    name = str(bench["name"])
    return Measurement(
        nodeid=nodeid,
        test=name.rsplit("::", 1)[0],
        group=str(bench.get("group") or ""),
        metric=str(extra.get("metric")),
        unit=str(extra.get("unit")),
        kind=str(extra.get("kind")),
        samples=samples,
        model=extra.get("model"),
        stage=extra.get("stage"),
        cold=extra.get("cold") if isinstance(extra.get("cold"), (int, float)) else None,
        warmup=[float(v) for v in extra["warmup"]] if isinstance(extra.get("warmup"), list) else [],
        params=dict(bench.get("params") or {}),
        extra_info={k: v for k, v in extra.items() if k in ("device", "unsettled", "gpu_state", "throttled")},
    )


def in_lockstep(egb: EgbenchSession, fullname: str, pair: int) -> bool:
    """Whether every round of ``fullname``'s benchmark in process pair ``pair`` was timed in a
    paired turn (:mod:`pytest_egbench.lockstep`). Rounds timed after the pairing stopped (a
    benchmark failed on one side, a side exited, the reference predates the lockstep protocol)
    were not interleaved: pairing them by index would call two processes' unrelated rounds a
    paired sample. True where lockstep is not available (not POSIX: documented in
    :func:`~pytest_egbench.lockstep.run_pair`) or not recorded."""
    outcome = getattr(egb, "ab_outcome", None)
    sides = outcome if isinstance(outcome, dict) else {}
    pairs = sides["current"].lockstep if "current" in sides else []
    if pair >= len(pairs) or pairs[pair].get("paired_nodeids") is None:
        return True
    return fullname.rsplit("::", 1)[0] in pairs[pair]["paired_nodeids"]


def paired_runs(egb: EgbenchSession, fullname: str, timed: bool = True) -> tuple[list[list[float]], list[list[float]]]:
    """``(reference runs, current runs)`` of one metric, from the process pairs in which both
    sides produced it (in pair order); two empty lists when none did. ``timed`` (latencies and
    throughputs, whose rounds are paired): only the pairs that timed its every round in lockstep
    (:func:`in_lockstep`); a count or a rate does not depend on when it was measured."""
    cur, ref = egb.ab_runs["current"][fullname], egb.ab_runs["ref"].get(fullname, {})
    common = sorted(i for i in set(cur) & set(ref) if not timed or in_lockstep(egb, fullname, i))
    return [ref[i] for i in common], [cur[i] for i in common]


def unpaired_reason(egb: EgbenchSession, fullname: str) -> str | None:
    """Why the pairs in which both sides produced ``fullname`` were all left out of its
    comparison (their rounds were not in lockstep), or ``None`` when no pair was left out for that."""
    cur, ref = egb.ab_runs["current"][fullname], egb.ab_runs["ref"].get(fullname, {})
    dropped = sorted(i for i in set(cur) & set(ref) if not in_lockstep(egb, fullname, i))
    if not dropped:
        return None
    pairs = egb.ab_outcome["current"].lockstep
    why = "; ".join(f"pair {i + 1}: {pairs[i].get('paired_turns', 0)} turns paired, then unpaired: {pairs[i].get('unpaired')}" for i in dropped)
    return f"its rounds were not taken in lockstep with the reference's, so they are not paired ({why})"


def speed_family(egb: EgbenchSession, sides: dict[str, Side]) -> dict[str, tuple[float, int]]:
    """Every latency and throughput metric this A/B run compares, by full name: its
    Holm-adjusted p-value (:func:`~pytest_egbench.verdict.holm_adjusted`) over all of them, and
    their number. A run judges a hundred or more such metrics (226 in the CPU stage suite); at
    alpha 0.01 each, unchanged code fails somewhere in many runs (one of three full-suite
    ``--egbench-ref HEAD`` runs on the 2-CPU VM failed a metric at +3.0 %, p=0.0024). With the
    correction, a run of unchanged code fails with probability about alpha. Computed once per run
    and kept in ``egb.ab_family``."""
    from .catalog import Kind, parse_kind
    from .verdict import ab_reference, holm_adjusted, judge_ab

    if egb.ab_family is not None:
        return egb.ab_family
    kinds = {name: (bench.get("extra_info") or {}) for doc in sides["current"].results for name, bench in entries(doc).items()}
    names, pvalues = [], []
    for fullname in sorted(egb.ab_runs["current"]):
        extra = kinds.get(fullname) or {}
        ref, cur = paired_runs(egb, fullname)
        try:
            kind = parse_kind(str(extra.get("kind")), fullname)
        except ValueError:
            continue
        if not ref or kind not in (Kind.LATENCY, Kind.THROUGHPUT):
            continue
        try:
            v = judge_ab(
                fullname,
                kind,
                str(extra.get("unit")),
                ref,
                cur,
                reference=ab_reference("family"),
                tolerance=0.0,
                tolerance_abs=0.0,
                alpha=egb.settings.pvalue,
            )
        except ValueError:  # no rounds to pair: judge_item says why
            continue
        if v.p is not None:
            names.append(fullname)
            pvalues.append(v.p)
    egb.ab_family = {name: (adjusted, len(names)) for name, adjusted in zip(names, holm_adjusted(pvalues))}
    return egb.ab_family


def unconfirmed(egb: EgbenchSession, sides: dict[str, Side]) -> list[str]:
    """Node ids of the benchmarks with a latency or throughput that reads as a regression or an
    improvement (its Holm-adjusted p over the run's family, :func:`speed_family`, and the
    tolerance for A/Bs without a benchmark's own marked tolerances) from fewer than two process
    pairs (sorted).

    Why: rounds measure the two processes of a pair, not the two codes. On an H200 (lease G,
    2026-11-30) one full-suite ``--egbench-ref HEAD`` run of one pair on unchanged code read a
    preprocess stage 45 % slower in the current process, in every one of its 24 rounds, cold and
    warm-up rounds too (p = 6e-8); the same benchmark in two fresh pairs read -0.6 % (per pair
    -0.6 %, -0.6 %). On the 2-CPU VM one such pair read a vision stage of unchanged code 13.4 %
    faster. A process-level difference of that kind is decided by another pair, not by more
    rounds; with two pairs or more, every pair must agree (:func:`~pytest_egbench.verdict.judge_ab`)."""
    from .catalog import Kind
    from .verdict import IMPROVEMENT, REGRESSION, RefKind, ab_reference, judge_ab

    family = speed_family(egb, sides)
    kinds = {name: (bench.get("extra_info") or {}) for doc in sides["current"].results for name, bench in entries(doc).items()}
    out = set()
    for fullname, adjusted in family.items():
        ref, cur = paired_runs(egb, fullname)
        if len(ref) >= 2:
            continue
        extra = kinds.get(fullname) or {}
        metric = fullname.rsplit("::", 1)[1]
        v = judge_ab(
            metric,
            Kind(str(extra.get("kind"))),
            str(extra.get("unit")),
            ref,
            cur,
            reference=ab_reference(sides["ref"].label),
            tolerance=egb.tolerance_for(metric, RefKind.AB, {}),
            tolerance_abs=egb.settings.tolerance_abs,
            alpha=egb.settings.pvalue,
            family=adjusted,
        )
        if v.status in (REGRESSION, IMPROVEMENT):
            out.add(fullname.rsplit("::", 1)[0])
    return sorted(out)


def confirmed(v: Verdict, kind: str, ref: Sequence[Sequence[float]], cur: Sequence[Sequence[float]], tolerance: float, alpha: float) -> Verdict:
    """The regression or improvement ``v`` of a benchmark that a confirming pair ran for
    (:func:`unconfirmed`) stands only if that pair, the last of ``ref``/``cur``, on its own reads
    the change beyond ``tolerance`` the same way (its median of per-round ratios, as each pair's
    in the verdict) **and** its own one-sided Wilcoxon signed-rank test in that direction gives
    p < ``alpha`` (not corrected: it tests the few metrics the first pair singled out); else it
    becomes :data:`~pytest_egbench.verdict.NOISE_ONLY`, saying so. Kept as it is when the
    confirming pair produced no rounds of the metric (only one pair: the verdict names one).

    Why the test as well as the tolerance: on the 2-CPU VM a confirming pair of unchanged code
    read a speculative-decoding latency -3.3 % (first pair -8.5 %), just beyond the 3 %
    tolerance, at p = 0.018 on its own."""
    from dataclasses import replace

    from .verdict import NOISE_ONLY, judge_ab

    if len(ref) < 2:
        return v
    # the confirming pair judged alone, as any single-pair A/B: a regression (or improvement)
    # there is exactly "beyond the tolerance the same way, one-sided p < alpha" (tolerance_abs is
    # for rates only; the unit only labels a message not used here)
    alone = judge_ab(v.metric, kind, "", ref[-1:], cur[-1:], reference=v.reference, tolerance=tolerance, tolerance_abs=0.0, alpha=alpha)
    said = f"{alone.change or 0.0:+.1%} alone, p={alone.p if alone.p is not None else float('nan'):.3g}"
    if alone.status == v.status:
        return replace(v, message=f"{v.message}, confirmed by a second pair of processes ({said})")
    return replace(
        v,
        status=NOISE_ONLY,
        message=f"{v.message.rsplit(': ', 1)[0]}: not confirmed: one pair read it, a second pair of processes of only this benchmark reads {said} (tolerance {tolerance:.1%}, alpha {alpha}): a difference between processes, not between the codes",
    )


def only_these(args: Sequence[str], positional: Sequence[str], nodeids: Sequence[str], rootdir: Path, invocation_dir: Path) -> list[str]:
    """``args`` with its file and folder arguments (``positional``: pytest's ``config.args`` as
    given) replaced by ``nodeids`` (relative to ``rootdir``, written relative to
    ``invocation_dir`` where the children start): the processes then run only those benchmarks.
    Node ids, not a new option, so that a reference revision from before this function runs them too."""
    given = set(positional)
    kept = [a for a in args if a not in given]
    out = []
    for nodeid in nodeids:
        path, _, rest = nodeid.partition("::")
        where = os.path.relpath(rootdir / path, invocation_dir)
        out.append(f"{where}::{rest}" if rest else where)
    return [*kept, *out]


def judge_metric(
    egb: EgbenchSession,
    sides: dict[str, Side],
    m: Measurement,
    ref: Sequence[Sequence[float]],
    cur: Sequence[Sequence[float]],
    reference: Against,
    marked: Mapping[str, float],
) -> Verdict:
    """The A/B verdict of measurement ``m`` from its paired runs ``ref``/``cur`` (one list of
    rounds per process pair): :func:`~pytest_egbench.verdict.judge_ab` against ``reference`` with
    the A/B tolerance (the benchmark's ``marked`` tolerances first;
    :meth:`~pytest_egbench.session.EgbenchSession.tolerance_for`), a speed metric's p-value
    adjusted over the run's family (:func:`speed_family`), and, where a confirming pair ran for
    the benchmark, :func:`confirmed`."""
    from .verdict import IMPROVEMENT, REGRESSION, RefKind, judge_ab

    tolerance = egb.tolerance_for(m.metric, RefKind.AB, marked)
    v = judge_ab(
        m.metric,
        m.kind,
        m.unit,
        ref,
        cur,
        reference=reference,
        tolerance=tolerance,
        tolerance_abs=egb.settings.tolerance_abs,
        alpha=egb.settings.pvalue,
        family=speed_family(egb, sides).get(m.fullname),
    )
    if v.status in (REGRESSION, IMPROVEMENT) and m.nodeid in egb.ab_confirming:
        v = confirmed(v, m.kind, ref, cur, tolerance, egb.settings.pvalue)
    return v


def judge_item(item: AbItem, egb: EgbenchSession, sides: dict[str, Side]) -> None:
    """Judge every metric of ``item``'s benchmark (:func:`~pytest_egbench.verdict.judge_ab`,
    speed metrics on their p-value adjusted over the run's family (:func:`speed_family`),
    reference :attr:`~pytest_egbench.verdict.RefKind.AB` with the revision's label and commit,
    tolerance :meth:`~pytest_egbench.session.EgbenchSession.tolerance_for`), record the current
    side's measurements with their verdicts in ``egb``, and fail the item on a regression."""
    from . import options
    from .catalog import Kind
    from .session import NOT_COMPARED
    from .verdict import REGRESSION, ab_reference

    checkout = egb.ab_reference
    reference = ab_reference(sides["ref"].label, getattr(checkout, "commit", None))
    prefix = item.original_nodeid + "::"
    cur_runs = egb.ab_runs["current"]
    cur_docs = [entries(d) for d in sides["current"].results]
    mine = sorted(k for k in cur_runs if k.startswith(prefix))
    if item.original_nodeid in sides["current"].failed:
        pytest.fail(f"egbench: the benchmark failed in a process of the current code (see {sides['current'].failed[item.original_nodeid]})", pytrace=False)
    if not mine:
        why = next((r for d in sides["current"].results if (r := ((d.get("egbench") or {}).get("skipped") or {}).get(item.original_nodeid))), None)
        if why:
            pytest.skip(f"skipped in the current code's processes: {why}")
        pytest.skip(f"no results from the current code's processes (see {', '.join(str(p) for p in sides['current'].logs[:1])})")
    marked = options.marked_tolerances(item)
    regressed = []
    for fullname in mine:
        bench = next(d[fullname] for d in cur_docs if fullname in d)
        pooled = [v for _, run in sorted(cur_runs[fullname].items()) for v in run]
        m = measurement_from_entry(bench, pooled, item.original_nodeid)
        ref, cur = paired_runs(egb, fullname, timed=m.kind in (Kind.LATENCY, Kind.THROUGHPUT))
        if not ref:
            broke = item.original_nodeid in sides["ref"].failed
            why = (
                f"the benchmark failed in the reference's process (see {sides['ref'].failed[item.original_nodeid]})"
                if broke
                else unpaired_reason(egb, fullname) or f"the reference ({reference.name}) did not produce this metric"
            )
            egb.record_verdict(m, NOT_COMPARED, reference, f"{m.metric}: not compared: {why}", why)
            egb.add(m)
            continue
        v = egb.not_gated(m) or judge_metric(egb, sides, m, ref, cur, reference, marked)
        egb.record_verdict(m, v.status, v.reference, v.message)
        egb.add(m)
        if v.status == REGRESSION:
            regressed.append(v)
    if regressed:
        pytest.fail(f"egbench: {len(regressed)} metric(s) regressed against {reference.name}:\n  " + "\n  ".join(v.message for v in regressed), pytrace=False)
