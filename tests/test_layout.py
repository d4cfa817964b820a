"""Fitting tables and lines into the terminal width (pytest_egbench.layout)."""

from __future__ import annotations

import re

from pytest_egbench.layout import Grid, abbreviate, fit, wrap


def _legend(lines: list[str]) -> dict[str, str]:
    """``key: name`` legend lines (continuations joined) as a dict."""
    out: dict[str, str] = {}
    key = None
    for line in lines:
        m = re.match(r"^([rc]\d+): (.*)$", line)
        if m:
            key = m[1]
            out[key] = m[2]
        elif key and line.startswith(" "):
            out[key] += " " + line.strip()
    return out


def test_wrap_keeps_every_word_within_the_width():
    line = "egbench: " + " ".join(f"word{i}" for i in range(200)) + " /a/very/" + "long" * 40 + "/path"
    lines = wrap(line, 60)
    assert max(map(len, lines)) <= 60 and len(lines) > 1
    assert all(part.startswith("  ") for part in lines[1:])
    # nothing dropped: the words, joined again, are the line (a word longer than a line is broken)
    assert "".join(p.strip().replace(" ", "") for p in lines) == line.replace(" ", "")
    assert wrap("short", 60) == ["short"]


def test_abbreviate_gives_keys_and_a_legend_that_spells_them_out():
    names = ["load", "x" * 50, "prefill", "x" * 50, "y" * 30]
    short, legend = abbreviate(names, 20, "c")
    assert short == ["load", "c1", "prefill", "c1", "c2"]
    assert _legend(legend) == {"c1": "x" * 50, "c2": "y" * 30}


def test_a_wide_table_is_split_within_the_width_and_loses_no_cell():
    header = ["configuration"] + [f"speculative_g{i}" for i in range(1, 13)] + ["total", "TTFT", "a_very_long_metric_name_of_forty_characters"]
    labels = [f"eventgpt->video_llava sample=cup_0000,target_name=video_llava,frames={f}" for f in (1, 8)] + ["lm"]
    rows = [[label] + [f"{i * 1.5 + k:.2f} [0.{i}] =" for i in range(len(header) - 1)] for k, label in enumerate(labels)]
    lines = fit(Grid(header, rows, sections=[1, 13, 15]), 120)
    assert max(map(len, lines)) <= 120
    legend = _legend(lines)
    text = "\n".join(lines)
    for row in rows:  # every cell is printed, on the line of its row's label or key
        key = next((k for k, v in legend.items() if v == row[0]), row[0])
        printed = [c for line in lines if line.startswith(key + " ") for c in re.split(r"\s{2,}", line)[1:]]
        assert printed == row[1:]
    for title in header[1:]:  # every title is printed, or its key with the title in the legend
        assert title in text.split() or title in legend.values()
    assert sum(1 for line in lines if line.startswith("configuration")) >= 2  # split into tables
