"""The launch plan inside a NeoX process: resolved once, agreed on by every rank, applied to ``neox_args``.

``prepare(neox_args)`` is the first thing every patched function calls. On its first call it resolves the
:class:`~neox_cpt.neox.plan.LaunchPlan` (on global rank 0, broadcast to the others, so two ranks never read
a ``latest`` that moved in between), pins it on ``neox_args`` (``_cpt_plan`` and the clocks the loaders
and the scheduler read: ``_cpt_stage_iters``, ``_cpt_stage_start``, ``_cpt_data_start``), makes NeoX call
``load_checkpoint`` in a stage (``load = save``) and logs the activation line and the plan (rank 0)::

    neox-cpt plan: {"checkpoint": ".../d0/global_step6", "mode": "start", "next_lr": 0.0005, ...}

(the same JSON as ``neox-cpt preflight --json``). Later calls return the pinned plan.

    >>> from types import SimpleNamespace
    >>> args = SimpleNamespace(train_batch_size=4, train_iters=10, save=None, load=None, cpt_lr_max=1e-3)
    >>> config_of(args)  # a plain namespace is read attribute by attribute (tests; NeoX passes a dataclass)
    {'train_batch_size': 4, 'train_iters': 10, 'cpt_lr_max': 0.001}
"""
import contextlib
import json
import logging
import sys
from typing import Any, Dict, Iterator, Optional

from neox_cpt.neox import compat, integration
from neox_cpt.neox.graft import as_mapping
from neox_cpt.neox.plan import LaunchPlan, resolve

logger = logging.getLogger(__name__)


def config_of(neox_args: Any) -> Dict[str, Any]:
    """The flat config the core reads; once planned, the plan's (stage length pinned, consumed count filled)."""
    plan = getattr(neox_args, "_cpt_plan", None)
    if plan is not None:
        return dict(plan.cfg)
    if hasattr(neox_args, "__dataclass_fields__") or isinstance(neox_args, dict):
        return as_mapping(neox_args)
    return {k: v for k, v in vars(neox_args).items() if v is not None and not k.startswith("_")}


def active(cfg: Dict[str, Any]) -> bool:
    return integration.uses_schedule(cfg) or integration.uses_replay(cfg) or integration.uses_stage(cfg)


def prepare(neox_args: Any) -> Optional[LaunchPlan]:
    """The plan of this launch (None for a config without plugin keys: stock NeoX)."""
    plan = getattr(neox_args, "_cpt_plan", None)
    if plan is not None:
        return plan
    cfg = config_of(neox_args)
    if not active(cfg):
        return None
    plan = _agreed(lambda: resolve(cfg))
    neox_args._cpt_plan = plan
    neox_args._cpt_stage_iters, neox_args._cpt_stage_start = plan.stage_iters, plan.stage_start
    neox_args._cpt_data_start = plan.data_start
    if plan.is_stage and getattr(neox_args, "load", None) is None:
        neox_args.load = neox_args.save  # setup_model_and_optimizer loads only if `load` is set (training.py:1234)
    if plan.is_stage and getattr(neox_args, "no_load_optim", False):
        # NeoX builds a dummy optimizer (one parameter, lr 0, for inference) when no_load_optim is set
        # (training.py:958-962), before the checkpoint load; a stage trains with a real one (plan.load_optimizer
        # says whether it is loaded: not on a first launch with no_load_optim, always on a resume).
        neox_args.no_load_optim = False
    if plan.consumed_samples is not None:
        neox_args.cpt_replay_consumed_samples = list(plan.consumed_samples)
    log_rank0(announcement(plan))
    log_rank0("neox-cpt plan: " + json.dumps(plan.summary(), sort_keys=True))
    for line in plan.ignored_keys():
        log_rank0(f"neox-cpt: ignored {line}")
    return plan


def _agreed(compute):
    """``compute()`` on global rank 0, its result (or its error) broadcast to every rank."""
    try:
        import torch.distributed as dist

        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    except ImportError:  # pragma: no cover - NeoX always has torch
        distributed = False
    if not distributed:
        return compute()
    box = [None, None]
    if dist.get_rank() == 0:
        try:
            box[0] = compute()
        except Exception as exc:  # every rank must raise it, not wait in the broadcast
            box[1] = exc
    dist.broadcast_object_list(box, src=0)
    if box[1] is not None:
        raise box[1]
    return box[0]


def announcement(plan: LaunchPlan) -> str:
    parts = [f"neox-cpt active: patched megatron.training.{{{','.join(compat.PATCHED)}}}"]
    cfg = plan.cfg
    if plan.is_stage:
        parts.append(f"stage={plan.stage_name!r} from {cfg['cpt_init_checkpoint']} ({plan.stage_iters} iters, "
                     f"reset_optimizer={cfg.get('cpt_reset_optimizer', False)})")
    schedule = plan.schedule()
    if schedule is not None:
        phases = ", ".join(f"{r['phase']} {r['start_step']}-{r['end_step']} {r['lr_start']:.3g}->{r['lr_end']:.3g}"
                           for r in schedule.phase_table())
        parts.append(f"schedule={schedule.recipe or 'custom'} [{phases}] fp={schedule.fingerprint()}")
    parts.append({"parent": "data=the parent stage's replay index, from the branch point",
                  "replay": "data=replay index"}.get(plan.data, "data=NeoX datasets"))
    return "; ".join(parts)


def log_rank0(message: str) -> None:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return
    except ImportError:  # pragma: no cover
        pass
    _ensure_handler()
    logger.info(message)


def _ensure_handler() -> None:
    """NeoX workers print and configure no logging (only deepy.py does), so inside NeoX the plugin's lines get
    their own stdout handler (NeoX tees stdout into its log files); not propagated, so never printed twice."""
    plugin = logging.getLogger("neox_cpt.neox")
    if not plugin.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        plugin.addHandler(handler)
        plugin.setLevel(logging.INFO)
        plugin.propagate = False


def is_rank0() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


@contextlib.contextmanager
def overridden(obj: Any, **values: Any) -> Iterator[None]:
    """Temporarily set attributes (NeoX functions read their settings from neox_args)."""
    old = {k: getattr(obj, k) for k in values}
    for k, v in values.items():
        setattr(obj, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(obj, k, v)
