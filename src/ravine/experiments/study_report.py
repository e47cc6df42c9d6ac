"""What ``ravine compare --study`` writes: report.md, timing.md, trials.csv, runs.json, runs.csv and figures.

``report.md`` holds only what the runs determine (steps, losses, draws; no dates, no wall times), so a rerun with
the same seeds on the same machine reproduces it byte for byte; wall-clock times go to ``timing.md`` and
``runs.json``.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ravine.experiments.report import _strict, environment
from ravine.experiments.stats import mean_std
from ravine.experiments.study import (
    PROFILE_TAUS,
    TAU_MAX,
    Study,
    Workload,
    budget_points,
    median_steps,
    paired_log_loss,
    profile,
    profile_area,
    seconds_to_target,
    step_times,
    steps_to_target,
    summary,
)
from ravine.experiments.train import STOPPING_POINTS, Run
from ravine.files import atomic_output

OUTPUTS = ("report.md", "timing.md", "trials.csv", "runs.json", "runs.csv", "*.png")
PROFILE_FIGURE = "profile.png"


def workload_figure(workload: Workload) -> str:
    return f"workload-{workload.task.name}.png"


def _loss(value: float) -> str:
    return f"{value:.4f}" if math.isfinite(value) else "—"


def _mean_std(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.4f} ± {std:.4f}" if len(values) > 1 else f"{mean:.4f}"


def _steps(value: float) -> str:
    return f"{value:g}" if math.isfinite(value) else "not reached"


def _point(point: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in point.items())


def format_profile(study: Study) -> str:
    times = step_times(study)
    areas = profile_area(times)
    head = ["optimizer", "workloads reaching the target", *(f"ρ(τ={t:g})" for t in PROFILE_TAUS),
            f"score (area, τ ≤ {TAU_MAX:g})"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    ranked = sorted(times, key=lambda name: -areas[name])
    for name in ranked:
        reached = sum(math.isfinite(t) for t in times[name])
        cells = [f"{profile(times, tau)[name]:.2f}" for tau in PROFILE_TAUS]
        lines.append(f"| {name} | {reached}/{len(times[name])} | " + " | ".join(cells) + f" | {areas[name]:.3f} |")
    return "\n".join(lines)


def format_workload(workload: Workload, study: Study) -> str:
    task, entries = workload.task, workload.entries
    ks = budget_points(study.trials)
    reference = entries[0]
    head = ["optimizer", *(f"k = {k}" for k in ks), "test loss", "steps to target (median)", "reached",
            f"ln test loss − {reference.space.label}'s"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for e in entries:
        reached = sum(steps_to_target(r, task.target) is not None for r in e.full)
        diff = "—" if e is reference else f"{paired_log_loss(e.full, reference.full)}"
        cells = [_loss(e.expected_best(k)) for k in ks]
        test = _mean_std([r.test_loss for r in e.full])
        lines.append(f"| {e.space.label} | " + " | ".join(cells) + f" | {test} | "
                     f"{_steps(median_steps(e.full, task.target))} | {reached}/{len(e.full)} | {diff} |")
    best = ["| optimizer | best trial | its hyperparameters | its final validation loss |", "|---|---:|---|---:|"]
    best += [f"| {e.space.label} | {e.best.index} | {_point(e.best.point)} | {_loss(e.best.objective)} |"
             for e in entries]
    stopping = ["| optimizer | " + " | ".join(f"{f:g} of the steps" for f in STOPPING_POINTS) + " |",
                "|---|" + "---:|" * len(STOPPING_POINTS)]
    ranks = {f: _ranks({e.space.label: statistics.fmean(r.test_loss for r in e.finals[f]) for e in entries})
             for f in STOPPING_POINTS}
    for e in entries:
        cells = [f"{statistics.fmean(r.test_loss for r in e.finals[f]):.4f} (#{ranks[f][e.space.label]})"
                 for f in STOPPING_POINTS]
        stopping.append(f"| {e.space.label} | " + " | ".join(cells) + " |")
    flips = [f for f in STOPPING_POINTS if ranks[f] != ranks[1.0]]
    flip_text = (f"The ranking at {', '.join(f'{f:g}' for f in flips)} of the steps differs from the ranking at "
                 f"the full budget." if flips else "The ranking is the same at every stopping point.")
    return (f"## {task.title}\n\n"
            f"*Setup.* {task.description}; {workload.steps} steps, validation every {workload.eval_every}; "
            f"target: validation loss ≤ {task.target:g}; trials on tuning seed {task.tune_seeds[0]}, final runs "
            f"on seeds {', '.join(map(str, study.seeds))}.\n\n"
            f"*Expected best validation loss after k trials* (k = 1 … {study.trials}: what each optimizer reaches "
            f"with that tuning budget), then its best trial rerun over the seeds: test loss (mean ± std), median "
            f"steps to the target, and the paired difference of ln test loss against {reference.space.label} "
            f"(95% interval; below 0 is better).\n\n" + "\n".join(lines) + "\n\n*Best trials.*\n\n"
            + "\n".join(best) + "\n\n*When you stop matters.* The best trial rerun with its schedule rescaled to "
            "a shorter budget: mean test loss over the seeds (rank).\n\n" + "\n".join(stopping)
            + f"\n\n{flip_text}\n\n![{task.name}]({workload_figure(workload)})\n")


def _ranks(values: dict[str, float]) -> dict[str, int]:
    order = sorted(values, key=lambda name: (values[name], name))
    return {name: order.index(name) + 1 for name in values}


def format_search(study: Study) -> str:
    entries = study.workloads[0].entries
    lines = [f"## Search spaces and trials\n\nEvery optimizer's {study.trials} trials are the first "
             f"{study.trials} points of a scrambled Sobol sequence "
             f"(`torch.quasirandom.SobolEngine(d, scramble=True, seed=0)`, d = its number of hyperparameters) "
             f"mapped onto its space and rounded to 3 significant digits; the same trials run on every workload. "
             f"Each value below is the trial's final validation loss (an untrained model's if it diverged). "
             f"`trials.csv` has every trial's full configuration."]
    for e in entries:
        names = list(e.trials[0].point)
        lines.append(f"\n### {e.space.label}\n\n{e.space.describe()}"
                     + (f" ({e.space.source})" if e.space.source else "") + ".\n")
        head = ["trial", *names, *(w.task.name for w in study.workloads)]
        lines.append("| " + " | ".join(head) + " |\n|" + "---:|" * len(head))
        for i, trial in enumerate(e.trials):
            objectives = [_trial_cell(w, e.space.label, i) for w in study.workloads]
            lines.append(f"| {trial.index} | " + " | ".join(f"{trial.point[n]:g}" for n in names) + " | "
                         + " | ".join(objectives) + " |")
    return "\n".join(lines)


def _trial_cell(workload: Workload, label: str, index: int) -> str:
    trial = workload.entry(label).trials[index]
    return f"{trial.objective:.4f}" + (" (diverged)" if trial.run.diverged else "")


def format_report(study: Study, device: str) -> str:
    mode = "quick — a smoke-test budget, results not meaningful" if study.quick else "full"
    search = ("every hyperparameter of each search space" if study.search == "full"
              else "the learning rate only (every other hyperparameter at its default)")
    workloads = ", ".join(f"{w.task.name} ({w.steps} steps)" for w in study.workloads)
    head = (f"# ravine compare --study: optimizers tuned with equal budgets\n\n"
            f"Mode: {mode}; workloads {workloads}; {study.trials} trials per optimizer and workload over "
            f"{search}; final runs on seeds {', '.join(map(str, study.seeds))}; device {device}; "
            f"{environment()}.\n\n"
            f"Method (after MLCommons AlgoPerf): every optimizer gets the same number of quasi-random trials "
            f"from its stated search space; the best trial (lowest final validation loss) is rerun over the "
            f"seeds, each seed fixing the initial weights and the batches for every optimizer alike. Time to "
            f"result is the steps to the workload's target validation loss, fixed in code before the study ran. "
            f"Wall-clock times are in `timing.md`.\n\n"
            f"## Performance profiles\n\nρ(τ): the fraction of workloads on which the optimizer's median steps "
            f"to the target are at most τ × the fastest optimizer's on that workload; the score is the area "
            f"under ρ over τ ∈ [1, {TAU_MAX:g}], scaled to [0, 1] (1: fastest on every workload). With few "
            f"workloads this is coarse; it is the method, not a leaderboard.\n\n{format_profile(study)}\n\n"
            f"![performance profiles]({PROFILE_FIGURE})")
    sections = [format_workload(w, study) for w in study.workloads]
    return "\n\n".join([head, *sections, format_search(study)]) + "\n"


def format_timing(study: Study, meta: dict[str, Any]) -> str:
    lines = [f"# Wall-clock times of `{meta.get('command', 'ravine compare --study')}`\n",
             f"{meta.get('date', '')}; {environment()}; the whole study took {meta.get('seconds', 0):.0f} s. "
             f"Times depend on the machine and what else runs on it; steps to target (in `report.md`) do not.\n",
             "| workload | optimizer | seconds per run (median) | seconds to target (median over seeds) |",
             "|---|---|---:|---:|"]
    for w in study.workloads:
        for e in w.entries:
            per_run = statistics.median(r.seconds for r in e.full)
            to_target = [s if (s := seconds_to_target(r, w.task.target)) is not None else math.inf for r in e.full]
            median = statistics.median(to_target)
            lines.append(f"| {w.task.name} | {e.space.label} | {per_run:.2f} | "
                         f"{f'{median:.2f}' if math.isfinite(median) else 'not reached'} |")
    return "\n".join(lines) + "\n"


def plot_profile(study: Study, path: Path) -> None:
    from ravine.plotting import _pyplot, save_figure

    plt = _pyplot()
    times = step_times(study)
    taus = [1 + i * (TAU_MAX - 1) / 300 for i in range(301)]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name in times:
        ax.step(taus, [profile(times, tau)[name] for tau in taus], where="post", label=name)
    ax.set(xlabel="τ (steps to target ÷ the fastest optimizer's)", ylabel="fraction of workloads",
           title=f"performance profiles over {len(study.workloads)} workload(s)", ylim=(-0.03, 1.03),
           xlim=(1, TAU_MAX))
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def plot_workload(workload: Workload, study: Study, path: Path) -> None:
    """Left: expected best validation loss against the number of trials. Middle: the best trial's validation
    loss curve (mean over seeds) with the target. Right: test loss at each stopping point."""
    from ravine.plotting import _pyplot, save_figure

    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ks = list(range(1, study.trials + 1))
    for e in workload.entries:
        axes[0].plot(ks, [e.expected_best(k) for k in ks], marker=".", label=e.space.label)
        curves = [[loss for _, loss, _ in r.evals] for r in e.full]
        length = min(map(len, curves))
        steps = [step for step, _, _ in e.full[0].evals][:length]
        axes[1].plot(steps, [statistics.fmean(c[j] for c in curves) for j in range(length)], label=e.space.label)
        axes[2].plot(STOPPING_POINTS, [statistics.fmean(r.test_loss for r in e.finals[f])
                                          for f in STOPPING_POINTS], marker="o", label=e.space.label)
    axes[1].axhline(workload.task.target, color="black", linestyle=":", linewidth=1, label="target")
    axes[0].set(title="expected best validation loss after k trials", xlabel="trials k", yscale="log",
                xscale="log")
    axes[1].set(title="best trial: validation loss (mean over seeds)", xlabel="step", yscale="log")
    axes[2].set(title="best trial rerun at a shorter budget: test loss", xlabel="fraction of the step budget",
                yscale="log", xticks=STOPPING_POINTS)
    axes[0].legend(fontsize=7)
    fig.suptitle(workload.task.title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def _run_row(workload: Workload, label: str, kind: str, run: Run) -> dict[str, Any]:
    last = run.evals[-1] if run.evals else (0, math.nan, math.nan)
    return {"workload": workload.task.name, "optimizer": label, "kind": kind, "arm": run.arm.describe(),
            "seed": run.seed, "steps": run.steps, "diverged_at": run.diverged_at, "final_val_loss": last[1],
            "test_loss": run.test_loss, "test_accuracy": run.test_accuracy,
            "steps_to_target": steps_to_target(run, workload.task.target),
            "seconds_to_target": seconds_to_target(run, workload.task.target), "seconds": round(run.seconds, 3)}


def _rows(study: Study) -> list[dict[str, Any]]:
    rows = []
    for w in study.workloads:
        for e in w.entries:
            rows += [_run_row(w, e.space.label, f"trial {t.index}", t.run) for t in e.trials]
            rows += [_run_row(w, e.space.label, f"best, {f:g} of the steps", r)
                     for f in STOPPING_POINTS for r in e.finals[f]]
    return rows


def _trial_rows(study: Study) -> list[dict[str, Any]]:
    rows = []
    for w in study.workloads:
        for e in w.entries:
            for t in e.trials:
                rows.append({"workload": w.task.name, "optimizer": e.space.label, "trial": t.index,
                             **{k: t.point.get(k, "") for k in _all_dimensions(study)},
                             "create_optimizer": t.run.arm.optimizer, "options": json.dumps(t.run.arm.kwargs),
                             "lr": t.run.arm.lr, "schedule": t.run.arm.schedule, "warmup": t.run.arm.warmup,
                             "seed": t.run.seed, "final_val_loss": t.objective, "diverged": t.run.diverged})
    return rows


def _all_dimensions(study: Study) -> list[str]:
    names: list[str] = []
    for e in study.workloads[0].entries:
        names += [n for n in e.trials[0].point if n not in names]
    return names


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_outputs(study: Study, out: Path, device: str, meta: dict[str, Any]) -> list[Path]:
    """Write every output of the study into ``out``; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    figures = [out / PROFILE_FIGURE]
    plot_profile(study, figures[0])
    for w in study.workloads:
        figures.append(out / workload_figure(w))
        plot_workload(w, study, figures[-1])
    rows = _rows(study)
    document = {"meta": {**meta, "device": device, "environment": environment(), "quick": study.quick},
                "summary": summary(study), "runs": rows}
    with atomic_output(out / "runs.json") as tmp:
        Path(tmp).write_text(json.dumps(_strict(document), indent=1, allow_nan=False))
    _write_csv(out / "runs.csv", rows)
    _write_csv(out / "trials.csv", _trial_rows(study))
    with atomic_output(out / "timing.md") as tmp:
        Path(tmp).write_text(format_timing(study, meta))
    with atomic_output(out / "report.md") as tmp:
        Path(tmp).write_text(format_report(study, device))
    return [out / name for name in ("report.md", "timing.md", "trials.csv", "runs.json", "runs.csv")] + figures
