"""Drive a ``torch.optim.Optimizer`` from a StageSchedule or Plan (torch imported lazily).

Convention (docs/schedules.md): ``position`` counts completed updates. The LR written into the param groups
is the one the *next* update will use, ``lr_at(position + 1)``, so the first update of a warmup already
uses lr_max / T_w (GPT-NeoX issue #1373: NeoX's first update used LR 0). Call ``step()`` right after each
``optimizer.step()``. The checkpoint is just the position plus the schedule's fingerprint.

    >>> import torch
    >>> from neox_cpt.schedules import warmup_cosine
    >>> from neox_cpt.schedules.torch_adapter import ScheduleLR
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    >>> sched = ScheduleLR(opt, warmup_cosine(100, 1e-3, warmup_steps=10))
    >>> sched.get_last_lr()      # used by the first update: 1e-3 / 10
    [0.0001]
    >>> opt.step(); sched.step(); sched.position, opt.param_groups[0]["lr"]
    (1, 0.0002)
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Union

from neox_cpt.schedules.plan import Plan
from neox_cpt.schedules.schedule import StageSchedule

Schedule = Union[StageSchedule, Plan]


def _describe_change(saved: Mapping[str, Any], current: Schedule) -> str:
    """A short human description of how the saved schedule differs from the current one (a stage schedule
    or a multi-stage plan: the first stage, phase and field that differ)."""
    if isinstance(current, Plan):
        old_stages = saved.get("stages") if isinstance(saved, Mapping) else None
        if not isinstance(old_stages, list):
            return "the saved schedule is not a multi-stage plan"
        new_stages = current.to_dict()["stages"]
        if len(old_stages) != len(new_stages):
            return (f"{len(old_stages)} stages ({', '.join(str(s.get('name')) for s in old_stages)}) became "
                    f"{len(new_stages)} ({', '.join(s['name'] for s in new_stages)})")
        for old, new in zip(old_stages, new_stages):
            for key in ("name", "start_step", "end_step"):
                if old.get(key) != new[key]:
                    return f"stage {new['name']}: {key} {old.get(key)!r} -> {new[key]!r}"
            change = _describe_phases(old.get("schedule") or {}, current.stages[new_stages.index(new)].schedule)
            if change:
                return f"stage {new['name']}: {change}"
        return "the phases differ"
    return _describe_phases(saved, current) or "the phases differ"


def _describe_phases(saved: Mapping[str, Any], current: StageSchedule) -> str:
    if not saved or "phases" not in saved:
        return "the saved state holds no phases"
    old = saved["phases"]
    new = [p.to_dict() for p in current.phases]
    if len(old) != len(new):
        return (f"{len(old)} phases ({', '.join(p['name'] or p['shape'] for p in old)}) became {len(new)} "
                f"({', '.join(p['name'] or p['shape'] for p in new)})")
    for i, (a, b) in enumerate(zip(old, new)):
        for key in ("shape", "length", "lr_start", "lr_end", "params"):
            if a.get(key) != b.get(key):
                return f"phase {i} ({b['name'] or b['shape']}): {key} {a.get(key)!r} -> {b.get(key)!r}"
    return ""


class ScheduleLR:
    """Writes ``lr_at(position + 1) x group.get("lr_mult", 1)`` into every param group of ``optimizer``."""

    def __init__(self, optimizer: Any, schedule: Schedule, position: int = 0) -> None:
        import torch  # noqa: F401  (lazy: the core never imports torch)

        self.optimizer = optimizer
        self.schedule = schedule
        self.position = position
        self._apply()

    def _lr(self) -> float:
        return self.schedule.lr_at(self.position + 1)

    def _apply(self) -> None:
        lr = self._lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)

    def step(self) -> None:
        """Record one completed update and set the LR of the next one."""
        self.position += 1
        self._apply()

    def get_last_lr(self) -> List[float]:
        """The LR of each param group (what the next update uses)."""
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> Dict[str, Any]:
        return {"position": self.position, "fingerprint": self.schedule.fingerprint(),
                "schedule": self.schedule.to_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the position; a schedule whose fingerprint differs from the saved one raises ValueError.
        The LR is written into the param groups again (never trust LRs kept in optimizer state)."""
        saved = state.get("fingerprint")
        current = self.schedule.fingerprint()
        if saved != current:
            raise ValueError(
                f"scheduler state fingerprint = {saved!r} but the configured schedule is {current!r} "
                f"({_describe_change(state.get('schedule') or {}, self.schedule)}); resume with the schedule the "
                "checkpoint was trained with, or start a new stage (new cpt_ schedule keys) from the checkpoint")
        self.position = int(state["position"])
        self._apply()
