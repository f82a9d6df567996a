"""Item 3 end to end: ``neox-cpt preflight CONFIG.yml`` (run before each launch, without NeoX) predicts the
plan the launch then logs (``neox-cpt plan: {...}``, rank 0): start or resume, checkpoint and iteration,
stage start, schedule position and next LR, data position, replay index and whether it is built."""
import pytest

import neox_e2e as e2e
from neox_e2e import LAYOUTS

pytestmark = [pytest.mark.slow, pytest.mark.neox]


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_preflight_predicts_start_and_resume(runs, layout):
    killed, _, resumed = runs.d1_killed(layout)
    start = e2e.assert_preflight_predicted(killed)
    assert (start["mode"], start["iteration"], start["stage_start"], start["position"]) == ("start", 10, 10, 0)
    assert start["checkpoint"].endswith("d0-" + LAYOUTS[layout]["d0"] + "/ckpt/global_step10")
    assert start["next_lr"] == pytest.approx(5e-4) and start["next_sample"] == 0 and start["load_optimizer"]
    index = start["preflight"]["replay_index"]["dir"]
    assert killed.lines(f"neox-cpt: replay index {index} from sample 0")

    resume = e2e.assert_preflight_predicted(resumed)
    assert (resume["mode"], resume["iteration"], resume["stage_start"], resume["position"]) == ("resume", 16, 10, 6)
    assert resume["checkpoint"].endswith("/ckpt/global_step16") and resume["next_sample"] == 48
    assert resume["preflight"]["replay_index"] == {**start["preflight"]["replay_index"], "built": True}
    # the LR preflight announces for the next update is the one NeoX then used (logged after update 16)
    lr16 = e2e.tensorboard_scalars(killed.dir / "tb")[0]["train/learning_rate"][16]
    assert resume["next_lr"] == pytest.approx(lr16, rel=1e-6)
