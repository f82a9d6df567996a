"""Opt-in integration suite against a real GPT-NeoX checkout (NEOX.md's CPU recipe).

    NEOX_CPT_NEOX_ROOT=/path/to/gpt-neox /path/to/neox-venv/bin/python -m pytest tests/neox/test_real_neox.py

Run with the Python of a NeoX environment (torch, deepspeed, NeoX's requirements, neox-cpt installed) and
megatron/data/helpers.cpp built; docs/neox.md has the set-up. Each check runs in a fresh interpreter
(real_neox_checks.py) so real ``megatron`` never meets the stand-in of the other tests.
"""
import json
import os
import subprocess
import sys

import pytest

NEOX_ROOT = os.environ.get("NEOX_CPT_NEOX_ROOT")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.neox,
    pytest.mark.skipif(not NEOX_ROOT, reason="opt-in: set NEOX_CPT_NEOX_ROOT to a GPT-NeoX checkout (docs/neox.md)"),
]
HERE = os.path.dirname(os.path.abspath(__file__))


def run_check(name, tmp_path, port):
    if not os.path.isfile(os.path.join(NEOX_ROOT, "megatron", "training.py")):
        pytest.fail(f"NEOX_CPT_NEOX_ROOT={NEOX_ROOT!r} is not a GPT-NeoX checkout (no megatron/training.py)")
    env = dict(os.environ, PYTHONPATH=NEOX_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               NEOX_CPT_TEST_PORT=str(port))
    env.pop("NEOX_CPT_DISABLE", None)
    proc = subprocess.run([sys.executable, os.path.join(HERE, "real_neox_checks.py"), name, str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=NEOX_ROOT, timeout=900)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    log = [line for line in proc.stdout.splitlines() if line.startswith("neox-cpt")]
    return json.loads(lines[-1][len("RESULT "):]), log


def test_every_shipped_config_through_from_ymls(tmp_path):
    result, _ = run_check("configs", tmp_path, 29541)
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


def test_scheduler_stage_change_and_reload_deepspeed_style(tmp_path):
    r, log = run_check("scheduler", tmp_path, 29542)
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


def test_replay_blend_through_neox_data_loaders(tmp_path):
    r, log = run_check("data", tmp_path, 29543)
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
