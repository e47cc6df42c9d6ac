"""Benchmarks: the optimizer step (``ravine bench step``), Muon (``ravine bench muon``), compile cost
(``ravine bench compile``) and training memory (``ravine bench memory``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_report(output: str, name: str, table: str, result: dict[str, Any],
                 chart: Callable[[dict[str, Any], Path], Path]) -> None:
    """``NAME.md`` (the table), ``NAME.json`` (the result) and ``NAME.png`` (the chart) into the folder
    ``output``, all or nothing; the table is printed and the files named on standard error."""
    from ravine.files import atomic_folder

    with atomic_folder(output, (f"{name}.md", f"{name}.json", f"{name}.png")) as folder:
        (folder / f"{name}.md").write_text(table + "\n")
        (folder / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        chart(result, folder / f"{name}.png")
    print(table)
    out = Path(output)
    print(f"\nwrote {out / f'{name}.md'}, {out / f'{name}.json'}, {out / f'{name}.png'}", file=sys.stderr)
