"""Schedules: closed forms, torch equivalents, the LRScheduler adapter, bad input, the plot command."""

from __future__ import annotations

import math
import re

import pytest
import torch

import ravine
from ravine import schedules as S
from ravine.cli import main


def seeds_lambda(step, warmup_steps, total_steps):
    """The usual warmup-cosine LambdaLR multiplier, as tutorials write it."""
    if step < warmup_steps:
        return float(step) / float(max(1, warmup_steps))
    progress = float(step - warmup_steps) / float(max(1, total_steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def test_warmup_cosine_equals_the_seeds_formula():
    schedule = S.warmup_cosine_decay(3e-4, warmup_steps=100, total_steps=1000)
    for step in range(0, 1001):
        assert schedule(step) == 3e-4 * seeds_lambda(step, 100, 1000)


def test_warmup_cosine_with_a_floor():
    schedule = S.warmup_cosine_decay(1.0, warmup_steps=10, total_steps=110, min_lr=0.1)
    assert schedule(10) == 1.0
    assert schedule(60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert schedule(110) == pytest.approx(0.1) and schedule(500) == pytest.approx(0.1)


def _torch_lrs(make_scheduler, steps, lr=1.0):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = make_scheduler(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return lrs


# torch's CosineAnnealingLR keeps oscillating after T_max; ravine's cosine_decay stays at min_lr, so the
# comparison covers steps 0..T_max.
@pytest.mark.parametrize(
    ("schedule", "make_torch"),
    [
        (S.step_decay(1.0, step_size=7, gamma=0.5), lambda o: torch.optim.lr_scheduler.StepLR(o, 7, 0.5)),
        (S.exponential(1.0, gamma=0.95), lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.95)),
        (S.cosine_decay(1.0, 59, min_lr=0.1),
         lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=59, eta_min=0.1)),
        (S.cosine_restarts(1.0, period=10, period_mult=2, min_lr=0.05),
         lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=10, T_mult=2, eta_min=0.05)),
        (S.polynomial(1.0, total_steps=30, power=2.0),
         lambda o: torch.optim.lr_scheduler.PolynomialLR(o, total_iters=30, power=2.0)),
    ],
    ids=["step", "exponential", "cosine", "restarts", "polynomial"],
)
def test_schedules_equal_torch_schedulers(schedule, make_torch):
    expected = _torch_lrs(make_torch, 60)
    assert [schedule(s) for s in range(60)] == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_inverse_time_and_its_staircase():
    smooth, stairs = S.inverse_time(0.1, rate=0.5), S.inverse_time(0.1, rate=0.5, interval=10)
    assert [smooth(e) for e in (0, 1, 4)] == pytest.approx([0.1, 0.1 / 1.5, 0.1 / 3])
    assert [stairs(e) for e in (0, 9, 10, 25)] == pytest.approx([0.1, 0.1, 0.1 / 1.5, 0.1 / 2])


def test_linear_warmup_constant_and_join():
    schedule = S.join([S.linear_warmup(1.0, 4), S.constant(0.5), S.exponential(0.5, 0.5)], boundaries=[4, 6])
    assert [schedule(s) for s in range(9)] == pytest.approx([0, 0.25, 0.5, 0.75, 0.5, 0.5, 0.5, 0.25, 0.125])
    assert "join" in repr(schedule)


BAD = [
    (lambda: S.warmup_cosine_decay(1.0, -1, 10), "Invalid warmup_steps: -1"),
    (lambda: S.warmup_cosine_decay(1.0, 20, 10), "Invalid warmup_steps: 20 (warmup_steps must be <= total_steps"),
    (lambda: S.cosine_decay(1.0, 10, min_lr=2.0), "Invalid min_lr: 2.0 (min_lr must be <= lr=1.0)"),
    (lambda: S.cosine_decay(1.0, 0), "Invalid total_steps: 0"),
    (lambda: S.cosine_restarts(1.0, period=0), "Invalid period: 0 (period must be > 0)"),
    (lambda: S.cosine_restarts(1.0, period=5, period_mult=0.5), "Invalid period_mult: 0.5"),
    (lambda: S.step_decay(1.0, step_size=-3), "Invalid step_size: -3"),
    (lambda: S.inverse_time(1.0, rate=0.1, interval=0), "Invalid interval: 0"),
    (lambda: S.constant(-1.0), "Invalid lr: -1.0"),
    (lambda: S.constant(1.0)(-1), "Invalid step: -1"),
    (lambda: S.join([S.constant(1.0)], boundaries=[3]), "Invalid boundaries: [3]"),
]


@pytest.mark.parametrize(("make", "message"), BAD)
def test_bad_schedule_arguments_raise_value_error(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


def test_adapter_keeps_each_groups_base_lr_and_updates_tensor_lr_in_place():
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    tensor_lr = torch.tensor(0.5)
    opt = ravine.AdamW([{"params": [a]}, {"params": [b], "lr": tensor_lr}], lr=1.0)
    scheduler = S.warmup_cosine(opt, warmup_steps=2, total_steps=10, min_lr=0.01)
    lrs = []
    for _ in range(10):
        lrs.append(scheduler.get_last_lr())
        opt.step()
        scheduler.step()
    assert opt.param_groups[1]["lr"] is tensor_lr  # filled in place, never re-bound
    expected_a = S.warmup_cosine_decay(1.0, 2, 10, 0.01)
    expected_b = S.warmup_cosine_decay(0.5, 2, 10, 0.01)
    assert [lr[0] for lr in lrs] == pytest.approx([expected_a(s) for s in range(10)])
    assert [float(lr[1]) for lr in lrs] == pytest.approx([expected_b(s) for s in range(10)])


def test_adapter_state_dict_round_trip(tmp_path):
    params = [torch.zeros(2, requires_grad=True)]
    opt = torch.optim.SGD(params, lr=0.1)
    scheduler = S.ScheduleLR(opt, S.step_decay, step_size=3, gamma=0.5)
    for _ in range(5):
        opt.step()
        scheduler.step()
    torch.save(scheduler.state_dict(), tmp_path / "sched.pt")
    opt2 = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1)
    resumed = S.ScheduleLR(opt2, S.step_decay, step_size=3, gamma=0.5)
    resumed.load_state_dict(torch.load(tmp_path / "sched.pt", weights_only=True))
    for _ in range(4):
        opt.step()
        scheduler.step()
        opt2.step()
        resumed.step()
        assert resumed.get_last_lr() == scheduler.get_last_lr()


def test_schedule_plot_command_writes_a_png(tmp_path, capsys):
    out = tmp_path / "plots" / "wc.png"
    code = main(["schedule", "plot", "warmup_cosine", "--steps", "50", "lr=0.1", "warmup_steps=5",
                 "total_steps=50", "-o", str(out)])
    assert code == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "warmup_cosine_decay(lr=0.1" in capsys.readouterr().out
    assert main(["schedule", "plot", "cosine_decay", "total_steps=10", "min_lr=5", "-o", str(out)]) == 2
    assert "Invalid min_lr: 5" in capsys.readouterr().err
