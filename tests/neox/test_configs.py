"""Every shipped configs/*.yml: plugin keys valid, paper values, schedule as the paper describes it."""
import glob
import os

import pytest
import yaml

from neox_cpt.neox import integration, keys
from neox_cpt.neox.graft import validate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.yml")))


def load(name):
    with open(os.path.join(ROOT, "configs", name)) as f:
        return {k.replace("-", "_"): v for k, v in yaml.safe_load(f).items()}


def test_configs_exist():
    names = {os.path.basename(p) for p in CONFIGS}
    assert {"405M_d0_pile.yml", "10B_cpt.yml", "405M_d1_german.yml", "405M_inf_s1_pile.yml",
            "405M_inf_s2_slimpajama.yml", "405M_inf_s3_german.yml", "405M_inf_anneal.yml",
            "405M_d1_seen_replay_from_neox.yml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_validates_and_uses_known_keys(path):
    cfg = load(os.path.basename(path))
    known = {r.name for r in keys.graft_fields()}
    assert {k for k in cfg if k.startswith("cpt_")} <= known
    validate(cfg)
    assert cfg["train_batch_size"] == 1104 and cfg["seq_length"] == 2048
    if integration.uses_stage(cfg):
        assert "load" not in cfg and cfg["save"] != cfg["cpt_init_checkpoint"]
        assert integration.stage_iters(cfg) == cfg["cpt_stage_iters"]


def test_10B_cpt_paper_values():
    cfg = load("10B_cpt.yml")
    assert (cfg["model_parallel_size"], cfg["pipe_parallel_size"]) == (6, 4)
    assert (cfg["num_layers"], cfg["hidden_size"], cfg["num_attention_heads"]) == (36, 4608, 36)
    assert cfg["cpt_replay_frac"] == 0.05 and cfg["cpt_stage_iters"] == 132366
    s = integration.schedule_for(cfg)
    assert s.lr_at(1) == pytest.approx(1.2e-4 / 1324)  # re-warm from 0: first update non-zero
    assert s.lr_at(1324) == pytest.approx(1.2e-4) and s.lr_at(132366) == pytest.approx(1.2e-5)


def test_german_stage_and_infinite_line():
    de = load("405M_d1_german.yml")
    assert de["cpt_replay_frac"] == 0.25 and de["cpt_stage_iters"] == 88457
    s1, s2, s3, ann = (integration.schedule_for(load(n)) for n in (
        "405M_inf_s1_pile.yml", "405M_inf_s2_slimpajama.yml", "405M_inf_s3_german.yml", "405M_inf_anneal.yml"))
    assert s1.lr_at(1324) == pytest.approx(3e-4)
    assert s1.lr_at(132366) == s2.lr_at(1) == s3.lr_at(88457) == ann.lr_at(0) == pytest.approx(1.65e-4)
    assert ann.lr_at(8846) == pytest.approx(3e-5)
    # the stages chain by checkpoint directory
    assert load("405M_inf_s2_slimpajama.yml")["cpt_init_checkpoint"] == load("405M_inf_s1_pile.yml")["save"]
    assert load("405M_inf_s3_german.yml")["cpt_init_checkpoint"] == load("405M_inf_s2_slimpajama.yml")["save"]
    # the anneal branch continues stage 3's data (its replay index from the branch point), no index of its own
    anneal = load("405M_inf_anneal.yml")
    assert anneal["cpt_init_checkpoint"] == load("405M_inf_s3_german.yml")["save"]
    assert integration.continues_parent_data(anneal) and not integration.uses_replay(anneal)
    assert anneal["cpt_stage_iters"] <= load("405M_inf_s3_german.yml")["cpt_stage_iters"] // 10 + 1


def test_seen_only_stage_from_stock_neox():
    cfg = load("405M_d1_seen_replay_from_neox.yml")
    assert cfg["cpt_replay_seen_only"] is True and "cpt_replay_consumed_samples" not in cfg
    assert integration.seen_only_needs_consumed(cfg)
