"""Replacements for the few functions ``megatron.training`` calls by name (applied right after it executes).

``megatron/training.py`` imports ``load_checkpoint``/``save_checkpoint`` (training.py:51) and the data-loader
builders (training.py:53-54) by name and calls ``get_learning_rate_scheduler`` (training.py:1105, called at
:1172) and ``evaluate_and_print_results`` (:1664) from its own globals, so swapping these module attributes
changes what ``pretrain`` (training.py:219) does without touching a NeoX file. Every replacement first asks
whether the config uses the plugin; if not, it calls the stock function unchanged.

Order inside ``pretrain``: data loaders (:246) -> scheduler + DeepSpeed + checkpoint load (:252, :1235) ->
``shift_and_wrap_data_loaders`` (:270) -> train loop (``while iteration < train_iters``, :1479) with saves.

    >>> from types import SimpleNamespace
    >>> training = SimpleNamespace(**{name: (lambda *a, **k: "stock") for name in PATCHED})
    >>> apply(training); training.get_learning_rate_scheduler(None, SimpleNamespace())
    'stock'
"""
import contextlib
import functools
import logging
import sys
from typing import Any, Callable, Dict, Iterator

from neox_cpt.neox import integration, stages
from neox_cpt.neox.graft import as_mapping
from neox_cpt.neox.scheduler import StageLR

logger = logging.getLogger(__name__)


def config_of(neox_args: Any) -> Dict[str, Any]:
    """The flat config the core reads; in a stage, the stage length fixed before train_iters is rewritten."""
    cfg = as_mapping(neox_args)
    stage_iters = getattr(neox_args, "_cpt_stage_iters", None)
    if stage_iters is not None:
        cfg.pop("cpt_stage_tokens", None)
        cfg["cpt_stage_iters"] = stage_iters
    return cfg


def prepare_stage(neox_args: Any) -> Dict[str, Any]:
    """Idempotent per run: pin the stage length, make NeoX call load_checkpoint (load = save), log once."""
    cfg = config_of(neox_args)
    if integration.uses_stage(cfg) and getattr(neox_args, "_cpt_stage_iters", None) is None:
        neox_args._cpt_stage_iters = integration.stage_iters(cfg)
        if getattr(neox_args, "load", None) is None:
            neox_args.load = neox_args.save  # setup_model_and_optimizer loads only if `load` is set (:1234)
        if integration.seen_only_needs_consumed(cfg):
            fill_consumed_samples(neox_args, cfg)
        cfg = config_of(neox_args)
    if not getattr(neox_args, "_cpt_announced", False) and (integration.uses_schedule(cfg)
                                                           or integration.uses_replay(cfg)):
        neox_args._cpt_announced = True
        _log_rank0(announcement(cfg))
    return cfg


def fill_consumed_samples(neox_args: Any, cfg: Dict[str, Any]) -> None:
    """Seen-only replay of the run that wrote cpt_init_checkpoint: it consumed iteration x batch samples."""
    paths = cfg.get("cpt_replay_index_paths") or []
    if len(paths) != 1:
        raise ValueError(f"cpt_replay_consumed_samples: unset with {len(paths)} cpt_replay_index_paths; the plugin "
                         "can only infer it for one index (the run that wrote cpt_init_checkpoint): list one "
                         "count per index")
    ref = stages.resolve_checkpoint(cfg["cpt_init_checkpoint"])
    neox_args.cpt_replay_consumed_samples = [ref.iteration * neox_args.train_batch_size]
    _log_rank0(f"neox-cpt: cpt_replay_consumed_samples = [{ref.iteration} x {neox_args.train_batch_size}] from "
               f"{ref.load_dir}/{ref.tag} (same train_batch_size assumed; set the key if it differed)")


def announcement(cfg: Dict[str, Any]) -> str:
    parts = [f"neox-cpt active: patched megatron.training.{{{','.join(PATCHED)}}}"]
    if integration.uses_stage(cfg):
        parts.append(f"stage={cfg['cpt_stage_name']!r} from {cfg['cpt_init_checkpoint']} "
                     f"({cfg['cpt_stage_iters']} iters, reset_optimizer={cfg.get('cpt_reset_optimizer', False)})")
    if integration.uses_schedule(cfg):
        schedule = integration.schedule_for(cfg)
        phases = ", ".join(f"{r['phase']} {r['start_step']}-{r['end_step']} {r['lr_start']:.3g}->{r['lr_end']:.3g}"
                           for r in schedule.phase_table())
        parts.append(f"schedule={schedule.recipe or 'custom'} [{phases}] fp={schedule.fingerprint()}")
    parts.append("data=the parent stage's replay index, from the branch point" if integration.continues_parent_data(cfg)
                 else "data=replay index" if integration.uses_replay(cfg) else "data=NeoX datasets")
    return "; ".join(parts)


def _log_rank0(message: str) -> None:
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


# -- the replacements ------------------------------------------------------------------------------------
def wrap_get_learning_rate_scheduler(stock: Callable) -> Callable:
    @functools.wraps(stock)
    def get_learning_rate_scheduler(optimizer, neox_args):
        cfg = prepare_stage(neox_args) if hasattr(neox_args, "__dataclass_fields__") else {}
        if not integration.uses_schedule(cfg):
            return stock(optimizer, neox_args)
        if str(getattr(neox_args, "optimizer_type", "")).lower() == "onebitadam":
            raise ValueError("optimizer type onebitadam: NeoX lets DeepSpeed build its scheduler, so the cpt_* "
                             "schedule cannot apply; use adam/adamw or remove the cpt_ schedule keys")
        stage_name = cfg.get("cpt_stage_name") if integration.uses_stage(cfg) else None
        return StageLR(optimizer, integration.schedule_for(cfg), stage_name=stage_name,
                       use_mup=bool(getattr(neox_args, "use_mup", False)))

    return get_learning_rate_scheduler


def wrap_load_checkpoint(stock: Callable) -> Callable:
    @functools.wraps(stock)
    def load_checkpoint(neox_args, model, optimizer, lr_scheduler, inference=False, iteration=None):
        cfg = prepare_stage(neox_args)
        if inference or not integration.uses_stage(cfg):
            loaded = stock(neox_args, model, optimizer, lr_scheduler, inference=inference, iteration=iteration)
            if isinstance(lr_scheduler, StageLR):
                lr_scheduler.apply()  # never trust the LR DeepSpeed restored into the optimizer state
            return loaded
        if iteration is not None:
            logger.warning("neox-cpt: iteration=%s is ignored in a stage: the stage starts from cpt_init_checkpoint "
                           "and resumes from the newest checkpoint of `save`", iteration)
        return load_stage_checkpoint(stock, neox_args, cfg, model, optimizer, lr_scheduler)

    return load_checkpoint


def load_stage_checkpoint(stock: Callable, neox_args: Any, cfg: Dict[str, Any], model, optimizer,
                          lr_scheduler) -> int:
    decision = stages.decide(neox_args.save, cfg["cpt_stage_name"], cfg["cpt_init_checkpoint"])
    ref = decision.checkpoint
    if decision.mode == "resume":
        with overridden(neox_args, load=ref.load_dir, finetune=False):
            loaded = stock(neox_args, model, optimizer, lr_scheduler, inference=False, iteration=ref.iteration)
        start = int(decision.sidecar["stage_start"])
    else:
        reset = bool(cfg.get("cpt_reset_optimizer", False)) or bool(getattr(neox_args, "no_load_optim", False))
        with overridden(neox_args, load=ref.load_dir, finetune=False, no_load_optim=reset):
            loaded = stock(neox_args, model, optimizer, lr_scheduler, inference=False, iteration=ref.iteration)
        start = loaded
        expected = cfg.get("cpt_stage_start_iter")
        if expected is not None and expected != start:
            raise ValueError(f"cpt_stage_start_iter: {expected} but cpt_init_checkpoint {ref.load_dir}/{ref.tag} is "
                             f"at iteration {start}; fix or remove cpt_stage_start_iter")
    if loaded != ref.iteration:
        raise RuntimeError(f"neox-cpt: loading {ref.load_dir}/{ref.tag} returned iteration {loaded}, expected "
                           f"{ref.iteration}; is the checkpoint complete?")
    if isinstance(lr_scheduler, StageLR):
        # A resume keeps the position the scheduler saved: DeepSpeed does not step it on a skipped (fp16
        # overflow) update, as with NeoX's AnnealingLR; otherwise position = global iteration - stage start.
        if not (decision.mode == "resume" and lr_scheduler.restored and lr_scheduler.stage_start == start):
            lr_scheduler.stage_start, lr_scheduler.position = start, loaded - start
        lr_scheduler.apply()
    neox_args._cpt_stage_start = start
    neox_args.train_iters = start + neox_args._cpt_stage_iters
    _log_rank0(f"neox-cpt: {'resumed' if decision.mode == 'resume' else 'started'} stage "
               f"{cfg['cpt_stage_name']!r} at global iteration {loaded} (stage start {start}, position "
               f"{loaded - start}/{neox_args._cpt_stage_iters}) from {ref.load_dir}/{ref.tag}"
               + (", optimizer reset" if decision.mode == "start" and cfg.get("cpt_reset_optimizer") else ""))
    return loaded


def wrap_save_checkpoint(stock: Callable) -> Callable:
    @functools.wraps(stock)
    def save_checkpoint(neox_args, iteration, model, optimizer, lr_scheduler):
        cfg = config_of(neox_args)
        if integration.uses_stage(cfg) and _is_rank0():
            start = getattr(neox_args, "_cpt_stage_start", 0)
            record = {"stage_name": cfg["cpt_stage_name"], "stage_start": start, "position": iteration - start,
                      "stage_iters": getattr(neox_args, "_cpt_stage_iters", None),
                      "samples_consumed": (iteration - start) * neox_args.train_batch_size,
                      "index_position": getattr(neox_args, "_cpt_data_start", 0)
                      + (iteration - start) * neox_args.train_batch_size,
                      "init_checkpoint": cfg["cpt_init_checkpoint"],
                      "schedule_fingerprint": getattr(getattr(lr_scheduler, "schedule", None), "fingerprint",
                                                      lambda: None)(),
                      "replay_index": str(getattr(neox_args, "_cpt_index_dir", None) or "") or None}
            stages.write_sidecar(neox_args.save, iteration, record)  # before `latest` moves (DeepSpeed)
        return stock(neox_args, iteration, model, optimizer, lr_scheduler)

    return save_checkpoint


def _is_rank0() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _data_wrappers() -> Dict[str, Callable]:
    from neox_cpt.neox import data

    return {"build_train_valid_test_data_loaders": data.wrap_build_loaders,
            "shift_and_wrap_data_loaders": data.wrap_shift_and_wrap,
            "evaluate_and_print_results": data.wrap_evaluate_and_print_results}


PATCHED = ("get_learning_rate_scheduler", "load_checkpoint", "save_checkpoint",
           "build_train_valid_test_data_loaders", "shift_and_wrap_data_loaders", "evaluate_and_print_results")


def apply(module: Any) -> None:
    """Swap the functions in ``megatron.training`` (idempotent); the stock ones stay reachable as
    ``<function>.__wrapped__``."""
    if getattr(module, "_neox_cpt_patched", False):
        return
    wrappers = {"get_learning_rate_scheduler": wrap_get_learning_rate_scheduler,
                "load_checkpoint": wrap_load_checkpoint, "save_checkpoint": wrap_save_checkpoint,
                **_data_wrappers()}
    for name in PATCHED:
        setattr(module, name, wrappers[name](getattr(module, name)))
    module._neox_cpt_patched = True
