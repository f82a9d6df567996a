"""The launch plan: every decision the NeoX plugin takes at launch, resolved once (no torch, no NeoX).

:func:`resolve` reads the flat config (NeoX keys + ``cpt_*`` keys, ``train_batch_size`` known) and the
checkpoint directories, and returns a :class:`LaunchPlan`: start or resume, which checkpoint, the three
clocks, the data (the replay index spec, an anneal branch's parent index and data start, the seen-only
consumed count and where it came from). ``neox-cpt preflight`` prints it; ``neox_cpt.neox.patches`` and
``neox_cpt.neox.data`` apply it. Every checkpoint of a stage records :meth:`LaunchPlan.record` in its
sidecar; a relaunch takes what must not move (the branch's data start, the consumed count) from there and
refuses a config that changed what the stage trains on (:func:`changes`).

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "d0" / "global_step100").mkdir(parents=True); _ = (d / "d0" / "latest").write_text("global_step100")
    >>> plan = resolve({"cpt_stage_name": "d1", "cpt_init_checkpoint": str(d / "d0"), "cpt_stage_iters": 50,
    ...                 "cpt_lr_max": 1e-3, "cpt_warmup_iters": 10, "train_batch_size": 8, "save": str(d / "d1")})
    >>> plan.mode, plan.stage_start, plan.end_iteration, plan.load_optimizer, round(plan.next_lr, 6)
    ('start', 100, 150, True, 0.0001)
"""
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from neox_cpt.neox import integration, stages
from neox_cpt.neox.stages import CheckpointRef

RECORD_FORMAT = 1
RECORDED_KEYS = ("train_batch_size", "seq_length", "seed", "cpt_train_data_paths", "cpt_train_data_weights",
                 "cpt_replay_frac", "cpt_replay_data_paths", "cpt_replay_data_weights", "cpt_replay_weighting",
                 "cpt_replay_seen_only", "cpt_replay_index_paths", "cpt_replay_consumed_samples",
                 "cpt_replay_reshuffle", "cpt_replay_allow_cycling", "cpt_continue_parent_data",
                 "train_data_paths", "train_data_weights", "data_path")
"""Keys that decide what a stage trains on: a relaunch that changes one of them is refused."""


@dataclass(frozen=True)
class LaunchPlan:
    """What the plugin does at this launch (one per process; rank 0's is broadcast in NeoX)."""

    cfg: Dict[str, Any] = field(repr=False)
    """The flat config the core reads, with the stage length pinned and the seen-only count filled."""
    stage_name: Optional[str]
    mode: Optional[str]
    """'start' (load cpt_init_checkpoint), 'resume' (this stage's own checkpoint) or None (not a stage)."""
    checkpoint: Optional[CheckpointRef]
    """What load_checkpoint loads (None: NeoX's own ``load``, or nothing)."""
    iteration: int
    """Global iteration once the checkpoint is loaded (0 for a fresh run)."""
    stage_start: int
    stage_iters: int
    train_batch_size: int
    load_optimizer: bool
    data: str
    """'replay' (an index of this config's data keys), 'parent' (an anneal branch on its parent's index)
    or 'neox' (NeoX's own datasets)."""
    data_start: int = 0
    """Sample of the index where this stage's data begins (a branch: its parent's position at the branch point)."""
    parent_index: Optional[str] = None
    consumed_samples: Optional[Tuple[int, ...]] = None
    consumed_from: Optional[str] = None
    sidecar: Optional[Dict[str, Any]] = field(default=None, repr=False)
    notes: Tuple[str, ...] = ()

    def __post_init__(self) -> None:  # the schedule once (building it validates and warns about NeoX LR keys)
        object.__setattr__(self, "_schedule", integration.schedule_for(self.cfg) if self.uses_schedule else None)

    @property
    def is_stage(self) -> bool:
        return self.mode is not None

    @property
    def uses_schedule(self) -> bool:
        return integration.uses_schedule(self.cfg)

    @property
    def end_iteration(self) -> int:
        return self.stage_start + self.stage_iters

    @property
    def position(self) -> int:
        """Iterations done in this stage (= the data position in global batches)."""
        return self.iteration - self.stage_start

    @property
    def schedule_position(self) -> int:
        """Updates the schedule counted: the position, less the updates DeepSpeed skipped (fp16 overflow), as
        the scheduler saved it (in the sidecar)."""
        return int((self.sidecar or {}).get("schedule_position", self.position))

    @property
    def num_samples(self) -> int:
        return self.stage_iters * self.train_batch_size

    @property
    def next_sample(self) -> int:
        """Sample of the index the next update starts at."""
        return self.data_start + self.position * self.train_batch_size

    def schedule(self):
        """The stage's StageSchedule (None: NeoX's own AnnealingLR)."""
        return self._schedule

    @property
    def next_lr(self) -> Optional[float]:
        schedule = self.schedule()
        return None if schedule is None else float(schedule.lr_at(self.schedule_position + 1))

    def index_spec(self):
        """The replay index this stage trains on (data == 'replay'); no file is opened."""
        return integration.replay_spec(self.cfg, num_samples=self.num_samples) if self.data == "replay" else None

    def record(self) -> Dict[str, Any]:
        """What every checkpoint of this stage stores (sidecar key ``plan``): constant over the stage."""
        schedule = self.schedule()
        ref = self.checkpoint if self.mode == "start" else None
        recorded = (self.sidecar or {}).get("plan") or {}
        return {"format": RECORD_FORMAT, "stage_iters": self.stage_iters,
                "keys": {k: self.cfg.get(k) for k in RECORDED_KEYS},
                "schedule": None if schedule is None else schedule.to_dict(),
                "init_checkpoint": recorded.get("init_checkpoint") if ref is None else
                {"load_dir": ref.load_dir, "tag": ref.tag, "iteration": ref.iteration},
                "data": self.data, "data_start": self.data_start, "parent_index": self.parent_index,
                "consumed_samples": None if self.consumed_samples is None else list(self.consumed_samples),
                "consumed_from": self.consumed_from}

    def ignored_keys(self) -> List[str]:
        """The keys of the config this launch does not obey, each with why ('key: reason')."""
        cfg, out = self.cfg, []
        if self.uses_schedule:
            from neox_cpt.schedules.keys import NEOX_LR_KEYS

            out += [f"{k}: the cpt_* schedule sets the LR" for k in NEOX_LR_KEYS if cfg.get(k) is not None]
        if self.is_stage:
            out.append(f"train_iters: rewritten to {self.end_iteration} (stage start + stage length)")
            if self.mode == "start" and cfg.get("no_load_optim"):
                out.append("no_load_optim: a stage trains with a real optimizer, not NeoX's dummy one; this first "
                           "launch starts it fresh (as cpt_reset_optimizer: true)")
            if self.mode == "resume":
                out += [f"{k}: a resume restores the stage's own optimizer" for k in ("no_load_optim",
                                                                                     "cpt_reset_optimizer")
                        if cfg.get(k)]
                out.append("cpt_init_checkpoint: not read (the stage resumes from its own checkpoint in save)")
        if self.data in ("replay", "parent"):
            reads = "cpt_train_data_paths" if cfg.get("cpt_train_data_paths") else None
            for key in ("train_data_paths", "train_data_weights", "data_path", "test_data_paths"):
                if cfg.get(key) is not None and (reads or key == "test_data_paths" or self.data == "parent"):
                    out.append(f"{key}: the stage trains on the replay index" + (f" of {reads}" if reads else ""))
            if cfg.get("cpt_valid_data_paths") and cfg.get("valid_data_paths"):
                out.append("valid_data_paths: validation reads cpt_valid_data_paths")
        return out

    def summary(self) -> Dict[str, Any]:
        """The plan as JSON-able values (``neox-cpt preflight --json`` and the ``neox-cpt plan:`` log line)."""
        ref = self.checkpoint
        schedule = self.schedule()
        return {"stage": self.stage_name, "mode": self.mode or "no stage",
                "checkpoint": None if ref is None else os.path.join(ref.load_dir, ref.tag),
                "iteration": self.iteration, "stage_start": self.stage_start, "stage_iters": self.stage_iters,
                "end_iteration": self.end_iteration, "position": self.position,
                "schedule_position": self.schedule_position,
                "next_lr": self.next_lr, "schedule_fingerprint": None if schedule is None else schedule.fingerprint(),
                "load_optimizer": self.load_optimizer, "train_batch_size": self.train_batch_size,
                "data": self.data, "data_start": self.data_start, "next_sample": self.next_sample,
                "parent_index": self.parent_index,
                "consumed_samples": None if self.consumed_samples is None else list(self.consumed_samples),
                "consumed_from": self.consumed_from}


def resolve(cfg: Mapping[str, Any]) -> LaunchPlan:
    """The plan of one launch: ``cfg`` is the flat config (``train_batch_size`` resolved), read with the
    checkpoint directories it names. Raises ValueError/FileNotFoundError naming the key and the fix."""
    cfg = {k: v for k, v in cfg.items() if v is not None and _plain(v)}  # no NeoX objects (tokenizer, comet)
    batch = cfg.get("train_batch_size")
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"train_batch_size = {batch!r}: the launch plan needs the global batch (NeoX derives it "
                         "from train_micro_batch_size_per_gpu x gradient_accumulation_steps x data-parallel size)")
    stage_iters = integration.stage_iters(cfg)
    cfg["cpt_stage_iters"] = stage_iters
    cfg.pop("cpt_stage_tokens", None)
    if not integration.uses_stage(cfg):
        return _plain_run(cfg, stage_iters, batch)
    decision = stages.decide(cfg["save"], cfg["cpt_stage_name"], cfg["cpt_init_checkpoint"])
    return _resume(cfg, decision, stage_iters, batch) if decision.mode == "resume" else \
        _start(cfg, decision.checkpoint, stage_iters, batch)


def _plain(value: Any) -> bool:
    """A config value (str, number, bool, or lists/dicts of them): picklable and comparable across ranks."""
    if isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (list, tuple)):
        return all(v is None or _plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and (v is None or _plain(v)) for k, v in value.items())
    return False


def _data_kind(cfg: Mapping[str, Any]) -> str:
    if integration.continues_parent_data(cfg):
        return "parent"
    return "replay" if integration.uses_replay(cfg) else "neox"


def _plain_run(cfg: Dict[str, Any], stage_iters: int, batch: int) -> LaunchPlan:
    """Schedule/replay keys without cpt_init_checkpoint: NeoX's own resume from ``load`` (global clocks)."""
    ref = None
    if cfg.get("load") and stages.latest_tag(os.path.expanduser(cfg["load"])):
        ref = stages.resolve_checkpoint(cfg["load"], "load")
    return LaunchPlan(cfg, None, None, ref, 0 if ref is None else ref.iteration, 0, stage_iters, batch,
                      not cfg.get("no_load_optim") and not cfg.get("finetune"), _data_kind(cfg))


def _start(cfg: Dict[str, Any], ref: CheckpointRef, stage_iters: int, batch: int) -> LaunchPlan:
    expected = cfg.get("cpt_stage_start_iter")
    if expected is not None and expected != ref.iteration:
        raise ValueError(f"cpt_stage_start_iter: {expected} but cpt_init_checkpoint {ref.load_dir}/{ref.tag} is "
                         f"at iteration {ref.iteration}; fix or remove cpt_stage_start_iter")
    data, parent_index, data_start, consumed, consumed_from = _data_kind(cfg), None, 0, None, None
    if data == "parent":
        parent_index, data_start = stages.parent_data(ref)
    if integration.seen_only_needs_consumed(cfg):
        consumed, consumed_from = stages.seen_consumed(cfg, ref)
        cfg["cpt_replay_consumed_samples"] = list(consumed)
    load_optimizer = not cfg.get("cpt_reset_optimizer") and not cfg.get("no_load_optim")
    return LaunchPlan(cfg, cfg["cpt_stage_name"], "start", ref, ref.iteration, ref.iteration, stage_iters, batch,
                      load_optimizer, data, data_start, parent_index, consumed, consumed_from)


def _resume(cfg: Dict[str, Any], decision: stages.Decision, stage_iters: int, batch: int) -> LaunchPlan:
    """Everything that must not move comes from the stage's own sidecar, never from cpt_init_checkpoint again
    (a parent that keeps training moves its ``latest``)."""
    side, ref = decision.sidecar, decision.checkpoint
    recorded = side.get("plan") or {}
    data = _data_kind(cfg)
    data_start = int(recorded.get("data_start", side.get("index_position", 0) - side.get("samples_consumed", 0)))
    parent_index = recorded.get("parent_index", side.get("replay_index")) if data == "parent" else None
    consumed, consumed_from = None, None
    if integration.seen_only_needs_consumed(cfg):
        if recorded.get("consumed_samples") is not None:
            consumed = tuple(int(c) for c in recorded["consumed_samples"])
            consumed_from = f"{recorded.get('consumed_from')} (recorded by this stage's first launch)"
        else:  # a sidecar of an older neox-cpt: derive it as that version did
            consumed, consumed_from = stages.seen_consumed(cfg, stages.resolve_checkpoint(cfg["cpt_init_checkpoint"]))
        cfg["cpt_replay_consumed_samples"] = list(consumed)
    plan = LaunchPlan(cfg, cfg["cpt_stage_name"], "resume", ref, ref.iteration, int(side["stage_start"]),
                      stage_iters, batch, True, data, data_start, parent_index, consumed, consumed_from, side)
    changed = changes(recorded, plan)
    if changed:
        raise ValueError(f"relaunch of stage {plan.stage_name!r} from {ref.load_dir}/{ref.tag} with a changed config: "
                         f"{'; '.join(changed)}. A stage resumes with the settings it started with: restore them, "
                         "or start a new stage from that checkpoint (a new cpt_stage_name)")
    return plan


def changes(recorded: Mapping[str, Any], plan: LaunchPlan) -> List[str]:
    """What differs between a stage's recorded plan and this launch's ('key: old -> new'); [] if nothing."""
    if not recorded:
        return []  # written by an older neox-cpt: the scheduler still checks the schedule fingerprint
    out = []
    if recorded.get("stage_iters") != plan.stage_iters:
        out.append(f"stage length (cpt_stage_iters/cpt_stage_tokens): {recorded.get('stage_iters')} -> "
                   f"{plan.stage_iters} iterations")
    now = plan.record()
    for key in RECORDED_KEYS:
        old, new = recorded.get("keys", {}).get(key), now["keys"].get(key)
        if old != new:
            out.append(f"{key}: {old!r} -> {new!r}")
    old_s, new_s = recorded.get("schedule"), now["schedule"]
    if (old_s or {}).get("fingerprint") != (new_s or {}).get("fingerprint"):
        from neox_cpt.schedules.torch_adapter import _describe_change

        out.append("cpt_* schedule keys: " + (_describe_change(old_s, plan.schedule()) if old_s and new_s
                                              else f"{'no' if not old_s else 'a'} plugin schedule -> "
                                                   f"{'no' if not new_s else 'a'} plugin schedule"))
    return out
