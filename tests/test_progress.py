"""The progress bar: redrawn in place on a terminal, one line per item otherwise, with an ETA."""

from __future__ import annotations

import io

from ravine.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_when_not_a_terminal():
    stream = io.StringIO()
    with Progress(3, "racing", stream) as bar:
        for item in ("a", "b", "c"):
            bar.update(item)
    assert stream.getvalue().splitlines() == ["[1/3] a", "[2/3] b", "[3/3] c"]


def test_one_redrawn_line_with_bar_and_eta_on_a_terminal():
    stream = Terminal()
    with Progress(4, "tuning", stream, width=8) as bar:
        bar.update("first")
        bar.update("second")
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
    assert "tuning [········] 1/4 first" in text and "tuning [██······] 2/4 second" in text and "left)" in text
