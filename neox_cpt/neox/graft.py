"""Graft the plugin keys into GPT-NeoX's ``NeoXArgs`` right after ``megatron.neox_arguments.arguments`` runs.

NeoX builds ``NeoXArgs`` as a dataclass over ``BASE_CLASSES`` (arguments.py:103-126) and ends ``from_ymls``
in ``cls(**config)`` (arguments.py:285), so an unknown YAML key is a TypeError. We add one more base,
``NeoXArgsCpt`` (made from :func:`neox_cpt.neox.keys.graft_fields`), rebuild ``NeoXArgs`` over
``BASE_CLASSES + [NeoXArgsCpt]`` and append the new base to ``BASE_CLASSES`` and ``NEOX_ARG_CLASSES``.
Consequences, all relied on: the keys load from YAML and pass ``validate_types`` (arguments.py:1365);
``get_deepspeed_main_args`` serialises non-default values of every base (arguments.py:523), so they reach
the workers; ``deepspeed_config`` only reads ``NeoXArgsDeepspeedConfig`` (arguments.py:644), so they stay
out of DeepSpeed's config. Our own validation runs first in ``__post_init__`` (errors name key and fix).

    >>> import types, dataclasses
    >>> from neox_cpt.neox.graft import make_graft_class
    >>> Cpt = make_graft_class(object)
    >>> "cpt_stage_name" in {f.name for f in dataclasses.fields(Cpt)}
    True
"""
import dataclasses
import logging
from typing import Any, List, Optional, Sequence

from neox_cpt.neox import keys

logger = logging.getLogger(__name__)

GRAFT_CLASS_NAME = "NeoXArgsCpt"


def make_graft_class(template: type, rows: Optional[Sequence[keys.GraftField]] = None) -> type:
    """A (mutable) dataclass with one field per plugin key, based on NeoX's ``NeoXArgsTemplate``."""
    rows = keys.graft_fields() if rows is None else rows
    fields = [(r.name, r.type, dataclasses.field(default=r.default,
                                                 metadata={"doc": r.doc, "owner": r.owner}))
              for r in rows]
    bases = (template,) if template is not object else ()
    cls = dataclasses.make_dataclass(GRAFT_CLASS_NAME, fields, bases=bases)
    cls.__doc__ = "neox-cpt plugin keys (see docs/neox.md)."
    if not hasattr(cls, "defaults"):  # NeoXArgsTemplate.defaults (template.py:22), for stand-alone use
        cls.defaults = lambda self: ((f.name, f.default) for f in dataclasses.fields(self))
    return cls


def validate(neox_args: Any) -> None:
    """Our checks on a NeoXArgs object (or mapping): stage keys here, schedule/data keys by their owners."""
    cfg = as_mapping(neox_args)
    if not keys.plugin_values(cfg):
        return
    from neox_cpt.neox import compat

    problem = compat.problem()
    if problem is not None:  # NeoX was left unpatched: a cpt_* run must not train as stock NeoX
        raise RuntimeError(problem)
    keys.stage_config(cfg)
    from neox_cpt.neox import integration  # validation functions of the schedule and data owners

    integration.validate(cfg)


# NeoX keys the core reads whatever their value (a default seed is still the seed of the index).
ALWAYS_PASSED = ("seed", "seq_length", "train_batch_size", "train_micro_batch_size_per_gpu",
                 "gradient_accumulation_steps", "train_iters", "optimizer", "save", "load")


def as_mapping(neox_args: Any) -> dict:
    """The flat config view the core reads: what the user set (non-default values) plus ALWAYS_PASSED.

    Unset keys are absent, so the core's ``cfg.get(key, default)`` sees its own defaults and does not warn
    about NeoX keys the user never wrote (NeoXArgs holds a default for every key).
    """
    if isinstance(neox_args, dict):
        return {k: v for k, v in neox_args.items() if v is not None}
    out = {}
    for name, f in getattr(neox_args, "__dataclass_fields__", {}).items():
        value = getattr(neox_args, name, None)
        if value is not None and (name in ALWAYS_PASSED or name.startswith("cpt_") or value != f.default):
            out[name] = value
    return out


def apply(module: Any) -> None:
    """Patch ``megatron.neox_arguments.arguments`` in place (idempotent); a module without NeoX's
    ``NeoXArgs``/``BASE_CLASSES``/``NEOX_ARG_CLASSES`` is left alone (its ``cpt_*`` keys then fail as unknown)."""
    if not all(hasattr(module, name) for name in ("NeoXArgs", "BASE_CLASSES", "NEOX_ARG_CLASSES")):
        logger.warning("neox-cpt: %s has no NeoXArgs/BASE_CLASSES/NEOX_ARG_CLASSES (tested with GPT-NeoX ea7aefd); "
                       "the cpt_* keys were not added", module.__name__)
        return
    old = module.NeoXArgs
    if any(b.__name__ == GRAFT_CLASS_NAME for b in old.__bases__):
        return
    cpt = make_graft_class(module.NeoXArgsTemplate if hasattr(module, "NeoXArgsTemplate")
                           else _template_of(old))
    bases: List[type] = list(module.BASE_CLASSES) + [cpt]
    namespace = {k: v for k, v in vars(old).items()
                 if k not in ("__dict__", "__weakref__", "__dataclass_fields__", "__dataclass_params__",
                              "__init__", "__repr__", "__eq__", "__hash__", "__match_args__",
                              "__annotations__")}
    stock_post_init = old.__post_init__

    def __post_init__(self) -> None:
        validate(self)  # first, so a bad plugin key gets our message rather than a NeoX type error
        batch_known = getattr(self, "train_batch_size", None) is not None
        stock_post_init(self)
        if not batch_known:  # NeoX has now derived train_batch_size: check the sizes that need it
            validate(self)

    namespace["__post_init__"] = __post_init__
    new = dataclasses.dataclass(type(old.__name__, tuple(bases), namespace))
    new.__module__ = old.__module__
    new.__qualname__ = old.__qualname__
    module.NeoXArgs = new
    module.BASE_CLASSES.append(cpt)
    module.NEOX_ARG_CLASSES.append(cpt)
    logger.debug("neox-cpt: grafted %d keys into NeoXArgs", len(dataclasses.fields(cpt)))


def _template_of(cls: type) -> type:
    for base in cls.__mro__:
        if base.__name__ == "NeoXArgsTemplate":
            return base
    return object
