"""Stage config -> validated ScheduleConfig -> StageSchedule (the ``cpt_`` schedule keys; docs/schedules.md).

A stage config is a flat NeoX-style mapping. This module reads only the schedule keys (``SCHEDULE_KEYS``)
plus the NeoX fallbacks (``optimizer.params.lr``, ``train_iters``, ``train_batch_size``, ``seq_length``) and
the shared stage keys ``cpt_stage_iters`` / ``cpt_stage_tokens`` / ``cpt_stage_start_iter`` /
``cpt_stage_name``; every other key is ignored. All checks live in ``read_schedule_config``.

    >>> from neox_cpt.schedules.config import schedule_from_config
    >>> s = schedule_from_config({"cpt_lr_schedule": "cosine", "cpt_lr_max": 3e-4, "cpt_stage_iters": 1000})
    >>> [(r["phase"], r["end_step"], r["lr_end"]) for r in s.phase_table()]
    [('warmup', 10, 0.0003), ('decay', 1000, 3e-05)]
"""
from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable, Dict, Mapping, Optional

from neox_cpt.schedules import recipes
from neox_cpt.schedules.keys import NEOX_LR_KEYS, RECIPE_KEYS, SCHEDULE_KEYS, check_config_keys
from neox_cpt.schedules.schedule import StageSchedule
from neox_cpt.schedules.shapes import get_shape
from neox_cpt.schedules.stage import one_of as _one_of
from neox_cpt.schedules.stage import read_number as _number
from neox_cpt.schedules.stage import read_whole as _iters
from neox_cpt.schedules.stage import stage_num_steps, tokens_per_step_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScheduleConfig:
    """A stage's schedule settings, resolved to steps and validated."""

    recipe: str
    """Recipe name (a key of ``RECIPES``)."""
    stage_steps: int
    """Length of the stage in optimizer steps."""
    lr_max: float
    """Peak LR (warmup target)."""
    lr_min: float
    """Final LR (end of decay / anneal)."""
    lr_const: float
    """Plateau of the infinite schedule; the value of the constant recipe."""
    warmup_steps: int = 0
    """Warmup duration in steps (0 = none)."""
    cooldown_shape: str = "cosine"
    """Infinite cooldown shape."""
    cooldown_end_step: Optional[int] = None
    """Infinite, first stage: end point of the cooldown (T_cd) on the stage axis."""
    alpha: float = recipes.PAPER_INV_SQRT_ALPHA
    """inv_sqrt timescale."""
    first_stage: bool = True
    """Infinite: whether this stage does the warmup and cooldown."""
    anneal_start_step: Optional[int] = None
    """Infinite: start point of the anneal (T_ann); None = no anneal in this stage."""
    decay_shape: str = "linear"
    """WSD decay shape."""
    decay_steps: Optional[int] = None
    """WSD decay duration in steps."""
    start_step: Optional[int] = None
    """Global start step from ``cpt_stage_start_iter`` (None = where the previous stage ends)."""
    tokens_per_step: Optional[int] = None
    """global batch x seq_length when both are given."""
    name: str = ""
    """``cpt_stage_name`` (display only)."""


RECIPES: Dict[str, Callable[[ScheduleConfig], StageSchedule]] = {
    "cosine": lambda c: recipes.warmup_cosine(c.stage_steps, c.lr_max, c.lr_min, c.warmup_steps),
    "constant": lambda c: recipes.constant(c.stage_steps, c.lr_const),
    "rewarm_constant": lambda c: recipes.rewarm_constant(c.stage_steps, c.lr_max, c.warmup_steps),
    "infinite": lambda c: recipes.infinite(c.stage_steps, c.lr_max, c.lr_min, c.lr_const, c.warmup_steps,
                                           c.cooldown_end_step, c.anneal_start_step, c.cooldown_shape, c.alpha,
                                           c.first_stage),
    "wsd": lambda c: recipes.wsd(c.stage_steps, c.lr_max, c.lr_min, c.warmup_steps, c.decay_steps,
                                 c.decay_shape, c.alpha),
}
"""Recipe name -> builder; adding a recipe adds an entry here and its keys in ``RECIPE_KEYS``."""


def _frac(cfg: Mapping[str, Any], key: str, low_open: bool, high_open: bool) -> Optional[float]:
    value = _number(cfg, key, "give a fraction of the stage")
    if value is None:
        return None
    if (value <= 0 if low_open else value < 0) or (value >= 1 if high_open else value > 1):
        interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        raise ValueError(f"{key} = {cfg[key]!r} must be a fraction of the stage in {interval}")
    return value


def frac_to_steps(frac: float, stage_steps: int) -> int:
    """A fraction of the stage in whole steps: round to nearest, ties up, computed on the fraction as written
    (its shortest decimal, not the binary float: 0.009 x 1500 = 13.5 -> 14); a positive fraction gives >= 1.

    >>> frac_to_steps(0.009, 1500), frac_to_steps(0.01, 50), frac_to_steps(0.001, 10)
    (14, 1, 1)
    """
    exact = Decimal(repr(float(frac))) * stage_steps
    steps = int(exact.to_integral_value(rounding=ROUND_HALF_UP))
    return max(steps, 1) if frac > 0 else 0


def _shown(cfg: Mapping[str, Any], key: Optional[str], default_key: str, default: Any) -> str:
    """``key = value`` of the key that decided a length, or the default that applied when none was given."""
    return f"{key} = {cfg[key]!r}" if key else f"{default_key} (default {default})"


def _lr_max(cfg: Mapping[str, Any]) -> float:
    fix = "give the peak LR as a positive number"
    value = _number(cfg, "cpt_lr_max", fix)
    source = "cpt_lr_max"
    if value is None:
        optimizer = cfg.get("optimizer")
        if optimizer is not None and not isinstance(optimizer, Mapping):
            raise ValueError(f"optimizer = {optimizer!r} must be a mapping (NeoX: optimizer: {{type: Adam, params: "
                             "{lr: 3.0e-4}}), or set cpt_lr_max")
        params = (optimizer or {}).get("params")
        if params is not None and not isinstance(params, Mapping):
            raise ValueError(f"optimizer.params = {params!r} must be a mapping (e.g. {{lr: 3.0e-4}}), or set "
                             "cpt_lr_max")
        params = params or {}
        if params.get("lr") is not None:
            value, source = _number({"optimizer.params.lr": params["lr"]}, "optimizer.params.lr", fix), \
                "optimizer.params.lr"
        elif cfg.get("lr") is not None:
            value, source = _number(cfg, "lr", fix), "lr"
    if value is None:
        raise ValueError("the peak LR is missing: set cpt_lr_max or NeoX optimizer.params.lr")
    if value <= 0:
        raise ValueError(f"{source} = {value!r} must be > 0")
    return value


def read_schedule_config(cfg: Mapping[str, Any]) -> ScheduleConfig:
    """Validate the schedule keys of a stage config and resolve them to steps (the one validation function)."""
    check_config_keys(cfg, neox_typos=False)
    recipe = cfg.get("cpt_lr_schedule") or "cosine"
    if recipe not in RECIPES:
        close = difflib.get_close_matches(str(recipe), list(RECIPES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"cpt_lr_schedule = {recipe!r} is not a known schedule; choose one of {sorted(RECIPES)}{hint}")
    unused = sorted(k for k in SCHEDULE_KEYS if k in cfg and k not in RECIPE_KEYS[recipe])
    if unused:
        logger.warning("cpt_lr_schedule = %s ignores %s", recipe, ", ".join(unused))
    ignored = [f"{k}={cfg[k]!r}" for k in NEOX_LR_KEYS if cfg.get(k) is not None]
    if ignored:
        logger.warning("NeoX LR keys %s are ignored: the cpt schedule sets the LR (see docs/schedules.md)",
                       ", ".join(ignored))
    tokens_per_step = tokens_per_step_of(cfg)
    n = stage_num_steps(cfg)
    lr_max = _lr_max(cfg)
    lr_min = _number(cfg, "cpt_lr_min", "give the final LR")
    lr_min = recipes.default_lr_min(lr_max) if lr_min is None else lr_min
    if not 0 <= lr_min <= lr_max:
        raise ValueError(f"cpt_lr_min = {lr_min!r} must be in [0, cpt_lr_max = {lr_max!r}]; lower cpt_lr_min or "
                         "raise cpt_lr_max")
    lr_const = _number(cfg, "cpt_lr_const", "give the plateau LR")
    if lr_const is None:
        lr_const = lr_min if recipe == "constant" else recipes.default_lr_const(lr_max, lr_min)
    elif not lr_min <= lr_const <= lr_max:
        raise ValueError(f"cpt_lr_const = {lr_const!r} must be in [cpt_lr_min = {lr_min!r}, cpt_lr_max = "
                         f"{lr_max!r}]; pick a plateau between them")
    kw: Dict[str, Any] = {}
    first_stage = cfg.get("cpt_infinite_first_stage", True)
    if not isinstance(first_stage, bool):
        raise ValueError(f"cpt_infinite_first_stage = {first_stage!r} must be true or false")
    uses_warmup = recipe in ("cosine", "rewarm_constant", "wsd") or (recipe == "infinite" and first_stage)
    warmup_key = _one_of(cfg, "cpt_warmup_frac", "cpt_warmup_iters")
    if uses_warmup:
        if warmup_key == "cpt_warmup_iters":
            warmup = _iters(cfg, warmup_key, minimum=0)
        else:
            frac = _frac(cfg, "cpt_warmup_frac", low_open=False, high_open=True)
            warmup = frac_to_steps(0.01 if frac is None else frac, n)
        if warmup >= n:
            raise ValueError(f"{_shown(cfg, warmup_key, 'cpt_warmup_frac', 0.01)} gives {warmup} warmup steps, not "
                             f"shorter than the stage ({n} steps); shorten the warmup (cpt_warmup_iters: 0 for "
                             "none) or lengthen the stage")
        kw["warmup_steps"] = warmup
    alpha = _number(cfg, "cpt_inv_sqrt_alpha", "give a positive timescale")
    if alpha is not None and alpha <= 0:
        raise ValueError(f"cpt_inv_sqrt_alpha = {alpha!r} must be > 0 (the paper uses 10)")
    kw["alpha"] = recipes.PAPER_INV_SQRT_ALPHA if alpha is None else alpha
    if recipe == "infinite":
        kw.update(_infinite_points(cfg, n, kw.get("warmup_steps", 0), first_stage))
        kw["first_stage"] = first_stage
    if recipe == "wsd":
        shape = cfg.get("cpt_decay_shape") or "linear"  # null = unset, as NeoX holds it
        if get_shape(shape, key="cpt_decay_shape").name not in ("linear", "cosine", "inv_sqrt", "exp"):
            raise ValueError(f"cpt_decay_shape = {shape!r}: choose linear, cosine, inv_sqrt or exp")
        key = _one_of(cfg, "cpt_decay_frac", "cpt_decay_iters")
        decay = (_iters(cfg, key) if key == "cpt_decay_iters"
                 else frac_to_steps(_frac(cfg, "cpt_decay_frac", True, False) or 0.2, n))
        if decay > n - kw["warmup_steps"]:
            raise ValueError(f"{_shown(cfg, key, 'cpt_decay_frac', 0.2)} gives {decay} decay steps, more than "
                             f"the stage minus warmup ({n - kw['warmup_steps']}); shorten the decay or the warmup")
        kw.update(decay_shape=shape, decay_steps=decay)
    if lr_min <= 0 and (kw.get("anneal_start_step") is not None or kw.get("decay_shape") == "exp"):
        raise ValueError(f"cpt_lr_min = {lr_min!r}: an exponential anneal/decay needs a positive final LR; set "
                         "cpt_lr_min > 0 (paper: 0.1 x cpt_lr_max)")
    return ScheduleConfig(recipe=recipe, stage_steps=n, lr_max=lr_max, lr_min=lr_min, lr_const=lr_const,
                          start_step=_iters(cfg, "cpt_stage_start_iter", minimum=0),
                          tokens_per_step=tokens_per_step, name=str(cfg.get("cpt_stage_name") or ""), **kw)


def _infinite_points(cfg: Mapping[str, Any], n: int, warmup: int, first_stage: bool) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    # Anneal: a start point or a duration (ending at the stage end); both only if they agree.
    start_key = _one_of(cfg, "cpt_anneal_start_frac", "cpt_anneal_start_iter")
    dur_key = _one_of(cfg, "cpt_anneal_frac", "cpt_anneal_iters")
    start = dur = None
    if start_key:
        start = (_iters(cfg, start_key, minimum=0) if start_key.endswith("iter")
                 else frac_to_steps(_frac(cfg, start_key, False, True), n))
        if start >= n:
            raise ValueError(f"{start_key} = {cfg[start_key]!r} starts the anneal at step {start}, not inside the "
                             f"stage ({n} steps); start it earlier or lengthen the stage")
    if dur_key:
        dur = _iters(cfg, dur_key) if dur_key.endswith("iters") else frac_to_steps(_frac(cfg, dur_key, True, False), n)
        if dur > n:
            raise ValueError(f"{dur_key} = {cfg[dur_key]!r} gives {dur} anneal steps, longer than the stage ({n})")
    if start is not None and dur is not None and start + dur != n:
        raise ValueError(f"{start_key} = {cfg[start_key]!r} and {dur_key} = {cfg[dur_key]!r} disagree: the anneal "
                         f"must end at the stage end ({n} steps) but {start} + {dur} = {start + dur}; keep one")
    out["anneal_start_step"] = start if start is not None else (n - dur if dur is not None else None)
    if first_stage and out["anneal_start_step"] is not None and out["anneal_start_step"] <= warmup:
        given = " and ".join(f"{k} = {cfg[k]!r}" for k in (start_key, dur_key) if k)
        raise ValueError(f"{given} starts the anneal at step {out['anneal_start_step']}, inside the warmup ({warmup} "
                         "steps) of this first infinite stage; start the anneal after the warmup and the cooldown")
    if not first_stage:
        given = [k for k in SCHEDULE_KEYS if k.startswith("cpt_cooldown_") and k != "cpt_cooldown_shape" and k in cfg]
        if given:
            logger.warning("cpt_infinite_first_stage = false: no cooldown in this stage, ignoring %s", ", ".join(given))
        return out
    shape = cfg.get("cpt_cooldown_shape") or "cosine"  # null = unset, as NeoX holds it
    if get_shape(shape, key="cpt_cooldown_shape").name not in ("cosine", "inv_sqrt", "linear"):
        raise ValueError(f"cpt_cooldown_shape = {shape!r}: choose cosine or inv_sqrt")
    out["cooldown_shape"] = shape
    key = _one_of(cfg, "cpt_cooldown_end_frac", "cpt_cooldown_end_iter", "cpt_cooldown_frac", "cpt_cooldown_iters")
    if key == "cpt_cooldown_end_iter":
        end = _iters(cfg, key)
    elif key == "cpt_cooldown_iters":
        end = warmup + _iters(cfg, key)
    elif key == "cpt_cooldown_frac":
        end = warmup + frac_to_steps(_frac(cfg, key, True, False), n)
    else:
        end = frac_to_steps(_frac(cfg, "cpt_cooldown_end_frac", True, False) or 0.6, n)
    limit = out["anneal_start_step"] if out["anneal_start_step"] is not None else n
    if not warmup < end <= limit:
        raise ValueError(f"{_shown(cfg, key, 'cpt_cooldown_end_frac', 0.6)} ends the cooldown at step {end}; it must "
                         f"be after the warmup ({warmup} steps) and at or before "
                         f"{'the anneal start' if limit < n else 'the stage end'} ({limit}); adjust it")
    out["cooldown_end_step"] = end
    return out


def validate_schedule_config(cfg: Mapping[str, Any]) -> None:
    """Raise ValueError (naming the key, value and fix) if the stage config's schedule is invalid."""
    schedule_from_config(cfg)


def schedule_from_config(cfg: Mapping[str, Any]) -> StageSchedule:
    """The StageSchedule of a stage config (see ``SCHEDULE_KEYS`` and docs/schedules.md)."""
    return RECIPES[(c := read_schedule_config(cfg)).recipe](c)
