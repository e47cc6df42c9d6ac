"""The benchmark programs run end to end at a tiny size (their timings are never asserted)."""

from __future__ import annotations

import json

from ravine.bench import step
from ravine.cli import main


def test_transformer_parameter_set_matches_the_issue():
    params = step.transformer_params(scale=1.0, device="meta")
    assert len(params) == 97
    assert sum(p.numel() for p in params) == 29_413_376


def test_small_parameter_set_matches_the_issue():
    params = step.small_params(scale=1.0, device="meta")
    assert len(params) == 2000
    assert min(p.numel() for p in params) >= 1024 and max(p.numel() for p in params) <= 16384


def test_bench_step_writes_table_json_and_chart(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "step", "--scale", "0.02", "--rounds", "2", "--algorithms", "Lion,Momentum",
                 "-o", str(out)]) == 0
    result = json.loads((out / "step.json").read_text())
    implementations = {(r["algorithm"], r["implementation"]) for r in result["rows"]}
    assert {("Lion", "ravine fused"), ("Lion", "lion-pytorch"), ("Momentum", "torch fused")} <= implementations
    assert all(r["ms"] > 0 and r["gb_per_s"] > 0 for r in result["rows"])
    assert {r["state_bytes_per_param"] for r in result["rows"] if r["algorithm"] == "Lion"} == {4.0}
    rows = {(r["algorithm"], r["implementation"]): r for r in result["rows"]}
    # per-round ratios against the references present: each reference is 1 against itself
    assert rows[("Momentum", "torch fused")]["ratios"]["torch fused"] == 1.0
    assert rows[("Momentum", "torch for-loop")]["ratios"]["torch default"] == 1.0
    assert rows[("Lion", "ravine fused")]["ratios"] == {}  # torch ships no Lion: no reference to divide by
    assert (out / "step.png").read_bytes()[:4] == b"\x89PNG"
    assert "| Lion | ravine fused |" in capsys.readouterr().out


def test_bench_step_small_set_and_wrapper_reference(tmp_path):
    out = tmp_path / "bench"
    assert main(["bench", "step", "--shape", "small", "--scale", "0.01", "--rounds", "1", "--algorithms",
                 "Lookahead(AdamW),Cautious AdamW", "-o", str(out)]) == 0
    result = json.loads((out / "step.json").read_text())
    assert result["machine"]["shape"] == "small" and result["machine"]["tensors"] == 20
    bares = [r for r in result["rows"] if r["implementation"] == "bare inner fused"]
    assert [r["algorithm"] for r in bares] == ["Lookahead(AdamW)", "Cautious AdamW"]
    assert all(r["ratios"] == {"bare inner fused": 1.0} for r in bares)

    def bytes_per_param(row):  # what its GB/s was computed from
        return row["gb_per_s"] * row["ms"] * 1e6 / result["machine"]["params"]

    cautious = {r["implementation"]: r for r in result["rows"] if r["algorithm"] == "Cautious AdamW"}
    assert round(bytes_per_param(cautious["ravine fused"])) == 40  # two passes
    assert round(bytes_per_param(cautious["bare inner fused"])) == 28  # the bare AdamW step moves its own


def _refusals(benchmark, cases, tmp_path, capsys) -> str:
    """Each bad command line exits with a usage error; returns what they printed on standard error."""
    import pytest

    for args in cases:
        with pytest.raises(SystemExit):
            main(["bench", benchmark, *args, "-o", str(tmp_path / "x")])
    return capsys.readouterr().err


def test_bench_step_refuses_bad_values(tmp_path, capsys):
    err = _refusals("step", (["--rounds", "0"], ["--shape", "huge"], ["--algorithms", "Nope"]), tmp_path, capsys)
    assert "--rounds" in err and "huge" in err and "Nope" in err


def test_bench_muon_writes_ratios_against_torch(tmp_path, capsys):
    from ravine.bench import muon

    assert muon.newton_schulz_flops([(512, 2048)], steps=1) == 2 * (2 * 512 * 512 * 2048 + 512**3)
    out = tmp_path / "muon"
    assert main(["bench", "muon", "--scale", "0.05", "--rounds", "1", "-o", str(out)]) == 0
    result = json.loads((out / "muon.json").read_text())
    names = {r["implementation"] for r in result["rows"]}
    assert {"torch.optim.Muon", "ravine Muon multi-tensor", "ravine MuonWithAuxAdam"} <= names
    torch_row = next(r for r in result["rows"] if r["implementation"] == "torch.optim.Muon")
    assert torch_row["ratio_to_torch"] == 1.0
    assert result["machine"]["matrices"] == 33
    assert "| ravine Muon multi-tensor |" in capsys.readouterr().out


def test_memory_model_is_transformer_shaped_with_over_80_m_parameters():
    from ravine.bench import memory

    model = memory.build_model(1.0, "meta")
    assert sum(p.numel() for p in model.parameters()) >= 80_000_000


def test_bench_memory_measures_fresh_processes_and_writes_table_json_and_chart(tmp_path, capsys):
    out = tmp_path / "bench"
    configs = "torch AdamW,+ step in backward + int8 state"
    assert main(["bench", "memory", "--scale", "0.05", "--steps", "2", "--batch", "2", "--length", "16",
                 "--rounds", "3", "--configs", configs, "-o", str(out)]) == 0
    result = json.loads((out / "memory.json").read_text())
    rows = {r["config"]: r for r in result["rows"]}
    assert set(rows) == set(configs.split(","))
    per_param = rows["torch AdamW"]["state_bytes"] / rows["torch AdamW"]["params"]
    assert 8.0 <= per_param < 8.1  # two float32 moments, and a step counter per tensor
    assert rows["+ step in backward + int8 state"]["state_bytes"] / rows["torch AdamW"]["params"] <= 2.1
    assert all(r["peak_bytes"] > 0 and r["step_ms"] > 0 and len(r["step_times"]) == 3 for r in rows.values())
    assert result["machine"]["rounds"] == 3
    assert (out / "memory.png").stat().st_size > 0 and "× torch AdamW" in (out / "memory.md").read_text()


def test_bench_memory_refuses_bad_values(tmp_path, capsys):
    cases = (["--steps", "0"], ["--configs", "torch SGD"], ["--device", "tpu"], ["--rounds", "0"])
    err = _refusals("memory", cases, tmp_path, capsys)
    assert "--steps" in err and "torch SGD" in err and "tpu" in err and "--rounds" in err


def test_bench_shards_runs_two_ranks_and_reports_ratios_to_the_plain_fused_step(tmp_path, capsys):
    out = tmp_path / "shards"
    command = ["bench", "shards", "--scale", "0.05", "--rounds", "1", "--algorithms", "SGD", "-o", str(out)]
    assert main(command) == 0
    result = json.loads((out / "shards.json").read_text())
    (row,) = result["rows"]
    assert result["world"] == 2 and row["algorithm"] == "SGD"
    assert row["ratio"]["plain fused"] == 1.0
    assert {"packed fused", "unpacked fused", "per-tensor", "torch default"} <= set(row["ratio"])
    assert "torch fused" in row["unsupported"]  # torch's fused SGD has no DTensor sharding strategy
    printed = capsys.readouterr().out
    assert "| SGD |" in printed and "Not run on FSDP2 shards" in printed


def test_bench_shards_refuses_bad_values(tmp_path, capsys):
    err = _refusals("shards", (["--rounds", "0"], ["--algorithms", "Nope"], ["--scale", "0"],
                               ["--device", "tpu"]), tmp_path, capsys)
    assert "--rounds" in err and "Nope" in err and "--scale" in err and "tpu" in err
