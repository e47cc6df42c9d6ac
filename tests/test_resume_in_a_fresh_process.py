"""Bit-exact resume in a fresh Python process, for every optimizer and path (item: resume contract).

Model + optimizer + scheduler + GradScaler (+ Lookahead's slow weights) are saved with torch.save after N
steps, loaded in a new process with torch.load(weights_only=True) and trained M more steps; parameters and
optimizer state must equal an uninterrupted N + M run bit for bit.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import resume_worker  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume")
    for mode in ("first", "resume"):  # two separate processes: nothing survives but the files
        subprocess.run([sys.executable, str(HERE / "resume_worker.py"), mode, str(folder)], check=True,
                       timeout=900)
    return folder


def _equal(a, b, where):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _equal(x, y, f"{where}[{i}]")
    elif torch.is_tensor(a):
        assert a.dtype == b.dtype and torch.equal(a, b), f"{where}: not bit-identical"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("key", list(resume_worker.CONFIGS))
def test_resume_in_a_fresh_process_is_bit_identical(runs, key):
    full = torch.load(runs / f"{key}-full.pt", weights_only=True)
    resumed = torch.load(runs / f"{key}-resumed.pt", weights_only=True)
    _equal(full["model"], resumed["model"], f"{key}: model")
    _equal(full["optimizer"]["state"], resumed["optimizer"]["state"], f"{key}: optimizer state")
    assert full["optimizer"]["param_groups"][0]["lr"] == resumed["optimizer"]["param_groups"][0]["lr"]
