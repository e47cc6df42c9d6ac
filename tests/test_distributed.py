"""torch.distributed on CPU with gloo and 2 processes: DDP, ZeroRedundancyOptimizer, FSDP2 and DCP.

One ``torchrun --standalone --nproc_per_node 2`` launch (bounded in time; torchrun tears the workers down if
one fails) runs tests/dist_worker.py for every optimizer × per-tensor / multi-tensor / fused path. Each
result is compared here with a single-process run on the same global batch.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import dist_worker  # noqa: E402

TOL = {"rtol": 1e-4, "atol": 1e-5}  # float32 all-reduce / reduce-scatter order
SR_TOL = {"rtol": 2e-2, "atol": 1e-3}  # other random bits for bfloat16 state: a few bfloat16 ulps after 20 steps


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distributed")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(HERE / "dist_worker.py"), str(folder)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-8000:]
    return folder


def single_process(name: str, path: str) -> list[torch.Tensor]:
    model = dist_worker.make_model(name)
    optimizer = dist_worker.optimizer_class(name)(dist_worker.params_of(name, model),
                                                 **dist_worker.kwargs_for(name, path))
    for step in range(dist_worker.STEPS):
        dist_worker.train_step(model, optimizer, step, slice(None))
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("key", list(dist_worker.CONFIGS))
def test_ddp_zero_fsdp2_and_dcp_match_a_single_process(results, key):
    name, path = dist_worker.CONFIGS[key]
    runs = torch.load(results / f"{key}.pt", weights_only=True)
    reference = single_process(name, path)
    if name in dist_worker.REFUSES_SHARDS:
        assert re.search(dist_worker.REFUSES_SHARDS[name], runs["fsdp_error"]), runs["fsdp_error"]
    scenarios = ("ddp", "zero") if name in dist_worker.REFUSES_SHARDS else ("ddp", "zero", "fsdp")
    for scenario in (*scenarios, "ddp_split") if name in dist_worker.SPLITS else scenarios:
        # The fused path draws bfloat16 state's stochastic rounding from the position in its flat buffer, and
        # ZeRO's buffer holds only the rank's parameters: the same distribution of rounding, other draws.
        tol = SR_TOL if (name, path, scenario) == ("AdamW-bf16state", "fused", "zero") else TOL
        for i, (a, b) in enumerate(zip(reference, runs[scenario], strict=True)):
            torch.testing.assert_close(b, a, **tol, msg=lambda m, s=scenario, i=i: f"{key} {s} param {i}: {m}")
    # ZeRO's consolidated state dict, and a DCP checkpoint saved on 2 ranks, each loaded into a fresh model and
    # optimizer, continue exactly as the uninterrupted runs.
    for full, resumed in (("zero", "zero_resumed"), ("fsdp", "dcp")):
        if full not in runs:
            continue
        for a, b in zip(runs[full], runs[resumed], strict=True):
            assert torch.equal(a, b), f"{key}: {resumed} differs from the uninterrupted {full} run"


def test_step_in_backward_refuses_data_parallelism_by_name(results):
    text = (results / "step_in_backward_refusal.txt").read_text()
    assert "step_in_backward=True" in text and "DDP or FSDP2" in text and "ordinary step" in text


@pytest.mark.parametrize("rank", [0, 1])
def test_fused_step_on_fsdp2_shards_runs_on_the_local_shards(results, rank):
    """fused=True on FSDP2 shards equals the fused step on plain tensors holding the rank's shards, bit for bit,
    packed or not; pack_shards moves the evenly sharded parameters (6 of the model's 8), and a packed step then
    calls the kernel once per FSDP2 group plus once per uneven shard left alone, an unpacked one once per
    tensor."""
    runs = torch.load(results / f"local_shards-rank{rank}.pt", weights_only=True)
    assert set(runs) == set(dist_worker.LOCAL_SHARD_ALGORITHMS)
    for name, run in runs.items():
        assert run["equal"], name
        assert run["moved"] == 6, name  # Linear(8, 16), Linear(16, 16), LayerNorm(16): weights and biases
        assert run["unpacked_calls"] == run["tensors"], name
        # groups: model[0], model[2], and the root's LayerNorm; model[4]'s uneven shards each on their own
        assert run["packed_calls"] == 3 + (run["tensors"] - 6), name


def test_fsdp_example_trains_and_resumes_from_its_checkpoint(tmp_path):
    def run(*extra):
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   str(HERE.parent / "examples" / "fsdp_train.py"), "--steps", "12", "--checkpoint-every", "6",
                   "--checkpoints", str(tmp_path / "ckpt"), *extra]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-6000:]
        return [line for line in done.stdout.splitlines() if line.startswith(("step", "resumed"))]

    full = run()
    first, last = (float(full[i].split()[3]) for i in (0, -1))
    assert last < first  # it trains
    for leftover in (tmp_path / "ckpt" / "step_12").iterdir():
        leftover.unlink()
    (tmp_path / "ckpt" / "step_12").rmdir()
    resumed = run("--resume")
    assert resumed[0].startswith("resumed from") and resumed[0].endswith("at step 6")
    assert resumed[-1] == full[-1]  # same loss, grad norm and lr at the last step
