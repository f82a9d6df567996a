"""The launch plan on its own (no NeoX, no torch): what a resume takes from the stage's sidecar."""
import pytest

from neox_cpt.neox import plan as launch_plan
from neox_cpt.neox import stages
from neox_cpt.schedules.config import schedule_from_config


@pytest.fixture
def stage(tmp_path):
    (tmp_path / "d0" / "global_step100").mkdir(parents=True)
    (tmp_path / "d0" / "latest").write_text("global_step100")
    return {"cpt_stage_name": "d1", "cpt_init_checkpoint": str(tmp_path / "d0"), "cpt_stage_iters": 50,
            "cpt_lr_max": 1e-3, "cpt_warmup_iters": 10, "train_batch_size": 8, "seq_length": 16, "seed": 1234,
            "save": str(tmp_path / "d1")}


def save(cfg, iteration, **extra):
    """What the patched save_checkpoint writes for the plan of ``cfg`` at ``iteration``."""
    plan = launch_plan.resolve(cfg)
    record = {"stage_name": "d1", "stage_start": plan.stage_start, "position": iteration - plan.stage_start,
              "samples_consumed": (iteration - plan.stage_start) * 8, "index_position": (iteration - 100) * 8,
              "plan": plan.record(), **extra}
    stages.write_sidecar(cfg["save"], iteration, record)
    with open(f"{cfg['save']}/latest", "w") as f:
        f.write(f"global_step{iteration}")


def test_resume_reads_the_schedule_position_the_scheduler_saved(stage):
    save(stage, 104, schedule_position=3)  # one of the 4 updates was skipped (fp16 overflow)
    plan = launch_plan.resolve(stage)
    assert (plan.mode, plan.iteration, plan.position, plan.schedule_position) == ("resume", 104, 4, 3)
    assert plan.next_lr == pytest.approx(schedule_from_config(stage).lr_at(4)) and plan.next_sample == 32


def test_resume_never_reads_the_init_checkpoint_again(stage, tmp_path):
    save(stage, 104)
    (tmp_path / "d0" / "latest").write_text("global_step999")  # moved (or gone): not read on a resume
    assert launch_plan.resolve(stage).stage_start == 100


def test_changes_name_every_changed_setting(stage):
    save(stage, 104)
    with pytest.raises(ValueError) as err:
        launch_plan.resolve(dict(stage, train_batch_size=16, seed=7, cpt_stage_iters=60))
    assert str(err.value).startswith(
        "relaunch of stage 'd1' from ") and ("with a changed config: stage length (cpt_stage_iters/cpt_stage_tokens): "
                                             "50 -> 60 iterations; train_batch_size: 8 -> 16; seed: 1234 -> 7; "
                                             "cpt_* schedule keys: ") in str(err.value)
