"""What ``ravine compare`` writes: report.md, one figure per claim, runs.json and runs.csv.

``report.md`` holds only what the runs determine (no dates, no timings), so a rerun with the same seeds on the
same machine reproduces it byte for byte; timings go to ``runs.json``.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import statistics
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ravine.experiments.claims import Column, best_grid_label
from ravine.experiments.metrics import mean_train_loss, smoothed
from ravine.experiments.parallel import THREADS_PER_RUN
from ravine.experiments.runner import Outcome, budget, task_of
from ravine.experiments.stats import mean_std
from ravine.experiments.tasks import TASKS
from ravine.experiments.train import Run
from ravine.files import atomic_output

VERDICT_MARK = {"holds": "✅ holds", "does not hold": "❌ does not hold", "inconclusive": "❔ inconclusive"}


def figure_name(outcome: Outcome) -> str:
    return f"claim-{outcome.claim.number}-{outcome.claim.key}.png"


def _cell(values: list[float], digits: int) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "—"
    mean, std = mean_std(finite)
    text = f"{mean:.{digits}f} ± {std:.{digits}f}" if len(finite) > 1 else f"{mean:.{digits}f}"
    return text + (f" ({len(finite)}/{len(values)})" if len(finite) < len(values) else "")


def format_table(outcome: Outcome) -> str:
    columns: Sequence[Column] = outcome.claim.columns
    head = ["arm", "optimizer, lr, schedule", *(c.name for c in columns), "diverged"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * len(columns) + "---:|"]
    for arm in outcome.arms:
        runs = outcome.runs[arm.label]
        cells = [_cell([c.value(r) for r in runs], c.digits) for c in columns]
        lines.append(f"| {arm.label} | `{arm.describe()}` | " + " | ".join(cells)
                     + f" | {sum(r.diverged for r in runs)}/{len(runs)} |")
    return "\n".join(lines)


def format_section(outcome: Outcome, seeds: Sequence[int], quick: bool) -> str:
    claim = outcome.claim
    tasks = dict.fromkeys(task_of(claim, arm) for arm in outcome.arms)  # in order, each once
    setup = "; and ".join(f"{TASKS[task].description}; {budget(task, quick)[0]} steps" for task in tasks)
    checks = "\n".join(f"- {check.text}" for check in outcome.checks)
    return (f"## {claim.number}. {claim.statement}\n\n"
            f"**Verdict: {VERDICT_MARK[outcome.verdict]}** · `ravine compare {claim.key}`\n\n"
            f"*Setup.* {setup}; seeds {_seed_text(seeds)} (a seed fixes the initial "
            f"weights and the batch order, the same for every arm, so runs are compared in pairs).\n\n"
            f"*Criterion (fixed before running).* {claim.criterion} A diverged run counts as an untrained model "
            f"(test loss ln(classes), accuracy 1/classes).\n\n"
            f"{format_table(outcome)}\n\n*Checks.*\n{checks}\n\n![claim {claim.number}]({figure_name(outcome)})\n")


def _seed_text(seeds: Sequence[int]) -> str:
    return ", ".join(map(str, seeds))


def format_state_memory(outcomes: Sequence[Outcome]) -> str:
    rows: dict[tuple[str, str], Run] = {}
    for outcome in outcomes:
        for arm in outcome.arms:
            run = outcome.runs[arm.label][0]
            options = replace(arm, options=tuple((k, v) for k, v in arm.options if k != "weight_decay"))
            name = f"{arm.optimizer}({options.options_text()})"
            name += f", {arm.dtype} parameters" if arm.dtype != "float32" else ""
            rows.setdefault((run.task, name), run)
    lines = ["## Optimizer state memory", "",
             "Measured after training: the bytes of every tensor in `optimizer.state_dict()['state']`.", "",
             "| task | optimizer | parameters | state bytes | bytes / parameter |", "|---|---|---:|---:|---:|"]
    for (task, name), run in sorted(rows.items(), key=lambda item: (item[0][0], item[1].state_bytes, item[0][1])):
        lines.append(f"| {task} | `{name}` | {run.parameters:,} | {run.state_bytes:,} | "
                     f"{run.state_bytes / run.parameters:.3f} |")
    return "\n".join(lines)


def environment(threads: str | None = None) -> str:
    """The software and machine a report was made with; ``threads`` says how many CPU threads each run used
    (default: torch's current setting)."""
    threads = threads or f"{torch.get_num_threads()} threads"
    return f"torch {torch.__version__}, Python {platform.python_version()}, {threads}, {platform.machine()}"


CLAIMS_THREADS = f"{THREADS_PER_RUN} CPU thread per run"


def format_report(outcomes: Sequence[Outcome], seeds: Sequence[int], quick: bool, device: str) -> str:
    mode = "quick — a smoke-test budget, verdicts not meaningful" if quick else "full"
    used = {task_of(o.claim, arm) for o in outcomes for arm in o.arms}
    budgets = ", ".join(f"{name} {budget(name, quick)[0]} steps" for name in TASKS if name in used)
    summary = ["| # | claim | verdict |", "|---:|---|---|"]
    summary += [f"| {o.claim.number} | [{o.claim.statement}](#{o.claim.number}-{_anchor(o.claim.statement)}) | "
                f"{VERDICT_MARK[o.verdict]} |" for o in outcomes]
    head = (f"# ravine compare: claims about optimizers, rerun\n\n"
            f"Mode: {mode} ({budgets}); seeds {_seed_text(seeds)}; device {device}; "
            f"{environment(CLAIMS_THREADS)}.\n"
            f"Learning rates come from the sweep shipped in `ravine/experiments/tuned.json` (rerun it with "
            f"`ravine compare --tune`) or from the rule a criterion states. Tables show mean ± std over seeds; "
            f"every verdict is decided from the 95% t-interval of differences paired by seed.\n\n"
            + "\n".join(summary))
    sections = [format_section(o, seeds, quick) for o in outcomes]
    return "\n\n".join([head, *sections, format_state_memory(outcomes)]) + "\n"


def _anchor(text: str) -> str:
    kept = "".join(c for c in text.lower() if c.isalnum() or c in " -")
    return kept.replace(" ", "-")


def run_record(run: Run, claim: str) -> dict[str, Any]:
    return {"claim": claim, "label": run.arm.label, **run.to_json()}


def csv_row(run: Run, claim: str) -> dict[str, Any]:
    last = run.evals[-1] if run.evals else (0, math.nan, math.nan)
    return {"claim": claim, "arm": run.arm.label, "task": run.task, "optimizer": run.arm.optimizer,
            "options": json.dumps(run.arm.kwargs), "lr": run.arm.lr, "schedule": run.arm.schedule,
            "clip": run.arm.clip, "seed": run.seed, "steps": run.steps, "diverged_at": run.diverged_at,
            "mean_train_loss": mean_train_loss(run), "final_val_loss": last[1], "final_val_accuracy": last[2],
            "test_loss": run.test_loss, "test_accuracy": run.test_accuracy, "state_bytes": run.state_bytes,
            "parameters": run.parameters, "seconds": round(run.seconds, 3)}


def plot_outcome(outcome: Outcome, path: Path) -> None:
    """Training loss (raw and EWA-smoothed), validation loss and validation accuracy, mean over the seeds; for
    an lr grid (claim 9) the final test loss against lr instead of the curves."""
    from ravine.plotting import _pyplot, save_figure

    plt = _pyplot()
    labels = list(outcome.runs)
    grid = [label for label in labels if ", lr " in label]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colours = plt.get_cmap("tab10")
    if grid:
        _plot_lr_grid(outcome, axes[0])
        labels = [label for label in labels if label not in grid] + _best_of_grid(outcome)
    else:
        _plot_train_loss(outcome, labels, axes[0], colours)
    axes = axes[1:]
    for i, label in enumerate(labels):
        evals = [r.evals for r in outcome.runs[label]]
        steps = [step for step, _, _ in max(evals, key=len)]
        for ax, index, scale in ((axes[0], 1, 1.0), (axes[1], 2, 100.0)):
            mean = _mean_of_running([[scale * e[index] for e in per_seed] for per_seed in evals])
            ax.plot(steps[: len(mean)], mean, color=colours(i % 10), label=label)
    axes[0].set(title="validation loss (mean over seeds)", xlabel="step", yscale="log")
    axes[1].set(title="validation accuracy % (mean over seeds)", xlabel="step")
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=7)
    fig.suptitle(f"{outcome.claim.number}. {outcome.claim.statement}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def _mean_of_running(curves: list[list[float]]) -> list[float]:
    """The mean at each index over the curves that reach it (a diverged seed drops out where it stopped)."""
    length = max(map(len, curves), default=0)
    return [statistics.fmean(c[j] for c in curves if len(c) > j) for j in range(length)]


def _plot_train_loss(outcome: Outcome, labels: list[str], ax: Any, colours: Any) -> None:
    diverged = False
    for i, label in enumerate(labels):
        runs = outcome.runs[label]
        raw = _mean_of_running([r.train_loss for r in runs])
        ax.plot(range(1, len(raw) + 1), raw, color=colours(i % 10), alpha=0.25, linewidth=0.6)
        ax.plot(range(1, len(raw) + 1), smoothed(raw), color=colours(i % 10), label=label)
        for r in runs:
            if r.diverged_at is not None and r.diverged_at < r.steps:
                diverged = True
                last = r.train_loss[-1] if r.train_loss else raw[0] if raw else 1.0
                ax.plot([r.diverged_at], [last], "x", color=colours(i % 10), markersize=8)
    title = "training loss: raw (faint), EWA-smoothed (β=0.9, bias-corrected)"
    ax.set(title=title + ("\n× marks a seed's divergence; the mean continues over the others" if diverged else ""),
           xlabel="step", yscale="log")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)


def _grid_points(outcome: Outcome) -> dict[str, list[tuple[float, list[float]]]]:
    points: dict[str, list[tuple[float, list[float]]]] = {}
    for arm in outcome.arms:
        name = arm.label.split(", lr ")[0]
        points.setdefault(name, []).append((arm.lr, [r.test_loss for r in outcome.runs[arm.label]]))
    return points


def _plot_lr_grid(outcome: Outcome, ax: Any) -> None:
    for name, points in _grid_points(outcome).items():
        lrs = [lr for lr, _ in points]
        means = [statistics.fmean(v) for _, v in points]
        stds = [mean_std(v)[1] for _, v in points]
        ax.errorbar(lrs, means, yerr=stds, marker="o", capsize=3, label=name)
    ax.set(title="final test loss against lr (mean ± std over seeds)", xlabel="lr", xscale="log", yscale="log")
    ax.legend(fontsize=7)


def _best_of_grid(outcome: Outcome) -> list[str]:
    return [best_grid_label(outcome.runs, name) for name in _grid_points(outcome)]


def _strict(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, so the JSON is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def write_outputs(outcomes: Sequence[Outcome], out: Path, seeds: Sequence[int], quick: bool, device: str,
                  meta: dict[str, Any]) -> list[Path]:
    """Write report.md, runs.json, runs.csv and a figure per claim into ``out``; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for outcome in outcomes:
        plot_outcome(outcome, out / figure_name(outcome))
        written.append(out / figure_name(outcome))
    records = [(o.claim.key, run) for o in outcomes for label in o.runs for run in o.runs[label]]
    document = {
        "meta": {**meta, "seeds": list(seeds), "quick": quick, "device": device,
                 "environment": environment(CLAIMS_THREADS)},
        "claims": {o.claim.key: {"number": o.claim.number, "statement": o.claim.statement,
                                 "criterion": o.claim.criterion, "verdict": o.verdict,
                                 "checks": [{"text": c.text, "verdict": c.verdict} for c in o.checks]}
                   for o in outcomes},
        "runs": [run_record(run, claim) for claim, run in records],
    }
    with atomic_output(out / "runs.json") as tmp:
        Path(tmp).write_text(json.dumps(_strict(document), indent=1, allow_nan=False))
    rows = [csv_row(run, claim) for claim, run in records]
    with atomic_output(out / "runs.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with atomic_output(out / "report.md") as tmp:
        Path(tmp).write_text(format_report(outcomes, seeds, quick, device))
    return [out / "report.md", out / "runs.json", out / "runs.csv", *written]
