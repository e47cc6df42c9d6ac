"""The ravine command line."""

from __future__ import annotations

import re
import subprocess
import sys
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


def test_bench_help_lists_the_benchmarks_and_a_missing_name_is_one_line(capsys):
    assert main(["bench", "--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("step", "muon", "compile"))
    assert main(["bench"]) == 2
    assert "choose a benchmark: step, muon, compile" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "step", "--help"])
    assert exit_.value.code == 0 and "--rounds" in capsys.readouterr().out


def test_python_dash_m_ravine_runs_the_command():
    result = subprocess.run([sys.executable, "-m", "ravine", "--version"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("ravine ")


@pytest.mark.parametrize("argv", [["schedule", "plot", "cosine_decay", "total_steps=10"],
                                  ["bench", "step", "--scale", "0.01"],
                                  ["race", "--steps", "5"]])
def test_a_missing_extra_is_one_line_before_any_work(argv, monkeypatch, tmp_path, capsys):
    import ravine.bench.step
    import ravine.race.cli

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    monkeypatch.setattr(ravine.bench.step, "run", lambda *a: pytest.fail("benchmarked before the check"))
    monkeypatch.setattr(ravine.race.cli, "race_and_pack", lambda *a, **k: pytest.fail("raced before the check"))
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "needs matplotlib: pip install 'ravine[plot]'" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_the_license_ships_and_is_declared_as_an_spdx_expression():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
