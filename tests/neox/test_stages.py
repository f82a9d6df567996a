"""Stages end to end on the NeoX stand-in: start vs resume, the three clocks, optimizer reset, sidecars."""
import json
import os

import pytest

from neox_cpt.neox import stages
from neox_cpt.schedules.config import schedule_from_config

BATCH = 4


def neox_cfg(**extra):
    cfg = {"train_batch_size": BATCH, "seq_length": 16, "optimizer": {"type": "Adam", "params": {"lr": 1e-3}},
           "min_lr": 1e-4, "lr_decay_style": "cosine", "warmup": 0.1, "checkpoint_factor": 4,
           "eval_interval": 5, "eval_iters": 1}
    cfg.update(extra)
    return cfg


def run(standin, cfg, stop_at=None):
    args = standin.NeoXArgs.from_dict(dict(cfg))
    model, scheduler, lrs = standin.training.pretrain(args, stop_at=stop_at)
    return args, model, scheduler, lrs


@pytest.fixture
def d0(standin, tmp_path):
    """A finished stock stage 0 (no plugin keys): 20 iterations saved in d0/ (latest = global_step20)."""
    run(standin, neox_cfg(train_iters=20, save=str(tmp_path / "d0")))
    assert open(tmp_path / "d0" / "latest").read() == "global_step20"
    return tmp_path / "d0"


def stage_cfg(tmp_path, d0, **extra):
    cfg = dict(cpt_stage_name="d1", cpt_init_checkpoint=str(d0), cpt_stage_iters=10, cpt_lr_schedule="cosine",
               cpt_lr_max=1e-3, cpt_lr_min=1e-4, cpt_warmup_iters=2, train_iters=10, save=str(tmp_path / "d1"))
    cfg.update(extra)
    return {k: v for k, v in neox_cfg(**cfg).items() if k not in ("min_lr", "lr_decay_style", "warmup")}


def test_stock_config_runs_stock(standin, d0):
    state = json.load(open(d0 / "global_step20" / "state.json"))
    assert set(state["lr_scheduler"]) == {"start_lr", "warmup_iter", "num_iters", "decay_style", "end_iter",
                                          "min_lr"}
    assert not (d0 / "global_step20" / stages.SIDECAR).exists()


def test_stage_first_launch_crash_and_resume_keep_all_three_clocks(standin, tmp_path, d0):
    cfg = stage_cfg(tmp_path, d0)
    schedule = schedule_from_config(cfg)
    # uninterrupted reference run (its own save dir)
    ref_args, ref_model, ref_sched, ref_lrs = run(standin, dict(cfg, save=str(tmp_path / "ref")))
    assert ref_model.loaded["optimizer"] is True  # weights + optimizer of d0 by default
    assert ref_args.train_iters == 30 and ref_sched.stage_start == 20  # global iteration continues 20 -> 30
    assert [it for it, _ in ref_lrs] == list(range(21, 31))
    assert [lr for _, lr in ref_lrs] == pytest.approx([schedule.lr_at(s) for s in range(1, 11)])
    assert ref_lrs[0][1] == pytest.approx(5e-4)  # re-warm: first update uses lr_max / T_w, not 0
    # data position is stage-local: the first batch of the stage is sample 0 of the stage's data
    assert ref_model.batches[0] == ("train", [0, 1, 2, 3])
    assert ref_model.batches[-1] == ("train", [36, 37, 38, 39])

    # crash at iteration 26 (last checkpoint: 24), then relaunch the same config
    _, crashed, _, lrs_a = run(standin, cfg, stop_at=26)
    assert open(tmp_path / "d1" / "latest").read() == "global_step24"
    side = json.load(open(tmp_path / "d1" / "global_step24" / stages.SIDECAR))
    assert side == {**side, "stage_name": "d1", "stage_start": 20, "position": 4, "iteration": 24,
                    "samples_consumed": 16, "schedule_fingerprint": schedule.fingerprint()}
    args_b, resumed, sched_b, lrs_b = run(standin, cfg)
    assert resumed.loaded["path"].endswith("d1/global_step24/state.json")
    assert (sched_b.stage_start, sched_b.position, args_b.iteration) == (20, 10, 30)
    assert lrs_a[:4] + lrs_b == ref_lrs  # same LR at every global iteration
    assert crashed.batches[:4] + resumed.batches == ref_model.batches  # same samples, resumed at sample 16


def test_reset_optimizer_only_on_first_launch(standin, tmp_path, d0):
    cfg = stage_cfg(tmp_path, d0, cpt_reset_optimizer=True)
    _, first, sched, _ = run(standin, cfg, stop_at=24)
    assert first.loaded["optimizer"] is False and sched.loaded_from is None
    _, resumed, _, _ = run(standin, cfg)
    assert resumed.loaded["optimizer"] is True  # a resume restores this stage's optimizer


def test_save_dir_shared_with_previous_stage(standin, tmp_path, d0):
    cfg = stage_cfg(tmp_path, d0, save=str(d0))  # one directory for every stage
    args, _, sched, _ = run(standin, cfg, stop_at=25)
    assert sched.stage_start == 20 and open(d0 / "latest").read() == "global_step24"
    args, _, sched, lrs = run(standin, cfg)
    assert sched.stage_start == 20 and lrs[0][0] == 25


def test_next_stage_from_a_plugin_checkpoint(standin, tmp_path, d0):
    run(standin, stage_cfg(tmp_path, d0))
    s2 = stage_cfg(tmp_path, tmp_path / "d1" / "global_step28", cpt_stage_name="d2", save=str(tmp_path / "d2"),
                   cpt_stage_iters=6)
    args, model, sched, lrs = run(standin, s2)
    assert sched.stage_start == 28 and args.train_iters == 34 and sched.loaded_from["stage_name"] == "d1"
    assert lrs[0] == (29, pytest.approx(5e-4))


def test_missing_init_checkpoint_and_start_iter_cross_check(standin, tmp_path, d0):
    with pytest.raises(FileNotFoundError, match="cpt_init_checkpoint: .*does not exist"):
        run(standin, stage_cfg(tmp_path, tmp_path / "nope"))
    with pytest.raises(ValueError, match="cpt_stage_start_iter: 19 but"):
        run(standin, stage_cfg(tmp_path, d0, cpt_stage_start_iter=19))


def test_changed_schedule_on_resume_is_refused(standin, tmp_path, d0):
    run(standin, stage_cfg(tmp_path, d0), stop_at=25)
    with pytest.raises(ValueError, match="cpt_\\* schedule keys"):
        run(standin, stage_cfg(tmp_path, d0, cpt_lr_max=6e-4))


def test_decide_and_resolve(tmp_path):
    (tmp_path / "d0" / "global_step7").mkdir(parents=True)
    ref = stages.resolve_checkpoint(str(tmp_path / "d0" / "global_step7"))
    assert (ref.load_dir, ref.tag, ref.iteration) == (str(tmp_path / "d0"), "global_step7", 7)
    with pytest.raises(FileNotFoundError, match="no `latest` file"):
        stages.resolve_checkpoint(str(tmp_path / "d0"))
    (tmp_path / "d0" / "latest").write_text("global_step9")
    with pytest.raises(FileNotFoundError, match="names 'global_step9', which is missing"):
        stages.resolve_checkpoint(str(tmp_path / "d0"))
    stages.write_sidecar(str(tmp_path / "d1"), 12, {"stage_name": "other"})
    (tmp_path / "d1" / "latest").write_text("global_step12")
    assert stages.decide(str(tmp_path / "d1"), "d1", str(tmp_path / "d0" / "global_step7")).mode == "start"
    assert stages.decide(str(tmp_path / "d1"), "other", "unused").mode == "resume"
    assert os.path.exists(tmp_path / "d1" / "global_step12" / stages.SIDECAR)


def test_seen_only_replay_fills_consumed_samples_from_the_init_checkpoint(standin, tmp_path, d0):
    from neox_cpt.neox.runtime import prepare

    cfg = stage_cfg(tmp_path, d0, cpt_replay_seen_only=True, cpt_train_data_paths=["/data/new"],
                    cpt_replay_index_paths=["/d0/pile_train_indexmap_80ns_16sl_1234s_packedpi_ac"],
                    cpt_replay_frac=0.05)
    args = standin.NeoXArgs.from_dict(cfg)  # validates without the count (filled at launch)
    plan = prepare(args)
    assert args.cpt_replay_consumed_samples == [20 * BATCH]  # d0 ended at iteration 20
    assert plan.consumed_from.startswith("iteration 20 x train_batch_size 4 of ")
    assert args.load == args.save and args._cpt_stage_iters == 10
    two = dict(cfg, cpt_replay_index_paths=["/a_indexmap_x", "/b_indexmap_y"])
    with pytest.raises(ValueError, match="cpt_replay_consumed_samples: unset with 2"):
        prepare(standin.NeoXArgs.from_dict(two))
