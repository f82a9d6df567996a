"""Replacements for the few functions ``megatron.training`` calls by name (applied right after it executes).

``megatron/training.py`` imports ``load_checkpoint``/``save_checkpoint`` (training.py:51) and the data-loader
builders (training.py:53-54) by name and calls ``get_learning_rate_scheduler`` (training.py:1105, called at
:1172) and ``evaluate_and_print_results`` (:1664) from its own globals, so swapping these module attributes
changes what ``pretrain`` (training.py:219) does without touching a NeoX file. Every replacement first asks
whether the config uses the plugin; if not, it calls the stock function unchanged.

Order inside ``pretrain``: data loaders (:246) -> scheduler + DeepSpeed + checkpoint load (:252, :1235) ->
``shift_and_wrap_data_loaders`` (:270) -> train loop (``while iteration < train_iters``, :1479) with saves.

    >>> from types import SimpleNamespace
    >>> patched = wrap_get_learning_rate_scheduler(lambda optimizer, neox_args: "stock")
    >>> patched(None, SimpleNamespace(train_iters=10, lr=1e-3))  # no cpt_* key: NeoX's own function
    'stock'
"""
import functools
import logging
from typing import Any, Callable, Dict

from neox_cpt.neox import compat, data, stages
from neox_cpt.neox.compat import PATCHED
from neox_cpt.neox.plan import LaunchPlan
from neox_cpt.neox.runtime import config_of, is_rank0, log_rank0, overridden, prepare
from neox_cpt.neox.scheduler import StageLR

logger = logging.getLogger(__name__)
__all__ = ["PATCHED", "apply", "config_of", "prepare"]


# -- the replacements ------------------------------------------------------------------------------------
def wrap_get_learning_rate_scheduler(stock: Callable) -> Callable:
    @functools.wraps(stock)
    def get_learning_rate_scheduler(optimizer, neox_args):
        plan = prepare(neox_args)
        if plan is None or not plan.uses_schedule:
            return stock(optimizer, neox_args)
        if str(getattr(neox_args, "optimizer_type", "")).lower() == "onebitadam":
            raise ValueError("optimizer type onebitadam: NeoX lets DeepSpeed build its scheduler, so the cpt_* "
                             "schedule cannot apply; use adam/adamw or remove the cpt_ schedule keys")
        return StageLR(optimizer, plan.schedule(), stage_name=plan.stage_name,
                       use_mup=bool(getattr(neox_args, "use_mup", False)))

    return get_learning_rate_scheduler


def wrap_load_checkpoint(stock: Callable) -> Callable:
    @functools.wraps(stock)
    def load_checkpoint(neox_args, model, optimizer, lr_scheduler, inference=False, iteration=None):
        plan = None if inference else prepare(neox_args)  # generation loads weights as NeoX does
        if plan is None or not plan.is_stage:
            loaded = stock(neox_args, model, optimizer, lr_scheduler, inference=inference, iteration=iteration)
            if isinstance(lr_scheduler, StageLR):
                lr_scheduler.apply()  # never trust the LR DeepSpeed restored into the optimizer state
            return loaded
        if iteration is not None:
            logger.warning("neox-cpt: iteration=%s is ignored in a stage: the stage starts from cpt_init_checkpoint "
                           "and resumes from the newest checkpoint of `save`", iteration)
        return load_stage_checkpoint(stock, neox_args, plan, model, optimizer, lr_scheduler)

    return load_checkpoint


def load_stage_checkpoint(stock: Callable, neox_args: Any, plan: LaunchPlan, model, optimizer, lr_scheduler) -> int:
    """Load the plan's checkpoint: a resume always restores the optimizer (whatever no_load_optim says); a
    first launch unless cpt_reset_optimizer (or no_load_optim) asks for a fresh one."""
    ref, start = plan.checkpoint, plan.stage_start
    with overridden(neox_args, load=ref.load_dir, finetune=False, no_load_optim=not plan.load_optimizer):
        loaded = stock(neox_args, model, optimizer, lr_scheduler, inference=False, iteration=ref.iteration)
    if loaded != ref.iteration:
        raise RuntimeError(f"neox-cpt: loading {ref.load_dir}/{ref.tag} returned iteration {loaded}, expected "
                           f"{ref.iteration}; is the checkpoint complete?")
    if isinstance(lr_scheduler, StageLR):
        # A resume keeps the position the scheduler saved: DeepSpeed does not step it on a skipped (fp16
        # overflow) update, as with NeoX's AnnealingLR; otherwise position = global iteration - stage start.
        if not (plan.mode == "resume" and lr_scheduler.restored and lr_scheduler.stage_start == start):
            lr_scheduler.stage_start, lr_scheduler.position = start, loaded - start
        lr_scheduler.apply()
    neox_args.train_iters = plan.end_iteration
    log_rank0(f"neox-cpt: {'resumed' if plan.mode == 'resume' else 'started'} stage {plan.stage_name!r} at global "
              f"iteration {loaded} (stage start {start}, position {loaded - start}/{plan.stage_iters}) from "
              f"{ref.load_dir}/{ref.tag}" + ("" if plan.load_optimizer else ", optimizer reset"))
    return loaded


def wrap_save_checkpoint(stock: Callable) -> Callable:
    @functools.wraps(stock)
    def save_checkpoint(neox_args, iteration, model, optimizer, lr_scheduler):
        plan = prepare(neox_args)
        if plan is not None and plan.is_stage and is_rank0():
            record = sidecar(neox_args, plan, iteration)
            if isinstance(lr_scheduler, StageLR):
                record["schedule_position"] = lr_scheduler.position  # < position after skipped fp16 updates
            stages.write_sidecar(neox_args.save, iteration, record)  # before DeepSpeed moves `latest`
        return stock(neox_args, iteration, model, optimizer, lr_scheduler)

    return save_checkpoint


def sidecar(neox_args: Any, plan: LaunchPlan, iteration: int) -> Dict[str, Any]:
    """The record of one checkpoint of a stage: its clocks and the plan it was launched with."""
    start = getattr(neox_args, "_cpt_stage_start", plan.stage_start)
    consumed = (iteration - start) * plan.train_batch_size
    index = getattr(neox_args, "_cpt_index_dir", None)
    return {"stage_name": plan.stage_name, "stage_start": start, "position": iteration - start,
            "stage_iters": plan.stage_iters, "samples_consumed": consumed,
            "index_position": getattr(neox_args, "_cpt_data_start", plan.data_start) + consumed,
            "init_checkpoint": plan.cfg["cpt_init_checkpoint"],
            "schedule_fingerprint": (plan.record()["schedule"] or {}).get("fingerprint"),
            "replay_index": str(index) if index else None, "plan": plan.record()}


WRAPPERS: Dict[str, Callable[[Callable], Callable]] = {
    "get_learning_rate_scheduler": wrap_get_learning_rate_scheduler, "load_checkpoint": wrap_load_checkpoint,
    "save_checkpoint": wrap_save_checkpoint, "build_train_valid_test_data_loaders": data.wrap_build_loaders,
    "shift_and_wrap_data_loaders": data.wrap_shift_and_wrap,
    "evaluate_and_print_results": data.wrap_evaluate_and_print_results}


def apply(module: Any) -> None:
    """Swap the functions in GPT-NeoX's ``megatron.training`` (idempotent); the stock ones stay reachable as
    ``<function>.__wrapped__``. Another ``megatron`` (Megatron-LM) is left alone; a NeoX whose functions do
    not have the signatures we call is left untouched and the reason kept (``compat.problem``)."""
    if getattr(module, "_neox_cpt_patched", False) or not compat.is_gpt_neox(module):
        return
    problem = compat.signature_problem(module)
    if problem is not None:
        compat.record(module, problem)
        logger.debug("%s", problem)
        return
    for name in PATCHED:
        setattr(module, name, WRAPPERS[name](getattr(module, name)))
    module._neox_cpt_patched = True
