"""Writing output files so that nothing is ever left half-written."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` (readable, 0644), on error it
    is removed, so a crash never leaves a half-written file where the result should be."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=target.suffix, dir=target.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are meant to be opened and shared
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def check_output_folder(path: str | os.PathLike[str], patterns: tuple[str, ...]) -> Path:
    """Refuse, before any work, an output folder that :func:`atomic_folder` could not safely replace: a file, or
    a folder holding anything but earlier outputs of the same command (names matching ``patterns``)."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise ValueError(f"Invalid output: {str(target)!r} is a file, not a folder")
    if target.is_dir():
        others = sorted(p.name for p in target.iterdir() if not any(p.match(pattern) for pattern in patterns))
        if others:
            raise ValueError(f"Invalid output: {str(target)!r} holds files this command did not write "
                             f"({', '.join(others[:3])}{', …' if len(others) > 3 else ''}); the folder is "
                             "replaced whole, so choose an empty or new one")
    return target


@contextmanager
def atomic_folder(path: str | os.PathLike[str], patterns: tuple[str, ...]) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it replaces ``path`` whole, so an interrupted
    run never leaves new files beside old ones. On an error or Ctrl-C the temporary folder is removed and
    ``path`` is untouched. ``path`` is checked first with :func:`check_output_folder`."""
    target = check_output_folder(path, patterns)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(tmp, target)
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
