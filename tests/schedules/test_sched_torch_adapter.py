"""ScheduleLR: step convention, per-group multipliers, resume equivalence, changed-schedule detection."""
import pytest

torch = pytest.importorskip("torch")

from neox_cpt.schedules import Plan, infinite, warmup_cosine  # noqa: E402
from neox_cpt.schedules.torch_adapter import ScheduleLR  # noqa: E402


def make_optimizer():
    p1, p2 = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    return torch.optim.AdamW([{"params": [p1]}, {"params": [p2], "lr_mult": 0.5}], lr=123.0)


def train(opt, sched, n):
    """n updates; returns the LR each update used (read from the param groups at optimizer.step time)."""
    used = []
    for _ in range(n):
        used.append([g["lr"] for g in opt.param_groups])
        for g in opt.param_groups:
            for p in g["params"]:
                p.grad = torch.ones_like(p)
        opt.step()
        sched.step()
    return used


def test_update_s_uses_lr_at_s_and_first_warmup_update_is_positive():
    schedule = warmup_cosine(100, 1e-3, warmup_steps=10)
    opt = make_optimizer()
    sched = ScheduleLR(opt, schedule)
    used = train(opt, sched, 12)
    assert used[0] == [pytest.approx(1e-4), pytest.approx(0.5e-4)]  # lr_at(1) > 0 (NeoX #1373)
    for s, lrs in enumerate(used, start=1):
        assert lrs == [schedule.lr_at(s), schedule.lr_at(s) * 0.5]
    assert sched.position == 12 and sched.get_last_lr() == [schedule.lr_at(13), schedule.lr_at(13) * 0.5]


def test_resume_equivalence():
    schedule = infinite(200, 3e-4, warmup_steps=10, cooldown_end_step=120, anneal_start_step=170,
                        cooldown_shape="inv_sqrt")
    k, n = 37, 163  # crosses cooldown -> constant -> anneal and runs past the end (hold)
    opt_a = make_optimizer()
    sched_a = ScheduleLR(opt_a, schedule)
    reference = train(opt_a, sched_a, k + n)

    opt_b = make_optimizer()
    sched_b = ScheduleLR(opt_b, schedule)
    train(opt_b, sched_b, k)
    state = sched_b.state_dict()
    assert state["position"] == k and state["fingerprint"] == schedule.fingerprint()

    opt_c = make_optimizer()  # rebuilt from scratch, e.g. a new process
    for g in opt_c.param_groups:
        g["lr"] = 99.0  # stale LRs must be overwritten on load
    sched_c = ScheduleLR(opt_c, infinite(200, 3e-4, warmup_steps=10, cooldown_end_step=120, anneal_start_step=170,
                                         cooldown_shape="inv_sqrt"))
    sched_c.load_state_dict(state)
    assert sched_c.position == k
    assert train(opt_c, sched_c, n) == reference[k:]


def test_changed_schedule_is_reported():
    opt = make_optimizer()
    sched = ScheduleLR(opt, warmup_cosine(100, 1e-3, warmup_steps=10))
    train(opt, sched, 5)
    state = sched.state_dict()
    other = ScheduleLR(make_optimizer(), warmup_cosine(120, 1e-3, warmup_steps=10))
    with pytest.raises(ValueError, match=r"fingerprint = '[0-9a-f]{16}' but the configured schedule is "
                                         r"'[0-9a-f]{16}' \(phase 1 \(decay\): length 90 -> 110\)"):
        other.load_state_dict(state)
    assert other.position == 0
    fewer = ScheduleLR(make_optimizer(), warmup_cosine(100, 1e-3))
    with pytest.raises(ValueError, match=r"2 phases \(warmup, decay\) became 1 \(decay\)"):
        fewer.load_state_dict(state)


def test_drives_a_plan_on_the_global_axis():
    plan = Plan.from_schedules([warmup_cosine(10, 1e-3, warmup_steps=2), warmup_cosine(10, 2e-3, warmup_steps=2)])
    opt = make_optimizer()
    sched = ScheduleLR(opt, plan, position=10)
    used = train(opt, sched, 3)
    assert [u[0] for u in used] == [1e-3, 2e-3, plan.lr_at(13)]  # global steps 11, 12, 13
