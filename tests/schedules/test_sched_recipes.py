"""Recipes: golden tables at every phase boundary and interior, continuity at joins, the PAPER.md vectors."""
import math

import pytest

from neox_cpt.schedules import anneal_branch, constant, infinite, rewarm_constant, warmup_cosine, wsd


def cos_between(hi, lo, x):
    """Independent restatement of the paper's cosine: lo + (hi - lo)/2 (1 + cos(pi x))."""
    return lo + (hi - lo) / 2 * (1 + math.cos(math.pi * x))


def inv_sqrt_between(hi, lo, x, alpha=10.0):
    """Paper: eta_max + (eta_const - eta_max) h(x)/h(1), h(x) = 1/sqrt(1 + alpha x) - 1."""
    h = lambda u: 1 / math.sqrt(1 + alpha * u) - 1  # noqa: E731
    return hi + (lo - hi) * h(x) / h(1)


def check_table(schedule, table, rel=1e-12):
    for pos, expected in table:
        got = schedule.lr_at(pos)
        assert got == pytest.approx(expected, rel=rel, abs=1e-20), f"lr_at({pos}) = {got!r}, expected {expected!r}"


# warmup 100, cosine 1e-3 -> 1e-4 over (100, 1000]
COSINE_TABLE = [
    (0, 0.0), (1, 1e-5), (50, 5e-4), (99, 9.9e-4), (100, 1e-3),
    (101, cos_between(1e-3, 1e-4, 1 / 900)), (325, cos_between(1e-3, 1e-4, 0.25)), (550, 5.5e-4),
    (775, cos_between(1e-3, 1e-4, 0.75)), (999, cos_between(1e-3, 1e-4, 899 / 900)), (1000, 1e-4),
    (1001, 1e-4), (10**7, 1e-4),
]


def test_warmup_cosine_golden():
    s = warmup_cosine(1000, 1e-3, 1e-4, warmup_steps=100)
    check_table(s, COSINE_TABLE)
    assert [p.name for p in s.phases] == ["warmup", "decay"]


def test_warmup_cosine_defaults_paper_min_and_no_warmup():
    s = warmup_cosine(1000, 3e-4)
    assert s.final_lr == 3e-5 and len(s.phases) == 1
    check_table(s, [(0, 3e-4), (500, 1.65e-4), (1000, 3e-5)])


def test_rewarm_uses_own_lr_max():
    # re-warm + re-decay to a different eta_max (paper: 1.5e-4, 3e-4, 6e-4)
    s = warmup_cosine(2000, 6e-4, warmup_steps=20)
    check_table(s, [(0, 0.0), (1, 3e-5), (20, 6e-4), (1010, 3.3e-4), (2000, 6e-5)])


def test_constant_golden():
    check_table(constant(100, 3e-5), [(0, 3e-5), (1, 3e-5), (100, 3e-5), (5000, 3e-5)])


def test_rewarm_constant_golden():
    s = rewarm_constant(1000, 3e-4, warmup_steps=10)
    check_table(s, [(0, 0.0), (1, 3e-5), (5, 1.5e-4), (10, 3e-4), (11, 3e-4), (1000, 3e-4), (2000, 3e-4)])


@pytest.mark.parametrize("shape,at_850,at_820", [
    ("linear", 1e-4 + 9e-4 * 0.75, 1e-4 + 9e-4 * 0.9),
    ("cosine", cos_between(1e-3, 1e-4, 0.25), cos_between(1e-3, 1e-4, 0.1)),
    ("inv_sqrt", inv_sqrt_between(1e-3, 1e-4, 0.25), inv_sqrt_between(1e-3, 1e-4, 0.1)),
])
def test_wsd_golden(shape, at_850, at_820):
    s = wsd(1000, 1e-3, 1e-4, warmup_steps=100, decay_steps=200, decay_shape=shape)
    assert [p.name for p in s.phases] == ["warmup", "stable", "decay"]
    check_table(s, [(0, 0.0), (50, 5e-4), (100, 1e-3), (450, 1e-3), (800, 1e-3), (820, at_820), (850, at_850),
                    (1000, 1e-4), (1500, 1e-4)])


def test_wsd_default_decay_is_last_20_percent():
    s = wsd(1000, 1e-3)
    assert s.boundaries == (0, 800, 1000)


# PAPER.md test vectors: T = 10,000, T_w = 100, T_cd = 6,000, T_ann = 8,500, 3e-4 / 1.65e-4 / 3e-5, alpha 10.
PAPER_T = (50, 100, 690, 1000, 3050, 5000, 6000, 7000, 8500, 9250, 10000)
PAPER_TABLE = {  # as printed in PAPER.md (6000...8500 is one cell)
    "cosine": ["1.5e-4", "3.0e-4", "2.9670e-4", "2.9240e-4", "2.3250e-4", "1.7435e-4", "1.65e-4", "1.65e-4",
               "1.65e-4", "7.0356e-5", "3.0e-5"],
    "inv_sqrt": ["1.5e-4", "3.0e-4", "2.4339e-4", "2.2835e-4", "1.8563e-4", "1.7009e-4", "1.65e-4", "1.65e-4",
                 "1.65e-4", "7.0356e-5", "3.0e-5"],
}


def paper_formula(shape, t):
    """The PAPER.md formulas written out independently of the library."""
    lr_max, lr_const, lr_min, t_w, t_cd, t_ann, t_end = 3e-4, 1.65e-4, 3e-5, 100, 6000, 8500, 10000
    if t <= t_w:
        return lr_max * t / t_w
    if t <= t_cd:
        x = (t - t_w) / (t_cd - t_w)
        return cos_between(lr_max, lr_const, x) if shape == "cosine" else inv_sqrt_between(lr_max, lr_const, x)
    if t <= t_ann:
        return lr_const
    return lr_const * (lr_min / lr_const) ** ((t - t_ann) / (t_end - t_ann))


@pytest.mark.parametrize("shape", ["cosine", "inv_sqrt"])
def test_paper_vectors(shape):
    s = infinite(10_000, 3e-4, lr_min=3e-5, lr_const=1.65e-4, warmup_steps=100, cooldown_end_step=6000,
                 anneal_start_step=8500, cooldown_shape=shape, alpha=10)
    for t, printed in zip(PAPER_T, PAPER_TABLE[shape]):
        got = s.lr_at(t)
        assert abs(got - paper_formula(shape, t)) <= 1e-9 * paper_formula(shape, t), t
        digits = len(printed.split("e")[0].replace(".", "")) - 1
        assert f"{got:.{digits}e}" == f"{float(printed):.{digits}e}", (t, got, printed)
    assert [p.name for p in s.phases] == ["warmup", "cooldown", "constant", "anneal"]
    assert s.lr_at(20_000) == 3e-5  # holds


def test_infinite_defaults_and_later_stage():
    s = infinite(1000, 3e-4, warmup_steps=10, cooldown_end_step=600)
    check_table(s, [(600, 1.65e-4), (1000, 1.65e-4), (3000, 1.65e-4)])  # const = (max + min)/2, no anneal
    later = infinite(1000, 3e-4, first_stage=False)
    assert [p.name for p in later.phases] == ["constant"]
    check_table(later, [(0, 1.65e-4), (1, 1.65e-4), (1000, 1.65e-4)])
    annealed = infinite(1000, 3e-4, first_stage=False, anneal_start_step=800)
    check_table(annealed, [(800, 1.65e-4), (900, math.sqrt(1.65e-4 * 3e-5)), (1000, 3e-5)])
    whole = infinite(100, 3e-4, first_stage=False, anneal_start_step=0)
    assert [p.name for p in whole.phases] == ["anneal"]


@pytest.mark.parametrize("kwargs,match", [
    (dict(lr_const=4e-4), r"lr_const = 0.0004 must be in \[lr_min"),
    (dict(lr_const=1e-5), "lr_const"),
    (dict(cooldown_end_step=None), "cooldown_end_step is required"),
    (dict(cooldown_end_step=50), r"cooldown_end_step = 50 must be in \(warmup_steps = 100"),
    (dict(anneal_start_step=5000), "cooldown_end_step = 6000 must be in"),
    (dict(cooldown_shape="exp"), "choose cosine or inv_sqrt"),
    (dict(lr_min=4e-4), r"lr_min = 0.0004 must be in \[0, lr_max"),
    (dict(warmup_steps=10_000), "warmup_steps = 10000 must be in"),
])
def test_infinite_recipe_errors(kwargs, match):
    base = dict(num_steps=10_000, lr_max=3e-4, warmup_steps=100, cooldown_end_step=6000)
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        infinite(**base)


ALL_RECIPES = [
    warmup_cosine(1000, 1e-3, warmup_steps=100),
    rewarm_constant(1000, 1e-3, warmup_steps=100),
    infinite(1000, 1e-3, warmup_steps=10, cooldown_end_step=600, anneal_start_step=850),
    infinite(1000, 1e-3, warmup_steps=10, cooldown_end_step=600, anneal_start_step=850, cooldown_shape="inv_sqrt"),
    wsd(1000, 1e-3, warmup_steps=100, decay_shape="cosine"),
    wsd(1000, 1e-3, warmup_steps=100, decay_shape="inv_sqrt"),
]


@pytest.mark.parametrize("schedule", ALL_RECIPES, ids=lambda s: s.recipe + "-" + "-".join(p.shape for p in s.phases))
def test_continuity_at_joins(schedule):
    for i, join in enumerate(schedule.boundaries[1:-1]):
        left, right = schedule.phases[i], schedule.phases[i + 1]
        assert left.lr_end == right.lr_start
        assert schedule.lr_at(join) == left.lr_end
        assert abs(schedule.lr_at(join + 1e-6) - schedule.lr_at(join)) < 1e-9
        assert abs(schedule.lr_at(join - 1e-6) - schedule.lr_at(join)) < 1e-9


def test_anneal_branch_keeps_main_line():
    main = infinite(10_000, 3e-4, lr_min=3e-5, warmup_steps=100, cooldown_end_step=6000)
    branch = anneal_branch(main, 7000, 500, 3e-5)
    assert [p.name for p in branch.phases] == ["warmup", "cooldown", "constant", "anneal"]
    assert branch.num_steps == 7500
    for t in (0, 50, 100, 3050, 6000, 6999, 7000):
        assert branch.lr_at(t) == main.lr_at(t)
    check_table(branch, [(7250, math.sqrt(1.65e-4 * 3e-5)), (7500, 3e-5), (9000, 3e-5)])
    assert main.lr_at(9000) == 1.65e-4  # the main line continues at lr_const
    after_end = anneal_branch(main, 12_000, 100, 3e-5)  # after the end: the held value, then anneal
    check_table(after_end, [(11_000, 1.65e-4), (12_000, 1.65e-4), (12_100, 3e-5)])
    at_join = anneal_branch(main, 6000, 100, 3e-5)
    assert [p.name for p in at_join.phases] == ["warmup", "cooldown", "anneal"]


def test_anneal_branch_errors():
    main = infinite(10_000, 3e-4, warmup_steps=100, cooldown_end_step=6000)
    with pytest.raises(ValueError, match=r"falls inside the cosine phase 'cooldown'.*constant phase"):
        anneal_branch(main, 3000, 100, 3e-5)
    with pytest.raises(ValueError, match="num_steps = 0 must be > 0"):
        anneal_branch(main, 7000, 0, 3e-5)
    with pytest.raises(ValueError, match="lr_min = 0.0 must be in"):
        anneal_branch(main, 7000, 100, 0.0)
