"""Independent training runs side by side: ``jobs`` worker processes, one CPU thread per run.

Every run ``ravine compare`` makes for its claims and sweeps uses one intra-op thread, whether it runs in this
process (``jobs=1``) or in a worker, so the numbers — and the report — do not depend on ``--jobs`` or on how
many cores the machine has (a matrix product split over two threads rounds differently from one on one
thread). Small models use several cores better as single-threaded runs side by side than as one run spread over
all of them: on this project's 2-core machine ``ravine compare 4 5 --quick`` (character-GPT runs) took 12.2 s
with two jobs against 20.4 s with one, the workers' start-up included.

Workers are started with ``spawn`` (a fresh interpreter: nothing inherited from a parent that may already hold
thread pools) and ignore Ctrl-C: the parent stops them and reports the interruption once.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from ravine.experiments.tasks import TASKS
from ravine.experiments.train import Arm, Run, train

THREADS_PER_RUN = 1
PROGRESS_EVERY = 10  # a run's progress is reported every this many steps ...
PROGRESS_SECONDS = 0.1  # ... and at most this often (a digits step takes half a millisecond)
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Request:
    """One run to make: ``arm`` on the built-in task named ``task`` with ``seed``, ``steps`` and ``eval_every``."""

    task: str
    arm: Arm
    seed: int
    steps: int
    eval_every: int


def default_jobs(device: torch.device | str = "cpu") -> int:
    """One job per CPU core this process may use on CPU; one on an accelerator (its runs share one device)."""
    if torch.device(device).type != "cpu":
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def check_jobs(jobs: int) -> int:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"Invalid jobs: {jobs!r} (jobs must be a positive integer)")
    return jobs


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the enclosed code with torch's intra-op threads set to one (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS_PER_RUN)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_all(requests: Sequence[Request], jobs: int = 1, device: torch.device | str = "cpu",
            on_start: Callable[[int], None] | None = None,
            on_steps: Callable[[int, int], None] | None = None) -> list[Run]:
    """Make every run in ``requests`` with ``jobs`` workers (see :meth:`Workers.run`)."""
    with Workers(jobs, device) as workers:
        return workers.run(requests, on_start, on_steps)


class Workers:
    """``jobs`` worker processes that make runs, started when first needed and kept for later batches (none
    for one job: runs are then made here, one after another). Use it as a context manager."""

    def __init__(self, jobs: int = 1, device: torch.device | str = "cpu") -> None:
        self.jobs, self.device = check_jobs(jobs), str(device)
        self._pool: Any = None
        self._events: Any = None
        self._batch = 0  # events carry their batch's number: a late event of an earlier batch is ignored

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers, whatever they are doing."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._events.close()
            self._pool = self._events = None

    def run(self, requests: Sequence[Request], on_start: Callable[[int], None] | None = None,
            on_steps: Callable[[int, int], None] | None = None) -> list[Run]:
        """Make every run in ``requests`` (started in order, ``jobs`` at a time); returns them in the same order.

        ``on_start(i)`` is called as run ``i`` starts, ``on_steps(i, done)`` as it progresses and, with ``done``
        equal to its step budget, when it ends (a run that diverged stops early: its remaining steps count as
        done). An error in a run (or Ctrl-C) stops every worker and is raised here.
        """
        if self.jobs == 1 or len(requests) <= 1:
            return _run_here(requests, self.device, on_start, on_steps)
        try:
            return self._run_in_workers(requests, on_start, on_steps)
        except BaseException:
            self.close()
            raise

    def _run_in_workers(self, requests: Sequence[Request], on_start: Callable[[int], None] | None,
                        on_steps: Callable[[int, int], None] | None) -> list[Run]:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._events = context.Queue()
            self._pool = context.Pool(self.jobs, _worker_init, (self._events,))
        self._batch += 1
        batch = self._batch
        pending = {i: self._pool.apply_async(_worker_run, ((batch, i), request, self.device)) for i, request in
                   enumerate(requests)}
        runs: dict[int, Run] = {}
        started: set[int] = set()

        def start(i: int) -> None:
            if i not in started:
                started.add(i)
                if on_start is not None:
                    on_start(i)

        while pending:
            for kind, (event_batch, i), *done in _events(self._events):
                if event_batch != batch or i not in pending:  # late news of a run that already ended
                    continue
                start(i)
                if kind == "steps" and on_steps is not None:
                    on_steps(i, done[0])
            for i in [i for i, result in pending.items() if result.ready()]:
                runs[i] = pending.pop(i).get()  # a worker's exception is raised here
                start(i)
                if on_steps is not None:
                    on_steps(i, requests[i].steps)
        return [runs[i] for i in range(len(requests))]


def _train(request: Request, device: torch.device | str, on_step: Callable[[int], None] | None) -> Run:
    task = TASKS[request.task]
    return train(task, request.arm, request.seed, request.steps, request.eval_every, device, on_step)


def _run_here(requests: Sequence[Request], device: torch.device | str, on_start: Callable[[int], None] | None,
              on_steps: Callable[[int, int], None] | None) -> list[Run]:
    runs = []
    with one_thread():
        for i, request in enumerate(requests):
            if on_start is not None:
                on_start(i)
            runs.append(_train(request, device, Throttle(lambda done, i=i: on_steps(i, done))
                               if on_steps is not None else None))
            if on_steps is not None:
                on_steps(i, request.steps)
    return runs


class Throttle:
    """A run's ``on_step``: calls ``report(done)`` every :data:`PROGRESS_EVERY` steps, at most every
    :data:`PROGRESS_SECONDS`."""

    def __init__(self, report: Callable[[int], None]) -> None:
        self.report, self.reported, self.last = report, 0, time.monotonic()

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if done - self.reported >= PROGRESS_EVERY and now - self.last >= PROGRESS_SECONDS:
            self.reported, self.last = done, now
            self.report(done)


def _events(events: Any) -> list[tuple[Any, ...]]:
    """Every event waiting in ``events`` (after waiting up to :data:`POLL_SECONDS` for the first)."""
    try:
        waiting = [events.get(timeout=POLL_SECONDS)]
    except queue.Empty:
        return []
    while True:
        try:
            waiting.append(events.get_nowait())
        except queue.Empty:
            return waiting


_EVENTS: Any = None


def _worker_init(events: Any) -> None:
    global _EVENTS
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    torch.set_num_threads(THREADS_PER_RUN)
    _EVENTS = events


def _worker_run(run: tuple[int, int], request: Request, device: str) -> Run:
    """Make one run in a worker; ``run`` is (batch, index), sent back with every event."""
    _EVENTS.put(("start", run))
    return _train(request, device, Throttle(lambda done: _EVENTS.put(("steps", run, done))))
