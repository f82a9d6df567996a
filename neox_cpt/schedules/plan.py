"""A multi-stage plan: one StageSchedule per stage, placed on the global optimizer-step axis.

Stage i starts at global step ``start_step`` S_i and owns global steps (S_i, S_i + num_steps_i]; the update
that completes global step g of that stage uses ``schedule.lr_at(g - S_i)``. Global step S_i itself (the
last update of the previous stage) belongs to the previous stage; g = S_0 belongs to stage 0. A gap between
stages holds the previous stage's final value. A stage may not start before the previous one ends.

    >>> from neox_cpt.schedules import Plan, warmup_cosine
    >>> plan = Plan.from_schedules([warmup_cosine(100, 3e-4, warmup_steps=10),
    ...                             warmup_cosine(50, 3e-4, warmup_steps=5)], tokens_per_step=1024)
    >>> plan.boundaries, plan.stage_at(100), plan.stage_at(101), plan.lr_at(105), plan.tokens_at(150)
    ((0, 100, 150), 0, 1, 0.0003, 153600)
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from neox_cpt.schedules.schedule import Number, StageSchedule, _num


@dataclass(frozen=True)
class PlanStage:
    """One stage of a plan."""

    schedule: StageSchedule
    """The stage's LR schedule on its own axis (position 0 = the stage start)."""
    start_step: Number
    """Global step at which the stage starts (its first update completes global step start_step + 1)."""
    name: str = ""
    """Display name (``cpt_stage_name``); defaults to stage<i> in ``Plan.from_schedules``."""
    tokens_per_step: Optional[int] = None
    """Tokens per optimizer step (train_batch_size x seq_length) when known; enables the token axis."""

    @property
    def end_step(self) -> Number:
        """Global step completed by the stage's last update."""
        return _num(self.start_step + self.schedule.num_steps)


@dataclass(frozen=True)
class Plan:
    """Stages in order on the global step axis."""

    stages: Tuple[PlanStage, ...]
    """The stages, ordered by start step, non-overlapping."""

    def __post_init__(self) -> None:
        stages = tuple(self.stages)
        if not stages:
            raise ValueError("a Plan needs at least one stage (give at least one stage config)")
        if stages[0].start_step < 0:
            raise ValueError(f"stage {stages[0].name!r}: start step = {stages[0].start_step!r} must be >= 0")
        for prev, cur in zip(stages, stages[1:]):
            if cur.start_step < prev.end_step:
                raise ValueError(
                    f"stage {cur.name!r}: cpt_stage_start_iter = {cur.start_step!r} is before the previous stage "
                    f"{prev.name!r} ends at global step {prev.end_step!r}; start it at >= {prev.end_step!r} "
                    "(or omit cpt_stage_start_iter to start where the previous stage ends)")
        object.__setattr__(self, "stages", stages)

    @classmethod
    def from_schedules(cls, schedules: Sequence[StageSchedule], start_steps: Optional[Sequence[Optional[Number]]] = None,
                       names: Optional[Sequence[str]] = None, tokens_per_step: Optional[int] = None) -> "Plan":
        """Stages back to back; ``start_steps[i]`` (when not None) places stage i explicitly."""
        stages: List[PlanStage] = []
        cursor: Number = 0
        for i, schedule in enumerate(schedules):
            start = start_steps[i] if start_steps is not None and start_steps[i] is not None else cursor
            name = names[i] if names is not None else f"stage{i}"
            stage = PlanStage(schedule, _num(start), name, tokens_per_step)
            if stages and stage.start_step < stages[-1].end_step:
                cls((stages[-1], stage))  # raises the ordering error with both names
            stages.append(stage)
            cursor = stage.end_step
        return cls(tuple(stages))

    @property
    def start_step(self) -> Number:
        return self.stages[0].start_step

    @property
    def end_step(self) -> Number:
        """Global step completed by the last update of the last stage."""
        return self.stages[-1].end_step

    @property
    def boundaries(self) -> Tuple[Number, ...]:
        """Each stage's start step, then the end of the last stage (num_stages + 1 values)."""
        return tuple(s.start_step for s in self.stages) + (self.end_step,)

    @property
    def tokens_per_step(self) -> Optional[int]:
        """Tokens per step when every stage gives the same value, else None."""
        values = {s.tokens_per_step for s in self.stages}
        return values.pop() if len(values) == 1 else None

    def stage_at(self, global_step: float) -> int:
        """Index of the stage whose schedule gives the LR at ``global_step`` (see the module docstring)."""
        if isinstance(global_step, bool) or not isinstance(global_step, (int, float)) or math.isnan(global_step):
            raise ValueError(f"global step = {global_step!r} must be a number")
        if global_step < self.start_step:
            raise ValueError(f"global step = {global_step!r} is before the plan starts at {self.start_step!r}")
        index = 0
        for i, stage in enumerate(self.stages):
            if global_step > stage.start_step:
                index = i
        return index

    def lr_at(self, global_step: float) -> float:
        """LR used by the update that completes ``global_step``."""
        stage = self.stages[self.stage_at(global_step)]
        return stage.schedule.lr_at(global_step - stage.start_step)

    def tokens_at(self, global_step: float) -> Optional[Number]:
        """Tokens trained when ``global_step`` is complete, counted from global step 0 (None if unknown).
        Steps before the first stage count at its tokens per step (the lineage it continues); steps in a gap
        between stages count at the previous stage's tokens per step."""
        if self.stages[0].tokens_per_step is None:
            return None
        total: Number = min(global_step, self.start_step) * self.stages[0].tokens_per_step
        for i, stage in enumerate(self.stages):
            if stage.tokens_per_step is None:
                return None
            nxt = self.stages[i + 1].start_step if i + 1 < len(self.stages) else math.inf
            steps = min(global_step, nxt) - stage.start_step
            if steps <= 0:
                break
            total += steps * stage.tokens_per_step
        return _num(total)

    def fingerprint(self) -> str:
        """Stable short hash of every stage's start step and phases."""
        blob = json.dumps([{"start": repr(float(s.start_step)), "phases": s.schedule.canonical()}
                           for s in self.stages], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> Dict[str, Any]:
        return {"fingerprint": self.fingerprint(), "stages": [
            {"name": s.name, "start_step": s.start_step, "end_step": s.end_step,
             "tokens_per_step": s.tokens_per_step, "schedule": s.schedule.to_dict()} for s in self.stages]}
