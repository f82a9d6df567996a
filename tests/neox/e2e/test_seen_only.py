"""Scenario e: seen-only replay, from a stock NeoX D0 (its own ``_indexmap_`` files, written for NeoX's
``train_data_paths`` form, so named ``..._train_0_indexmap_...``) and from a neox-cpt stage parent.

Every replayed window must be one the parent run trained on, token for token: the parent's training
micro-batches are recorded as NeoX's loop fed them, and the child's replay samples are looked up among them.
"""
import numpy as np
import pytest

import neox_e2e as e2e
from neox_e2e import D0_ITERS, D1_ITERS

pytestmark = [pytest.mark.slow, pytest.mark.neox]


def trained_samples(run_dir, name):
    return {s.tobytes() for micro in e2e.recorded_batches(run_dir, name).values() for m in micro for s in m}


def replayed(run_dir, name, new_source):
    batches = e2e.recorded_batches(run_dir, name)
    samples = [s for micro in batches.values() for m in micro for s in m]
    return [s for s in samples if e2e.source_of_sample(s) != new_source], len(samples)


def seen_only_stage(runs, name, parent, index, frac, iters, **extra):
    run_dir = runs.workdir / f"e-{name}"
    cfg = runs.d1_config("1proc", run_dir, cpt_stage_name=name, cpt_init_checkpoint=str(parent.dir / "ckpt"),
                         cpt_stage_iters=iters, train_iters=iters, cpt_stage_start_iter=None,
                         cpt_train_data_paths=[runs.data["digits"]], cpt_replay_data_paths=None,
                         cpt_replay_seen_only=True, cpt_replay_index_paths=[index], cpt_replay_frac=frac,
                         cpt_valid_data_paths=None, eval_iters=0, **extra)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    return e2e.launch(runs.neox, cfg, run_dir, name)


def test_e_seen_only_replay_of_a_stock_neox_d0(runs):
    d0 = runs.d0("1proc")
    maps = sorted(p.name for p in (runs.workdir / "data").glob("old_text_document_train_0_indexmap_*_doc_idx.npy"))
    assert len(maps) == 1, maps  # NeoX's own name for train_data_paths[0]
    index = str(runs.workdir / "data" / maps[0][: -len("_doc_idx.npy")])
    run = e2e.check_ok(seen_only_stage(runs, "seen_d0", d0, index, frac=0.25, iters=6))
    replay, total = replayed(run.dir, "seen_d0", "digits")
    assert total == 48 and len(replay) == 12
    seen = trained_samples(d0.dir, "d0")
    assert len(seen) == D0_ITERS * 8
    assert [s.tobytes() in seen for s in replay] == [True] * len(replay)
    plan = e2e.assert_preflight_predicted(run)
    assert plan["consumed_samples"] == [80], plan  # D0: 10 iterations x 8


def test_e_seen_only_replay_of_a_neox_cpt_stage(runs):
    d1 = runs.d1("1proc")
    index = e2e.sidecar(d1.dir, D0_ITERS + D1_ITERS)["replay_index"]
    assert index
    run = e2e.check_ok(seen_only_stage(runs, "seen_d1", d1, index, frac=0.5, iters=4))
    replay, total = replayed(run.dir, "seen_d1", "digits")
    assert total == 32 and len(replay) == 16
    seen = trained_samples(d1.dir, "d1")
    assert len(seen) == D1_ITERS * 8
    assert [s.tobytes() in seen for s in replay] == [True] * len(replay)
    assert np.mean([e2e.source_of_sample(s) == "old" for s in replay]) < 1  # D1's own new data is replayed too
    plan = e2e.assert_preflight_predicted(run)
    assert plan["consumed_samples"] == [96], plan  # D1's data position in its index, not 22 x 8
