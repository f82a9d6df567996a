"""Scenario g: NeoX-style batch keys and ``eval_iters: 0`` in a replay stage.

NeoX's own configs give ``train_micro_batch_size_per_gpu`` + ``gradient_accumulation_steps`` and let NeoX
derive ``train_batch_size``; a stage with replay keys must accept that. With gradient accumulation, NeoX's
loader serves micro-batch x DP samples per step and gives DP rank r the r-th contiguous slice of it, so what
is guaranteed is floor/ceil of the replay share per global batch and per micro-batch (docs/neox.md).
"""
import numpy as np
import pytest

import neox_e2e as e2e

pytestmark = [pytest.mark.slow, pytest.mark.neox]


def test_g_micro_batch_and_accumulation_without_train_batch_size(runs):
    run_dir = runs.workdir / "g-micro-gas"
    cfg = runs.d1_config("dp2", run_dir, num_gpus=2, train_micro_batch_size_per_gpu=2,
                         gradient_accumulation_steps=2, cpt_stage_iters=4, train_iters=4, cpt_stage_name="g")
    del cfg["train_batch_size"]  # NeoX derives it: 2 x 2 x 2 = 8
    run = e2e.check_ok(e2e.launch(runs.neox, cfg, run_dir, "g"))
    logged = e2e.tensorboard_scalars(run_dir / "tb")[-1]["train/learning_rate"]
    expected = e2e.schedule_lrs(run.config, "12:15")
    assert {i: pytest.approx(lr, rel=1e-6) for i, lr in logged.items()} == {i: expected[i + 1] for i in range(11, 15)}
    batches = e2e.recorded_batches(run_dir, "g")
    assert sorted(batches) == [11, 12, 13, 14]
    for update, micro_batches in batches.items():
        assert [m.shape for m in micro_batches] == [(2, 65)] * 4  # 2 accumulation steps x 2 DP ranks
        sources = [[e2e.source_of_sample(s) for s in m] for m in micro_batches]
        assert sum(s.count("old") for s in sources) == 2, f"update {update}: {sources}"  # 25 % of 8
        assert all(s.count("old") in (0, 1) for s in sources), f"update {update}: {sources}"  # of 0.5


def test_g_eval_iters_0_with_validation_sources(runs):
    run_dir = runs.workdir / "g-eval-0"
    cfg = runs.d1_config("1proc", run_dir, eval_iters=0, cpt_stage_iters=4, train_iters=4, cpt_stage_name="g0")
    assert cfg["cpt_valid_data_paths"]
    run = e2e.check_ok(e2e.launch(runs.neox, cfg, run_dir, "g0"))
    assert run.iterations() == [11, 12, 13, 14]
    assert "validation" not in " ".join(t for t in e2e.tensorboard_scalars(run_dir / "tb")[-1] if "/" in t
                                        and not t.endswith("text_summary"))
    assert np.isfinite(list(e2e.tensorboard_scalars(run_dir / "tb")[-1]["train/lm_loss"].values())).all()
