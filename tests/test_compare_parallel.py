"""``ravine compare --jobs``: runs made side by side in worker processes equal the runs made here, errors and
Ctrl-C stop every worker; and the runs that stop at a target (claim 16's time to target)."""

from __future__ import annotations

import dataclasses
import math
import signal
import subprocess
import sys
import time

import pytest
import torch

from ravine.experiments import parallel
from ravine.experiments.claims import CLAIMS
from ravine.experiments.metrics import steps_to_stop
from ravine.experiments.parallel import Request, Workers, check_jobs, default_jobs, run_all
from ravine.experiments.runner import budget, task_of
from ravine.experiments.tasks import TASKS
from ravine.experiments.train import Arm, train
from ravine.experiments.tuning import load_tuned

TIMES = ("seconds", "eval_seconds")


def _measured(run) -> dict:
    """Everything a run measured except its wall times."""
    return {k: v for k, v in dataclasses.asdict(run).items() if k not in TIMES}


def _requests() -> list[Request]:
    arms = (Arm("Adam", "adam", 1e-3), Arm("SGD + momentum", "sgd", 0.05, (("momentum", 0.9),)))
    return [Request("digits", arm, seed, 30, 10) for arm in arms for seed in (0, 1)]


def test_runs_made_by_workers_equal_runs_made_here_one_thread_each():
    requests = _requests()
    events: dict[str, list] = {"start": [], "steps": []}
    threads = torch.get_num_threads()
    here = run_all(requests, jobs=1)
    there = run_all(requests, jobs=2, on_start=events["start"].append,
                    on_steps=lambda i, done: events["steps"].append((i, done)))
    assert [_measured(r) for r in there] == [_measured(r) for r in here]
    assert sorted(events["start"]) == list(range(len(requests)))
    for i, request in enumerate(requests):  # every run's progress ends at its budget, never goes back
        done = [d for j, d in events["steps"] if j == i]
        assert done == sorted(done) and done[-1] == request.steps
    assert torch.get_num_threads() == threads  # made here under one thread, the setting is put back
    with parallel.one_thread():
        alone = train(TASKS["digits"], requests[0].arm, 0, 30, 10)
    assert _measured(alone) == _measured(here[0])


def test_an_error_in_a_worker_is_raised_here_and_stops_the_workers():
    bad = Request("digits", Arm("Adam", "adam", 1e-3, (("betas", (0.9, 2.0)),)), 0, 5, 5)
    workers = Workers(2)
    with pytest.raises(ValueError, match="beta"):
        workers.run([_requests()[0], bad])
    assert workers._pool is None  # terminated; the next batch starts fresh ones
    assert len(workers.run(_requests()[:2])) == 2
    workers.close()


def test_jobs_are_checked_and_default_to_the_cpus():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=rf"Invalid jobs: {bad!r}"):
            check_jobs(bad)
    assert default_jobs("cpu") >= 1 and default_jobs("meta") == 1


def test_ctrl_c_stops_the_workers_with_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "ravine", "compare", "4", "5", "--quick", "-j", "2", "-o",
                                str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(8)  # past start-up: the workers are training
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not out.exists()


# ---- runs that stop at a target -----------------------------------------------------------------------
def test_a_run_stops_at_the_first_evaluation_at_or_below_its_target():
    task = TASKS["digits"]
    arm = Arm("Adam", "adam", 1e-3, until=1.5, eval_every=5)
    run = train(task, arm, 0, 100, 50)  # train() takes the interval it is given: the runner reads the arm's
    assert run.stopped_at == 50 and len(run.train_loss) == 50 and math.isfinite(run.test_loss)
    run = train(task, arm, 0, 100, 5)
    first = next(step for step, loss, _ in run.evals if loss <= 1.5)
    assert run.stopped_at == first == run.evals[-1][0] == len(run.train_loss) == steps_to_stop(run) < 100
    never = train(task, Arm("Adam", "adam", 1e-3, until=1e-9), 0, 20, 10)
    assert never.stopped_at is None and steps_to_stop(never) == 40  # twice the budget
    assert budget("digits", False, arm) == (800, 5)
    assert "stops at validation loss ≤ 1.5 (evaluated every 5 steps)" in arm.describe()
    for field, value in (("until", math.nan), ("eval_every", 0)):
        with pytest.raises(ValueError, match=f"Invalid {field}"):
            Arm("Adam", "adam", 1e-3, **{field: value})


def test_the_width_claim_runs_each_optimizer_at_both_widths_to_the_target():
    claim = CLAIMS["muon-fewer-steps"]
    arms = claim.arms(load_tuned())
    assert [(task_of(claim, a), a.optimizer) for a in arms] == [
        ("gpt", "adamw"), ("gpt", "muon_with_aux_adam"), ("gpt-128", "adamw"), ("gpt-128", "muon_with_aux_adam")]
    assert all(a.until == TASKS["gpt"].target == TASKS["gpt-128"].target and a.eval_every == 10 for a in arms)
