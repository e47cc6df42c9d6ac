"""The pieces of the fused step on FSDP2 shards that need no process group: finding the runs of tensors lying
end to end, the region spanning a run, and pack_shards' refusals. The step itself on real FSDP2 shards (two
gloo processes, bit for bit against plain tensors) is in test_distributed.py."""

from __future__ import annotations

import pytest
import torch

import ravine
from ravine.engine.local_shards import region, runs


def test_runs_follow_views_of_one_base_lying_end_to_end_in_every_role():
    params = torch.arange(10.0)
    a, b, c = params[0:3], params[3:7], params[7:10]
    grads = torch.zeros(10)
    ga, gb, gc = grads[0:3], grads[3:7], grads[7:10]
    assert runs([[a, b, c], [ga, gb, gc]]) == [(0, 3)]
    # a gap in the gradients breaks the run there, even though the parameters continue
    other = torch.zeros(11)
    assert runs([[a, b, c], [ga, gb, other[8:11]]]) == [(0, 2), (2, 3)]
    # out of order, or separate allocations: a run each
    assert runs([[b, a, c], [gb, ga, gc]]) == [(0, 1), (1, 2), (2, 3)]
    separate = [torch.zeros(3), torch.zeros(4)]
    assert runs([separate, [ga, gb]]) == [(0, 1), (1, 2)]
    assert runs([[a], [ga]]) == [(0, 1)] and runs([[], []]) == []


def test_region_is_the_flat_span_of_a_run_and_writes_through():
    buffer = torch.zeros(12)
    views = [buffer[2:5].view(3, 1), buffer[5:11].view(2, 3)]
    span = region(views)
    assert span.shape == (9,) and span.data_ptr() == views[0].data_ptr()
    span.add_(1)
    assert buffer.tolist() == [0, 0] + [1] * 9 + [0]


def test_pack_shards_refuses_a_model_without_fsdp2_modules():
    with pytest.raises(ValueError, match=r"no module of this Linear is an FSDP2 module.*fully_shard"):
        ravine.pack_shards(torch.nn.Linear(2, 2))
