"""``ravine compare``: the data, the runner, the statistics behind each verdict, the sweep, and the command."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
import subprocess
import sys

import pytest
import torch

from ravine.ewa import EWA
from ravine.experiments import data, stats
from ravine.experiments.claims import CLAIMS, select
from ravine.experiments.metrics import early_instability, mean_train_loss, smoothed
from ravine.experiments.tasks import TASKS
from ravine.experiments.train import Arm, Run, train
from ravine.experiments.tuning import TUNABLES, load_tuned


# ---- data -------------------------------------------------------------------------------------------
def test_digits_split_is_fixed_disjoint_and_standardised_on_train():
    parts = data.digits()
    assert [len(parts[name]) for name in ("train", "val", "test")] == [1078, 359, 360]
    rows = {name: {tuple(x.tolist()) for x in parts[name].inputs} for name in parts}
    assert sum(map(len, rows.values())) >= 1797 - 5  # (a few digits are pixel-identical duplicates)
    train_inputs = parts["train"].inputs
    assert train_inputs.mean(0).abs().max() < 1e-5
    assert set(parts["test"].targets.tolist()) == set(range(10))


def test_stdlib_text_reads_the_fixed_files_and_encodes_inside_the_vocabulary():
    streams = data.stdlib_text()
    assert len(streams["train"]) > 7 * len(streams["val"]) > 0 and len(streams["test"]) > 0
    for stream in streams.values():
        assert stream.min() >= 0 and stream.max() < data.VOCAB_SIZE
    assert data.encode("def f():\n\treturn 1").tolist()[:3] == [data.VOCAB.index(c) for c in "def"]
    assert data.encode("é").tolist() == [data.UNKNOWN]
    with pytest.raises(FileNotFoundError, match=r"no_such_module\.py"):
        data.stdlib_source(("no_such_module.py",))


# ---- one run ----------------------------------------------------------------------------------------
def test_a_run_is_deterministic_given_its_seed_and_seeds_differ():
    task, arm = TASKS["digits"], Arm("Adam", "adam", 1e-3)
    a, b, c = (train(task, arm, seed, 30, 10) for seed in (0, 0, 1))
    assert a.train_loss == b.train_loss and a.evals == b.evals and a.test_loss == b.test_loss
    assert a.train_loss != c.train_loss
    assert [step for step, _, _ in a.evals] == [10, 20, 30]


def test_a_diverging_run_stops_and_scores_as_an_untrained_model():
    task = TASKS["digits"]
    run = train(task, Arm("SGD", "sgd", 1e4), 0, 50, 10)
    assert run.diverged and run.diverged_at < 50 and len(run.train_loss) == run.diverged_at
    assert run.test_loss == pytest.approx(math.log(10)) and run.test_accuracy == pytest.approx(0.1)
    assert mean_train_loss(run) > math.log(10)  # the rest of the budget counts at the divergence threshold


def test_state_memory_is_measured_from_the_state_dict():
    task = TASKS["digits"]
    lion, adamw = (train(task, Arm(n, n, 1e-4), 0, 2, 2) for n in ("lion", "adamw"))
    assert lion.parameters == adamw.parameters == 26122
    assert lion.state_bytes == 4 * lion.parameters  # exp_avg only
    assert adamw.state_bytes == 8 * adamw.parameters + 4 * 6  # exp_avg, exp_avg_sq, a float32 step per tensor


def test_clipping_and_schedules_reach_the_optimizer():
    task = TASKS["digits"]
    plain = train(task, Arm("SGD", "sgd", 0.5), 0, 20, 20)
    clipped = train(task, Arm("SGD", "sgd", 0.5, clip=1e-3), 0, 20, 20)
    decayed = train(task, Arm("SGD", "sgd", 0.5, schedule="step"), 0, 20, 20)
    assert clipped.train_loss[0] == plain.train_loss[0]  # same model and batch before the first step
    assert clipped.train_loss[-1] > plain.train_loss[-1]  # steps of norm ≤ 5e-4 barely move it
    assert decayed.train_loss[:7] == plain.train_loss[:7] and decayed.train_loss[8:] != plain.train_loss[8:]
    with pytest.raises(ValueError, match="schedule: 'linear'"):
        Arm("SGD", "sgd", 0.1, schedule="linear")
    with pytest.raises(ValueError, match="lr: -1"):
        Arm("SGD", "sgd", -1.0)


def test_a_bfloat16_arm_trains_bfloat16_parameters_and_reports_float32_losses():
    task = TASKS["digits"]
    plain = train(task, Arm("AdamW", "adamw", 1e-3), 0, 20, 20)
    bf16 = train(task, Arm("AdamW", "adamw", 1e-3, dtype="bfloat16"), 0, 20, 20)
    kahan = train(task, Arm("AdamW", "adamw", 1e-3, (("kahan_sum", True),), dtype="bfloat16"), 0, 20, 20)
    # the same start, rounded to bfloat16: first losses close, not equal; then all three train
    assert bf16.train_loss[0] == pytest.approx(plain.train_loss[0], rel=1e-3)
    assert bf16.train_loss[0] != plain.train_loss[0]
    assert max(bf16.train_loss[-1], kahan.train_loss[-1]) < 0.8 * plain.train_loss[0]
    assert kahan.train_loss != bf16.train_loss  # the compensation changes the run
    assert kahan.state_bytes == plain.state_bytes + 2 * plain.parameters  # float32 moments + a bf16 kahan_comp
    assert "bfloat16 parameters" in bf16.arm.describe()


def test_memory_saving_options_are_checked_when_the_arm_is_built():
    with pytest.raises(ValueError, match="dtype: 'float16'"):
        Arm("AdamW", "adamw", 1e-3, dtype="float16")
    with pytest.raises(ValueError, match=r"clip: 1.0 .*clip_in_backward"):
        Arm("AdamW", "adamw", 1e-3, (("step_in_backward", True),), clip=1.0)


# ---- metrics and statistics -------------------------------------------------------------------------
def _run(losses: list[float], steps: int | None = None, diverged_at: int | None = None) -> Run:
    return Run("gpt", Arm("x", "adam", 1e-3), 0, steps or len(losses), list(losses), diverged_at=diverged_at,
               divergence_limit=2 * math.log(data.VOCAB_SIZE))


def test_smoothing_is_ravines_bias_corrected_ewa():
    values = [3.0, 1.0, 2.0, 0.5]
    assert smoothed(values) == EWA(0.9).smooth(values)
    assert smoothed([2.0] * 5) == pytest.approx([2.0] * 5)  # bias correction: no pull towards 0


def test_early_instability_measures_the_rise_above_the_running_minimum():
    assert early_instability(_run([4.0 - 0.01 * i for i in range(100)])) == 0.0
    spiky = [4.0 - 0.01 * i for i in range(100)]
    spiky[10:20] = [6.0] * 10  # a spike inside the first 30%
    assert early_instability(_run(spiky)) > 1.0
    late = [4.0 - 0.01 * i for i in range(100)]
    late[80:90] = [6.0] * 10  # after the first 30%: not early
    assert early_instability(_run(late)) == 0.0
    limit = 2 * math.log(data.VOCAB_SIZE)
    assert limit - 4.0 < early_instability(_run([4.0, 3.0], steps=100, diverged_at=2)) < limit


def test_paired_interval_matches_scipys_paired_t_test():
    from scipy.stats import ttest_rel

    a, b = [1.0, 2.5, 2.0, 3.1, 2.2], [0.7, 2.0, 2.1, 2.4, 1.5]
    diff = stats.paired_difference(a, b)
    interval = ttest_rel(a, b).confidence_interval(0.95)
    assert diff.low == pytest.approx(interval.low) and diff.high == pytest.approx(interval.high)
    assert stats.paired_difference([1.0], [0.0]).high == math.inf  # one seed: no interval, never decisive
    with pytest.raises(ValueError, match="Invalid pairs"):
        stats.paired_difference([1.0, 2.0], [1.0])


@pytest.mark.parametrize(("low", "high", "below", "above", "within"), [
    (-2.0, -1.0, "holds", "does not hold", "does not hold"),
    (1.0, 2.0, "does not hold", "holds", "does not hold"),
    (-0.5, 0.5, "inconclusive", "inconclusive", "inconclusive"),
    (-0.05, 0.05, "inconclusive", "inconclusive", "holds"),
])
def test_three_way_decisions(low, high, below, above, within):
    diff = stats.Difference((low + high) / 2, low, high, 5)
    assert (stats.decide_below(diff), stats.decide_above(diff), stats.decide_within(diff, 0.1)) == (
        below, above, within)


def test_a_claim_holds_only_when_every_part_holds():
    assert stats.combine(["holds", "holds"]) == "holds"
    assert stats.combine(["holds", "inconclusive"]) == "inconclusive"
    assert stats.combine(["inconclusive", "does not hold"]) == "does not hold"


# ---- claims and the sweep ---------------------------------------------------------------------------
def test_claims_are_chosen_by_number_or_key_in_order():
    assert [c.number for c in select([])] == list(range(1, len(CLAIMS) + 1))
    assert [c.key for c in select(["lion-half-state", "1", "5"])] == ["adam-faster", "lion-half-state"]
    with pytest.raises(ValueError, match=f"Invalid claim: '{len(CLAIMS) + 1}'"):
        select([str(len(CLAIMS) + 1)])


def test_every_claim_builds_its_arms_from_the_shipped_sweep():
    tuned = load_tuned()
    assert set(tuned) == set(TUNABLES)
    for claim in CLAIMS.values():
        arms = claim.arms(tuned)
        assert len({arm.label for arm in arms}) == len(arms) >= 2
    assert tuned["gpt/SGD + momentum"]["diverges_at"] > tuned["gpt/SGD + momentum"]["lr"]


def test_tune_command_reproduces_the_shipped_entry(tmp_path, monkeypatch, capsys):
    # `ravine compare --tune`, narrowed to digits/SGD (full budget, a few seconds): the shipped lr and grid
    # must be what the sweep finds today, and the file it writes must load.
    from ravine.cli import main
    from ravine.experiments import tuning

    monkeypatch.setattr(tuning, "TUNABLES", {"digits/SGD": TUNABLES["digits/SGD"]})
    path = tmp_path / "out" / "tuned.json"
    assert main(["compare", "--tune", "-o", str(tmp_path / "out")]) == 0
    entry, shipped = load_tuned(path)["digits/SGD"], load_tuned()["digits/SGD"]
    assert entry == shipped
    assert "digits/SGD" in capsys.readouterr().out


def test_a_search_entry_reproduces_its_shipped_trials_and_builds_its_best_arm():
    from ravine.experiments import tuning

    key = "digits-cnn/Adam, lr and eps"
    tunable, shipped = TUNABLES[key], load_tuned()[key]
    assert len(shipped["sweep"]) == tuning.SEARCH_TRIALS
    two = tuning.sweep(dataclasses.replace(tunable, trials=2), {})
    assert two["sweep"] == shipped["sweep"][:2]  # the same Sobol points and the same validation losses
    best = min(shipped["sweep"], key=lambda t: math.inf if t[1] is None else t[1])
    assert shipped["point"] == best[0]
    arm = tuning.searched_arm(shipped, key, "Adam")
    assert (arm.optimizer, arm.lr, arm.kwargs, arm.schedule) == ("adam", best[0]["lr"], {"eps": best[0]["eps"]},
                                                                "constant")


def test_an_arm_with_a_budget_runs_that_fraction_with_its_schedule_rescaled():
    from ravine.experiments.runner import budget

    arm = Arm("AdamW", "adamw", 1e-3, schedule="cosine", budget=0.25)
    assert budget("digits", False, arm) == (200, 20) and budget("digits", True, arm) == (38, 10)
    assert "0.25 of the steps" in arm.describe()
    with pytest.raises(ValueError, match="budget: 0"):
        Arm("AdamW", "adamw", 1e-3, budget=0.0)


def test_default_lrs_are_the_packages_own():
    from ravine.experiments.claims import default_lr

    assert [default_lr(n) for n in ("adam", "adamw", "rmsprop", "adagrad", "lion")] == [1e-3, 1e-3, 1e-2, 1e-2,
                                                                                       1e-4]


# ---- the command ------------------------------------------------------------------------------------
def _compare(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ravine.cli", "compare", *argv], capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    result = _compare("--quick", "-j", "2", "-o", str(out))  # two runs at a time, each in a worker process
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def _sections(report: str) -> dict[int, str]:
    claims = report.split("\n## Optimizer state memory")[0]
    parts = re.split(r"^## (?=\d+\. )", claims, flags=re.M)
    return {int(p.split(".")[0]): p.strip() for p in parts[1:]}


def test_quick_run_writes_a_report_with_a_verdict_per_claim(quick_run):
    out, result = quick_run
    report = (out / "report.md").read_text()
    sections = _sections(report)
    assert sorted(sections) == list(range(1, len(CLAIMS) + 1))
    printed = {line.split(None, 2)[1]: line.split(None, 2)[2] for line in result.stdout.splitlines() if line}
    for number, text in sections.items():
        claim = next(c for c in CLAIMS.values() if c.number == number)
        assert text.startswith(f"{number}. {claim.statement}")
        verdict = re.search(r"\*\*Verdict: \S+ (holds|does not hold|inconclusive)\*\*", text).group(1)
        assert printed[claim.key] == verdict
        assert "*Criterion (fixed before running).*" in text and "*Checks.*" in text
        assert f"![claim {number}](claim-{number}-{claim.key}.png)" in text
        assert (out / f"claim-{number}-{claim.key}.png").stat().st_size > 20_000
    assert "## Optimizer state memory" in report and "seeds 0, 1, 2" in report
    assert "quick" in report


def test_quick_run_writes_every_run_to_json_and_csv(quick_run):
    out, _ = quick_run
    document = json.loads((out / "runs.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    runs = document["runs"]
    with open(out / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(runs) == 3 * sum(len(c.arms(load_tuned())) for c in CLAIMS.values())
    assert {r["seed"] for r in runs} == {0, 1, 2}
    for run in runs:
        assert len(run["train_loss"]) == (run["diverged_at"] if run["diverged_at"] is not None else run["steps"])
        assert run["state_bytes"] >= 0 and run["parameters"] > 0
    assert set(document["claims"]) == set(CLAIMS)
    assert {c["verdict"] for c in document["claims"].values()} <= {"holds", "does not hold", "inconclusive"}


def test_memory_savers_change_only_what_they_claim_to(quick_run):
    # Step in backward repeats the ordinary step bit for bit; 8-bit state holds ≤ 2.1 bytes per parameter.
    out, _ = quick_run
    runs = json.loads((out / "runs.json").read_text())["runs"]
    for task in ("gpt", "digits"):
        mine = {(r["label"], r["seed"]): r for r in runs if r["claim"] == f"saving-memory-{task}"}
        for seed in (0, 1, 2):
            plain, in_backward = mine["AdamW, float32", seed], mine["+ step in backward", seed]
            assert in_backward["train_loss"] == plain["train_loss"]
            assert in_backward["test_loss"] == plain["test_loss"]
            assert mine["+ int8 state", seed]["state_bytes"] <= 2.1 * plain["parameters"]
            assert mine["all three", seed]["arm"]["dtype"] == "bfloat16"


def test_claims_reproduce_exactly_when_rerun_alone(quick_run, tmp_path):
    # A claim's numbers depend only on its seeds: rerunning two claims on their own, one run at a time in this
    # process instead of two at a time in workers, reproduces their sections.
    out, _ = quick_run
    result = _compare("adam-faster", "4", "16", "--quick", "-j", "1", "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    full, alone = _sections((out / "report.md").read_text()), _sections((tmp_path / "report.md").read_text())
    assert sorted(alone) == [1, 4, 16]
    assert alone[1] == full[1] and alone[4] == full[4] and alone[16] == full[16]


@pytest.mark.parametrize(("argv", "message"), [
    (["--seeds", "0"], "Invalid seeds: 0"),
    (["17"], f"Invalid claim: '17' (choose from 1–{len(CLAIMS)}"),
    (["--jobs", "0"], "Invalid jobs: 0"),
    (["--study", "--jobs", "2"], "Invalid jobs: the tuning study makes one run at a time"),
    (["--device", "gpu7"], "Invalid device: 'gpu7'"),
    (["--tuned", "/nonexistent/tuned.json"], "regenerate it with `ravine compare --tune`"),
])
def test_bad_input_is_refused_with_a_clear_message(argv, message, tmp_path):
    result = _compare(*argv, "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "out").exists()


def test_list_names_every_claim():
    result = _compare("--list")
    assert result.returncode == 0
    for claim in CLAIMS.values():
        assert claim.key in result.stdout and claim.statement in result.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_run_on_cuda_follows_the_cpu_run():
    task, arm = TASKS["gpt"], Arm("Adam", "adam", 1e-3)
    cpu, cuda = train(task, arm, 0, 5, 5), train(task, arm, 0, 5, 5, device="cuda")
    assert cuda.train_loss == pytest.approx(cpu.train_loss, rel=1e-3)


def test_the_documented_figures_exist():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for doc in (root / "README.md", root / "docs" / "experiments.md", root / "docs" / "study.md"):
        links = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", doc.read_text())
        assert links, doc
        for link in links:
            assert (doc.parent / link).is_file(), f"{doc.name} shows a missing figure: {link}"
