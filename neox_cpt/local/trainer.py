"""The local trainer: a multi-stage continual pre-training run of a small GPT-NeoX on one machine.

It goes through the cluster's code paths: each stage's flat NeoX-style mapping (``config.stage_mapping``)
gives its LR schedule (``neox_cpt.schedules.schedule_from_config`` driven by ``ScheduleLR``) and its
replay index (``replay_spec_from_config`` -> ``build_index`` -> ``ReplayDataset``). Three clocks are kept
and checkpointed separately: the global step, the stage step (= schedule position) and the data position
(samples consumed from this stage's index). ``train`` on a run directory with checkpoints resumes from
the latest one and produces the same losses as an uninterrupted run (docs/local.md).

    >>> from neox_cpt.local.trainer import train                          # doctest: +SKIP
    >>> summary = train("configs/local/demo.yml", "runs/demo")            # doctest: +SKIP
    >>> summary["final"]                                                  # doctest: +SKIP
    {'sotu': 4.61, 'bible': 5.02, 'german': 3.98}
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

import yaml

from neox_cpt.local import checkpoint as ckpt
from neox_cpt.local.config import RunConfig, StageConfig, check_run_data, load_run_config, stage_mapping
from neox_cpt.local.metrics import MetricsWriter, progress_line, write_json

logger = logging.getLogger(__name__)
ConfigLike = Union[str, "Path", Mapping[str, Any], RunConfig]
# Settings that may change between a run and its resumption (they do not change the numbers).
RESUME_FREE = ("run_dir", "name", "device", "threads", "tensorboard", "keep_checkpoints")


class TrainingStopped(Exception):
    """Raised by ``train(stop_at_step=g)`` after global step g (a simulated kill: no checkpoint is written)."""

    def __init__(self, global_step: int) -> None:
        super().__init__(f"stopped at global step {global_step}")
        self.global_step = global_step


@dataclass
class Clocks:
    """The trainer's mutable position; saved in every checkpoint's state.json."""

    global_step: int
    stage_index: int
    stage_step: int = 0
    data_position: int = 0
    tokens: int = 0
    loss_sum: float = 0.0
    loss_steps: int = 0
    train_s: float = 0.0
    wall_s: float = 0.0


def _normalised(cfg: RunConfig) -> Dict[str, Any]:
    return json.loads(json.dumps(cfg.to_dict()))


def _differences(saved: Any, now: Any, where: str = "") -> List[str]:
    """``key: old -> new`` for every leaf that differs between two resolved configs (dicts and lists walked)."""
    if isinstance(saved, dict) and isinstance(now, dict):
        out: List[str] = []
        for k in sorted(set(saved) | set(now), key=str):
            if where or k not in RESUME_FREE:
                out += _differences(saved.get(k), now.get(k), f"{where}.{k}" if where else str(k))
        return out
    if isinstance(saved, list) and isinstance(now, list) and len(saved) == len(now):
        return [d for i, (a, b) in enumerate(zip(saved, now)) for d in _differences(a, b, f"{where}[{i}]")]
    return [] if saved == now else [f"{where}: {saved!r} -> {now!r}"]


def _check_same_config(run_dir: Path, cfg: RunConfig) -> None:
    from neox_cpt.schedules.loader import read_yaml

    saved = read_yaml(run_dir / "run.yml", "saved run config") if (run_dir / "run.yml").is_file() else None
    if saved is None:
        return
    diff = _differences(saved, _normalised(cfg))
    if diff:
        shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
        raise ValueError(f"{run_dir} holds a run with a different config ({shown}; its run.yml has the left "
                         "values); resume with the same config, or use a new run directory (or --fresh to start "
                         "over)")


def _stage_table(cfg: RunConfig, base_step: int, base_tokens: int) -> List[Dict[str, Any]]:
    from neox_cpt.schedules import schedule_from_config

    table, step, tokens = [], base_step, base_tokens
    for st in cfg.stages:
        table.append({"name": st.name, "index": st.index, "start_step": step, "num_steps": st.num_steps,
                      "start_tokens": tokens, "num_tokens": st.num_tokens, "replay_frac": st.replay_frac,
                      "schedule": schedule_from_config(stage_mapping(cfg, st)).to_dict(),
                      "init_from": st.init_from, "reset_optimizer": st.reset_optimizer,
                      "train_sources": st.train_shares(), "valid_sources": list(cfg.eval_sources)})
        step, tokens = step + st.num_steps, tokens + st.num_tokens
    return table


class _Run:
    """One invocation of ``train``: the model, optimiser, data and writers of a run directory."""

    def __init__(self, cfg: RunConfig, run_dir: Path, progress: Callable[[str], None]) -> None:
        import torch

        from neox_cpt.local.evaluate import load_validation_sets
        from neox_cpt.local.model import build_model, build_optimizer, num_params, resolve_device, set_threads

        self.cfg, self.run_dir, self.say = cfg, run_dir, progress
        self.ckpt_root = run_dir / "checkpoints"
        self.device = resolve_device(cfg.device)
        threads = set_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg.model, cfg.vocab_size, cfg.seq_length).to(self.device)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self._build_optimizer = build_optimizer
        self.valid = load_validation_sets(cfg)
        logger.info("model: %.2fM parameters on %s (%d threads); validation sources %s",
                    num_params(self.model) / 1e6, self.device, threads, list(self.valid))

    # ----------------------------------------------------------------------------------------- stages
    def enter_stage(self, stage: StageConfig) -> None:
        """Set the weights and optimiser a fresh stage starts from."""
        import torch

        from neox_cpt.local.model import build_model

        cfg = self.cfg
        if stage.init_from is None and stage.index > 0:
            torch.manual_seed(cfg.seed)  # the same initial model as a first stage from scratch
            self.model = build_model(cfg.model, cfg.vocab_size, cfg.seq_length).to(self.device)
        elif stage.init_from is not None and not (stage.index > 0 and stage.init_from == cfg.stages[stage.index - 1].name):
            path = (ckpt.resolve_init_checkpoint(stage.init_from) if stage.init_is_path
                    else ckpt.stage_end_checkpoint(self.ckpt_root, stage.init_from))
            if path is None:
                raise ValueError(f"stages[{stage.index}].init_from = {stage.init_from!r}: no end-of-stage checkpoint "
                                 f"of that stage in {self.ckpt_root}")
            ckpt.load_checkpoint(path, self.model, None if stage.reset_optimizer else self.optimizer,
                                 map_location=self.device)
            logger.info("stage %s: initialised from %s", stage.name, path)
        if stage.reset_optimizer or stage.init_from is None:
            self.optimizer = self._build_optimizer(self.model, cfg.optim)

    def needs_start_eval(self, stage: StageConfig) -> bool:
        """Evaluate at step 0 unless the previous stage's final evaluation already measured these weights."""
        return stage.index == 0 or stage.init_from != self.cfg.stages[stage.index - 1].name

    def evaluate(self, clocks: Clocks, metrics: MetricsWriter) -> Dict[str, float]:
        from neox_cpt.local.evaluate import evaluate

        losses = evaluate(self.model, self.valid, self.cfg.eval.batch_size, self.device)
        for source, loss in losses.items():
            metrics.write({"kind": "eval", "global_step": clocks.global_step, "stage": clocks.stage_index,
                           "stage_step": clocks.stage_step, "tokens": clocks.tokens, "source": source, "loss": loss})
        return losses

    def save(self, clocks: Clocks, metrics: MetricsWriter, scheduler: Any, stage: StageConfig, run_complete: bool,
             wall_s: float) -> None:
        state = dict(vars(clocks), wall_s=wall_s, stage_name=stage.name, scheduler=scheduler.state_dict(),
                     stage_complete=clocks.stage_step == stage.num_steps, run_complete=run_complete,
                     metrics_bytes=metrics.tell(), version=1)
        ckpt.save_checkpoint(self.ckpt_root, state, self.model, self.optimizer)
        ckpt.prune_checkpoints(self.ckpt_root, self.cfg.keep_checkpoints)

    # -------------------------------------------------------------------------------------------- loop
    def run_stage(self, stage: StageConfig, clocks: Clocks, metrics: MetricsWriter, scheduler_state: Optional[dict],
                  t_start: float, steps_left_after: int, stop_at_step: Optional[int]) -> Dict[str, float]:
        import numpy as np
        import torch

        from neox_cpt.data.cache import build_index
        from neox_cpt.data.dataset import ReplayDataset
        from neox_cpt.data.spec import cache_dir_from_config, replay_spec_from_config
        from neox_cpt.local.model import lm_loss
        from neox_cpt.schedules import schedule_from_config
        from neox_cpt.schedules.torch_adapter import ScheduleLR

        cfg, mapping = self.cfg, stage_mapping(self.cfg, stage)
        scheduler = ScheduleLR(self.optimizer, schedule_from_config(mapping), position=0)
        if scheduler_state is not None:
            scheduler.load_state_dict(scheduler_state)
        if scheduler.position != clocks.stage_step:
            raise ValueError(f"checkpoint clocks disagree: schedule position {scheduler.position} but stage step "
                             f"{clocks.stage_step}; the checkpoint is corrupted")
        index_dir = build_index(replay_spec_from_config(mapping), cache_dir_from_config(mapping), progress=False)
        data = ReplayDataset(index_dir, start_sample=clocks.data_position)
        batch, seq = cfg.batch_size, cfg.seq_length
        losses: Dict[str, float] = {}
        if clocks.stage_step == 0 and self.needs_start_eval(stage):
            losses = self.evaluate(clocks, metrics)
        self.model.train()
        local, t_interval, steps_interval = 0, time.perf_counter(), 0
        train_proc, steps_proc, eval_proc, evals_proc = 0.0, 0, 0.0, 0
        while clocks.stage_step < stage.num_steps:
            if stop_at_step is not None and clocks.global_step >= stop_at_step:
                raise TrainingStopped(clocks.global_step)
            t0 = time.perf_counter()
            tokens = torch.from_numpy(np.stack([data[local + j]["text"] for j in range(batch)])).to(self.device)
            local += batch
            lr = scheduler.get_last_lr()[0]
            loss = lm_loss(self.model, tokens)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
            self.optimizer.step()
            scheduler.step()
            clocks.stage_step += 1
            clocks.global_step += 1
            clocks.data_position += batch
            clocks.tokens += batch * seq
            clocks.loss_sum += loss.item()
            clocks.loss_steps += 1
            dt = time.perf_counter() - t0
            clocks.train_s += dt
            train_proc += dt
            steps_interval += 1
            steps_proc += 1
            end = clocks.stage_step == stage.num_steps
            if clocks.stage_step % cfg.log_interval == 0 or end:
                now = time.perf_counter()
                tok_per_s = steps_interval * batch * seq / max(now - t_interval, 1e-9)
                mean_loss = clocks.loss_sum / clocks.loss_steps
                metrics.write({"kind": "train", "global_step": clocks.global_step, "stage": stage.index,
                               "stage_step": clocks.stage_step, "tokens": clocks.tokens, "lr": lr,
                               "loss": mean_loss, "tok_per_s": tok_per_s})
                steps_left = stage.num_steps - clocks.stage_step + steps_left_after
                eta = (train_proc / steps_proc * steps_left
                       + (eval_proc / evals_proc if evals_proc else 0.0) * steps_left / cfg.eval.interval_steps)
                self.say(progress_line(stage.name, clocks.stage_step, stage.num_steps, lr, mean_loss, tok_per_s, eta))
                clocks.loss_sum, clocks.loss_steps = 0.0, 0
                t_interval, steps_interval = time.perf_counter(), 0
            if clocks.stage_step % cfg.eval.interval_steps == 0 or end:
                t_eval = time.perf_counter()
                losses = self.evaluate(clocks, metrics)
                t_interval += time.perf_counter() - t_eval  # tok/s counts training time only
                eval_proc, evals_proc = eval_proc + time.perf_counter() - t_eval, evals_proc + 1
                self.say(f"stage {stage.name} | step {clocks.stage_step}/{stage.num_steps} | eval "
                         + " | ".join(f"{k} {v:.3f}" for k, v in losses.items()))
            last = end and stage.index == len(cfg.stages) - 1
            if end or clocks.stage_step % cfg.checkpoint_interval == 0:
                wall = clocks.wall_s + time.perf_counter() - t_start
                if last:
                    self.write_summary(losses, clocks, wall)
                self.save(clocks, metrics, scheduler, stage, last, wall)
        return losses

    def write_summary(self, final: Dict[str, float], clocks: Clocks, wall_s: float) -> None:
        _write_summary(self.run_dir, self.cfg, final, clocks, wall_s)


def _write_summary(run_dir: Path, cfg: RunConfig, final: Dict[str, float], clocks: Clocks, wall_s: float) -> None:
    trained = sum(s.num_tokens for s in cfg.stages)
    write_json(run_dir / "summary.json", {
        "final": final, "tokens_trained": trained, "tokens_total": clocks.tokens, "wall_s": round(wall_s, 3),
        "global_step": clocks.global_step, "train_s": round(clocks.train_s, 3),
        "tok_per_s": round(trained / clocks.train_s, 1) if clocks.train_s > 0 else None})


def _read_records(run_dir: Path) -> List[Dict[str, Any]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines() if (run_dir / "metrics.jsonl").is_file() else []
    return [json.loads(line) for line in lines if line.strip()]


def train(config: ConfigLike, run_dir: Union[str, "Path"], *, resume: bool = True,
          stop_at_step: Optional[int] = None, progress: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Run (or resume) every stage of ``config`` in ``run_dir``; returns summary.json's content.

    ``resume=False`` deletes the run directory's outputs first. ``stop_at_step`` stops after that global
    step without a checkpoint (``TrainingStopped``), as a kill would. ``progress`` receives the progress
    lines (default: ``logging.info``).
    """
    cfg = config if isinstance(config, RunConfig) else load_run_config(config)
    check_run_data(cfg)  # every dataset, before anything is written or deleted
    run_dir = Path(run_dir)
    say = progress or logger.info
    if not resume:
        for name in ("checkpoints", "tensorboard", "run.yml", "stages.json", "metrics.jsonl", "summary.json"):
            path = run_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    found = ckpt.latest_checkpoint(run_dir / "checkpoints")
    if found is not None:
        _check_same_config(run_dir, cfg)
        if found[1].get("run_complete"):
            say(f"{run_dir}: finished at global step {found[1]['global_step']}; nothing to do")
            if not (run_dir / "summary.json").is_file():  # deleted by hand: rebuild it from the last evaluation
                last = [r for r in _read_records(run_dir) if r["kind"] == "eval"
                        and r["global_step"] == found[1]["global_step"]]
                _write_summary(run_dir, cfg, {r["source"]: r["loss"] for r in last}, Clocks(
                    **{k: found[1][k] for k in Clocks.__dataclass_fields__}), found[1]["wall_s"])
            return json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").unlink(missing_ok=True)
    first = cfg.stages[0]
    base_step = base_tokens = 0
    if first.init_is_path:
        init_state = ckpt.read_state(ckpt.resolve_init_checkpoint(first.init_from))  # type: ignore[arg-type]
        base_step, base_tokens = int(init_state["global_step"]), int(init_state["tokens"])
    ckpt.write_text_atomic(run_dir / "run.yml", yaml.safe_dump(_normalised(cfg), sort_keys=False))
    table = _stage_table(cfg, base_step, base_tokens)
    write_json(run_dir / "stages.json", table)

    run = _Run(cfg, run_dir, say)
    scheduler_state = None
    if found is None:
        clocks = Clocks(global_step=base_step, stage_index=0, tokens=base_tokens)
        metrics = MetricsWriter(run_dir, None, cfg.tensorboard)
        run.enter_stage(first)
    else:
        path, state = found
        clocks = Clocks(**{k: state[k] for k in Clocks.__dataclass_fields__})
        ckpt.load_checkpoint(path, run.model, run.optimizer, restore_rng=True, map_location=run.device)
        metrics = MetricsWriter(run_dir, int(state["metrics_bytes"]), cfg.tensorboard, resume_step=clocks.global_step)
        say(f"{run_dir}: resuming from {path.name} (stage {state['stage_name']} step {clocks.stage_step}, data "
            f"position {clocks.data_position})")
        if state.get("stage_complete"):
            clocks.stage_index += 1
            clocks.stage_step = clocks.data_position = 0
            if clocks.stage_index < len(cfg.stages):
                run.enter_stage(cfg.stages[clocks.stage_index])
        else:
            scheduler_state = state["scheduler"]
    t_start = time.perf_counter()
    try:
        while clocks.stage_index < len(cfg.stages):
            stage = cfg.stages[clocks.stage_index]
            if stage.name != table[stage.index]["name"] or clocks.global_step - clocks.stage_step != table[stage.index]["start_step"]:
                raise ValueError(f"checkpoint at global step {clocks.global_step} does not fit stage {stage.name} "
                                 f"(starts at {table[stage.index]['start_step']}); use a new run directory")
            after = sum(s.num_steps for s in cfg.stages[stage.index + 1:])
            run.run_stage(stage, clocks, metrics, scheduler_state, t_start, after, stop_at_step)
            scheduler_state = None
            clocks.stage_index += 1
            clocks.stage_step = clocks.data_position = 0
            if clocks.stage_index < len(cfg.stages):
                run.enter_stage(cfg.stages[clocks.stage_index])
    finally:
        metrics.close()
    return json.loads((run_dir / "summary.json").read_text())
