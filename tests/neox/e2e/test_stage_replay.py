"""Scenarios a, b and c: a D1 stage with re-warm + re-decay and 25 % replay from a stock NeoX D0, killed and
resumed, in every layout that runs on the CPU. Every value asserted is read from NeoX's outputs (TensorBoard
events, log, checkpoints) or from the micro-batches NeoX's loop fed the model (recorded by the start-up hook).
"""
import numpy as np
import pytest

import neox_e2e as e2e
from neox_e2e import D0_ITERS, D1_ITERS, LAYOUTS, is_pipeline

pytestmark = [pytest.mark.slow, pytest.mark.neox]
FIRST, LAST = D0_ITERS + 1, D0_ITERS + D1_ITERS  # global updates of the stage: 11..22
REPLAY_FRAC = 0.25


def replay_count(samples) -> int:
    return sum(e2e.source_of_sample(s) == "old" for s in samples)


def assert_lr_is_schedule(run, updates):
    """TensorBoard's train/learning_rate at iteration i is logged after the scheduler step: the LR of
    update i + 1, which `neox-cpt schedule` gives at global step i + 1."""
    logged = e2e.tensorboard_scalars(run.dir / "tb")[-1]["train/learning_rate"]
    expected = e2e.schedule_lrs(run.config, f"{min(updates) + 1}:{max(updates) + 1}")
    assert sorted(logged) == sorted(updates)
    for i in updates:
        assert logged[i] == pytest.approx(expected[i + 1], rel=1e-6, abs=1e-12), f"iteration {i}"


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_a_stage_lr_replay_quota_and_per_source_validation(runs, layout):
    run = runs.d1(layout)
    assert run.lines("neox-cpt: started stage 'd1' at global iteration 10 (stage start 10, position 0/12)")
    assert_lr_is_schedule(run, range(FIRST, LAST + 1))
    # the first update re-warms from a non-zero LR: lr_at(1) = 1e-3 / 2 (2 warmup iterations)
    assert e2e.schedule_lrs(run.config, f"{FIRST}:{FIRST}")[FIRST] == pytest.approx(5e-4)

    batches = e2e.recorded_batches(run.dir, "d1")
    assert sorted(batches) == list(range(FIRST, LAST + 1))
    for update, micro_batches in batches.items():
        samples = np.concatenate(micro_batches)
        assert samples.shape == (8, 65)
        assert replay_count(samples) == round(REPLAY_FRAC * 8), f"update {update}"  # exactly 2 of 8
        for micro in micro_batches:  # a micro-batch is a run of consecutive positions: floor or ceil
            share = REPLAY_FRAC * len(micro)
            assert int(np.floor(share)) <= replay_count(micro) <= int(np.ceil(share))
    assert len({s.tobytes() for m in batches.values() for micro in m for s in micro}) == 8 * D1_ITERS  # none twice

    scalars = e2e.tensorboard_scalars(run.dir / "tb")[-1]
    if is_pipeline(layout):  # eval_iters 0 here: PIPELINE_NO_EVAL
        assert not [tag for tag in scalars if tag.startswith("validation")]
        return
    assert "validation/lm_loss" not in scalars
    old, new = scalars["validation_old/lm_loss"], scalars["validation_new/lm_loss"]
    assert sorted(old) == sorted(new) == [12, 16, 20, 22]  # eval_interval 4, and at the end (logged at 22)
    for step in (12, 16, 20):
        assert f"validation_old results at iteration {step}" in run.log
        assert f"validation_new results at iteration {step}" in run.log
        assert old[step] < new[step]  # the model was pre-trained on old (D0) and starts on new


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_b_sigkill_mid_stage_resumes_identically(runs, layout):
    full = runs.d1(layout)
    killed, _, resumed = runs.d1_killed(layout)
    assert killed.returncode != 0 and killed.iterations()[-1] == 18
    assert resumed.lines("neox-cpt: resumed stage 'd1' at global iteration 16 (stage start 10, position 6/12)")
    assert resumed.iterations() == list(range(17, LAST + 1))

    expected = e2e.tensorboard_scalars(full.dir / "tb")[-1]
    after = e2e.tensorboard_scalars(resumed.dir / "tb")[-1]  # the relaunch's own event file
    for tag in ("train/learning_rate", "train/lm_loss"):
        assert sorted(after[tag]) == list(range(17, LAST + 1))
        assert {i: after[tag][i] for i in after[tag]} == {i: expected[tag][i] for i in after[tag]}, tag  # bit-identical

    want, got = e2e.recorded_batches(full.dir, "d1"), e2e.recorded_batches(resumed.dir, "d1-resumed")
    assert sorted(got) == list(range(17, LAST + 1))
    for update in got:
        assert all(np.array_equal(a, b) for a, b in zip(got[update], want[update])), f"update {update}"
    assert e2e.sidecar(resumed.dir, LAST)["stage_start"] == D0_ITERS
