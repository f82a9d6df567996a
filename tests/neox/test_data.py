"""The replay blend through NeoX-style loaders (stand-in), on a gloo process group of size 1."""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neox_cpt.data.indexed import IndexedDatasetWriter  # noqa: E402
from neox_cpt.neox.data import PerSourceIterators  # noqa: E402

BATCH, ITERS, SEQ = 8, 20, 16


def write(prefix, low, high, num_docs, seed):
    rng = np.random.default_rng(seed)
    with IndexedDatasetWriter(str(prefix), np.uint16) as w:
        for _ in range(num_docs):
            w.add_document(rng.integers(low, high, size=int(rng.integers(10, 80))))
    return str(prefix)


@pytest.fixture
def stage(tmp_path):
    d0 = tmp_path / "d0"
    (d0 / "global_step100").mkdir(parents=True)
    (d0 / "latest").write_text("global_step100")
    return {"train_batch_size": BATCH, "seq_length": SEQ, "optimizer": {"type": "Adam", "params": {"lr": 1e-3}},
            "eval_interval": 5, "eval_iters": 1, "train_iters": ITERS, "save": str(tmp_path / "d1"),
            "cpt_stage_name": "d1", "cpt_init_checkpoint": str(d0), "cpt_stage_iters": ITERS,
            "cpt_train_data_paths": [write(tmp_path / "new", 1000, 2000, 300, 1)],
            "cpt_replay_data_paths": [write(tmp_path / "old", 0, 1000, 300, 2)], "cpt_replay_frac": 0.25,
            "cpt_valid_data_paths": [write(tmp_path / "old_val", 0, 1000, 40, 3),
                                     write(tmp_path / "new_val", 1000, 2000, 40, 4)],
            "cpt_index_cache_dir": str(tmp_path / "index")}


def test_replay_loaders_shares_flags_and_stage_local_resume(standin, gloo, stage):
    args = standin.NeoXArgs.from_dict(stage)
    loaders = standin.training.build_train_valid_test_data_loaders(neox_args=args)
    assert (args.do_train, args.do_valid, args.do_test) == (1, 1, 0)
    train = loaders["train"]
    assert len(train.dataset) == ITERS * BATCH and len(train) == ITERS  # sized to the stage
    batches = [b["text"].numpy() for b in train]
    assert batches[0].shape == (BATCH, SEQ + 1)
    replay = np.array([(b.max(axis=1) < 1000).sum() for b in batches])
    assert replay.sum() == ITERS * BATCH // 4 and set(replay) <= {1, 2, 3}  # 25 % overall, ~2 of 8 per batch
    assert isinstance(loaders["valid"], PerSourceIterators) and list(loaders["valid"].iterators) == [
        "old_val", "new_val"]
    args.iteration, args._cpt_stage_start = 107, 100  # resumed 7 iterations into a stage that began at 100
    train_it, valid_it, _ = standin.training.shift_and_wrap_data_loaders(neox_args=args, data_loaders=loaders)
    assert np.array_equal(next(train_it)["text"].numpy(), batches[7])
    old, new = (next(valid_it.iterators[n])["text"].numpy() for n in ("old_val", "new_val"))
    assert old.max() < 1000 <= new.min()


def test_data_position_beyond_the_stage_is_refused(standin, gloo, stage):
    args = standin.NeoXArgs.from_dict(stage)
    loaders = standin.training.build_train_valid_test_data_loaders(neox_args=args)
    args.iteration, args._cpt_stage_start = 100 + ITERS + 1, 100
    with pytest.raises(ValueError, match="data holds only 20 iterations"):
        standin.training.shift_and_wrap_data_loaders(neox_args=args, data_loaders=loaders)


def test_per_source_evaluation_fans_out(standin, gloo, stage):
    args = standin.NeoXArgs.from_dict(stage)
    loaders = standin.training.build_train_valid_test_data_loaders(neox_args=args)
    args.iteration, args._cpt_stage_start = 100, 100
    _, valid_it, _ = standin.training.shift_and_wrap_data_loaders(neox_args=args, data_loaders=loaders)
    model = type("M", (), {})()
    standin.training.evaluate_and_print_results(args, "iteration 105", None, valid_it, model, 105)
    charts = [(chart, int(batch["text"].max() >= 1000)) for _, chart, batch in model.evals]
    assert charts == [("validation_old_val", 0), ("validation_new_val", 1)]
    assert os.path.isdir(args._cpt_index_dir)


def test_anneal_branch_continues_the_parent_stage_data_from_the_branch_point(standin, gloo, stage, tmp_path):
    from types import SimpleNamespace

    from neox_cpt.neox import stages

    args = standin.NeoXArgs.from_dict(stage)
    parent = [b["text"].numpy() for b in standin.training.build_train_valid_test_data_loaders(neox_args=args)["train"]]
    # the parent stage d1 (began at global iteration 100) saves at 112 through the patched save_checkpoint
    args._cpt_stage_start, args._cpt_stage_iters = 100, ITERS
    scheduler, optimizer = SimpleNamespace(state_dict=dict), SimpleNamespace(param_groups=[{"lr": 1e-3}])
    standin.training.save_checkpoint(args, 112, None, optimizer, scheduler)
    data_keys = ("cpt_train_data_paths", "cpt_replay_data_paths", "cpt_replay_frac")
    branch = {k: v for k, v in stage.items() if k not in data_keys}
    branch.update(cpt_stage_name="d1_anneal", cpt_init_checkpoint=stage["save"], cpt_continue_parent_data=True,
                  cpt_stage_iters=5, train_iters=5, save=str(tmp_path / "anneal"))
    bargs = standin.NeoXArgs.from_dict(branch)
    loaders = standin.training.build_train_valid_test_data_loaders(neox_args=bargs)
    assert bargs._cpt_index_dir == args._cpt_index_dir and bargs._cpt_data_start == 12 * BATCH
    got = [b["text"].numpy() for _, b in zip(range(5), loaders["train"])]
    assert all(np.array_equal(g, p) for g, p in zip(got, parent[12:17]))  # exactly the parent's next batches
    # a resume of the branch 2 iterations in continues at the parent's batch 14; its sidecar records position
    bargs.iteration, bargs._cpt_stage_start, bargs._cpt_stage_iters = 114, 112, 5
    train_it, _, _ = standin.training.shift_and_wrap_data_loaders(neox_args=bargs, data_loaders=loaders)
    assert np.array_equal(next(train_it)["text"].numpy(), parent[14])
    standin.training.save_checkpoint(bargs, 114, None, optimizer, scheduler)
    assert stages.parent_data(str(tmp_path / "anneal")) == (args._cpt_index_dir, 14 * BATCH)
    # a branch longer than what is left of the parent's index is refused
    with pytest.raises(ValueError, match=r"holds 64 samples after position 96, the branch needs 72"):
        standin.training.build_train_valid_test_data_loaders(
            neox_args=standin.NeoXArgs.from_dict(dict(branch, cpt_stage_iters=9, train_iters=9,
                                                      save=str(tmp_path / "anneal_long"))))
    with pytest.raises(ValueError, match="cpt_continue_parent_data: true with cpt_train_data_paths"):
        standin.NeoXArgs.from_dict(dict(branch, cpt_train_data_paths=stage["cpt_train_data_paths"]))


def test_build_index_cli_prebuilds_exactly_what_the_loaders_open(standin, gloo, stage, tmp_path):
    """`neox-cpt build-index` on the stage YAML builds the training and every validation index; the NeoX
    loaders then open those directories and build nothing new (same cache keys)."""
    import yaml

    from neox_cpt.cli import main

    path = tmp_path / "stage.yml"
    path.write_text(yaml.safe_dump(stage))
    assert main(["build-index", str(path), "--quiet"]) == 0
    cache = tmp_path / "index"
    def indexes():
        return sorted(p.name for p in cache.iterdir() if not p.name.startswith("."))  # not the lock files

    prebuilt = indexes()
    assert len(prebuilt) == 3 and prebuilt[0].startswith("d1-")  # the replay index + one per validation source
    standin.training.build_train_valid_test_data_loaders(neox_args=standin.NeoXArgs.from_dict(stage))
    assert indexes() == prebuilt
