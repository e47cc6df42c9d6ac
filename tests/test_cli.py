"""The ravine command line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ravine.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_demo_prints_a_table_for_the_chosen_optimizers(capsys):
    assert main(["demo", "--steps", "30", "--optimizers", "Adam,Lion,Lookahead(Adam)"]) == 0
    captured = capsys.readouterr()
    rows = [line for line in captured.out.splitlines() if line.startswith("| ") and "optimizer" not in line]
    assert [row.split("|")[1].strip() for row in rows] == ["Adam", "Lion", "Lookahead(Adam)"]
    assert "[3/3] training with Lookahead(Adam)" in captured.err
    adam_first, adam_final = (float(x) for x in rows[0].split("|")[2:4])
    assert adam_final < adam_first


def test_demo_rejects_unknown_optimizers(capsys):
    assert main(["demo", "--optimizers", "Adam,Adamm"]) == 2
    assert "unknown optimizer(s) ['Adamm']" in capsys.readouterr().err


def test_demo_rejects_non_positive_steps():
    with pytest.raises(SystemExit):
        main(["demo", "--steps", "0"])


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- test-command -->\n```bash\n(.+?)\n```", readme, re.S)
    assert match, "README must show the test command in a ```bash block after <!-- test-command -->"
    assert match.group(1).strip() in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("heading", ["## Quick start", "## A complete training loop"])
def test_readme_examples_run_as_printed(heading):
    readme = (ROOT / "README.md").read_text()
    block = re.search(re.escape(heading) + r".*?```python\n(.*?)```", readme, re.S)
    assert block, heading
    exec(compile(block.group(1), f"README {heading}", "exec"), {})
