"""Phase shapes: how the LR moves from a phase's start value to its end value.

A shape is a pure function of the phase fraction ``x`` in [0, 1] (0 = phase start, 1 = phase end), the
start value and the end value, plus named parameters (e.g. ``alpha`` of the inverse square root). Adding a
shape means adding one entry to ``SHAPES``; nothing else branches on shape names.

    >>> from neox_cpt.schedules.shapes import shape_value
    >>> round(shape_value("cosine", 0.5, 3e-4, 3e-5), 12)  # half-way down a half-cosine = the midpoint
    0.000165
    >>> shape_value("exp", 0.5, 1.65e-4, 3e-5)  # geometric mean of the two values
    7.035623639735144e-05
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Tuple

ShapeFn = Callable[[float, float, float, Mapping[str, float]], float]


def _linear(x: float, start: float, end: float, params: Mapping[str, float]) -> float:
    return start + (end - start) * x


def _cosine(x: float, start: float, end: float, params: Mapping[str, float]) -> float:
    # Half-cosine: flat at both ends, the paper's eta_min + (eta_max - eta_min)/2 (1 + cos(pi x)).
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * x))


def _constant(x: float, start: float, end: float, params: Mapping[str, float]) -> float:
    return start


def _inv_sqrt(x: float, start: float, end: float, params: Mapping[str, float]) -> float:
    # Paper (infinite schedule cooldown): h(x) = 1/sqrt(1 + alpha x) - 1, normalised by h(1) so the
    # phase ends exactly at `end`; alpha sets how front-loaded the drop is.
    alpha = params["alpha"]
    h_x = 1.0 / math.sqrt(1.0 + alpha * x) - 1.0
    h_1 = 1.0 / math.sqrt(1.0 + alpha) - 1.0
    return start + (end - start) * h_x / h_1


def _exp(x: float, start: float, end: float, params: Mapping[str, float]) -> float:
    # Geometric interpolation (the paper's exponential anneal): start * (end/start)^x.
    return start * (end / start) ** x


def _check_none(start: float, end: float, params: Mapping[str, float]) -> str:
    return ""


def _check_constant(start: float, end: float, params: Mapping[str, float]) -> str:
    return "" if start == end else f"a constant phase needs lr_start == lr_end (got {start!r} and {end!r})"


def _check_inv_sqrt(start: float, end: float, params: Mapping[str, float]) -> str:
    alpha = params["alpha"]
    return "" if alpha > 0 else f"inv_sqrt needs alpha > 0 (got alpha={alpha!r}); the paper uses 10"


def _check_exp(start: float, end: float, params: Mapping[str, float]) -> str:
    if start > 0 and end > 0:
        return ""
    return (f"exp needs positive start and end values (got {start!r} and {end!r}); "
            "a geometric anneal cannot reach 0: use a positive lr_min or a linear/cosine shape")


@dataclass(frozen=True)
class Shape:
    """One registered phase shape."""

    name: str
    """Registry key, used in configs (``cpt_cooldown_shape``, ``cpt_decay_shape``) and phase tables."""
    fn: ShapeFn = field(repr=False)
    """``fn(x, start, end, params) -> lr`` for x in [0, 1]."""
    formula: str
    """Human-readable formula (docs and phase tables)."""
    defaults: Tuple[Tuple[str, float], ...] = ()
    """The shape's parameters with their default values; no other parameter is accepted."""
    check: Callable[[float, float, Mapping[str, float]], str] = field(default=_check_none, repr=False)
    """Returns "" when (start, end, params) are valid for this shape, else the reason."""


SHAPES: Dict[str, Shape] = {
    s.name: s
    for s in (
        Shape("linear", _linear, "start + (end - start) x"),
        Shape("cosine", _cosine, "end + (start - end)/2 (1 + cos(pi x))"),
        Shape("constant", _constant, "start", check=_check_constant),
        Shape("inv_sqrt", _inv_sqrt, "start + (end - start) h(x)/h(1), h(x) = 1/sqrt(1 + alpha x) - 1",
              defaults=(("alpha", 10.0),), check=_check_inv_sqrt),
        Shape("exp", _exp, "start (end/start)^x", check=_check_exp),
    )
}


def get_shape(name: str, key: str = "shape") -> Shape:
    """The registered shape ``name``; ValueError naming ``key``, the value and the choices otherwise."""
    try:
        return SHAPES[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), list(SHAPES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{key} = {name!r} is not a known shape; choose one of {sorted(SHAPES)}{hint}") from None


def shape_value(name: str, x: float, start: float, end: float, params: Mapping[str, float] = ()) -> float:
    """LR of shape ``name`` at phase fraction ``x``; exact ``start`` at x=0 and ``end`` at x=1."""
    shape = get_shape(name)
    full = dict(shape.defaults)
    full.update(dict(params))
    if x <= 0.0:
        return start
    if x >= 1.0:
        return end
    return shape.fn(x, start, end, full)
