"""``neox-cpt preflight``: the plan it predicts is the plan the launch applies; problems exit non-zero."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from neox_cpt.cli import main
from neox_cpt.data.indexed import IndexedDatasetWriter
from neox_cpt.schedules.config import schedule_from_config


@pytest.fixture(autouse=True)
def _no_neox_root_from_the_environment(monkeypatch):
    """preflight reads $NEOX_CPT_NEOX_ROOT (the e2e suite's variable) for its signature check; these tests
    give --neox-root where they mean it."""
    monkeypatch.delenv("NEOX_CPT_NEOX_ROOT", raising=False)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BATCH = 4


def write(prefix, low, high, num_docs, seed):
    rng = np.random.default_rng(seed)
    with IndexedDatasetWriter(str(prefix), np.uint16) as w:
        for _ in range(num_docs):
            w.add_document(rng.integers(low, high, size=int(rng.integers(5, 40))))
    return str(prefix)


@pytest.fixture
def d0(standin, tmp_path):
    cfg = {"train_batch_size": BATCH, "seq_length": 8, "optimizer": {"type": "Adam", "params": {"lr": 1e-3}},
           "checkpoint_factor": 4, "eval_interval": 1000, "eval_iters": 1, "train_iters": 20,
           "save": str(tmp_path / "d0")}
    standin.training.pretrain(standin.NeoXArgs.from_dict(cfg))
    return tmp_path / "d0"


@pytest.fixture
def d1(tmp_path, d0):
    """A stage YAML (cosine re-warm + re-decay, 25 % replay) and its config."""
    cfg = {"train_batch_size": BATCH, "seq_length": 8, "optimizer": {"type": "Adam", "params": {"lr": 1e-3}},
           "checkpoint_factor": 4, "eval_interval": 1000, "eval_iters": 1, "train_iters": 40, "min_lr": 1e-5,
           "save": str(tmp_path / "d1"), "cpt_stage_name": "d1", "cpt_init_checkpoint": str(d0),
           "cpt_stage_iters": 40, "cpt_lr_schedule": "cosine", "cpt_lr_max": 1e-3, "cpt_lr_min": 1e-4,
           "cpt_warmup_iters": 4, "cpt_train_data_paths": [write(tmp_path / "new", 1000, 2000, 200, 1)],
           "cpt_replay_data_paths": [write(tmp_path / "old", 0, 1000, 200, 2)], "cpt_replay_frac": 0.25,
           "cpt_index_cache_dir": str(tmp_path / "index")}
    path = tmp_path / "d1.yml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path), cfg


def preflight(capsys, *argv):
    code = main(["preflight", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def launch(standin, cfg, stop_at=None):
    args = standin.NeoXArgs.from_dict(dict(cfg))
    standin.training.pretrain(args, stop_at=stop_at)
    return args


def test_preflight_predicts_the_first_launch_and_the_resume(standin, gloo, d1, capsys, tmp_path):
    path, cfg = d1
    code, first = preflight(capsys, path)
    assert code == 0 and first["preflight"]["problems"] == []
    assert (first["mode"], first["iteration"], first["stage_start"], first["end_iteration"]) == ("start", 20, 20, 60)
    assert first["next_lr"] == pytest.approx(schedule_from_config(cfg).lr_at(1)) == pytest.approx(2.5e-4)
    assert first["checkpoint"].endswith("d0/global_step20") and first["load_optimizer"] is True
    index = first["preflight"]["replay_index"]
    assert index["built"] is False and index["dir"].startswith(str(tmp_path / "index" / "d1-"))
    assert first["preflight"]["ignored_keys"] == ["min_lr: the cpt_* schedule sets the LR",
                                                  "train_iters: rewritten to 60 (stage start + stage length)"]
    args = launch(standin, cfg, stop_at=26)  # crash after the checkpoint at 24
    first.pop("preflight")
    assert args._cpt_plan.summary() == first and args._cpt_index_dir == index["dir"]

    code, again = preflight(capsys, path)
    assert code == 0 and again["preflight"]["replay_index"] == dict(index, built=True)
    assert (again["mode"], again["iteration"], again["position"], again["next_sample"]) == ("resume", 24, 4, 16)
    assert again["next_lr"] == pytest.approx(schedule_from_config(cfg).lr_at(5))
    again.pop("preflight")
    assert launch(standin, cfg)._cpt_plan.summary() == again


def test_preflight_sees_the_data_weights_neox_derives(standin, gloo, d1, capsys, tmp_path):
    _, cfg = d1
    cfg = dict(cfg, train_data_paths=cfg.pop("cpt_train_data_paths"))  # NeoX's key: NeoX gives it weight [1.0]
    path = tmp_path / "neox_paths.yml"
    path.write_text(yaml.safe_dump(cfg))
    code, predicted = preflight(capsys, str(path))
    args = launch(standin, cfg, stop_at=21)
    assert code == 0 and args.train_data_weights == [1.0]
    assert args._cpt_index_dir == predicted["preflight"]["replay_index"]["dir"]


def test_preflight_reports_problems_and_exits_non_zero(standin, gloo, d1, capsys, tmp_path):
    path, cfg = d1
    launch(standin, cfg, stop_at=26)
    changed = tmp_path / "changed.yml"
    changed.write_text(yaml.safe_dump(dict(cfg, train_batch_size=8)))
    code, out = preflight(capsys, str(changed))
    assert code == 1 and "mode" not in out
    assert "with a changed config: train_batch_size: 4 -> 8" in out["preflight"]["problems"][0]
    missing = tmp_path / "missing.yml"
    missing.write_text(yaml.safe_dump(dict(cfg, save=str(tmp_path / "d1b"), cpt_init_checkpoint=str(tmp_path / "no"))))
    code, out = preflight(capsys, str(missing))
    assert code == 1 and out["preflight"]["problems"][0].startswith("cpt_init_checkpoint: ")
    no_data = tmp_path / "no_data.yml"
    no_data.write_text(yaml.safe_dump(dict(cfg, save=str(tmp_path / "d1c"), cpt_replay_data_paths=[str(tmp_path / "x")])))
    code, out = preflight(capsys, str(no_data))
    assert code == 1 and out["mode"] == "start" and str(tmp_path / "x") in out["preflight"]["problems"][0]
    assert main(["preflight", str(no_data)]) == 1
    assert f"PROBLEM     : {out['preflight']['problems'][0]}" in capsys.readouterr().out


def test_preflight_derives_the_batch_from_micro_batches_and_gpus(d1, capsys, tmp_path):
    _, cfg = d1
    neox_style = {k: v for k, v in cfg.items() if k != "train_batch_size"}
    neox_style.update(train_micro_batch_size_per_gpu=2, gradient_accumulation_steps=2, model_parallel_size=2)
    path = tmp_path / "micro.yml"
    path.write_text(yaml.safe_dump(neox_style))
    code, out = preflight(capsys, str(path))
    assert code == 1 and "pass --gpus N" in out["preflight"]["problems"][0]
    code, out = preflight(capsys, str(path), "--gpus", "4")
    assert code == 0 and out["train_batch_size"] == 2 * 2 * (4 // 2)


def test_preflight_names_a_tokenizer_that_differs_from_the_checkpoints(d1, d0, capsys, tmp_path):
    _, cfg = d1
    (tmp_path / "old_vocab.json").write_text(json.dumps({"a": 0, "b": 1, "c": 2}))
    (tmp_path / "new_vocab.json").write_text(json.dumps({"a": 0, "b": 1, "c": 2, "d": 3}))
    (d0 / "global_step20" / "configs").mkdir()
    (d0 / "global_step20" / "configs" / "d0.yml").write_text(f"vocab-file: {tmp_path / 'old_vocab.json'}\n")
    path = tmp_path / "tok.yml"
    path.write_text(yaml.safe_dump(dict(cfg, vocab_file=str(tmp_path / "new_vocab.json"))))
    code, out = preflight(capsys, str(path))
    assert code == 1 and out["preflight"]["problems"] == [
        f"vocab_file: {tmp_path / 'new_vocab.json'} has 4 entries but the checkpoint {d0}/global_step20 was trained "
        f"with {tmp_path / 'old_vocab.json'} (3 entries); use the checkpoint's tokenizer (the embedding rows must match)"]


def test_preflight_imports_neither_torch_nor_neox(d1):
    code = ("import sys; from neox_cpt.cli import main; rc = main(['preflight', sys.argv[1]]); "
            "print(rc, sorted(m for m in ('torch', 'megatron', 'deepspeed') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, d1[0]], capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, NEOX_CPT_DISABLE="1"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "0 []"
    assert "launch      : start stage 'd1' from " in out.stdout


def test_preflight_checks_a_neox_checkout_without_importing_it(d1, capsys, tmp_path):
    import shutil

    standin = os.path.join(os.path.dirname(__file__), "standin")
    code, out = preflight(capsys, d1[0], "--neox-root", standin)
    assert code == 0 and out["preflight"]["neox_root"] == {"path": standin, "compatible": True}
    shutil.copytree(standin, tmp_path / "neox")
    path = tmp_path / "neox" / "megatron" / "data" / "data_utils.py"
    path.write_text(path.read_text().replace("def shift_and_wrap_data_loaders(neox_args, data_loaders, loop=True):",
                                             "def shift_and_wrap_data_loaders(neox_args, data_loaders):\n    loop = True"))
    code, out = preflight(capsys, d1[0], "--neox-root", str(tmp_path / "neox"))
    assert code == 1 and out["preflight"]["problems"][0].startswith(
        "neox-cpt: GPT-NeoX's megatron.training.shift_and_wrap_data_loaders is "
        "shift_and_wrap_data_loaders(neox_args, data_loaders), but neox-cpt calls "
        "shift_and_wrap_data_loaders(neox_args, data_loaders, loop=True) (tested with GPT-NeoX ea7aefd)")


def test_preflight_of_a_stock_config_says_the_plugin_stays_out(capsys, tmp_path):
    path = tmp_path / "stock.yml"
    path.write_text(yaml.safe_dump({"train_batch_size": 8, "train_iters": 10, "seq_length": 16}))
    assert main(["preflight", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "launch      : no cpt_* key: the plugin leaves this launch to stock NeoX")
