"""Your own workload in ``ravine compare --task module:function``: the task protocol, loading and checking it.

A task is any object with these attributes (a dataclass is the easy way; ``examples/compare_task.py`` is one)::

    name: str                                   # a short name for the report ("my-mlp")
    steps: int                                  # the training budget of one run
    target: float                               # the validation loss "time to target" is measured to
    model(seed, device) -> nn.Module            # a fresh model (torch is seeded with ``seed`` before the call)
    batch(generator, device) -> batch           # one training mini-batch; draw randomness from ``generator``
    loss(model, batch) -> scalar tensor         # the training loss of a batch
    evaluate(model, split, device) -> float | (float, float)
                                                # loss (and accuracy) on split "val" or "test"; the model is in
                                                # eval mode, under torch.no_grad()

and optionally ``title``, ``description`` (shown in the report), ``eval_every`` (default: steps / 20),
``quick_steps`` (the ``--quick`` budget, default steps / 10), ``tune_seeds`` (the tuning runs' seeds, default
(1000,); never among the reported seeds 0…N−1) and ``diverge_above`` (the training loss that counts as diverged,
default: twice the first step's loss). A diverged run scores as its untrained model (``evaluate`` on the test
split before any step).

``function`` is called with no arguments and returns the task (a class works too). ``module`` is an importable
module name (the current directory is searched first) or a path to a ``.py`` file.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

REQUIRED = {"name": "a short name", "steps": "the step budget", "target": "the target validation loss",
            "model": "model(seed, device)", "batch": "batch(generator, device)", "loss": "loss(model, batch)",
            "evaluate": "evaluate(model, split, device)"}
METHODS = ("model", "batch", "loss", "evaluate")
DIVERGENCE_FACTOR = 2.0  # by default a run has diverged once its loss exceeds twice its first loss


def load(spec: str) -> UserTask:
    """The task ``module:function`` names, checked and with its optional attributes filled in."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise ValueError(f"Invalid task: {spec!r} (write MODULE:FUNCTION, e.g. mypkg.tasks:make_task or "
                         "my_task.py:make_task)")
    module = _import(module_name, spec)
    factory: Any = module
    for part in attribute.split("."):
        if not hasattr(factory, part):
            raise ValueError(f"Invalid task: {spec!r} (module {module_name!r} has no attribute {attribute!r})")
        factory = getattr(factory, part)
    if not callable(factory):
        raise ValueError(f"Invalid task: {spec!r} ({attribute} is a {type(factory).__name__}, not a function "
                         "that returns the task)")
    return adapt(factory(), spec)


def _import(name: str, spec: str) -> Any:
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"Invalid task: {spec!r} (no file {name})")
        unique = f"ravine_task_{path.stem}"  # never shadows a module of the same name (a file called json.py)
        module_spec = importlib.util.spec_from_file_location(unique, path)
        if module_spec is None or module_spec.loader is None:
            raise ValueError(f"Invalid task: {spec!r} ({name} cannot be imported as a Python module)")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[unique] = module  # dataclasses look their module up while the class is built
        module_spec.loader.exec_module(module)
        return module
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # the console script does not put the working directory on the path
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and name.startswith(error.name):
            raise ValueError(f"Invalid task: {spec!r} (no module named {error.name!r})") from None
        raise


def adapt(task: Any, source: str = "the task") -> UserTask:
    """``task`` checked against the protocol (every problem named at once) and wrapped with the defaults."""
    missing = [f"{key} ({what})" for key, what in REQUIRED.items() if not hasattr(task, key)]
    if missing:
        raise ValueError(f"Invalid task from {source}: {type(task).__name__} lacks {', '.join(missing)}")
    problems = [f"{name} is not callable" for name in METHODS if not callable(getattr(task, name))]
    if not isinstance(task.name, str) or not task.name.strip():
        problems.append(f"name must be a non-empty string, got {task.name!r}")
    if isinstance(task.steps, bool) or not isinstance(task.steps, int) or task.steps < 1:
        problems.append(f"steps must be a positive integer, got {task.steps!r}")
    if not _finite(task.target):
        problems.append(f"target must be a finite number (a validation loss), got {task.target!r}")
    for name, count in (("model", 2), ("batch", 2), ("loss", 2), ("evaluate", 3)):
        if callable(getattr(task, name)) and not _accepts(getattr(task, name), count):
            problems.append(f"{name} must take {count} arguments: {REQUIRED[name]}")
    optional = {"eval_every": int, "quick_steps": int}
    for name, kind in optional.items():
        value = getattr(task, name, None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind) or value < 1):
            problems.append(f"{name} must be a positive integer, got {value!r}")
    diverge = getattr(task, "diverge_above", None)
    if diverge is not None and not _finite(diverge):
        problems.append(f"diverge_above must be a finite number, got {diverge!r}")
    seeds = getattr(task, "tune_seeds", None)
    if seeds is not None and (not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds)):
        problems.append(f"tune_seeds must be non-negative integers, got {seeds!r}")
    if problems:
        raise ValueError(f"Invalid task from {source}: " + "; ".join(problems))
    return UserTask(task)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _accepts(function: Any, count: int) -> bool:
    try:
        inspect.signature(function).bind(*range(count))
    except TypeError:
        return False
    except ValueError:  # no signature (a builtin): let the call decide
        return True
    return True


@dataclass(frozen=True)
class UserTask:
    """A user's task seen through the runner's interface (:class:`ravine.experiments.tasks.Task`)."""

    inner: Any

    @property
    def name(self) -> str:
        return str(self.inner.name)

    @property
    def title(self) -> str:
        return str(getattr(self.inner, "title", None) or self.name)

    @property
    def description(self) -> str:
        return str(getattr(self.inner, "description", None) or self.title)

    @property
    def steps(self) -> int:
        return int(self.inner.steps)

    @property
    def quick_steps(self) -> int:
        return int(getattr(self.inner, "quick_steps", None) or max(1, self.steps // 10))

    @property
    def eval_every(self) -> int:
        return int(getattr(self.inner, "eval_every", None) or max(1, self.steps // 20))

    @property
    def quick_eval_every(self) -> int:
        return max(1, min(self.eval_every, self.quick_steps // 5))

    @property
    def step_cost(self) -> float:
        return 1.0

    @property
    def tune_seeds(self) -> tuple[int, ...]:
        return tuple(getattr(self.inner, "tune_seeds", None) or (1000,))

    @property
    def target(self) -> float:
        return float(self.inner.target)

    def model(self, seed: int, device: torch.device) -> nn.Module:
        model = self.inner.model(seed, device)
        if not isinstance(model, nn.Module):
            raise TypeError(f"task {self.name!r}: model() returned a {type(model).__name__}, not an nn.Module")
        return model

    def batch(self, generator: torch.Generator, device: torch.device) -> Any:
        return self.inner.batch(generator, device)

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        loss = self.inner.loss(model, batch)
        if not (isinstance(loss, torch.Tensor) and loss.numel() == 1 and loss.requires_grad):
            raise TypeError(f"task {self.name!r}: loss() must return a scalar tensor that requires grad, got "
                            f"{_describe(loss)}")
        return loss

    def evaluate(self, model: nn.Module, split: str, device: torch.device) -> tuple[float, float]:
        with torch.no_grad():
            result = self.inner.evaluate(model, split, device)
        values = result if isinstance(result, tuple | list) else (result, math.nan)
        if len(values) != 2 or not all(isinstance(v, int | float | torch.Tensor) for v in values):
            raise TypeError(f"task {self.name!r}: evaluate() must return a loss or (loss, accuracy), got "
                            f"{_describe(result)}")
        return float(values[0]), float(values[1])

    def divergence_limit(self, first_loss: float) -> float:
        limit = getattr(self.inner, "diverge_above", None)
        return float(limit) if limit is not None else DIVERGENCE_FACTOR * abs(first_loss)

    def untrained(self, seed: int, device: torch.device, split: str = "test") -> tuple[float, float]:
        torch.manual_seed(seed)
        model = self.model(seed, device)
        model.eval()
        return self.evaluate(model, split, device)


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}" + ("" if value.requires_grad else " without grad")
    return f"{type(value).__name__} {value!r}"[:80]
