"""Stage configs: key resolution, parity between spellings, every validation error, loader, shipped configs."""
import logging
from pathlib import Path

import pytest

from neox_cpt.schedules import (SCHEDULE_KEYS, infinite, load_stage_config, plan_from_configs,
                                read_schedule_config, schedule_from_config, warmup_cosine)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "configs" / "schedules").glob("*.yml"))


def cfg(**kw):
    base = {"cpt_lr_max": 3e-4, "cpt_stage_iters": 10_000}
    base.update(kw)
    return base


def test_cosine_defaults_are_the_papers():
    s = schedule_from_config(cfg())
    assert s == warmup_cosine(10_000, 3e-4, 3e-5, warmup_steps=100)  # default recipe cosine, 1 % warmup, 0.1x


def test_neox_fallbacks():
    neox = {"optimizer": {"type": "Adam", "params": {"lr": 1.2e-4}}, "train_iters": 5000}
    s = schedule_from_config(neox)
    assert s.num_steps == 5000 and s.phases[0].lr_end == 1.2e-4 and s.final_lr == 1.2e-5
    assert schedule_from_config({"lr": 1e-3, "train_iters": 100}).phases[0].lr_end == 1e-3
    # plugin keys win over NeoX keys
    s = schedule_from_config({**neox, "cpt_lr_max": 3e-4, "cpt_stage_iters": 200})
    assert s.num_steps == 200 and s.phases[0].lr_end == 3e-4


def test_paper_vectors_through_config_end_point_spelling():
    s = schedule_from_config(cfg(cpt_lr_schedule="infinite", cpt_lr_const=1.65e-4, cpt_lr_min=3e-5,
                                 cpt_warmup_frac=0.01, cpt_cooldown_end_frac=0.6, cpt_anneal_start_frac=0.85))
    assert s == infinite(10_000, 3e-4, 3e-5, 1.65e-4, 100, 6000, 8500)


INFINITE = dict(cpt_lr_schedule="infinite", cpt_lr_min=3e-5)
SPELLINGS = [  # all describe T_w = 100, T_cd = 6000, T_ann = 8500 on a 10,000-step stage
    dict(cpt_warmup_frac=0.01, cpt_cooldown_end_frac=0.6, cpt_anneal_start_frac=0.85),
    dict(cpt_warmup_iters=100, cpt_cooldown_end_iter=6000, cpt_anneal_start_iter=8500),
    dict(cpt_warmup_iters=100, cpt_cooldown_iters=5900, cpt_anneal_iters=1500),
    dict(cpt_warmup_frac=0.01, cpt_cooldown_frac=0.59, cpt_anneal_frac=0.15),
    dict(cpt_warmup_frac=0.01, cpt_cooldown_frac=0.59, cpt_anneal_start_iter=8500, cpt_anneal_iters=1500),
]


@pytest.mark.parametrize("shape", ["cosine", "inv_sqrt"])
@pytest.mark.parametrize("spelling", SPELLINGS, ids=lambda d: "+".join(sorted(d)))
def test_end_point_and_duration_spellings_agree(spelling, shape):
    s = schedule_from_config(cfg(**INFINITE, cpt_cooldown_shape=shape, **spelling))
    assert s == infinite(10_000, 3e-4, 3e-5, None, 100, 6000, 8500, cooldown_shape=shape)


def test_default_cooldown_end_is_60_percent():
    s = schedule_from_config(cfg(**INFINITE))
    assert s.boundaries == (0, 100, 6000, 10_000)


def test_steps_vs_tokens_parity_and_rounding():
    tok = {"train_batch_size": 4, "seq_length": 8}  # 32 tokens/step
    by_steps = schedule_from_config(cfg(**tok))
    by_tokens = schedule_from_config({**cfg(**tok), "cpt_stage_iters": None, "cpt_stage_tokens": 320_000})
    assert by_tokens == by_steps
    # not a whole number of steps: rounded up so at least the requested tokens are trained
    assert read_schedule_config({**cfg(**tok), "cpt_stage_iters": None, "cpt_stage_tokens": 33}).stage_steps == 2
    assert read_schedule_config(cfg(**tok)).tokens_per_step == 32


def test_fraction_rounding_rule():
    # 1 % of 44,122 = 441.22 -> 441; 60 % of 44,123 = 26,473.8 -> 26,474; a positive fraction gives >= 1 step
    assert read_schedule_config(cfg(cpt_stage_iters=44_122)).warmup_steps == 441
    c = read_schedule_config(cfg(**INFINITE, cpt_stage_iters=44_123))
    assert c.cooldown_end_step == 26_474
    assert read_schedule_config(cfg(cpt_stage_iters=10)).warmup_steps == 1
    assert read_schedule_config(cfg(cpt_warmup_frac=0.0)).warmup_steps == 0


def test_other_recipes_from_config():
    assert schedule_from_config(cfg(cpt_lr_schedule="constant")).lrs([0, 5000, 10_000]) == [3e-5] * 3
    assert schedule_from_config(cfg(cpt_lr_schedule="constant", cpt_lr_const=1e-4)).final_lr == 1e-4
    s = schedule_from_config(cfg(cpt_lr_schedule="rewarm_constant", cpt_warmup_iters=10))
    assert s.lrs([0, 5, 10, 10_000]) == [0.0, 1.5e-4, 3e-4, 3e-4]
    s = schedule_from_config(cfg(cpt_lr_schedule="wsd", cpt_decay_iters=1000, cpt_decay_shape="cosine"))
    assert s.boundaries == (0, 100, 9000, 10_000) and s.phases[-1].shape == "cosine"
    assert schedule_from_config(cfg(cpt_lr_schedule="wsd", cpt_decay_frac=0.1)).boundaries == (0, 100, 9000, 10_000)
    later = schedule_from_config(cfg(**INFINITE, cpt_infinite_first_stage=False, cpt_anneal_iters=1000))
    assert [p.name for p in later.phases] == ["constant", "anneal"] and later.boundaries == (0, 9000, 10_000)


def test_ignores_other_owners_keys():
    other = {"cpt_replay_frac": 0.05, "cpt_train_data_paths": ["x"], "cpt_stage_name": "d1", "cpt_init_checkpoint": "c",
             "cpt_reset_optimizer": True, "cpt_valid_data_paths": [], "data_path": "p"}
    assert schedule_from_config(cfg(**other)) == schedule_from_config(cfg())


def test_unknown_plugin_key_of_any_family_is_refused():
    # Every cpt_ key is declared once (schedule, stage, data families): an unknown one is a typo.
    with pytest.raises(ValueError, match=r"unknown plugin key cpt_replay_fraction = 0\.25; did you mean 'cpt_replay_frac'"):
        schedule_from_config(cfg(cpt_replay_fraction=0.25))


def test_keys_not_used_by_recipe_are_warned(caplog):
    with caplog.at_level(logging.WARNING, logger="neox_cpt.schedules.config"):
        schedule_from_config(cfg(cpt_lr_schedule="cosine", cpt_cooldown_end_frac=0.6))
    assert "ignores cpt_cooldown_end_frac" in caplog.text


ERRORS = [
    (dict(cpt_warmup_iters=10_000), r"cpt_warmup_iters = 10000 gives 10000 warmup steps, not shorter than the stage"),
    (dict(cpt_warmup_frac=1.0), r"cpt_warmup_frac = 1.0 must be a fraction of the stage in \[0, 1\)"),
    (dict(cpt_warmup_frac=0.01, cpt_warmup_iters=100), "both set the same thing; keep one"),
    (dict(cpt_warmup_iters=-1), "cpt_warmup_iters = -1 must be a whole number of steps >= 0"),
    (dict(cpt_warmup_iters=2.5), "cpt_warmup_iters = 2.5 must be a whole number"),
    (dict(cpt_lr_min=4e-4), r"cpt_lr_min = 0.0004 must be in \[0, cpt_lr_max = 0.0003\]"),
    (dict(cpt_lr_min=-1e-5), "cpt_lr_min = -1e-05 must be in"),
    (dict(cpt_lr_max=0.0), "cpt_lr_max = 0.0 must be > 0"),
    (dict(cpt_lr_max="3e-4"), r"cpt_lr_max = '3e-4' is not a number.*write 1.0e-4"),
    (dict(cpt_stage_iters=0), "cpt_stage_iters = 0 must be a whole number of steps >= 1"),
    (dict(cpt_stage_iters=-5), "cpt_stage_iters = -5 must be"),
    (dict(cpt_stage_iters=None), "the stage length is missing: set cpt_stage_iters"),
    (dict(cpt_stage_iters=None, cpt_stage_tokens=1000), "cpt_stage_tokens = 1000 needs train_batch_size and seq_length"),
    (dict(cpt_stage_tokens=1000), "cpt_stage_iters = 10000 and cpt_stage_tokens = 1000 both set"),
    (dict(cpt_lr_max=None), "the peak LR is missing: set cpt_lr_max"),
    (dict(cpt_lr_schedule="cosin"), r"cpt_lr_schedule = 'cosin' is not a known schedule.*did you mean 'cosine'"),
    (dict(cpt_lr_schedule="infinite", cpt_lr_const=4e-4), r"cpt_lr_const = 0.0004 must be in \[cpt_lr_min"),
    (dict(cpt_lr_schedule="infinite", cpt_lr_const=1e-5), "cpt_lr_const = 1e-05 must be in"),
    (dict(cpt_lr_schedule="infinite", cpt_cooldown_shape="cosinus"),
     r"cpt_cooldown_shape = 'cosinus' is not a known shape.*did you mean 'cosine'"),
    (dict(cpt_lr_schedule="infinite", cpt_cooldown_shape="exp"), "cpt_cooldown_shape = 'exp': choose cosine or inv_sqrt"),
    (dict(cpt_lr_schedule="wsd", cpt_decay_shape="step"), "cpt_decay_shape = 'step' is not a known shape"),
    (dict(cpt_lr_schedule="infinite", cpt_cooldown_end_iter=50), "cpt_cooldown_end_iter = 50 ends the cooldown at "
     "step 50; it must be after the warmup"),
    (dict(cpt_lr_schedule="infinite", cpt_cooldown_end_frac=0.9, cpt_anneal_start_frac=0.85),
     r"cpt_cooldown_end_frac = 0.9 ends the cooldown at step 9000.*at or before the anneal start \(8500\)"),
    (dict(cpt_lr_schedule="infinite", cpt_cooldown_end_frac=0.6, cpt_cooldown_iters=10), "both set the same thing"),
    (dict(cpt_lr_schedule="infinite", cpt_cooldown_iters=0), "cpt_cooldown_iters = 0 must be a whole number of steps >= 1"),
    (dict(cpt_lr_schedule="infinite", cpt_cooldown_frac=1.5), r"cpt_cooldown_frac = 1.5 must be a fraction"),
    (dict(cpt_lr_schedule="infinite", cpt_anneal_start_iter=10_000), "starts the anneal at step 10000, not inside"),
    (dict(cpt_lr_schedule="infinite", cpt_anneal_iters=20_000), "gives 20000 anneal steps, longer than the stage"),
    (dict(cpt_lr_schedule="infinite", cpt_anneal_start_iter=8000, cpt_anneal_iters=1000), "disagree"),
    (dict(cpt_lr_schedule="infinite", cpt_anneal_iters=1000, cpt_lr_min=0.0), "cpt_lr_min = 0.0: an exponential"),
    (dict(cpt_lr_schedule="infinite", cpt_inv_sqrt_alpha=0), "cpt_inv_sqrt_alpha = 0.0 must be > 0"),
    (dict(cpt_lr_schedule="infinite", cpt_infinite_first_stage="no"), "cpt_infinite_first_stage = 'no' must be true"),
    (dict(cpt_lr_schedule="wsd", cpt_decay_iters=9950), "cpt_decay_iters = 9950 gives 9950 decay steps, more than"),
    (dict(cpt_warmup_fraction=0.01), r"unknown schedule key cpt_warmup_fraction = 0.01; did you mean 'cpt_warmup_frac'"),
    (dict(cpt_lr_mn=3e-5), r"unknown schedule key cpt_lr_mn.*did you mean 'cpt_lr_min'"),
    (dict(cpt_anneal_start_iters=5), r"did you mean 'cpt_anneal_start_iter'"),
    (dict(cpt_cooldown_end=0.6), r"did you mean 'cpt_cooldown_end_"),
    (dict(cpt_decay_style="cosine"), r"unknown schedule key cpt_decay_style"),
]


@pytest.mark.parametrize("kw,match", ERRORS, ids=[str(sorted(k)) + str(i) for i, (k, _) in enumerate(ERRORS)])
def test_validation_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        schedule_from_config(cfg(**kw))


def test_every_key_is_documented():
    doc = (REPO / "docs" / "schedules.md").read_text()
    missing = [k for k in SCHEDULE_KEYS if f"`{k}`" not in doc]
    assert not missing


def _write(path, text):
    path.write_text(text)
    return path


def test_load_stage_config_merges_and_normalises(tmp_path):
    a = _write(tmp_path / "a.yml", "{\n  'train-iters': 100,\n  optimizer: {params: {lr: 1.0e-3}},\n}\n")
    b = _write(tmp_path / "b.yml", "cpt_lr_schedule: cosine\ncpt-warmup-iters: 10\n")
    merged = load_stage_config([a, b])
    assert merged == {"train_iters": 100, "optimizer": {"params": {"lr": 1e-3}}, "cpt_lr_schedule": "cosine",
                      "cpt_warmup_iters": 10}
    assert schedule_from_config(merged) == warmup_cosine(100, 1e-3, warmup_steps=10)
    assert load_stage_config(str(a)) == {"train_iters": 100, "optimizer": {"params": {"lr": 1e-3}}}


def test_load_stage_config_errors(tmp_path):
    a = _write(tmp_path / "a.yml", "train_iters: 100\n")
    b = _write(tmp_path / "b.yml", "train-iters: 200\n")
    with pytest.raises(ValueError, match=r"key 'train_iters' is set in both .*a.yml' and .*b.yml'"):
        load_stage_config([a, b])
    with pytest.raises(FileNotFoundError, match="nope.yml"):
        load_stage_config(tmp_path / "nope.yml")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_stage_config(_write(tmp_path / "l.yml", "- 1\n- 2\n"))
    with pytest.raises(ValueError, match="not valid YAML"):
        load_stage_config(_write(tmp_path / "bad.yml", "a: [1,\n"))


def test_plan_from_configs_start_rules():
    d0 = cfg(cpt_stage_name="d0", cpt_stage_iters=1000)
    d1 = cfg(cpt_stage_name="d1", cpt_stage_iters=500)
    plan = plan_from_configs([d0, d1])
    assert plan.boundaries == (0, 1000, 1500) and [s.name for s in plan.stages] == ["d0", "d1"]
    plan = plan_from_configs([d0, {**d1, "cpt_stage_start_iter": 1200}])
    assert plan.boundaries == (0, 1200, 1700)
    with pytest.raises(ValueError, match=r"stage 'd1': cpt_stage_start_iter = 900 is before the previous stage 'd0' "
                                         r"ends at global step 1000"):
        plan_from_configs([d0, {**d1, "cpt_stage_start_iter": 900}])
    with pytest.raises(ValueError, match=r"stage 1 \(d1\): cpt_lr_min = 0.1"):
        plan_from_configs([d0, {**d1, "cpt_lr_min": 0.1}])


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_load_and_validate(path):
    c = load_stage_config(path)
    sc = read_schedule_config(c)
    s = schedule_from_config(c)
    assert s.num_steps == sc.stage_steps and sc.tokens_per_step == 1104 * 2048
    assert s.phases[0].lr_start in (0.0, sc.lr_const, sc.lr_min)
    assert sc.lr_max in (3e-4, 1.2e-4) and sc.lr_min == pytest.approx(0.1 * sc.lr_max, rel=1e-12)


def test_shipped_plans_chain():
    d = REPO / "configs" / "schedules"
    for names in (["405M_pretrain_cosine", "405M_cpt_slimpajama"], ["405M_pretrain_cosine", "405M_cpt_german"],
                  ["10B_pretrain_cosine", "10B_cpt_slimpajama"],
                  ["405M_infinite_stage1_cosine", "405M_infinite_stage2", "405M_infinite_stage3"],
                  ["405M_infinite_stage1_inv_sqrt", "405M_infinite_stage2", "405M_infinite_anneal"]):
        plan = plan_from_configs([load_stage_config(d / f"{n}.yml") for n in names])
        assert plan.start_step == 0 and len(plan.stages) == len(names)
    plan = plan_from_configs([load_stage_config(d / f"{n}.yml") for n in ["405M_pretrain_cosine", "405M_cpt_slimpajama"]])
    assert plan.boundaries == (0, 132_366, 264_732)
    assert plan.lr_at(132_366) == 3e-5 and plan.lr_at(132_366 + 1324) == 3e-4  # re-warmed
    inf = plan_from_configs([load_stage_config(d / f"{n}.yml") for n in
                             ["405M_infinite_stage1_cosine", "405M_infinite_stage2", "405M_infinite_anneal"]])
    assert inf.lr_at(44_122) == inf.lr_at(88_244) == inf.lr_at(125_748) == 1.65e-4  # no re-warm between stages
    assert inf.lr_at(132_366) == 3e-5


def test_neox_lr_keys_are_warned_as_ignored(caplog):
    with caplog.at_level(logging.WARNING, logger="neox_cpt.schedules.config"):
        s = schedule_from_config(cfg(min_lr=0.0, lr_decay_style="cosine", warmup=0.05))
    assert s.final_lr == 3e-5 and s.boundaries == (0, 100, 10_000)
    assert "NeoX LR keys min_lr=0.0, warmup=0.05, lr_decay_style='cosine' are ignored" in caplog.text
