"""The stage length (neox_cpt.schedules.stage): the one function the schedule and the replay index use."""
import pytest

from neox_cpt.data.spec import num_samples_from_config
from neox_cpt.schedules import schedule_from_config
from neox_cpt.schedules.stage import global_batch_size, stage_num_steps, tokens_per_step_of

BASE = {"train_batch_size": 8, "seq_length": 128, "optimizer": {"params": {"lr": 1e-3}}}


@pytest.mark.parametrize("keys, steps", [
    ({"cpt_stage_iters": 50, "train_iters": 999}, 50),
    ({"train_iters": 40}, 40),
    ({"cpt_stage_tokens": 8 * 128 * 10}, 10),          # exact
    ({"cpt_stage_tokens": 8 * 128 * 10 + 1}, 11),      # rounded up: at least the requested tokens
    ({"cpt_stage_tokens": 8 * 128 + 1}, 2),
])
def test_stage_num_steps_golden(keys, steps):
    cfg = dict(BASE, **keys)
    assert stage_num_steps(cfg) == steps
    assert schedule_from_config(cfg).num_steps == steps
    assert num_samples_from_config(cfg) == steps * 8


def test_global_batch_from_micro_batches_sizes_tokens_stage_for_schedule_and_index():
    cfg = {"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 3, "cpt_data_parallel_size": 4,
           "seq_length": 10, "cpt_stage_tokens": 2401, "optimizer": {"params": {"lr": 1e-3}}}
    assert global_batch_size(cfg) == 24 and tokens_per_step_of(cfg) == 240
    assert stage_num_steps(cfg) == 11
    assert schedule_from_config(cfg).num_steps == 11 and num_samples_from_config(cfg) == 11 * 24
    assert global_batch_size({"train_micro_batch_size_per_gpu": 2}) is None


@pytest.mark.parametrize("cfg, message", [
    ({"cpt_stage_iters": 5, "cpt_stage_tokens": 100}, "cpt_stage_iters = 5 and cpt_stage_tokens = 100 both set"),
    ({"cpt_stage_tokens": 100, "train_batch_size": 8}, "cpt_stage_tokens = 100 needs train_batch_size and seq_length"),
    ({"train_batch_size": 8}, "the stage length is missing"),
    ({"cpt_stage_iters": 2.5}, r"cpt_stage_iters = 2.5 must be a whole number"),
])
def test_stage_num_steps_errors_name_the_key(cfg, message):
    with pytest.raises(ValueError, match=message):
        stage_num_steps(cfg)
    with pytest.raises(ValueError, match=message):  # the index refuses the same config with the same message
        num_samples_from_config(dict(cfg, train_batch_size=8))
