"""`neox-cpt build-index` / `inspect-index` and tools/build_replay_index.py."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from neox_cpt.cli import main
from neox_cpt.data.cache import build_index
from neox_cpt.data.spec import replay_spec_from_config
from replay_helpers import numbered_docs, random_sizes, write_docs

ROOT = Path(__file__).resolve().parents[2]


def make_config(tmp_path, **extra):
    new = write_docs(tmp_path / "new", numbered_docs(random_sizes(30, 1)))
    old = write_docs(tmp_path / "old", numbered_docs(random_sizes(30, 2), base=5000))
    cfg = {"cpt_train_data_paths": [new], "cpt_replay_data_paths": [old], "cpt_replay_frac": 0.1,
           "cpt_index_cache_dir": str(tmp_path / "cache"), "train_iters": 5, "train_batch_size": 20,
           "seq_length": 6, "seed": 3, "cpt_valid_data_paths": [old]}
    cfg.update(extra)
    path = tmp_path / "stage.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path, cfg


def test_build_index_cli_builds_what_training_would_and_prints_shares(tmp_path, capsys):
    path, cfg = make_config(tmp_path)
    assert main(["build-index", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    expected = build_index(replay_spec_from_config(cfg), cfg["cpt_index_cache_dir"], progress=False)
    assert f"index: {expected}" in out
    new_row = next(line for line in out.splitlines() if line.startswith("new "))
    assert "0.900000" in new_row and new_row.split()[4] == "0.900000" and "90" in new_row.split()
    assert "validation index:" in out


def test_inspect_index_verifies_and_detects_a_changed_data_file(tmp_path, capsys):
    path, cfg = make_config(tmp_path)
    index = build_index(replay_spec_from_config(cfg), cfg["cpt_index_cache_dir"], progress=False)
    assert main(["inspect-index", str(index)]) == 0
    assert "verified: OK" in capsys.readouterr().out
    write_docs(tmp_path / "old", numbered_docs(random_sizes(30, 7)))
    assert main(["inspect-index", str(index)]) == 1
    assert "old" in capsys.readouterr().out.split("PROBLEM:")[1]
    counts = json.loads((index / "counts.json").read_text())
    counts["sources"][0]["samples"] += 1
    (index / "counts.json").write_text(json.dumps(counts))
    assert main(["inspect-index", str(index), "--no-file-check"]) == 1
    assert "counts.json says" in capsys.readouterr().out


def test_inspect_index_detects_tampered_arrays(tmp_path, capsys):
    path, cfg = make_config(tmp_path)
    index = build_index(replay_spec_from_config(cfg), cfg["cpt_index_cache_dir"], progress=False)
    table = np.load(index / "blend_table_new.npy")
    table[:2] = 1 - table[:2]
    np.save(index / "blend_table_new.npy", table)
    assert main(["inspect-index", str(index), "--no-file-check"]) == 1
    assert "blend_table_new.npy" in capsys.readouterr().out


def test_bad_config_is_a_one_line_error(tmp_path, capsys):
    path, _ = make_config(tmp_path, cpt_replay_frac=1.5)
    assert main(["build-index", str(path)]) == 2
    err = capsys.readouterr().err
    assert "cpt_replay_frac=1.5" in err and "Traceback" not in err


def test_tools_script(tmp_path):
    path, cfg = make_config(tmp_path)
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "build_replay_index.py"), str(path), "--quiet"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("index: ")


def test_build_index_cli_shows_a_progress_bar_and_takes_num_samples(tmp_path, capsys):
    path, cfg = make_config(tmp_path)
    assert main(["build-index", str(path), "--num-samples", "40"]) == 0
    captured = capsys.readouterr()
    assert "new: samples" in captured.err and "100.0%" in captured.err
    new_row = next(line for line in captured.out.splitlines() if line.startswith("new "))
    assert new_row.split()[5] == "36"  # 0.9 x 40


def test_build_index_and_schedule_agree_on_a_stage_given_in_tokens(tmp_path, capsys):
    from neox_cpt.data.dataset import ReplayDataset
    from neox_cpt.schedules import schedule_from_config

    # 1000 tokens at 20 x 6 tokens per step = 8.33 -> 9 steps; the index must hold 9 x 20 samples
    path, cfg = make_config(tmp_path, cpt_stage_tokens=1000, cpt_lr_max=1.0e-3)
    del cfg["train_iters"]
    path.write_text(yaml.safe_dump(cfg))
    assert main(["build-index", str(path), "--quiet"]) == 0
    index = Path(capsys.readouterr().out.split("index: ", 1)[1].split()[0])
    assert schedule_from_config(cfg).num_steps == 9
    assert len(ReplayDataset(index)) == 9 * 20


def test_build_index_has_nothing_to_build_for_an_anneal_branch(tmp_path, capsys):
    path = tmp_path / "anneal.yml"
    path.write_text(yaml.safe_dump({"cpt_continue_parent_data": True, "cpt_init_checkpoint": str(tmp_path),
                                    "train_iters": 5, "train_batch_size": 4, "seq_length": 6}))
    assert main(["build-index", str(path), "--quiet"]) == 0
    assert "nothing to build" in capsys.readouterr().out
    assert not (tmp_path / "neox_cpt_index").exists()
