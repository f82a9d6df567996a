"""Read NeoX-style YAML stage configs and turn a list of stage configs into a Plan.

A stage may be split over several YAML files (NeoX style: ``model.yml data.yml stage.yml``); they are merged
at the top level, and a key given in two files is an error (NeoX rejects it too). ``-`` in top-level keys
becomes ``_`` as in NeoX.

    >>> from neox_cpt.schedules.loader import plan_from_configs
    >>> plan = plan_from_configs([
    ...     {"cpt_lr_schedule": "cosine", "cpt_lr_max": 3e-4, "cpt_stage_iters": 1000},
    ...     {"cpt_lr_schedule": "cosine", "cpt_lr_max": 3e-4, "cpt_stage_iters": 500, "cpt_stage_name": "d1"}])
    >>> plan.boundaries, [s.name for s in plan.stages]
    ((0, 1000, 1500), ['stage0', 'd1'])
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Mapping, Sequence, Union

from neox_cpt.schedules.config import read_schedule_config, RECIPES
from neox_cpt.schedules.plan import Plan, PlanStage

PathLike = Union[str, "os.PathLike[str]"]


def load_stage_config(path_or_paths: Union[PathLike, Sequence[PathLike]]) -> Dict[str, Any]:
    """One stage config from one YAML file or several merged NeoX-style (duplicate key = ValueError)."""
    import yaml  # core dependency; imported here so `import neox_cpt.schedules` stays light

    paths = [path_or_paths] if isinstance(path_or_paths, (str, os.PathLike)) else list(path_or_paths)
    if not paths:
        raise ValueError("no config file given; pass at least one YAML path")
    merged: Dict[str, Any] = {}
    origin: Dict[str, str] = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {str(path)!r} does not exist; check the path")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"config file {str(path)!r} is not valid YAML: {exc}") from None
        if not isinstance(data, Mapping):
            raise ValueError(f"config file {str(path)!r} must hold a mapping of keys, got {type(data).__name__}")
        for key, value in data.items():
            key = str(key).replace("-", "_")
            if key in merged:
                raise ValueError(f"key {key!r} is set in both {origin[key]!r} and {str(path)!r}; keep it in one file")
            merged[key] = value
            origin[key] = str(path)
    return merged


def plan_from_configs(configs: Sequence[Mapping[str, Any]]) -> Plan:
    """The Plan of stage configs in order: each starts where the previous ends unless it sets
    ``cpt_stage_start_iter`` (which may not be before the previous end). Errors name the stage."""
    stages = []
    cursor = 0
    for i, cfg in enumerate(configs):
        label = cfg.get("cpt_stage_name") or f"stage{i}"
        try:
            sc = read_schedule_config(cfg)
            schedule = RECIPES[sc.recipe](sc)
        except ValueError as exc:
            raise ValueError(f"stage {i} ({label}): {exc}") from None
        start = cursor if sc.start_step is None else sc.start_step
        stage = PlanStage(schedule, start, str(label), sc.tokens_per_step)
        if stages and start < stages[-1].end_step:
            Plan((stages[-1], stage))  # raises the ordering error naming both stages
        stages.append(stage)
        cursor = stage.end_step
    return Plan(tuple(stages))
