"""Scenario f: relaunching a stage mid-way. A changed batch size, data path, replay fraction or schedule is
refused before training with an error naming what changed, and nothing is written; a relaunch with NeoX's
``no_load_optim: true`` still resumes the optimizer (a stage resume always does, docs/neox.md).

Each relaunch starts from a copy of D1's save directory as the SIGKILL of scenario b left it (global_step16).
"""
import shutil

import pytest

import neox_e2e as e2e

pytestmark = [pytest.mark.slow, pytest.mark.neox]

CHANGES = {  # name -> (YAML change, what the refusal must name)
    "batch_size": ({"train_micro_batch_size_per_gpu": 4, "train_batch_size": 4}, "train_batch_size: 8 -> 4"),
    "data_path": ({"cpt_train_data_paths": "digits"}, "cpt_train_data_paths:"),
    "replay_frac": ({"cpt_replay_frac": 0.5}, "cpt_replay_frac: 0.25 -> 0.5"),
    "schedule": ({"cpt_lr_max": 0.002}, "schedule"),
}


def relaunch(runs, name, **changes):
    _, crashed, _ = runs.d1_killed("1proc")
    run_dir = runs.workdir / f"f-{name}"
    shutil.copytree(crashed, run_dir / "ckpt")
    cfg = runs.d1_config("1proc", run_dir, **changes)
    return e2e.launch(runs.neox, cfg, run_dir, "d1")


@pytest.mark.parametrize("name", list(CHANGES))
def test_f_changed_relaunch_is_refused_before_training(runs, name):
    change, named = CHANGES[name]
    change = {k: ([runs.data[v]] if k.endswith("_paths") else v) for k, v in change.items()}
    run = e2e.check_checkout(relaunch(runs, name, **change))
    refusal = [line for line in run.log.splitlines() if "relaunch of stage 'd1'" in line]
    assert run.returncode != 0 and refusal, f"not refused:\n{run.log[-4000:]}"
    assert "global_step16 with a changed config" in refusal[0] and named in refusal[0], refusal[0]
    assert run.iterations() == []  # before any training
    assert run.preflight.returncode != 0 and named in run.preflight.output, run.preflight.output  # predicted
    ckpt = run.dir / "ckpt"
    assert (ckpt / "latest").read_text().strip() == "global_step16"
    assert sorted(p.name for p in ckpt.glob("global_step*")) == ["global_step12", "global_step16"]


def test_f_resume_loads_the_optimizer_despite_no_load_optim(runs):
    full = runs.d1("1proc")
    run = e2e.check_ok(relaunch(runs, "no_load_optim", no_load_optim=True))
    assert run.lines("neox-cpt: resumed stage 'd1' at global iteration 16")
    assert e2e.assert_preflight_predicted(run)["load_optimizer"] is True
    expected = e2e.tensorboard_scalars(full.dir / "tb")[-1]["train/lm_loss"]
    got = e2e.tensorboard_scalars(run.dir / "tb")[-1]["train/lm_loss"]
    assert sorted(got) == list(range(17, 23))
    # AdamW's moments restored: the losses are those of the uninterrupted run, bit for bit (without them the
    # first update after the resume is a fresh Adam step and every later loss differs)
    assert got == {i: expected[i] for i in got}
