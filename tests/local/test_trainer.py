"""The local trainer on a tiny model and tiny synthetic .bin/.idx sources: resume exactness, per-source
evaluation, stage transitions and the run-directory formats (INTERFACES.md "Local run directory")."""
from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

sys.path.insert(0, str(Path(__file__).parent))  # the helpers module beside this file
from test_trainer_helpers import base_config, make_sources, records, without_timing  # noqa: E402

from neox_cpt.local import checkpoint as ckpt  # noqa: E402
from neox_cpt.local.config import load_run_config  # noqa: E402
from neox_cpt.local.trainer import TrainingStopped, train  # noqa: E402


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return make_sources(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def reference(sources, tmp_path_factory):
    """An uninterrupted run of the base config."""
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    summary = train(base_config(sources), run_dir)
    return run_dir, summary


def _weights(run_dir: Path):
    path, _ = ckpt.latest_checkpoint(run_dir / "checkpoints")
    return torch.load(path / "model.pt", weights_only=True)


@pytest.mark.slow
@pytest.mark.parametrize("stop_at", [2, 7, 10, 11, 16])
def test_resume_after_kill_gives_identical_losses(sources, reference, tmp_path, stop_at):
    ref_dir, ref_summary = reference
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingStopped) as stopped:
        train(base_config(sources), run_dir, stop_at_step=stop_at)
    assert stopped.value.global_step == stop_at
    assert not (run_dir / "summary.json").exists()
    # A checkpoint half-written when the kill came: a temporary directory, and a renamed one `latest` misses.
    (run_dir / "checkpoints" / ".tmp-step_99").mkdir(parents=True)
    (run_dir / "checkpoints" / f"step_{stop_at + 1}").mkdir()
    summary = train(base_config(sources), run_dir)
    assert without_timing(records(run_dir, "train")) == without_timing(records(ref_dir, "train"))
    assert records(run_dir, "eval") == records(ref_dir, "eval")
    assert summary["final"] == ref_summary["final"]
    for key, value in _weights(ref_dir).items():
        assert torch.equal(value, _weights(run_dir)[key]), key
    assert not (run_dir / "checkpoints" / ".tmp-step_99").exists()


def test_resume_inside_a_log_interval_keeps_the_interval_mean(sources, tmp_path):
    cfg = base_config(sources, log_interval=4, checkpoint_interval=3)
    train(cfg, tmp_path / "ref")
    with pytest.raises(TrainingStopped):
        train(cfg, tmp_path / "run", stop_at_step=7)  # latest = step 6, inside the interval (4, 8]
    train(cfg, tmp_path / "run")
    ref, run = records(tmp_path / "ref", "train"), records(tmp_path / "run", "train")
    assert [r["stage_step"] for r in ref] == [4, 8, 10, 4, 8]
    assert without_timing(run) == without_timing(ref)


def test_finished_run_is_not_retrained(sources, reference, tmp_path):
    ref_dir, ref_summary = reference
    copy = tmp_path / "copy"
    shutil.copytree(ref_dir, copy)
    before = (copy / "metrics.jsonl").read_text()
    assert train(base_config(sources), copy) == ref_summary
    assert (copy / "metrics.jsonl").read_text() == before
    (copy / "summary.json").unlink()  # rebuilt from the final checkpoint and the last evaluation
    rebuilt = train(base_config(sources), copy)
    assert {k: rebuilt[k] for k in ("final", "tokens_trained", "tokens_total", "global_step")} == {
        k: ref_summary[k] for k in ("final", "tokens_trained", "tokens_total", "global_step")}


def test_eval_loss_is_mean_cross_entropy_of_the_fixed_valid_samples(sources, reference):
    from neox_cpt.data.dataset import SourceDataset
    from neox_cpt.local.evaluate import VALID_SEED
    from neox_cpt.local.model import build_model

    run_dir, summary = reference
    cfg = load_run_config(base_config(sources))
    model = build_model(cfg.model, cfg.vocab_size, cfg.seq_length)
    ckpt.load_checkpoint(ckpt.latest_checkpoint(run_dir / "checkpoints")[0], model)
    model.eval()
    for name in ("old", "new"):
        ds = SourceDataset(sources[name]["valid"], 16, 6, VALID_SEED)
        nll = []
        with torch.no_grad():
            for i in range(6):  # one sample at a time, log-softmax by hand
                tokens = torch.from_numpy(ds[i]["text"])
                logp = torch.log_softmax(model(input_ids=tokens[None, :-1]).logits[0].double(), dim=-1)
                nll += (-logp[torch.arange(16), tokens[1:]]).tolist()
        assert summary["final"][name] == pytest.approx(float(np.mean(nll)), rel=1e-5)
    # d0 lowers the old source's loss from about ln 300; d1 lowers the new one's and (a little) forgets the old.
    evals = {(r["stage"], r["stage_step"], r["source"]): r["loss"] for r in records(run_dir, "eval")}
    assert evals[0, 0, "old"] > 5.6 and evals[0, 0, "new"] > 5.6
    assert evals[0, 10, "old"] < evals[0, 0, "old"] - 0.05
    assert summary["final"]["new"] < evals[0, 10, "new"] - 0.1
    assert summary["final"]["old"] > evals[0, 10, "old"]


def test_stage_transition_rewarms_lr_and_resets_data_position(sources, reference):
    from neox_cpt.schedules import schedule_from_config
    from neox_cpt.local.config import stage_mapping

    run_dir, _ = reference
    cfg = load_run_config(base_config(sources))
    train_recs = records(run_dir, "train")
    assert [r["global_step"] for r in train_recs] == list(range(1, 19))
    assert [r["stage_step"] for r in train_recs] == list(range(1, 11)) + list(range(1, 9))
    assert [r["stage"] for r in train_recs] == [0] * 10 + [1] * 8
    d1 = schedule_from_config(stage_mapping(cfg, cfg.stages[1]))
    # The first update of d1 uses the re-warm's first value lr_max / 2 (2 warmup steps), after d0 ended low.
    assert train_recs[9]["lr"] == pytest.approx(3e-4)
    assert train_recs[10]["lr"] == d1.lr_at(1) == pytest.approx(1.5e-3)
    assert train_recs[11]["lr"] == pytest.approx(3e-3)
    assert [r["tokens"] for r in train_recs] == [64 * g for g in range(1, 19)]
    end_d0 = ckpt.read_state(ckpt.stage_end_checkpoint(run_dir / "checkpoints", "d0"))
    assert (end_d0["global_step"], end_d0["stage_step"], end_d0["data_position"]) == (10, 10, 40)
    final = ckpt.latest_checkpoint(run_dir / "checkpoints")[1]
    assert (final["global_step"], final["stage_index"], final["stage_step"], final["data_position"]) == (18, 1, 8, 32)
    assert final["scheduler"]["position"] == 8 and final["run_complete"]


@pytest.mark.parametrize("reset", [True, False])
def test_optimizer_reset_or_kept_at_stage_start(sources, tmp_path, reset):
    cfg = base_config(sources, checkpoint_interval=1)
    cfg["stages"][1]["reset_optimizer"] = reset
    with pytest.raises(TrainingStopped):
        train(cfg, tmp_path / "run", stop_at_step=11)
    path, state = ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert path.name == "step_11"
    adam = torch.load(path / "optimizer.pt", weights_only=True)["state"]
    steps = {int(s["step"]) for s in adam.values()}
    assert steps == ({1} if reset else {11})
    assert (state["stage_index"], state["stage_step"], state["data_position"]) == (1, 1, 4)


def test_run_directory_formats(sources, reference):
    from neox_cpt.local.report import load_run

    run_dir, summary = reference
    stages = json.loads((run_dir / "stages.json").read_text())
    assert [set(s) for s in stages] == [{"name", "index", "start_step", "num_steps", "start_tokens", "num_tokens",
                                         "replay_frac", "schedule", "init_from", "reset_optimizer", "train_sources",
                                         "valid_sources"}] * 2
    assert [(s["name"], s["start_step"], s["num_steps"], s["start_tokens"], s["num_tokens"]) for s in stages] == [
        ("d0", 0, 10, 0, 640), ("d1", 10, 8, 640, 512)]
    assert stages[1]["train_sources"] == {"new": 0.75, "old": 0.25}
    assert stages[1]["init_from"] == "d0" and stages[0]["init_from"] is None
    assert stages[0]["valid_sources"] == ["old", "new"]
    for rec in records(run_dir, "train"):
        assert set(rec) == {"kind", "global_step", "stage", "stage_step", "tokens", "lr", "loss", "tok_per_s"}
    evals = records(run_dir, "eval")
    for rec in evals:
        assert set(rec) == {"kind", "global_step", "stage", "stage_step", "tokens", "source", "loss"}
    # Evaluated at step 0, every 4 stage steps and at each stage end; d1 starts from d0's end (no step-0 eval).
    assert sorted({(r["stage"], r["stage_step"]) for r in evals}) == [(0, 0), (0, 4), (0, 8), (0, 10), (1, 4),
                                                                       (1, 8)]
    assert summary["final"] == {r["source"]: r["loss"] for r in evals[-2:]}
    assert (summary["tokens_trained"], summary["tokens_total"]) == (1152, 1152)
    assert {"final", "tokens_trained", "tokens_total", "wall_s"} <= set(summary)
    run = load_run(run_dir)  # D3's reader accepts it
    assert run.final_loss("old") == summary["final"]["old"] and len(run.stages) == 2


def test_init_from_another_run_continues_its_lineage(sources, reference, tmp_path):
    ref_dir, ref_summary = reference
    cfg = base_config(sources)
    cfg["stages"] = [{"name": "d1b", "sources": {"new": 1.0}, "steps": 3, "init_from": str(ref_dir)}]
    summary = train(cfg, tmp_path / "child")
    stages = json.loads((tmp_path / "child" / "stages.json").read_text())
    assert (stages[0]["start_step"], stages[0]["start_tokens"]) == (18, 1152)
    assert stages[0]["init_from"] == str(ref_dir.resolve())
    first = records(tmp_path / "child", "eval")[:2]
    assert {r["source"]: r["loss"] for r in first} == pytest.approx(ref_summary["final"], rel=1e-6)
    assert [r["global_step"] for r in records(tmp_path / "child", "train")] == [19, 20, 21]
    assert (summary["tokens_trained"], summary["tokens_total"]) == (192, 1344)


def test_init_from_an_unfinished_run_is_refused(sources, tmp_path):
    with pytest.raises(TrainingStopped):
        train(base_config(sources), tmp_path / "parent", stop_at_step=4)
    cfg = base_config(sources)
    cfg["stages"] = [{"name": "x", "sources": {"new": 1.0}, "steps": 3, "init_from": str(tmp_path / "parent")}]
    with pytest.raises(ValueError, match="has not finished"):
        train(cfg, tmp_path / "child")


def test_resume_with_a_changed_config_is_refused(sources, tmp_path):
    with pytest.raises(TrainingStopped):
        train(base_config(sources), tmp_path / "run", stop_at_step=4)
    changed = base_config(sources)
    changed["stages"][0]["steps"] = 12
    with pytest.raises(ValueError, match=r"stages\[0\]\.num_steps: 10 -> 12; stages\[0\]\.num_tokens: 640 -> 768"):
        train(changed, tmp_path / "run")
    train(changed, tmp_path / "run", resume=False)  # --fresh starts over
    assert records(tmp_path / "run", "train")[-1]["global_step"] == 20


def test_cli_trains_resumes_and_reports_finished(sources, reference, tmp_path, capsys):
    import yaml

    from neox_cpt.cli import main

    ref_dir, ref_summary = reference
    path = tmp_path / "run.yml"
    path.write_text(yaml.safe_dump(base_config(sources)))
    assert main(["train", str(path), "--run-dir", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "stage d1 | step 8/8 | lr 3.0e-04 | loss " in out and "| eta 0s" in out
    assert f"done: {tmp_path / 'run'} | 1,152 tokens | final validation loss new " in out  # YAML sorted the sources
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["final"] == ref_summary["final"]
    assert main(["train", str(path), "--run-dir", str(tmp_path / "run")]) == 0
    assert "finished at global step 18; nothing to do" in capsys.readouterr().out


def test_tensorboard_events_after_a_kill_and_resume_hold_each_step_once(sources, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = base_config(sources, tensorboard=True)
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingStopped):
        train(cfg, run_dir, stop_at_step=8)   # events of steps 7-8 are written; the checkpoint is at step 6
    train(cfg, run_dir)
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    losses = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert losses == [(r["global_step"], pytest.approx(r["loss"], rel=1e-6)) for r in records(run_dir, "train")]
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 19))
    evals = [(e.step, e.value) for e in events.Scalars("eval/new")]
    assert evals == [(r["global_step"], pytest.approx(r["loss"], rel=1e-6)) for r in records(run_dir, "eval")
                     if r["source"] == "new"]


def test_threads_guarantee_as_documented(sources, reference, tmp_path):
    """docs/local.md: same threads -> bit-identical; 1 vs 2 threads -> equal to float rounding only."""
    cfg = base_config(sources)  # threads: 1, like the reference
    cfg["stages"] = cfg["stages"][:1]
    one, two = tmp_path / "one", tmp_path / "two"
    train(cfg, one)
    train(dict(cfg, threads=2), two)
    ref = torch.load(reference[0] / "checkpoints" / "step_10" / "model.pt", weights_only=True)
    w1, w2 = _weights(one), _weights(two)
    assert all(torch.equal(w1[k], ref[k]) for k in ref)  # same threads: bit-identical
    worst = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    assert worst < 1e-4  # another thread count: float rounding, not another result
    losses = [[r["loss"] for r in records(d, "train")] for d in (one, two)]
    assert np.allclose(losses[0], losses[1], rtol=1e-5, atol=0)


def test_checkpoint_files_are_fsynced_before_latest_moves(tmp_path, monkeypatch):
    import os

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    model = torch.nn.Linear(2, 2)
    ckpt.save_checkpoint(tmp_path, {"global_step": 3}, model, torch.optim.AdamW(model.parameters()))
    moved = events.index(("replace", str(tmp_path / "latest")))
    # a file written via a temporary name is fsynced under that name (".state.json.tmp<pid>") before its rename
    synced = {re.sub(r"^\.(.*)\.tmp\d+$", r"\1", Path(p).name) for kind, p in events[:moved] if kind == "fsync"}
    assert {"model.pt", "optimizer.pt", "rng.pt", "state.json", tmp_path.name} <= synced
    assert ("fsync", str(tmp_path)) in events[moved:]  # the new `latest` name itself made durable
