import math

import pytest
import torch
from torch import nn

from cryopoint.engine.distributed import DistInfo, shard_indices
from cryopoint.engine.ema import ModelEMA
from cryopoint.engine.schedule import WarmupCosine, build_scheduler


def test_schedule_shape():
    f = WarmupCosine(total_steps=100, warmup_steps=10, min_ratio=0.1)
    values = [f(s) for s in range(101)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(values[:9], values[1:10]))  # warmup rises
    assert all(a >= b for a, b in zip(values[10:], values[11:]))  # cosine falls
    assert values[100] == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    assert values[55] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert WarmupCosine(10, 0, 0.0)(0) == 1.0
    with pytest.raises(ValueError):
        WarmupCosine(0, 0, 0.0)


def _adamw_step(opt, sched):
    for group in opt.param_groups:
        for p in group["params"]:
            p.grad = torch.ones_like(p)
    opt.step()
    sched.step()


def test_scheduler_drives_optimizer_and_resumes():
    f = WarmupCosine(20, 5, 0.0)
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = build_scheduler(opt, 20, 5, 0.0)
    for s in range(7):
        assert opt.param_groups[0]["lr"] == pytest.approx(2.0 * f(s)), s  # step s trains with f(s)
        _adamw_step(opt, sched)
    # Resume as the trainer does (fresh optimizer and scheduler, then both states). The fresh scheduler gets other
    # settings on purpose: the state must carry the schedule itself, not only the step count.
    weights = opt.param_groups[0]["params"][0].detach().clone()  # the model state, restored separately
    opt2 = torch.optim.AdamW([nn.Parameter(weights)], lr=2.0)
    sched2 = build_scheduler(opt2, 50, 0, 0.5)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    assert opt2.param_groups[0]["lr"] == pytest.approx(2.0 * f(7))  # the next step trains at the resumed rate
    for s in range(7, 22):
        _adamw_step(opt, sched)
        _adamw_step(opt2, sched2)
        assert opt2.param_groups[0]["lr"] == pytest.approx(2.0 * f(s + 1)) == opt.param_groups[0]["lr"], s
    assert opt2.param_groups[0]["lr"] == 0.0  # past total_steps: the cosine stays at min_ratio
    torch.testing.assert_close(opt2.param_groups[0]["params"][0], opt.param_groups[0]["params"][0])


def test_ema_tracks_weights_and_copies_int_buffers():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = ModelEMA(model, decay=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model[1].num_batches_tracked += 3
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    d = ema.current_decay()
    assert d == pytest.approx(0.1)  # warm-up ramp: (1 + 0) / (10 + 0)
    ema.update(model)
    w = model[0].weight.detach()
    torch.testing.assert_close(ema.state_dict()["0.weight"], d * before["0.weight"] + (1 - d) * w)
    assert int(ema.state_dict()["1.num_batches_tracked"]) == 3
    assert not any(p.requires_grad for p in ema.module.parameters())
    for _ in range(200):
        ema.update(model)
    torch.testing.assert_close(ema.state_dict()["0.weight"], w)  # converges to constant weights
    assert ema.current_decay() == 0.5


def test_ema_zero_decay_is_a_copy_and_resume():
    model = nn.Linear(3, 1)
    ema = ModelEMA(model, decay=0.0)
    with torch.no_grad():
        model.weight.mul_(3)
    ema.update(model)
    torch.testing.assert_close(ema.state_dict()["weight"], model.weight.detach())
    other = ModelEMA(nn.Linear(3, 1), decay=0.0)
    other.load_state_dict(ema.state_dict(), ema.updates)
    assert other.updates == 1
    torch.testing.assert_close(other.state_dict()["weight"], model.weight.detach())
    with pytest.raises(ValueError):
        ModelEMA(model, decay=1.0)


def test_shard_indices_cover_once_and_balance():
    order = list(range(11))
    shards = [shard_indices(order, DistInfo(rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 3 for s in shards)
    flat = sorted(i for s in shards for i in s)
    assert flat == list(range(9))
    assert shard_indices(order, DistInfo()) == order
