"""Output files are replaced whole or not at all."""

from __future__ import annotations

import stat

import pytest

from ravine.files import atomic_output


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out" / "page.html"
    with atomic_output(target) as tmp:
        open(tmp, "w").write("first")
    assert target.read_text() == "first" and stat.S_IMODE(target.stat().st_mode) == 0o644
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        open(tmp, "w").write("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "first" and sorted(p.name for p in target.parent.iterdir()) == ["page.html"]
