"""Shapes, Phase, StageSchedule and Plan: formulas, boundary conventions, hold-after-end, fingerprints."""
import math
import sys

import pytest

from neox_cpt.schedules import SHAPES, Phase, Plan, StageSchedule, constant, warmup_cosine
from neox_cpt.schedules.shapes import get_shape, shape_value


@pytest.mark.parametrize("name,x,start,end,expected", [
    ("linear", 0.25, 0.0, 4.0, 1.0),
    ("linear", 0.5, 2.0, 1.0, 1.5),
    ("cosine", 0.5, 3.0, 1.0, 2.0),
    ("cosine", 0.25, 3.0, 1.0, 1.0 + 2.0 * 0.5 * (1 + math.cos(math.pi / 4))),
    ("constant", 0.7, 2.0, 2.0, 2.0),
    ("exp", 0.5, 4.0, 1.0, 2.0),
    ("exp", 0.25, 16.0, 1.0, 8.0),
    # h(x) = 1/sqrt(1 + 10x) - 1: h(0.3) = 1/2 - 1, h(1) = 1/sqrt(11) - 1
    ("inv_sqrt", 0.3, 3.0, 1.0, 3.0 - 2.0 * (-0.5) / (1 / math.sqrt(11) - 1)),
])
def test_shape_interior_values(name, x, start, end, expected):
    assert shape_value(name, x, start, end) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_shapes_exact_at_both_ends(name):
    start, end = (2.0, 2.0) if name == "constant" else (3e-4, 3e-5)
    assert shape_value(name, 0.0, start, end) == start
    assert shape_value(name, 1.0, start, end) == end


def test_inv_sqrt_alpha_parameter_changes_curve():
    a = shape_value("inv_sqrt", 0.1, 1.0, 0.0, {"alpha": 10})
    b = shape_value("inv_sqrt", 0.1, 1.0, 0.0, {"alpha": 100})
    assert b < a < 1 - 0.1  # larger alpha drops faster; both faster than linear


def test_unknown_shape_suggests():
    with pytest.raises(ValueError, match=r"cosin.*not a known shape.*did you mean 'cosine'"):
        get_shape("cosin")
    with pytest.raises(ValueError, match="not a known shape"):
        Phase("sawtooth", 10, 0.0, 1.0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(shape="linear", length=0, lr_start=0.0, lr_end=1.0), "length = 0 must be positive"),
    (dict(shape="linear", length=-5, lr_start=0.0, lr_end=1.0), "length = -5 must be positive"),
    (dict(shape="linear", length=float("inf"), lr_start=0.0, lr_end=1.0), "finite"),
    (dict(shape="linear", length=10, lr_start=-1.0, lr_end=1.0), "lr_start = -1.0"),
    (dict(shape="constant", length=10, lr_start=1.0, lr_end=2.0), "lr_start == lr_end"),
    (dict(shape="exp", length=10, lr_start=1.0, lr_end=0.0), "positive start and end"),
    (dict(shape="inv_sqrt", length=10, lr_start=1.0, lr_end=0.5, params={"alpha": 0}), "alpha > 0"),
    (dict(shape="cosine", length=10, lr_start=1.0, lr_end=0.5, params={"alpha": 1}), "unknown shape parameter"),
])
def test_phase_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Phase(**kwargs)


def test_phase_fills_default_params_and_keeps_int_lengths():
    p = Phase("inv_sqrt", 100.0, 1.0, 0.5)
    assert p.params == (("alpha", 10.0),)
    assert p.length == 100 and isinstance(p.length, int)
    assert Phase("linear", 2.5, 0.0, 1.0).length == 2.5


def _two_phase():
    return StageSchedule((Phase("linear", 10, 0.0, 1.0, name="warmup"), Phase("linear", 30, 1.0, 0.4, name="decay")))


def test_boundary_convention_and_hold_after_end():
    s = _two_phase()
    assert s.num_steps == 40 and s.boundaries == (0, 10, 40)
    assert s.lr_at(0) == 0.0  # first phase's start value
    assert s.phase_index(10) == 0 and s.lr_at(10) == 1.0  # a join belongs to the earlier phase
    assert s.phase_index(10.5) == 1
    assert s.lr_at(25) == pytest.approx(0.7)
    assert s.lr_at(40) == 0.4
    for pos in (40.5, 41, 1000, 10**9):  # holds, no rebound
        assert s.lr_at(pos) == 0.4
    assert s.final_lr == 0.4
    assert s.lrs([0, 5, 10]) == [0.0, 0.5, 1.0]


@pytest.mark.parametrize("pos", [-1, -0.5, float("nan"), "3", True])
def test_bad_positions(pos):
    with pytest.raises(ValueError, match="position"):
        _two_phase().lr_at(pos)


def test_empty_schedule_rejected():
    with pytest.raises(ValueError, match="at least one phase"):
        StageSchedule(())


def test_fingerprint_stable_and_sensitive():
    a, b = _two_phase(), _two_phase()
    assert a.fingerprint() == b.fingerprint() and len(a.fingerprint()) == 16
    # cosmetic names do not matter; int vs float lengths do not matter
    renamed = StageSchedule((Phase("linear", 10.0, 0.0, 1.0), Phase("linear", 30, 1.0, 0.4, name="x")))
    assert renamed.fingerprint() == a.fingerprint()
    changed = StageSchedule((Phase("linear", 10, 0.0, 1.0), Phase("linear", 31, 1.0, 0.4)))
    assert changed.fingerprint() != a.fingerprint()
    assert warmup_cosine(100, 1e-3, warmup_steps=10).fingerprint() != warmup_cosine(100, 1e-3).fingerprint()


def test_to_dict_round_trip():
    s = warmup_cosine(100, 1e-3, warmup_steps=10)
    d = s.to_dict()
    assert d["num_steps"] == 100 and d["recipe"] == "cosine" and len(d["phases"]) == 2
    again = StageSchedule.from_dict(d)
    assert again == s and again.fingerprint() == s.fingerprint()
    d["fingerprint"] = "0" * 16
    with pytest.raises(ValueError, match="does not match"):
        StageSchedule.from_dict(d)


def test_phase_table_rows():
    rows = warmup_cosine(100, 1e-3, 1e-4, warmup_steps=10).phase_table()
    assert [(r["phase"], r["shape"], r["start_step"], r["end_step"], r["lr_start"], r["lr_end"]) for r in rows] == [
        ("warmup", "linear", 0, 10, 0.0, 1e-3), ("decay", "cosine", 10, 100, 1e-3, 1e-4)]


def test_plan_global_axis_convention():
    a = warmup_cosine(100, 1e-3, 1e-4, warmup_steps=10)
    b = warmup_cosine(50, 2e-3, 2e-4, warmup_steps=5)
    plan = Plan.from_schedules([a, b], names=["d0", "d1"], tokens_per_step=8)
    assert plan.boundaries == (0, 100, 150)
    assert plan.stage_at(0) == 0 and plan.stage_at(100) == 0 and plan.stage_at(100.5) == 1
    assert plan.lr_at(100) == 1e-4  # last update of d0
    assert plan.lr_at(101) == pytest.approx(2e-3 / 5)  # first update of d1: re-warm, > 0
    assert plan.lr_at(105) == 2e-3
    assert plan.lr_at(150) == 2e-4 and plan.lr_at(10**6) == 2e-4
    assert plan.tokens_per_step == 8 and plan.tokens_at(150) == 1200
    with pytest.raises(ValueError, match="before the plan starts"):
        Plan.from_schedules([a], start_steps=[10]).lr_at(5)


def test_plan_gap_holds_previous_and_overlap_rejected():
    a, b = constant(100, 1e-4), constant(50, 2e-4)
    plan = Plan.from_schedules([a, b], start_steps=[None, 120])
    assert plan.boundaries == (0, 120, 170)
    assert plan.lr_at(110) == 1e-4 and plan.lr_at(120) == 1e-4 and plan.lr_at(121) == 2e-4
    with pytest.raises(ValueError, match=r"stage 'stage1': cpt_stage_start_iter = 90 is before the previous stage "
                                         r"'stage0' ends at global step 100"):
        Plan.from_schedules([a, b], start_steps=[None, 90])


def test_tokens_before_first_stage_and_unknown():
    plan = Plan.from_schedules([constant(10, 1.0)], start_steps=[100], tokens_per_step=4)
    assert plan.tokens_at(100) == 400 and plan.tokens_at(105) == 420
    assert Plan.from_schedules([constant(10, 1.0)]).tokens_at(5) is None


def test_core_does_not_import_torch():
    import subprocess
    code = "import sys, neox_cpt.schedules, neox_cpt.commands.schedule; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
