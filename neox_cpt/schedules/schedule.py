"""A stage's LR schedule as data: phases laid end to end on one axis, holding the last value afterwards.

Boundary convention (fixed once, tested): phase i covers the half-open interval (start_i, end_i] of
positions, so the value *at* a join belongs to the earlier phase (its end value); ``lr_at(0)`` is the first
phase's start value; after the last phase the final value holds (no NeoX-style cosine rebound). Positions
count completed optimizer updates within the stage (see docs/schedules.md): the update that completes stage
step s is taken with ``lr_at(s)``.

    >>> from neox_cpt.schedules.schedule import Phase, StageSchedule
    >>> s = StageSchedule((Phase("linear", 10, 0.0, 1e-3, name="warmup"),
    ...                    Phase("cosine", 90, 1e-3, 1e-4, name="decay")))
    >>> s.lr_at(0), s.lr_at(5), s.lr_at(10), s.lr_at(100), s.lr_at(1000)
    (0.0, 0.0005, 0.001, 0.0001, 0.0001)
    >>> s.num_steps
    100
"""
from __future__ import annotations

import bisect
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

from neox_cpt.schedules.shapes import get_shape, shape_value

Number = Union[int, float]


def _num(value: Number) -> Number:
    """Keep integral values as int (tables print 100, not 100.0) and everything else as float."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, int):
        return value
    value = float(value)
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


@dataclass(frozen=True)
class Phase:
    """One segment of a schedule: a shape going from ``lr_start`` to ``lr_end`` over ``length`` positions."""

    shape: str
    """Name of a shape in ``neox_cpt.schedules.shapes.SHAPES`` (linear, cosine, constant, inv_sqrt, exp)."""
    length: Number
    """Duration in positions (optimizer steps, or tokens on a token axis); > 0."""
    lr_start: float
    """LR at the start of the phase (x = 0)."""
    lr_end: float
    """LR at the end of the phase (x = 1); the value at the join with the next phase."""
    params: Tuple[Tuple[str, float], ...] = ()
    """Shape parameters as sorted (name, value) pairs; a mapping is accepted and normalised, defaults filled."""
    name: str = ""
    """The paper's phase name (warmup, decay, cooldown, constant, anneal); cosmetic, not fingerprinted."""

    def __post_init__(self) -> None:
        shape = get_shape(self.shape, key=f"phase {self.name or '?'} shape")
        label = f"phase {self.name!r} ({self.shape})"
        try:
            length = _num(self.length)
        except (TypeError, ValueError):
            raise ValueError(f"{label}: length = {self.length!r} is not a number; give a positive length") from None
        if not (math.isfinite(length) and length > 0):
            raise ValueError(f"{label}: length = {self.length!r} must be positive and finite; "
                             "drop the phase instead of giving it length 0")
        for what in ("lr_start", "lr_end"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{label}: {what} = {value!r} must be a finite number >= 0")
            object.__setattr__(self, what, float(value))
        given = dict(self.params)
        allowed = dict(shape.defaults)
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            raise ValueError(f"{label}: unknown shape parameter(s) {unknown}; {self.shape} takes {sorted(allowed)}")
        allowed.update({k: float(v) for k, v in given.items()})
        problem = shape.check(self.lr_start, self.lr_end, allowed)
        if problem:
            raise ValueError(f"{label}: {problem}")
        object.__setattr__(self, "length", length)
        object.__setattr__(self, "params", tuple(sorted(allowed.items())))

    def value(self, x: float) -> float:
        """LR at phase fraction x in [0, 1]."""
        return shape_value(self.shape, x, self.lr_start, self.lr_end, dict(self.params))

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "shape": self.shape, "length": self.length,
                "lr_start": self.lr_start, "lr_end": self.lr_end, "params": dict(self.params)}


@dataclass(frozen=True)
class StageSchedule:
    """Phases on one axis starting at position 0 of the stage; holds the final value after the last phase."""

    phases: Tuple[Phase, ...]
    """The phases in order; at least one."""
    recipe: str = ""
    """Name of the recipe that built it (cosine, infinite, ...); cosmetic, not fingerprinted."""
    _ends: Tuple[Number, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        phases = tuple(self.phases)
        if not phases:
            raise ValueError("a StageSchedule needs at least one phase; use constant(num_steps, lr) for a flat LR")
        for p in phases:
            if not isinstance(p, Phase):
                raise ValueError(f"StageSchedule phases must be Phase objects, got {type(p).__name__}")
        ends: List[Number] = []
        total: Number = 0
        for p in phases:
            total = _num(total + p.length)
            ends.append(total)
        object.__setattr__(self, "phases", phases)
        object.__setattr__(self, "_ends", tuple(ends))

    @property
    def num_steps(self) -> Number:
        """Total length of the phases (the stage's length on its axis)."""
        return self._ends[-1]

    @property
    def final_lr(self) -> float:
        """The value held after the last phase."""
        return self.phases[-1].lr_end

    @property
    def boundaries(self) -> Tuple[Number, ...]:
        """Positions of the phase joins, including 0 and ``num_steps``."""
        return (0,) + self._ends

    def phase_index(self, pos: float) -> int:
        """Index of the phase that owns position ``pos`` (phase i owns (start_i, end_i]; 0 belongs to phase 0;
        positions after the end belong to the last phase, which holds its end value)."""
        if isinstance(pos, bool) or not isinstance(pos, (int, float)) or math.isnan(pos) or pos < 0:
            raise ValueError(f"schedule position = {pos!r} must be a number >= 0 (positions count completed "
                             "updates from the start of the stage)")
        return min(bisect.bisect_left(self._ends, pos), len(self.phases) - 1)

    def lr_at(self, pos: float) -> float:
        """LR at position ``pos`` (completed updates within the stage)."""
        i = self.phase_index(pos)
        if pos >= self._ends[-1]:
            return self.final_lr
        start = self._ends[i - 1] if i else 0
        phase = self.phases[i]
        return phase.value((pos - start) / phase.length)

    def lrs(self, positions: Sequence[float]) -> List[float]:
        """``lr_at`` for each position."""
        return [self.lr_at(p) for p in positions]

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready description; ``from_dict`` inverts it."""
        return {"recipe": self.recipe, "num_steps": self.num_steps, "fingerprint": self.fingerprint(),
                "phases": [p.to_dict() for p in self.phases]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StageSchedule":
        phases = tuple(Phase(shape=p["shape"], length=p["length"], lr_start=p["lr_start"], lr_end=p["lr_end"],
                             params=tuple(sorted(dict(p.get("params", {})).items())), name=p.get("name", ""))
                       for p in data["phases"])
        schedule = cls(phases, recipe=data.get("recipe", ""))
        if "fingerprint" in data and data["fingerprint"] != schedule.fingerprint():
            raise ValueError(f"schedule fingerprint {data['fingerprint']!r} does not match its phases "
                             f"({schedule.fingerprint()!r}); the description was edited or corrupted")
        return schedule

    def canonical(self) -> List[Dict[str, Any]]:
        """What the fingerprint hashes: shapes, lengths, values and parameters (floats as repr strings)."""
        return [{"shape": p.shape, "length": repr(float(p.length)), "lr_start": repr(p.lr_start),
                 "lr_end": repr(p.lr_end), "params": {k: repr(v) for k, v in p.params}} for p in self.phases]

    def fingerprint(self) -> str:
        """Stable short hash of the phases (16 hex digits of sha256 over canonical JSON)."""
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def phase_table(self) -> List[Dict[str, Any]]:
        """One row per phase: name, shape, start/end position, LR at start/end, parameters."""
        rows = []
        for i, p in enumerate(self.phases):
            rows.append({"phase": p.name or p.shape, "shape": p.shape, "start_step": self.boundaries[i],
                         "end_step": self._ends[i], "lr_start": p.lr_start, "lr_end": p.lr_end,
                         "params": dict(p.params)})
        return rows
