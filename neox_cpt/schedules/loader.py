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

import functools
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Sequence, Union

from neox_cpt.schedules.config import read_schedule_config, RECIPES
from neox_cpt.schedules.keys import check_config_keys
from neox_cpt.schedules.plan import Plan, PlanStage

PathLike = Union[str, "os.PathLike[str]"]


def read_yaml(path: PathLike, what: str = "config file") -> Any:
    r"""The YAML document of ``path``; every failure names the file: missing, a directory, unreadable, not
    UTF-8, not YAML, or a key repeated in one mapping (plain YAML keeps the last value silently).

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.yml")
    >>> _ = open(path, "w").write("lr: 1\nseed: 2\nlr: 3\n")
    >>> read_yaml(path)
    Traceback (most recent call last):
    ...
    ValueError: config file '...x.yml': key 'lr' is set twice (lines 1 and 3); keep one
    """
    import yaml  # core dependency; imported here so `import neox_cpt.schedules` stays light

    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {str(path)!r} is a directory; give the YAML file inside it")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist; check the path")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} {str(path)!r} is not UTF-8 text (byte {exc.start}: "
                         f"{exc.object[exc.start:exc.start + 1]!r}); save it as UTF-8") from None
    try:
        return yaml.load(text, Loader=_unique_key_loader())
    except _DuplicateKey as exc:
        raise ValueError(f"{what} {str(path)!r}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{what} {str(path)!r} is not valid YAML: {' '.join(str(exc).split())}") from None


class _DuplicateKey(Exception):
    pass


def _unique_mapping(loader: Any, node: Any, deep: bool = False) -> Any:
    import yaml

    seen: Dict[Any, int] = {}
    for key_node, _value in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if isinstance(key, (str, int, float, bool)):
            if key in seen:
                raise _DuplicateKey(f"key {key!r} is set twice (lines {seen[key]} and {line}); keep one")
            seen[key] = line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


@functools.lru_cache(maxsize=None)
def _unique_key_loader() -> type:
    """yaml's SafeLoader, refusing a key repeated in one mapping."""
    import yaml

    cls = type("UniqueKeyLoader", (yaml.SafeLoader,), {})
    cls.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)
    return cls


def load_stage_config(path_or_paths: Union[PathLike, Sequence[PathLike]]) -> Dict[str, Any]:
    """One stage config from one YAML file or several merged NeoX-style, its keys checked.

    A key given twice (in one file or in two) is an error, as are unknown or misspelled plugin keys and
    plugin keys of the wrong type (``check_config_keys``)."""
    paths = [path_or_paths] if isinstance(path_or_paths, (str, os.PathLike)) else list(path_or_paths)
    if not paths:
        raise ValueError("no config file given; pass at least one YAML path")
    merged: Dict[str, Any] = {}
    origin: Dict[str, str] = {}
    for path in paths:
        data = read_yaml(path) or {}
        if not isinstance(data, Mapping):
            raise ValueError(f"config file {str(path)!r} must hold a mapping of keys, got {type(data).__name__}")
        for key, value in data.items():
            key = str(key).replace("-", "_")
            if key in merged:
                where = (f"in both {origin[key]!r} and {str(path)!r}" if origin[key] != str(path)
                         else f"twice in {str(path)!r} (once with '-', once with '_')")
                raise ValueError(f"key {key!r} is set {where}; keep it in one file")
            merged[key] = value
            origin[key] = str(path)
    try:
        check_config_keys(merged)
    except ValueError as exc:
        files = ", ".join(repr(str(p)) for p in paths)
        raise ValueError(f"config {files}: {exc}") from None
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
