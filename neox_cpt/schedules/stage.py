"""The length of a stage, in optimizer steps: the one function the schedule and the data index both call.

A stage is ``cpt_stage_iters`` steps, or ``cpt_stage_tokens`` tokens rounded up to whole steps of
global batch × ``seq_length`` tokens, or (neither given) NeoX's ``train_iters``. The global batch is
``train_batch_size``, or ``train_micro_batch_size_per_gpu`` × ``gradient_accumulation_steps`` ×
``cpt_data_parallel_size`` for tools without NeoX. The schedule is sized to ``stage_num_steps(cfg)`` steps
and the replay index to ``stage_num_steps(cfg) × global_batch_size(cfg)`` samples, so they always agree.

    >>> stage_num_steps({"cpt_stage_tokens": 1000, "train_batch_size": 4, "seq_length": 16})  # ceil(1000 / 64)
    16
    >>> global_batch_size({"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 3,
    ...                    "cpt_data_parallel_size": 4})
    24
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional


def read_number(cfg: Mapping[str, Any], key: str, fix: str) -> Optional[float]:
    """``cfg[key]`` as a float (None when unset); a non-number raises naming the key, the value and ``fix``."""
    value = cfg.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key} = {value!r} is not a number; {fix} (YAML reads 1e-4 as text: write 1.0e-4)")
    return float(value)


def read_whole(cfg: Mapping[str, Any], key: str, minimum: int = 1) -> Optional[int]:
    """``cfg[key]`` as a whole number >= ``minimum`` (None when unset)."""
    value = read_number(cfg, key, f"give a whole number of steps >= {minimum}")
    if value is None:
        return None
    if not value.is_integer() or value < minimum:
        raise ValueError(f"{key} = {cfg[key]!r} must be a whole number of steps >= {minimum}")
    return int(value)


def one_of(cfg: Mapping[str, Any], *keys: str) -> Optional[str]:
    """The one of ``keys`` that is set (None if none); two set raise."""
    given = [k for k in keys if cfg.get(k) is not None]
    if len(given) > 1:
        raise ValueError(f"{' and '.join(f'{k} = {cfg[k]!r}' for k in given)} both set the same thing; keep one")
    return given[0] if given else None


def global_batch_size(cfg: Mapping[str, Any]) -> Optional[int]:
    """Samples per optimizer step: ``train_batch_size``, else micro batch × accumulation × data-parallel size."""
    batch = read_whole(cfg, "train_batch_size")
    if batch is not None:
        return batch
    micro = read_whole(cfg, "train_micro_batch_size_per_gpu")
    dp = read_whole(cfg, "cpt_data_parallel_size")
    if micro is None or dp is None:
        return None
    return micro * (read_whole(cfg, "gradient_accumulation_steps") or 1) * dp


def tokens_per_step_of(cfg: Mapping[str, Any]) -> Optional[int]:
    """global batch × seq_length, or None when either is missing."""
    batch = global_batch_size(cfg)
    seq = read_whole(cfg, "seq_length")
    return batch * seq if batch is not None and seq is not None else None


def stage_num_steps(cfg: Mapping[str, Any]) -> int:
    """The stage length in optimizer steps (``cpt_stage_iters`` / ``cpt_stage_tokens`` / ``train_iters``)."""
    key = one_of(cfg, "cpt_stage_iters", "cpt_stage_tokens")
    if key == "cpt_stage_tokens":
        tokens = read_whole(cfg, key)
        tokens_per_step = tokens_per_step_of(cfg)
        if tokens_per_step is None:
            raise ValueError(f"cpt_stage_tokens = {cfg[key]!r} needs train_batch_size and seq_length to convert "
                             "tokens to steps; set both, or give cpt_stage_iters instead")
        return -(-tokens // tokens_per_step)  # round up: the stage trains at least the requested tokens
    steps = read_whole(cfg, key or "train_iters")
    if steps is None:
        raise ValueError("the stage length is missing: set cpt_stage_iters (steps), cpt_stage_tokens, or NeoX "
                         "train_iters")
    return steps
