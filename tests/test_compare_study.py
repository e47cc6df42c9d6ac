"""``ravine compare --study`` and ``--task``: search spaces, budget curves, time to target, performance profiles,
the task protocol, and the command end to end on the example task."""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import ravine
from ravine.experiments import search, user_task
from ravine.experiments.search import SPACES, Dimension, lr_only
from ravine.experiments.study import (
    expected_best_of,
    profile,
    profile_area,
    seconds_to_target,
    steps_to_target,
)
from ravine.experiments.tasks import TASKS
from ravine.experiments.train import Arm, Run, train

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = f"{ROOT / 'examples' / 'compare_task.py'}:make_task"


# ---- the budget axis, time to target, profiles -------------------------------------------------------
@pytest.mark.parametrize("n", [1, 3, 6])
def test_expected_best_of_k_equals_the_mean_over_every_subset(n):
    values = sorted([0.7, 0.2, 1.5, 0.2, 3.0, 0.9][:n])
    for k in range(1, n + 1):
        subsets = [min(c) for c in itertools.combinations(values, k)]
        assert expected_best_of(values, k) == pytest.approx(statistics.fmean(subsets), rel=1e-12)
    assert expected_best_of(values, n) == values[0]
    with pytest.raises(ValueError, match="k: 0"):
        expected_best_of(values, 0)


def _run(evals: list[tuple[int, float]], seconds: list[float] | None = None) -> Run:
    return Run("t", Arm("x", "adam", 1e-3), 0, 100, evals=[(s, v, math.nan) for s, v in evals],
               eval_seconds=seconds or [0.1 * s for s, _ in evals])


def test_time_to_target_is_the_first_evaluation_at_or_below_it():
    run = _run([(10, 0.9), (20, 0.5), (30, 0.6), (40, 0.4)])
    assert steps_to_target(run, 0.5) == 20 and seconds_to_target(run, 0.5) == pytest.approx(2.0)
    assert steps_to_target(run, 0.45) == 40
    assert steps_to_target(run, 0.1) is None and seconds_to_target(run, 0.1) is None


def test_performance_profiles_follow_algoperfs_definition():
    # two workloads; A fastest on the first, B on the second, C never reaches the second target
    times = {"A": [100.0, 300.0], "B": [150.0, 200.0], "C": [400.0, math.inf]}
    assert profile(times, 1.0) == {"A": 0.5, "B": 0.5, "C": 0.0}
    assert profile(times, 1.5) == {"A": 1.0, "B": 1.0, "C": 0.0}
    assert profile(times, 4.0) == {"A": 1.0, "B": 1.0, "C": 0.5}
    area = profile_area(times)
    # A: ratios 1 and 1.5 -> (3 + 2.5) / (3 · 2); B: 1.5 and 1 -> the same; C: ratio 4 on one -> 0
    assert area == pytest.approx({"A": 5.5 / 6, "B": 5.5 / 6, "C": 0.0})
    assert profile_area({"A": [1.0], "B": [2.0]}) == pytest.approx({"A": 1.0, "B": 2 / 3})


# ---- search spaces -------------------------------------------------------------------------------------
def test_trials_are_seeded_sobol_points_inside_the_space_rounded_for_hand_reruns():
    space = SPACES["AdamW"]
    trials = space.trials(16)
    assert trials == space.trials(16) and space.trials(4) == trials[:4]  # fixed seed; prefixes agree
    for point in trials:
        assert set(point) == {d.name for d in space.dimensions}
        for d in space.dimensions:
            assert d.low * 0.999 <= point[d.name] <= d.high * 1.001
            assert point[d.name] == float(f"{point[d.name]:.3g}")
    lrs = sorted(math.log10(p["lr"]) for p in trials)
    assert all(b - a < 1.0 for a, b in itertools.pairwise([-4.0, *lrs, -1.0]))  # spread over the 3 decades
    with pytest.raises(ValueError, match="trials: 0"):
        space.trials(0)


def test_one_minus_log_dimensions_spread_betas_towards_one():
    beta = Dimension("beta2", 0.9, 0.999, "one-minus-log")
    assert beta.value(0.0) == pytest.approx(0.999) and beta.value(1 - 1e-12) == pytest.approx(0.9)
    assert beta.value(0.5) == pytest.approx(1 - math.sqrt(0.1 * 0.001), abs=1e-3)


def test_a_point_becomes_the_optimizer_options_it_names():
    steps = 200
    adamw = SPACES["AdamW"].arm({"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-8, "weight_decay": 0.1,
                                 "warmup": 0.05}, steps)
    assert (adamw.optimizer, adamw.lr, adamw.schedule, adamw.warmup) == ("adamw", 0.01, "warmup_cosine", 0.05)
    assert adamw.kwargs == {"betas": (0.8, 0.99), "eps": 1e-8, "weight_decay": 0.1}
    free = SPACES["Schedule-Free AdamW"].arm({"lr": 0.01, "beta1": 0.9, "warmup": 0.05}, steps)
    assert free.schedule == "constant" and free.kwargs["warmup_steps"] == 10
    assert free.kwargs["betas"] == (0.9, 0.999)
    muon = SPACES["Muon + AdamW"].arm({"lr": 0.02, "adam_lr": 1e-3, "momentum": 0.9, "warmup": 0.1}, steps)
    assert muon.kwargs == {"adam_lr": 1e-3, "momentum": 0.9}
    lion = SPACES["Lion"].arm({"lr": 1e-4, "beta1": 0.95}, steps)
    assert lion.kwargs["betas"] == (0.95, 0.99)  # Lion's own default β₂
    for space in SPACES.values():  # every draw builds a working optimizer
        arm = space.arm(space.trials(1)[0], steps)
        ravine.create_optimizer(arm.optimizer, TASKS["digits"].model(0, torch.device("cpu")), lr=arm.lr,
                                **arm.kwargs)


def test_lr_only_search_keeps_every_other_default():
    space = lr_only(SPACES["AdamW"])
    assert [d.name for d in space.dimensions] == ["lr"]
    arm = space.arm(space.trials(1)[0], 100)
    assert arm.kwargs == {} and arm.warmup == 0.1


def test_optimizers_are_chosen_by_label_or_factory_name():
    assert [s.label for s in search.select(["sgd", "AdamW", "adamw"])] == ["SGD + momentum", "AdamW"]
    assert len(search.select(None)) == len(SPACES)
    with pytest.raises(ValueError, match="optimizer: 'adamx'"):
        search.select(["adamx"])


# ---- the task protocol ---------------------------------------------------------------------------------
def test_the_example_task_loads_trains_and_reports_loss_without_accuracy():
    task = user_task.load(EXAMPLE)
    assert (task.name, task.steps, task.eval_every, task.quick_steps, task.tune_seeds) == (
        "diabetes", 400, 20, 40, (1000,))
    run = train(task, Arm("AdamW", "adamw", 1e-3), 0, 60, 20)
    assert [step for step, _, _ in run.evals] == [20, 40, 60]
    assert run.evals[-1][1] < run.train_loss[0] and math.isnan(run.test_accuracy)
    assert run.divergence_limit == pytest.approx(2 * run.train_loss[0])
    diverged = train(task, Arm("SGD", "sgd", 50.0), 0, 60, 20)
    assert diverged.diverged and diverged.test_loss == pytest.approx(task.untrained(0, torch.device("cpu"))[0])


def _write_task(tmp_path: Path, body: str, name: str = "my_task.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return f"{path}:make_task"


GOOD = """
    import torch
    from torch import nn

    class Task:
        name, steps, target = "tiny", 20, 0.5
        def model(self, seed, device):
            return nn.Linear(2, 1)
        def batch(self, generator, device):
            x = torch.randn(8, 2, generator=generator)
            return x, x.sum(1, keepdim=True)
        def loss(self, model, batch):
            x, y = batch
            return ((model(x) - y) ** 2).mean()
        def evaluate(self, model, split, device):
            x = torch.ones(4, 2)
            return ((model(x) - 2) ** 2).mean().item(), 0.5

    def make_task():
        return Task()
"""


def test_a_task_module_can_be_named_by_path_or_import_name(tmp_path, monkeypatch):
    spec = _write_task(tmp_path, GOOD, "json.py")  # a file named like a stdlib module shadows nothing
    assert user_task.load(spec).name == "tiny"
    assert json.dumps([1]) == "[1]"
    _write_task(tmp_path, GOOD, "tiny_task_mod.py")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    task = user_task.load("tiny_task_mod:make_task")  # found in the working directory
    assert (task.title, task.description, task.eval_every) == ("tiny", "tiny", 1)
    assert task.evaluate(task.model(0, torch.device("cpu")), "val", torch.device("cpu"))[1] == 0.5


@pytest.mark.parametrize("spec, message", [
    ("no_colon", "write MODULE:FUNCTION"),
    ("no_such_module_xyz:make", "no module named 'no_such_module_xyz'"),
    ("json:make_task", "module 'json' has no attribute 'make_task'"),
    ("math:pi", "pi is a float, not a function"),
    ("missing.py:make_task", "no file missing.py"),
])
def test_a_bad_task_name_is_refused_naming_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=message):
        user_task.load(spec)


@pytest.mark.parametrize("replace, message", [
    (('name, steps, target = "tiny", 20, 0.5', 'name = "tiny"'),
     r"Task lacks steps \(the step budget\), target \(the target validation loss\)"),
    (('name, steps, target = "tiny", 20, 0.5', 'name, steps, target = "", 0, float("nan")'),
     "name must be a non-empty string.*steps must be a positive integer, got 0.*target must be a finite"),
    (("def loss(self, model, batch):", "def loss(self, model):"), r"loss must take 2 arguments"),
    (("def evaluate(self, model, split, device):", "evaluate = 3\n        def _e(self, model, split, device):"),
     "evaluate is not callable"),
])
def test_a_task_missing_parts_is_refused_naming_every_problem(tmp_path, replace, message):
    spec = _write_task(tmp_path, GOOD.replace(*replace))
    with pytest.raises(ValueError, match=message):
        user_task.load(spec)


def test_a_task_returning_the_wrong_things_fails_with_its_name(tmp_path):
    spec = _write_task(tmp_path, GOOD.replace("return ((model(x) - y) ** 2).mean()", "return 1.0"))
    with pytest.raises(TypeError, match=r"task 'tiny': loss\(\) must return a scalar tensor.*float 1.0"):
        train(user_task.load(spec), Arm("SGD", "sgd", 0.1), 0, 2, 1)
    spec = _write_task(tmp_path, GOOD.replace("return ((model(x) - 2) ** 2).mean().item(), 0.5", "return 'ok'"),
                       "other.py")
    with pytest.raises(TypeError, match=r"evaluate\(\) must return a loss or \(loss, accuracy\)"):
        train(user_task.load(spec), Arm("SGD", "sgd", 0.1), 0, 2, 1)


def test_schedule_free_is_evaluated_in_eval_mode_and_trains_in_train_mode(monkeypatch):
    calls: list[str] = []
    cls = ravine.ScheduleFreeAdamW
    for mode in ("train", "eval"):
        original = getattr(cls, mode)
        monkeypatch.setattr(cls, mode, lambda self, _o=original, _m=mode: (calls.append(_m), _o(self))[1])
    seen: list[bool] = []
    task = TASKS["digits"]

    class Watching:
        def __getattr__(self, name):
            return getattr(task, name)

        def evaluate(self, model, split, device):
            seen.append(model.training)
            return task.evaluate(model, split, device)

    run = train(Watching(), Arm("SF", "schedule_free_adamw", 1e-3), 0, 20, 10)  # type: ignore[arg-type]
    assert len(run.evals) == 2 and seen == [False, False, False]
    assert calls == ["eval", "train"] * 3


def test_the_command_names_every_built_in_workload_and_the_wide_gpts_differ_only_in_width():
    from ravine.experiments.cli import default_workloads

    result = _compare("--help")
    assert result.returncode == 0
    assert f"from {', '.join(TASKS)} (default" in " ".join(result.stdout.split())
    narrow = TASKS["gpt"]
    for name, size in (("gpt", 110_400), ("gpt-128", 417_408), ("gpt-256", 1_621_248), ("gpt-512", 6_388_224)):
        wide = TASKS[name]
        with torch.device("meta"):  # the parameter count needs no memory
            model = wide.model(0, torch.device("meta"))
        assert sum(p.numel() for p in model.parameters()) == size
        assert f"~{size // 1000}k parameters" in wide.description
        assert (wide.steps, wide.batch_size, wide.target) == (narrow.steps, narrow.batch_size, narrow.target)
    # a GPU study adds the four widths to the defaults; the CPU defaults stay the two digits workloads
    assert default_workloads(torch.device("cpu")) == ("digits", "digits-cnn")
    assert default_workloads(torch.device("cuda")) == ("digits", "digits-cnn", "gpt", "gpt-128", "gpt-256",
                                                        "gpt-512")


def test_the_conv_net_workload_trains_on_images():
    task = TASKS["digits-cnn"]
    inputs, targets = task.batch(torch.Generator().manual_seed(0), torch.device("cpu"))
    assert inputs.shape == (64, 1, 8, 8) and targets.shape == (64,)
    run = train(task, Arm("AdamW", "adamw", 3e-3), 0, 60, 30)
    assert run.evals[-1][1] < 0.6 * math.log(10) and run.test_accuracy > 0.5


# ---- the command -----------------------------------------------------------------------------------------
def _compare(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ravine", "compare", *argv], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


STUDY_ARGS = ("--task", EXAMPLE, "--quick", "--optimizers", "adamw,sgd,schedule_free_adamw", "--trials", "3",
              "--seeds", "2")


@pytest.fixture(scope="module")
def study_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "out"
    result = _compare(*STUDY_ARGS, "-o", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_the_study_writes_its_report_tables_and_figures(study_run):
    out, result = study_run
    assert re.search(r"diabetes: .*; 40 steps, target validation loss 0.55; about \d+ s \(3 optimizers × \(3 "
                     r"trials \+ 2 seeds × 3 stopping points\)\)", result.stderr)
    names = {p.name for p in out.iterdir()}
    assert names == {"report.md", "timing.md", "trials.csv", "runs.json", "runs.csv", "profile.png",
                     "workload-diabetes.png"}
    report = (out / "report.md").read_text()
    for text in ("## Performance profiles", "## MLP regression on the diabetes data", "k = 1", "k = 2", "k = 3",
                 "steps to target", "*When you stop matters.*", "### Schedule-Free AdamW",
                 "target: validation loss ≤ 0.55", "ln test loss − AdamW's"):
        assert text in report, text
    assert "| optimizer | workloads reaching the target |" in result.stdout
    trials = list(csv.DictReader((out / "trials.csv").open()))
    assert len(trials) == 9 and {t["optimizer"] for t in trials} == {"AdamW", "SGD + momentum",
                                                                      "Schedule-Free AdamW"}
    document = json.loads((out / "runs.json").read_text())
    assert len(document["runs"]) == 3 * (3 + 3 * 2)  # per optimizer: 3 trials, 3 stopping points × 2 seeds
    assert "seconds to target" in (out / "timing.md").read_text()


def test_a_trial_from_the_report_reruns_by_hand(study_run):
    """The trial draws are written out so that anyone can rerun one: rebuild it from trials.csv."""
    out, _ = study_run
    row = next(csv.DictReader((out / "trials.csv").open()))
    task = user_task.load(EXAMPLE)
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(row["options"]).items()}
    arm = Arm("again", row["create_optimizer"], float(row["lr"]), tuple(options.items()), row["schedule"],
              warmup=float(row["warmup"]))
    run = train(task, arm, int(row["seed"]), task.quick_steps, task.quick_eval_every)
    assert run.evals[-1][1] == pytest.approx(float(row["final_val_loss"]), rel=1e-6)


def test_the_study_report_reproduces_byte_for_byte(study_run, tmp_path):
    out, _ = study_run
    again = _compare(*STUDY_ARGS, "-o", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert (tmp_path / "again" / "report.md").read_text() == (out / "report.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (("--study", "1"), "Invalid study: --study/--task tune their own optimizers"),
    (("--trials", "3"), "Invalid --trials: it belongs to the tuning study"),
    (("--study", "--trials", "0"), "Invalid trials: 0"),
    (("--study", "--workloads", "digits,mnist"), "Invalid workloads: 'mnist'"),
    (("--study", "--optimizers", "adamx"), "Invalid optimizer: 'adamx'"),
    (("--task", "nope"), "Invalid task: 'nope' (write MODULE:FUNCTION"),
    (("--task", EXAMPLE, "--task", EXAMPLE), "two workloads are named 'diabetes'"),
])
def test_bad_study_input_is_refused_before_any_work(argv, message, tmp_path):
    result = _compare(*argv, "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
