"""``@eager_only``: ``torch.compiler.disable`` without importing the compiler until something compiles.

``torch.compiler.disable`` imports ``torch._dynamo`` (about 0.7 s here) where it decorates, so decorating
``step`` made every ``import ravine`` — and every ``ravine --help`` — pay for the compiler. Dynamo can only be
tracing a call if it has been imported, so until then the decorated function runs as it is; from then on
through ``torch.compiler.disable`` (built once, on the first such call), so a compiled training step still runs
the optimizer's step eagerly. What this saves is the import: building a first optimizer loads dynamo anyway,
because torch's own ``Optimizer.add_param_group`` is wrapped to disable it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def eager_only(fn: F) -> F:
    """``fn``, never traced by dynamo; see the module's docstring."""
    disabled: list[Callable[..., Any]] = []

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        if "torch._dynamo" not in sys.modules:  # nothing can be compiling
            return fn(*args, **kwargs)
        if not disabled:
            import torch

            disabled.append(torch.compiler.disable(fn))
        return disabled[0](*args, **kwargs)

    return run  # type: ignore[return-value]
