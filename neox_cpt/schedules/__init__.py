"""LR schedules for continual pre-training (Ibrahim et al. 2024, arXiv 2403.08763) as pure data.

A ``StageSchedule`` is a tuple of ``Phase`` s (shape, length, start value, end value) on one stage's axis;
recipes build the paper's schedules; a ``Plan`` places stages on the global step axis. No torch here: the
optimizer adapter is ``neox_cpt.schedules.torch_adapter.ScheduleLR``. See docs/schedules.md.

    >>> from neox_cpt.schedules import warmup_cosine, Plan
    >>> pre = warmup_cosine(132_366, 3e-4, warmup_steps=1324)       # 300B tokens at 405M
    >>> cpt = warmup_cosine(132_366, 3e-4, warmup_steps=1324)       # re-warm + re-decay on D1
    >>> plan = Plan.from_schedules([pre, cpt])
    >>> plan.lr_at(132_366), plan.lr_at(132_366 + 662)               # end of D0, half-way up the re-warm
    (3e-05, 0.00015)
"""
from neox_cpt.schedules.config import (
    RECIPES,
    ScheduleConfig,
    read_schedule_config,
    schedule_from_config,
    validate_schedule_config,
)
from neox_cpt.schedules.keys import FAMILY_PREFIXES, SCHEDULE_KEYS, STAGE_KEYS, KeySpec, check_unknown_keys
from neox_cpt.schedules.loader import load_stage_config, plan_from_configs
from neox_cpt.schedules.plan import Plan, PlanStage
from neox_cpt.schedules.recipes import anneal_branch, constant, infinite, rewarm_constant, warmup_cosine, wsd
from neox_cpt.schedules.schedule import Phase, StageSchedule
from neox_cpt.schedules.shapes import SHAPES, get_shape

__all__ = [
    "FAMILY_PREFIXES", "KeySpec", "RECIPES", "SCHEDULE_KEYS", "SHAPES", "STAGE_KEYS", "Phase", "Plan", "PlanStage", "ScheduleConfig",
    "StageSchedule", "anneal_branch", "check_unknown_keys", "constant", "get_shape", "infinite", "load_stage_config",
    "plan_from_configs", "read_schedule_config", "rewarm_constant", "schedule_from_config",
    "validate_schedule_config", "warmup_cosine", "wsd",
]
