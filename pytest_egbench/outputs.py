"""The files a run writes, each on its own: the results JSON (``--egbench-json``), this run as the
baseline of its machine's fingerprint (``--egbench-save``), and the markdown report with its plots
(``--egbench-report``).

Rendering is :mod:`.report`'s, the baseline file format :mod:`.baselines`'; this module decides
what to write where, and keeps one failing output from losing the others. No torch here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from . import report
from .atomic import write_json_atomic, write_text_atomic
from .session import EgbenchSession


def baseline_path(session: EgbenchSession) -> Path:
    """The file ``--egbench-save`` writes: ``<baseline dir>/<fingerprint name>.json`` (the folder
    alone when the fingerprint is unfit for a file name: :func:`save_baseline` then says why)."""
    from .baselines import BaselineError

    directory = Path(session.settings.baseline_dir or "baselines")
    try:
        return directory / f"{session.fingerprint_name()}.json"
    except BaselineError:
        return directory


def save_baseline(session: EgbenchSession) -> tuple[Path, bool]:
    """Add this run (its baseline entries and run record) to the baseline file of its machine's
    fingerprint, creating the folder and file as needed (:func:`pytest_egbench.baselines.save`:
    atomic, locked). Returns ``(path, written)``; raises
    :class:`~pytest_egbench.baselines.BaselineError` for a fingerprint unfit for a file name or a
    bad existing file, ``OSError`` for I/O errors."""
    from .baselines import save

    directory = Path(session.settings.baseline_dir or "baselines")
    return save(directory, session.fingerprint, session.baseline_entries(), run=session.run_record())


def _draw_plots(session: EgbenchSession, report_path: Path, errors: list[str]) -> dict[str, str]:
    """Every plot of ``--egbench-report`` as PNG beside ``report_path`` (the stage bars, the token
    scaling, each group against its reference): title -> file name. A plot that fails is an error
    line in ``errors``; without matplotlib there are none and a note says so."""
    jobs: list[tuple[str, str, Any]] = [("stages", "stages", report.plot_stage_bars), ("token scaling", "token-scaling", report.plot_token_scaling)]
    try:
        rows = report.metric_rows(session, references=True)
    except Exception as exc:  # a plot is never worth the report
        rows = []
        errors.append(f"--egbench-report {report_path}: could not gather the plots against the reference ({type(exc).__name__}: {exc})")
    for group in dict.fromkeys(r.group for r in rows):
        mine = [r for r in rows if r.group == group]
        draw = partial(report.plot_against_reference, mine, f"{group}: this run against its reference")
        jobs.append((f"{group} against its reference", f"ref-{group}", lambda _session, png, draw=draw: draw(png)))
    plots: dict[str, str] = {}
    for title, suffix, plot in jobs:
        png = report_path.with_name(f"{report_path.stem}-{suffix}.png")
        try:
            if plot(session, png):
                plots[title] = png.name
        except ImportError:
            session.notes.append("--egbench-report: matplotlib is not installed (the 'plot' extra), so the report has no plots")
            break
        except Exception as exc:  # a plot is never worth the report, let alone the results
            errors.append(f"--egbench-report {png}: could not draw the {title} plot ({type(exc).__name__}: {exc}); the report was written without it")
    return plots


def append_step_summary(text: str) -> Path | None:
    """Append ``text`` to the file ``$GITHUB_STEP_SUMMARY`` names (GitHub Actions shows it on
    the job's page), if that variable is set; returns that path, else ``None``. Raises ``OSError``
    when the file cannot be written."""
    import os

    name = os.environ.get("GITHUB_STEP_SUMMARY")
    if not name:
        return None
    with open(name, "a", encoding="utf-8") as f:
        f.write(text)
    return Path(name)


def _report_outputs(session: EgbenchSession, report_path: Path, errors: list[str]) -> list[tuple[str, Path, Any]]:
    """The ``(option, path, write)`` outputs of ``--egbench-report``: the report with its plots,
    then, when ``$GITHUB_STEP_SUMMARY`` is set, the report appended to that file (after the
    report, so that it can name the plots drawn)."""
    import os

    drawn: dict[str, str] = {}

    def write_report() -> None:
        drawn.update(_draw_plots(session, report_path, errors))
        write_text_atomic(report_path, report.markdown_report(session, session.machine, drawn))

    def write_summary() -> None:
        # the job page cannot show the PNGs (relative links): name them instead
        note = f"Plots: {', '.join(f'`{name}`' for name in drawn.values())}, beside `{report_path}`." if drawn else None
        append_step_summary(report.markdown_report(session, session.machine, plots_note=note))

    outputs: list[tuple[str, Path, Any]] = [("--egbench-report", report_path, write_report)]
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        outputs.append(("--egbench-report $GITHUB_STEP_SUMMARY", Path(os.environ["GITHUB_STEP_SUMMARY"]), write_summary))
    return outputs


def write_outputs(session: EgbenchSession, *, save: bool = False) -> tuple[list[Path], list[str]]:
    """Write the files the options asked for: ``--egbench-json`` first, then the baseline of this
    machine's fingerprint (when ``save``), then ``--egbench-report`` and its plots last, the part
    most likely to go wrong (matplotlib).

    Returns (paths written, error messages). Each output is written on its own: an exception in one
    (any exception, not only an I/O error) becomes an error line naming the option and the file,
    and the others are still written; the file it would have replaced is left intact. A plot that
    fails is an error line too, and the report is written without it.
    """
    from .machine import commit_info

    written: list[Path] = []
    errors: list[str] = []
    s = session.settings
    if s.json is None and s.report is None and not save:
        return written, errors
    machine = session.machine
    outputs: list[tuple[str, Path, Callable[[], object]]] = []
    if s.json is not None:
        json_path = s.json
        outputs.append(("--egbench-json", json_path, lambda: write_json_atomic(json_path, report.benchmark_json(session, machine, commit_info()))))
    if save:
        outputs.append(("--egbench-save", baseline_path(session), lambda: save_baseline(session)))
    if s.report is not None:
        outputs += _report_outputs(session, s.report, errors)
    for option, path, write in outputs:
        try:
            write()
            written.append(path)
        except Exception as exc:  # anything, so that one output never loses the others
            # I/O and serialisation errors (BaselineError is a ValueError) say what went wrong; a
            # bug elsewhere is named by its type
            detail = exc if isinstance(exc, (OSError, TypeError, ValueError)) else f"{type(exc).__name__}: {exc}"
            errors.append(f"{option} {path}: could not write the results: {detail}")
    return written, errors
