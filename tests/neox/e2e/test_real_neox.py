"""NeoX pieces under the plugin, one check per fresh interpreter of NeoX's Python (real_neox_checks.py).

Part of the end-to-end suite (same discovery of NeoX, same skip line, see neox_e2e.py); these checks call
NeoX functions directly (config loading, the scheduler under a DeepSpeed engine, the data loaders on gloo)
where the scenarios drive NeoX's whole ``deepy.py train.py``. The checks import neox_cpt from this checkout
(first on ``PYTHONPATH``) and install the hook with ``neox_cpt.install()``.
"""
import json
import os
import subprocess

import pytest

import neox_e2e as e2e

pytestmark = [pytest.mark.slow, pytest.mark.neox]
HERE = os.path.dirname(os.path.abspath(__file__))


def run_check(neox, name, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(e2e.REPO), str(neox.root)]),
               NEOX_CPT_TEST_PORT=str(e2e.free_port()), OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu")
    for key in ("NEOX_CPT_DISABLE", "VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(key, None)
    proc = subprocess.run([str(neox.python), os.path.join(HERE, "real_neox_checks.py"), name, str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=neox.root, timeout=900)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    log = [line for line in proc.stdout.splitlines() if line.startswith("neox-cpt")]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["neox_cpt_file"].startswith(str(e2e.REPO) + os.sep), result["neox_cpt_file"]  # this checkout
    return result, log


def test_every_shipped_config_through_from_ymls(neox, tmp_path):
    result, _ = run_check(neox, "configs", tmp_path)
    configs = result["configs"]
    assert len(configs) >= 10
    for name, info in configs.items():
        assert info["cpt"], name
        assert info["cpt_in_deepspeed_config"] == [], name
        assert info["worker_equal"], name
        assert info["train_batch_size"] == 1104, name
    replay = {n for n, info in configs.items() if info["same_index_spec_as_build_index"] is not None}
    assert {"10B_cpt.yml", "405M_d1_german.yml", "405M_inf_s3_german.yml"} <= replay
    assert all(configs[n]["same_index_spec_as_build_index"] for n in replay)  # prebuilt index is found
    assert configs["10B_cpt.yml"]["cpt"]["cpt_replay_frac"] == 0.05
    assert configs["10B_cpt.yml"]["grad_acc"] == 1104  # one data-parallel replica of TP 6 x PP 4
    errors = result["errors"]
    assert "cpt_replay_frac=1.5" in errors["cpt_replay_frac"]
    assert "did you mean 'cosine'" in errors["cpt_lr_schedule"]
    assert "cpt_stage_iters" in errors["cpt_stage_iters"]


def test_scheduler_stage_change_and_reload_deepspeed_style(neox, tmp_path):
    r, log = run_check(neox, "scheduler", tmp_path)
    assert (r["type_stage0"], r["type_stage1"]) == ("AnnealingLR", "StageLR")
    schedule = r["schedule"]
    first = r["first"]
    assert first["iteration"] == 6 and first["stage_start"] == 6 and first["train_iters"] == 16
    assert first["loaded_from_keys"] == ["decay_style", "end_iter", "min_lr", "num_iters", "start_lr", "warmup_iter"]
    assert first["lr_after_load"] == pytest.approx(schedule[1]) and schedule[1] > 0  # re-warm, non-zero
    assert r["lrs_stage1"] == pytest.approx(schedule[1:5])
    res = r["resumed"]
    assert (res["iteration"], res["stage_start"], res["position"], res["train_iters"]) == (10, 6, 4, 16)
    assert res["lr_after_load"] == pytest.approx(schedule[5])
    assert r["lrs_resumed"] == pytest.approx(schedule[5:11])
    assert r["sidecar"]["stage_name"] == "d1" and r["sidecar"]["samples_consumed"] == 32
    assert any("started stage 'd1' at global iteration 6" in line for line in log)
    assert any("resumed stage 'd1' at global iteration 10" in line for line in log)


def test_replay_blend_through_neox_data_loaders(neox, tmp_path):
    r, log = run_check(neox, "data", tmp_path)
    assert r["flags"] == [1, 1, 0]
    assert r["sampler_type"] == "megatron.data.samplers.DistributedBatchSampler"
    assert r["dataset_len"] == 400 and r["len_train_batches"] == 50  # sized to the stage: 50 iters x 8
    assert r["replay_share"] == pytest.approx(0.25)
    assert max(abs(s - 0.25) for s in r["replay_share_per_batch"]) <= 0.125  # every batch ~x % replay
    assert r["first_batch_is_sample_0"] and r["resumed_equals_batch_20"]
    assert r["seq_plus_one"] == 33
    assert r["valid_sources"]["old_val"][1] < 1000 <= r["valid_sources"]["new_val"][0]
    assert [line.split(" results")[0] for line in r["eval_lines"]] == ["validation_old_val", "validation_new_val"]
    assert sum(line.startswith("neox-cpt active: patched megatron.training.") for line in log) == 1
