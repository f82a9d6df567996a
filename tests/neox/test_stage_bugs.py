"""Stage bugs of issue 9 on the NeoX stand-in's own loop (``pretrain``) with replay data on a gloo group of one.

Each test failed before its fix: the anneal branch's data start re-read from the parent's moving ``latest``
(1.d), the seen-only count of a neox-cpt parent taken as iteration x batch (1.e), relaunches with changed
settings and ``no_load_optim`` on resume (1.f), NeoX-style batch keys and ``eval_iters: 0`` (1.g).
"""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neox_cpt.data.indexed import IndexedDatasetWriter  # noqa: E402
from neox_cpt.neox import stages  # noqa: E402

BATCH, SEQ = 4, 8


def write(prefix, low, high, num_docs, seed):
    """Documents of random tokens in [low, high): the token range tells which source a sample came from."""
    rng = np.random.default_rng(seed)
    with IndexedDatasetWriter(str(prefix), np.uint16) as w:
        for _ in range(num_docs):
            w.add_document(rng.integers(low, high, size=int(rng.integers(5, 40))))
    return str(prefix)


def run(standin, cfg, stop_at=None):
    args = standin.NeoXArgs.from_dict(dict(cfg))
    model, scheduler, lrs = standin.training.pretrain(args, stop_at=stop_at)
    return args, model, [b["text"].numpy() for b in model.batches]


@pytest.fixture
def d0(standin, tmp_path):
    """A stock stage 0 of 20 iterations (no plugin keys), saved in d0/ (latest = global_step20)."""
    cfg = {"train_batch_size": BATCH, "seq_length": SEQ, "optimizer": {"type": "Adam", "params": {"lr": 1e-3}},
           "checkpoint_factor": 4, "eval_interval": 1000, "eval_iters": 1, "train_iters": 20,
           "save": str(tmp_path / "d0")}
    standin.training.pretrain(standin.NeoXArgs.from_dict(cfg))
    return tmp_path / "d0"


@pytest.fixture
def d1(tmp_path, d0):
    """A replay stage (25 % of old tokens 0-999 among new tokens 1000-1999) of 40 iterations from d0."""
    return {"train_batch_size": BATCH, "seq_length": SEQ, "optimizer": {"type": "Adam", "params": {"lr": 1e-3}},
            "checkpoint_factor": 4, "eval_interval": 1000, "eval_iters": 1, "train_iters": 40,
            "save": str(tmp_path / "d1"), "cpt_stage_name": "d1", "cpt_init_checkpoint": str(d0),
            "cpt_stage_iters": 40, "cpt_lr_schedule": "infinite", "cpt_lr_max": 1e-3, "cpt_lr_min": 1e-5,
            "cpt_warmup_iters": 2, "cpt_cooldown_end_iter": 10,
            "cpt_train_data_paths": [write(tmp_path / "new", 1000, 2000, 200, 1)],
            "cpt_replay_data_paths": [write(tmp_path / "old", 0, 1000, 200, 2)], "cpt_replay_frac": 0.25,
            "cpt_index_cache_dir": str(tmp_path / "index")}


def branch_of(d1_cfg, tmp_path, **extra):
    data_keys = ("cpt_train_data_paths", "cpt_replay_data_paths", "cpt_replay_frac")
    cfg = {k: v for k, v in d1_cfg.items() if k not in data_keys}
    cfg.update(cpt_stage_name="anneal", cpt_init_checkpoint=d1_cfg["save"], cpt_continue_parent_data=True,
               cpt_stage_iters=6, train_iters=6, save=str(tmp_path / "anneal"), cpt_lr_schedule="constant",
               cpt_lr_const=1e-4)
    cfg.pop("cpt_cooldown_end_iter"), cfg.pop("cpt_warmup_iters")
    cfg.update(extra)
    return cfg


def test_resumed_anneal_branch_keeps_its_data_start_while_the_parent_trains_on(standin, gloo, d1, tmp_path):
    _, _, parent_a = run(standin, d1, stop_at=28)  # d1 positions 0-7, saved at 24 and 28
    branch = branch_of(d1, tmp_path)
    _, _, branch_a = run(standin, branch, stop_at=32)  # from d1/global_step28: parent positions 8-11, saved at 32
    _, _, parent_b = run(standin, d1, stop_at=36)  # the main line goes on: saves 32, 36 (latest moves)
    args, _, branch_b = run(standin, branch)  # the branch is relaunched: resumes at its own global_step32
    assert args._cpt_data_start == 8 * BATCH  # the branch point, not the parent's newest checkpoint
    got = branch_a + branch_b
    assert len(got) == 6 and all(np.array_equal(g, p) for g, p in zip(got, parent_b[:6]))  # parent positions 8-13
    side = json.load(open(tmp_path / "anneal" / "global_step32" / stages.SIDECAR))
    assert (side["index_position"], side["plan"]["data_start"]) == ((8 + 4) * BATCH, 8 * BATCH)


def test_seen_only_replay_of_a_neox_cpt_stage_counts_its_index_position(standin, gloo, d1, tmp_path):
    args, _, served = run(standin, d1, stop_at=24)  # d1 trained on 4 batches = its samples 0-15, saved at 24
    d2 = dict(branch_of(d1, tmp_path, cpt_stage_name="d2", save=str(tmp_path / "d2"), cpt_continue_parent_data=None),
              cpt_train_data_paths=[write(tmp_path / "german", 3000, 4000, 200, 5)], cpt_replay_frac=0.25,
              cpt_replay_seen_only=True, cpt_replay_index_paths=[args._cpt_index_dir], cpt_stage_iters=10,
              train_iters=10)
    d2_args = standin.NeoXArgs.from_dict(d2)
    loaders = standin.training.build_train_valid_test_data_loaders(neox_args=d2_args)
    assert d2_args.cpt_replay_consumed_samples == [4 * BATCH]  # not iteration 24 x batch 4 = 96
    seen = {tuple(row) for batch in served for row in batch.tolist()}
    replayed = [tuple(row) for b in loaders["train"] for row in b["text"].numpy().tolist() if max(row) < 3000]
    assert len(replayed) == 10 * BATCH // 4 and set(replayed) <= seen  # every replayed window was served by d1
    consumed_from = d2_args._cpt_plan.consumed_from
    assert consumed_from.startswith("index_position of ") and "'d1'" in consumed_from
    wrong = dict(d2, cpt_replay_index_paths=[str(tmp_path / "index" / "other")])
    with pytest.raises(ValueError, match="which trained on the replay index"):
        standin.training.build_train_valid_test_data_loaders(neox_args=standin.NeoXArgs.from_dict(wrong))


@pytest.mark.parametrize("change, named", [
    ({"train_batch_size": 8}, "train_batch_size: 4 -> 8"),
    ({"cpt_replay_frac": 0.5}, "cpt_replay_frac: 0.25 -> 0.5"),
    ({"cpt_train_data_paths": ["NEW2"]}, "cpt_train_data_paths: "),
    ({"cpt_lr_max": 2e-3}, "cpt_\\* schedule keys: phase 0"),
])
def test_relaunch_with_a_changed_stage_is_refused_before_any_data_is_opened(standin, gloo, d1, tmp_path, change,
                                                                            named):
    run(standin, d1, stop_at=26)
    if change.get("cpt_train_data_paths") == ["NEW2"]:
        change = {"cpt_train_data_paths": [write(tmp_path / "new2", 1000, 2000, 200, 9)]}
    before = sorted(p.name for p in (tmp_path / "index").iterdir())
    with pytest.raises(ValueError, match=f"relaunch of stage 'd1' from .*global_step24 with a changed config: {named}"):
        standin.training.build_train_valid_test_data_loaders(neox_args=standin.NeoXArgs.from_dict(dict(d1, **change)))
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == before  # no other index was built


def test_stage_resume_loads_the_optimizer_even_with_no_load_optim(standin, gloo, d1):
    cfg = dict(d1, no_load_optim=True)  # NeoX: a dummy optimizer (1 parameter, lr 0), meant for inference
    _, first, _ = run(standin, cfg, stop_at=24)
    assert first.loaded["optimizer"] is False  # first launch: the stage starts with a fresh optimizer ...
    assert first.optimizer.dummy is False  # ... a real one, not NeoX's dummy
    _, resumed, _ = run(standin, cfg)
    assert resumed.loaded["path"].endswith("d1/global_step24/state.json") and resumed.loaded["optimizer"] is True
    assert resumed.optimizer.dummy is False


def test_neox_style_batch_keys_with_replay(standin, gloo, d1):
    cfg = {k: v for k, v in d1.items() if k != "train_batch_size"}
    cfg.update(train_micro_batch_size_per_gpu=2, gradient_accumulation_steps=2)
    args, model, batches = run(standin, cfg)  # (the stand-in's loop draws one micro-batch per update)
    assert args.train_batch_size == 4 and args.iteration == 60 and args._cpt_plan.num_samples == 40 * 4
    assert len(batches) == 40 and {len(b) for b in batches} == {2}


def test_eval_iters_zero_with_validation_sources(standin, gloo, d1, tmp_path):
    cfg = dict(d1, eval_iters=0, eval_interval=5, cpt_valid_data_paths=[write(tmp_path / "val", 0, 1000, 20, 7)])
    args, model, batches = run(standin, cfg)
    assert args.do_valid == 0 and len(batches) == 40 and not getattr(model, "evals", [])
    import yaml

    from neox_cpt.cli import main

    path = tmp_path / "eval0.yml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["build-index", str(path), "--quiet"]) == 0  # prebuilding: no validation index of 0 samples
