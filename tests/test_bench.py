"""The benchmark programs run end to end at a tiny size (their timings are never asserted)."""

from __future__ import annotations

import json

from ravine.bench import step
from ravine.cli import main


def test_transformer_parameter_set_matches_the_issue():
    params = step.transformer_params(scale=1.0, device="meta")
    assert len(params) == 97
    assert sum(p.numel() for p in params) == 29_413_376


def test_bench_step_writes_table_json_and_chart(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "step", "--scale", "0.02", "--repeats", "1", "--algorithms", "Lion,Momentum",
                 "-o", str(out)]) == 0
    result = json.loads((out / "step.json").read_text())
    implementations = {(r["algorithm"], r["implementation"]) for r in result["rows"]}
    assert {("Lion", "ravine fused"), ("Lion", "lion-pytorch"), ("Momentum", "torch fused")} <= implementations
    assert all(r["ms"] > 0 and r["gb_per_s"] > 0 for r in result["rows"])
    assert {r["state_bytes_per_param"] for r in result["rows"] if r["algorithm"] == "Lion"} == {4.0}
    assert (out / "step.png").read_bytes()[:4] == b"\x89PNG"
    assert "| Lion | ravine fused |" in capsys.readouterr().out
