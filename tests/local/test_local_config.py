"""The local run config: defaults, budgets, the stage mapping handed to the schedule and replay readers,
every validation error (each names the key and the fix), the shipped configs and ``neox-cpt train --check``."""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))  # the helpers module beside this file
from test_trainer_helpers import base_config, make_sources  # noqa: E402

from neox_cpt.local.config import load_run_config, stage_mapping  # noqa: E402

SOURCES = {"old": {"train": "/d/old_train", "valid": "/d/old_valid"},
           "new": {"train": "/d/new_train", "valid": "/d/new_valid"}}
CONFIGS = sorted((Path(__file__).parents[2] / "configs" / "local").glob("*.yml"))


def cfg(**overrides):
    return base_config(copy.deepcopy(SOURCES), **overrides)


def test_defaults_budgets_and_stage_mapping():
    c = cfg()
    c["stages"][0] = {"name": "d0", "sources": {"old": 1.0}, "tokens": 650}  # 64 tokens/step: rounds up
    c["stages"].append({"name": "again", "sources": ["old", "new"], "steps": 3, "init_from": "d0",
                        "reset_optimizer": False, "cpt_lr_schedule": "constant"})
    run = load_run_config(c)
    d0, d1, again = run.stages
    assert (d0.num_steps, d0.num_tokens, d0.init_from) == (11, 704, None)
    assert (d1.init_from, d1.reset_optimizer, again.init_from, again.reset_optimizer) == ("d0", True, "d0", False)
    assert d1.train_shares() == {"new": 0.75, "old": 0.25}
    assert again.train_shares() == {"old": 0.5, "new": 0.5}
    assert run.eval_sources == ("old", "new") and run.vocab_size == 300
    assert stage_mapping(run, d1) == {
        "cpt_stage_name": "d1", "cpt_stage_iters": 8, "train_iters": 8, "train_batch_size": 4, "seq_length": 16,
        "seed": 7, "cpt_train_data_paths": ["/d/new_train"], "cpt_train_data_weights": [1.0],
        "cpt_replay_frac": 0.25, "cpt_replay_data_paths": ["/d/old_train"], "cpt_replay_data_weights": [1.0],
        "cpt_lr_max": 3e-3, "cpt_warmup_iters": 2}
    m = stage_mapping(run, again)  # a list of sources: weighted by tokens (no weights key), stage keys win
    assert "cpt_train_data_weights" not in m and m["cpt_lr_schedule"] == "constant"


def test_schedule_and_replay_come_from_the_shared_readers():
    from neox_cpt.data.spec import replay_spec_from_config
    from neox_cpt.schedules import schedule_from_config

    run = load_run_config(cfg())
    spec = replay_spec_from_config(stage_mapping(run, run.stages[1]))
    assert (spec.num_samples, spec.seq_length, spec.replay_frac) == (32, 16, 0.25)
    assert [s.path for s in spec.new] == ["/d/new_train"] and [s.path for s in spec.replay] == ["/d/old_train"]
    sched = schedule_from_config(stage_mapping(run, run.stages[1]))
    assert [sched.lr_at(s) for s in (0, 1, 2)] == pytest.approx([0.0, 1.5e-3, 3e-3])
    assert sched.lr_at(8) == pytest.approx(3e-4)


def _set(c, path, value):
    node = c
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value


@pytest.mark.parametrize("path, value, match", [
    (("batch_sise",), 4, "unknown key batch_sise = 4; did you mean 'batch_size'"),
    (("batch_size",), 0, r"batch_size = 0: give a whole number >= 1"),
    (("model", "hidden_sise"), 32, "unknown key model.hidden_sise"),
    (("model", "num_heads"), 3, "model.num_heads = 3: must divide model.hidden_size = 32"),
    (("model", "vocab_size"), KeyError, "model.vocab_size is not set"),
    (("optimizer",), {"betas": [0.9]}, r"optimizer.betas = \[0.9\]: give two numbers"),
    (("eval", "sources"), ["nope"], "eval.sources = 'nope'"),
    (("data",), {}, "data: no sources"),
    (("data", "sources", "old"), {"valid": "/x"}, r"data.sources.old = .*give \{train: PREFIX"),
    (("stages",), [], "stages = \\[\\]: give a list of stages"),
    (("stages", 0, "sources"), {"nope": 1.0}, "stages\\[0\\].sources = 'nope': not a defined source"),
    (("stages", 0, "sources"), None, "stages\\[0\\].sources = None: list the stage's new data"),
    (("stages", 0, "tokens"), 100, "stages\\[0\\].tokens / steps: give exactly one budget"),
    (("stages", 0, "steps"), KeyError, "stages\\[0\\].tokens / steps: give exactly one budget"),
    (("stages", 1, "name"), "d0", "stages\\[1\\].name = 'd0': stage names must be unique"),
    (("stages", 1, "replay_sources"), KeyError, "stages\\[1\\].replay_frac = 0.25: needs replay_sources"),
    (("stages", 1, "replay_frac"), 1.0, "stages\\[1\\].replay_frac = 1.0: give a number in"),
    (("stages", 1, "init_from"), "/some/run", "stages\\[1\\].init_from = '/some/run': only the first stage"),
    (("stages", 0, "init_from"), "previous", "the first stage has no previous stage"),
    (("stages", 1, "reset_optimizer"), "yes", "stages\\[1\\].reset_optimizer = 'yes': write true or false"),
    (("stages", 1, "cpt_train_data_paths"), ["/x"], "is set by the trainer"),
    (("stages", 1, "cpt_replay_fraction"), 0.1, "unknown key stages\\[1\\].cpt_replay_fraction = 0.1; did you mean"),
    (("stages", 1, "cpt_warmup_frac"), 1.5, r"stages\[1\] \(d1\): .*cpt_warmup_frac"),
    (("stage_defaults", "cpt_lr_max"), "1e-4", r"cpt_lr_max = '1e-4' is not a number"),
    (("stage_defaults", "cpt_lr_schedule"), "cosin", "did you mean 'cosine'"),
    (("stages", 0, "epochs"), 2, "unknown key stages\\[0\\].epochs"),
    (("device",), "tpu", "device = 'tpu': use auto, cpu, cuda or cuda:N"),
])
def test_validation_errors_name_key_and_fix(path, value, match):
    c = cfg()
    _set(c, path, value)
    with pytest.raises(ValueError, match=match):
        load_run_config(c)


def test_missing_yaml_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="run config not found"):
        load_run_config(tmp_path / "nope.yml")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path, tmp_path):
    raw = yaml.safe_load(path.read_text())
    assert raw["data"] == {"manifest": "demo"}
    # A base config (the experiment driver adds the stages) is checked with one plain stage.
    raw.setdefault("stages", [{"name": "d0", "sources": {"sotu": 1.0}, "tokens": 100_000}])
    names = {n for st in raw["stages"] for n in list(st["sources"]) + list(st.get("replay_sources") or [])}
    # Same config on synthetic prefixes (no demo data needed); the manifest's 8,192-token vocabulary.
    raw["data"] = {"sources": {n: {"train": f"/d/{n}_train", "valid": f"/d/{n}_valid"} for n in names}}
    raw.setdefault("model", {})["vocab_size"] = 8192
    run = load_run_config(raw)
    assert run.stages[0].init_from is None and all(s.reset_optimizer for s in run.stages)


def test_cli_check_prints_the_plan_and_errors_without_traceback(tmp_path, capsys):
    from neox_cpt.cli import main

    path = tmp_path / "run.yml"
    path.write_text(yaml.safe_dump(base_config(make_sources(tmp_path))))
    assert main(["train", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    assert "4 dataset(s) checked" in out
    assert "d1: 8 steps, 512 tokens (new 75 %, old 25 %); from d0; optimizer reset; warmup to 2, decay to 8" in out
    bad = cfg()
    bad["stages"][0]["steps"] = -1
    path.write_text(yaml.safe_dump(bad))
    assert main(["train", str(path)]) == 2
    assert "stages[0].steps = -1: give a whole number >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["config", "run_config", "metrics", "checkpoint", "model"])
def test_module_examples_run(module):
    import doctest
    import importlib

    if module in ("checkpoint", "model"):
        pytest.importorskip("torch")
        pytest.importorskip("transformers")
    result = doctest.testmod(importlib.import_module(f"neox_cpt.local.{module}"))
    assert result.attempted > 0 and result.failed == 0
