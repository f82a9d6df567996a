"""Named schedules as small functions returning a StageSchedule (lengths in steps of the stage axis).

All follow Ibrahim et al. 2024 (arXiv 2403.08763): warmup is linear *from 0*, and lr_min defaults to
0.1 x lr_max. Every length argument is a duration except the infinite schedule's ``cooldown_end_step`` and
``anneal_start_step``, which are *end points* on the stage axis (as in the paper's T_cd and T_ann).

    >>> from neox_cpt.schedules.recipes import infinite
    >>> s = infinite(10_000, 3e-4, lr_min=3e-5, warmup_steps=100, cooldown_end_step=6000, anneal_start_step=8500)
    >>> [round(s.lr_at(t), 10) for t in (50, 100, 6000, 8500, 10_000)]
    [0.00015, 0.0003, 0.000165, 0.000165, 3e-05]
"""
from __future__ import annotations

from typing import List, Optional

from neox_cpt.schedules.schedule import Number, Phase, StageSchedule
from neox_cpt.schedules.shapes import get_shape

PAPER_LR_MIN_RATIO = 0.1
"""eta_min = 0.1 eta_max throughout the paper."""
PAPER_INV_SQRT_ALPHA = 10.0
"""alpha of the inverse-square-root cooldown in the authors' runs."""


def _tidy(value: float) -> float:
    """A derived default rounded to 15 significant digits, so 0.1 x 3e-4 is 3e-05, not 2.9999999999999997e-05."""
    return float(f"{value:.15g}")


def default_lr_min(lr_max: float) -> float:
    """The paper's eta_min = 0.1 eta_max."""
    return _tidy(PAPER_LR_MIN_RATIO * lr_max)


def default_lr_const(lr_max: float, lr_min: float) -> float:
    """The paper's plateau eta_const = (eta_max + eta_min) / 2, kept inside [eta_min, eta_max] where the
    15-digit tidying would step out (eta_min = eta_max written with 17 significant digits).

    >>> default_lr_const(3e-4, 3e-5), default_lr_const(0.00030000000000000003, 0.00030000000000000003)
    (0.000165, 0.00030000000000000003)
    """
    return min(max(_tidy((lr_max + lr_min) / 2), lr_min), lr_max)


def _default_min(lr_max: float, lr_min: Optional[float]) -> float:
    return default_lr_min(lr_max) if lr_min is None else lr_min


def _check(num_steps: Number, lr_max: float, lr_min: float, warmup_steps: Number) -> None:
    if not num_steps > 0:
        raise ValueError(f"num_steps = {num_steps!r} must be > 0")
    if not lr_max > 0:
        raise ValueError(f"lr_max = {lr_max!r} must be > 0")
    if not 0 <= lr_min <= lr_max:
        raise ValueError(f"lr_min = {lr_min!r} must be in [0, lr_max = {lr_max!r}]")
    if not 0 <= warmup_steps < num_steps:
        raise ValueError(f"warmup_steps = {warmup_steps!r} must be in [0, num_steps = {num_steps!r})")


def _warmup(lr_max: float, warmup_steps: Number) -> List[Phase]:
    return [Phase("linear", warmup_steps, 0.0, lr_max, name="warmup")] if warmup_steps > 0 else []


def warmup_cosine(num_steps: Number, lr_max: float, lr_min: Optional[float] = None,
                  warmup_steps: Number = 0) -> StageSchedule:
    """Linear warmup 0 -> lr_max over ``warmup_steps``, then half-cosine to lr_min at ``num_steps``.

    Pre-training, and also the paper's re-warm + re-decay for a later stage (the same recipe sized to that
    stage's budget, with its own lr_max)."""
    lr_min = _default_min(lr_max, lr_min)
    _check(num_steps, lr_max, lr_min, warmup_steps)
    phases = _warmup(lr_max, warmup_steps) + [Phase("cosine", num_steps - warmup_steps, lr_max, lr_min, name="decay")]
    return StageSchedule(tuple(phases), recipe="cosine")


def constant(num_steps: Number, lr: float) -> StageSchedule:
    """Flat ``lr`` over the stage (the paper's "constant eta_min, no re-warm" baseline with lr = lr_min)."""
    if not num_steps > 0:
        raise ValueError(f"num_steps = {num_steps!r} must be > 0")
    return StageSchedule((Phase("constant", num_steps, lr, lr, name="constant"),), recipe="constant")


def rewarm_constant(num_steps: Number, lr_max: float, warmup_steps: Number = 0) -> StageSchedule:
    """Linear re-warm 0 -> lr_max, then constant lr_max (the paper's "re-warm, no re-decay" baseline)."""
    _check(num_steps, lr_max, 0.0, warmup_steps)
    phases = _warmup(lr_max, warmup_steps) + [Phase("constant", num_steps - warmup_steps, lr_max, lr_max,
                                                    name="constant")]
    return StageSchedule(tuple(phases), recipe="rewarm_constant")


def infinite(num_steps: Number, lr_max: float, lr_min: Optional[float] = None, lr_const: Optional[float] = None,
             warmup_steps: Number = 0, cooldown_end_step: Optional[Number] = None,
             anneal_start_step: Optional[Number] = None, cooldown_shape: str = "cosine",
             alpha: float = PAPER_INV_SQRT_ALPHA, first_stage: bool = True) -> StageSchedule:
    """The paper's infinite schedule on one stage.

    First stage: warmup 0 -> lr_max over (0, T_w]; cooldown lr_max -> lr_const over (T_w, T_cd]
    (``cooldown_shape`` cosine or inv_sqrt with timescale ``alpha``); constant lr_const over (T_cd, T_ann];
    exponential anneal lr_const -> lr_min over (T_ann, num_steps] when ``anneal_start_step`` is given.
    Later stages (``first_stage=False``): constant lr_const [+ anneal], no warmup and no cooldown.
    ``cooldown_end_step`` (T_cd) and ``anneal_start_step`` (T_ann) are end points on the stage axis."""
    lr_min = _default_min(lr_max, lr_min)
    lr_const = default_lr_const(lr_max, lr_min) if lr_const is None else lr_const
    _check(num_steps, lr_max, lr_min, warmup_steps if first_stage else 0)
    if not lr_min <= lr_const <= lr_max:
        raise ValueError(f"lr_const = {lr_const!r} must be in [lr_min = {lr_min!r}, lr_max = {lr_max!r}]")
    anneal_at = num_steps if anneal_start_step is None else anneal_start_step
    phases: List[Phase] = []
    cursor: Number = 0
    if first_stage:
        if cooldown_end_step is None:
            raise ValueError("cooldown_end_step is required for the first stage of an infinite schedule")
        if not warmup_steps < cooldown_end_step <= anneal_at:
            raise ValueError(f"cooldown_end_step = {cooldown_end_step!r} must be in (warmup_steps = "
                             f"{warmup_steps!r}, anneal start / stage end = {anneal_at!r}]")
        shape = get_shape(cooldown_shape, key="cooldown_shape").name
        if shape not in ("cosine", "inv_sqrt", "linear"):
            raise ValueError(f"cooldown_shape = {cooldown_shape!r}: choose cosine or inv_sqrt (or linear)")
        params = {"alpha": alpha} if shape == "inv_sqrt" else {}
        phases += _warmup(lr_max, warmup_steps)
        phases.append(Phase(shape, cooldown_end_step - warmup_steps, lr_max, lr_const, params, name="cooldown"))
        cursor = cooldown_end_step
    if not 0 <= anneal_at <= num_steps:
        raise ValueError(f"anneal_start_step = {anneal_start_step!r} must be in [0, num_steps = {num_steps!r}]")
    if anneal_at > cursor:
        phases.append(Phase("constant", anneal_at - cursor, lr_const, lr_const, name="constant"))
    if anneal_at < num_steps:
        phases.append(Phase("exp", num_steps - anneal_at, lr_const, lr_min, name="anneal"))
    return StageSchedule(tuple(phases), recipe="infinite")


def wsd(num_steps: Number, lr_max: float, lr_min: Optional[float] = None, warmup_steps: Number = 0,
        decay_steps: Optional[Number] = None, decay_shape: str = "linear",
        alpha: float = PAPER_INV_SQRT_ALPHA) -> StageSchedule:
    """Warmup-stable-decay: warmup 0 -> lr_max, constant lr_max, then the last ``decay_steps`` decay to lr_min
    with ``decay_shape`` (linear, cosine or inv_sqrt). Default decay: the last 20 % of the stage."""
    lr_min = _default_min(lr_max, lr_min)
    _check(num_steps, lr_max, lr_min, warmup_steps)
    decay_steps = round(0.2 * num_steps) if decay_steps is None else decay_steps
    if not 0 < decay_steps <= num_steps - warmup_steps:
        raise ValueError(f"decay_steps = {decay_steps!r} must be in (0, num_steps - warmup_steps = "
                         f"{num_steps - warmup_steps!r}]")
    shape = get_shape(decay_shape, key="decay_shape").name
    if shape not in ("linear", "cosine", "inv_sqrt", "exp"):
        raise ValueError(f"decay_shape = {decay_shape!r}: choose linear, cosine, inv_sqrt or exp")
    params = {"alpha": alpha} if shape == "inv_sqrt" else {}
    stable = num_steps - warmup_steps - decay_steps
    phases = _warmup(lr_max, warmup_steps)
    if stable > 0:
        phases.append(Phase("constant", stable, lr_max, lr_max, name="stable"))
    phases.append(Phase(shape, decay_steps, lr_max, lr_min, params, name="decay"))
    return StageSchedule(tuple(phases), recipe="wsd")


def anneal_branch(schedule: StageSchedule, start_step: Number, num_steps: Number,
                  lr_min: float) -> StageSchedule:
    """A branch of ``schedule`` that anneals exponentially to ``lr_min`` over ``num_steps`` from ``start_step``.

    The branch equals ``schedule`` up to ``start_step`` and then anneals; the main line (``schedule``) is
    unchanged and continues from the pre-anneal point. ``start_step`` must lie in a constant phase (or at a
    phase join, or after the end where the final value holds), because other shapes cannot be cut into a
    phase of the same shape."""
    if not num_steps > 0:
        raise ValueError(f"anneal num_steps = {num_steps!r} must be > 0")
    if not start_step >= 0:
        raise ValueError(f"anneal start_step = {start_step!r} must be >= 0")
    kept: List[Phase] = []
    cursor: Number = 0
    for phase in schedule.phases:
        end = cursor + phase.length
        if end <= start_step:
            kept.append(phase)
        elif cursor < start_step:
            if phase.shape != "constant":
                raise ValueError(f"anneal start_step = {start_step!r} falls inside the {phase.shape} phase "
                                 f"{phase.name!r} ({cursor!r}, {end!r}]; start the anneal in a constant phase")
            kept.append(Phase("constant", start_step - cursor, phase.lr_start, phase.lr_end, name=phase.name))
        cursor = end
    if start_step > cursor:  # after the end: the held final value is a constant stretch
        held = schedule.final_lr
        kept.append(Phase("constant", start_step - cursor, held, held, name="hold"))
    lr_from = kept[-1].lr_end if kept else schedule.lr_at(0)
    if not 0 < lr_min <= lr_from:
        raise ValueError(f"anneal lr_min = {lr_min!r} must be in (0, {lr_from!r}] (the LR where the anneal starts)")
    kept.append(Phase("exp", num_steps, lr_from, lr_min, name="anneal"))
    return StageSchedule(tuple(kept), recipe=(schedule.recipe + "+anneal").lstrip("+"))
