"""StageLR: the NeoX/DeepSpeed-facing scheduler over the schedules core (no torch, no DeepSpeed needed)."""
from types import SimpleNamespace

import pytest

from neox_cpt.neox.scheduler import ANNEALING_KEYS, StageLR
from neox_cpt.schedules.recipes import constant, infinite, warmup_cosine

STOCK_STATE = {"start_lr": 3e-4, "warmup_iter": 1323.66, "num_iters": 132366, "decay_style": "cosine",
               "end_iter": 132366, "min_lr": 3e-5}  # AnnealingLR.state_dict (learning_rates.py:121-130)


def opt(*width_mults):
    groups = [{"lr": 0.0}] + [{"lr": 0.0, "width_mult": w} for w in width_mults]
    return SimpleNamespace(param_groups=groups)


def test_golden_lrs_with_warmup_first_update_nonzero():
    o = opt()
    s = StageLR(o, warmup_cosine(100, 1e-3, 1e-4, 10), stage_start=1000)
    seen = [o.param_groups[0]["lr"]]
    for _ in range(100):
        s.step()
        seen.append(o.param_groups[0]["lr"])
    # update k (k = 1..100) uses lr_at(k): 1e-4 first (NeoX #1373 gave 0 or lr/T_w only by a max(1, .) hack)
    assert seen[0] == pytest.approx(1e-4) and seen[9] == pytest.approx(1e-3)
    assert seen[54] == pytest.approx(1e-4 + 0.9e-3 * 0.5)  # lr_at(55): halfway through the cosine
    assert seen[99] == pytest.approx(1e-4) and seen[100] == pytest.approx(1e-4)  # holds after the end
    assert s.iteration == 1100 and s.position == 100


def test_step_with_absolute_iteration_and_never_type_error():
    o = opt()
    s = StageLR(o, constant(10, 2e-4), stage_start=50)
    s.step(55)
    assert s.position == 5
    s.schedule = SimpleNamespace(lr_at=lambda pos: None + 1, fingerprint=lambda: "x")
    with pytest.raises(RuntimeError, match="StageLR.step failed"):
        s.step()  # a TypeError would make DeepSpeed retry step(train_batch_size)
    assert not callable(s)  # DeepSpeed treats a callable scheduler as a factory


def test_reads_optimizer_each_step_and_mup():
    s = StageLR(opt(), constant(10, 2e-4), use_mup=True)
    repointed = opt(2.0, 4.0)
    s.optimizer = repointed  # NeoX does this after loading (training.py:1259)
    s.step()
    assert [g["lr"] for g in repointed.param_groups] == pytest.approx([2e-4, 1e-4, 5e-5])
    s.use_mup = False
    s.step()
    assert [g["lr"] for g in repointed.param_groups] == pytest.approx([2e-4] * 3)


def test_state_roundtrip_and_lr_reapplied():
    schedule = warmup_cosine(100, 1e-3, 1e-4, 10)
    a = StageLR(opt(), schedule, stage_start=500, stage_name="d1")
    for _ in range(37):
        a.step()
    state = a.state_dict()
    assert state["num_iters"] == 537 and state["position"] == 37 and state["stage_start"] == 500
    o = opt()
    b = StageLR(o, schedule, stage_name="d1")
    o.param_groups[0]["lr"] = 123.0  # whatever the optimizer state held
    b.load_state_dict(state)
    assert (b.stage_start, b.position) == (500, 37)
    assert o.param_groups[0]["lr"] == schedule.lr_at(38)


def test_changed_schedule_on_resume_is_refused():
    a = StageLR(opt(), warmup_cosine(100, 1e-3, 1e-4, 10), stage_name="d1")
    b = StageLR(opt(), warmup_cosine(100, 6e-4, 1e-4, 10), stage_name="d1")
    with pytest.raises(ValueError, match="cpt_\\* schedule keys.*lr_end|lr_start"):
        b.load_state_dict(a.state_dict())


def test_loads_stock_annealing_state():
    assert set(STOCK_STATE) == set(ANNEALING_KEYS)
    o = opt()
    in_stage = StageLR(o, warmup_cosine(100, 1e-3, 1e-4, 10), stage_name="d1")
    in_stage.load_state_dict(dict(STOCK_STATE))
    assert in_stage.loaded_from["num_iters"] == 132366 and in_stage.position == 0  # stage clock untouched
    assert o.param_groups[0]["lr"] == pytest.approx(1e-4)
    # without a stage the plugin schedule simply continues at the checkpoint's iteration
    plain = StageLR(opt(), constant(200000, 2e-4))
    plain.load_state_dict(dict(STOCK_STATE, wsd_extra_key=1))  # tolerate PR #1375's extra key
    assert plain.iteration == 132366


def test_previous_stage_state_is_noted_not_restored():
    d1 = StageLR(opt(), infinite(1000, 3e-4, 3e-5, warmup_steps=10, cooldown_end_step=600), stage_name="s1")
    d1.begin_stage(0)
    for _ in range(1000):
        d1.step()
    s2 = StageLR(opt(), infinite(500, 3e-4, 3e-5, first_stage=False), stage_name="s2")
    s2.load_state_dict(d1.state_dict())
    assert s2.position == 0 and s2.loaded_from["stage_name"] == "s1"
    with pytest.raises(ValueError, match="neither neox-cpt's nor NeoX AnnealingLR's"):
        s2.load_state_dict({"foo": 1})
