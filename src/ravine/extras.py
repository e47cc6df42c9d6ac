"""One-line failures for the command line: a missing optional dependency, found before any work starts."""

from __future__ import annotations

import importlib.util
import sys


class CommandError(Exception):
    """A problem the command reports in one line (no traceback), exiting with status 2."""


def require(command: str, extra: str, *modules: str) -> None:
    """Raise :class:`CommandError` naming the install command if any of ``modules`` cannot be imported."""
    missing = [m for m in modules if not _importable(m)]
    if missing:
        names = {"sklearn": "scikit-learn"}
        raise CommandError(f"{command} needs {', '.join(names.get(m, m) for m in missing)}: "
                           f"pip install 'ravine[{extra}]'")


def _importable(module: str) -> bool:
    if module in sys.modules and sys.modules[module] is None:  # blocked, as Python's import system reads it
        return False
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
