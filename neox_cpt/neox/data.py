"""NeoX data loaders for a stage: the replay blend, stage-local positions, per-source validation.

Replaces three ``megatron.training`` names (see patches.py):

- ``build_train_valid_test_data_loaders`` (data_utils.py:516): with replay keys, the training set is the
  replay index of ``neox_cpt.data`` (built by global rank 0 or prebuilt, opened read-only by every loader
  rank), sized to the *stage* (stage iterations x train_batch_size samples); validation is one dataset per
  source. Only TP-rank-0 ranks of the first/last pipeline stage build loaders, and the do_train/valid/test
  flags are broadcast exactly as NeoX does (data_utils.py:720-733), so the other ranks never hang. Without
  replay keys but in a stage, NeoX's own builder runs with ``train_iters`` set to the stage length.
- ``shift_and_wrap_data_loaders`` (data_utils.py:745): skips ``(iteration - stage_start) x
  gradient_accumulation_steps`` batches, i.e. the *stage-local* data position, never wrapping silently.
- ``evaluate_and_print_results`` (training.py:1664): one evaluation and one ``validation_<source>`` chart
  per validation source.

Validation sources and their sizes come from ``neox_cpt.data.spec`` (``valid_sources``,
``valid_num_samples``), which ``neox-cpt build-index`` uses too, so a prebuilt validation index is the one
the run opens.
"""
import functools
import logging
import os
from typing import Any, Callable, Dict, Optional

from neox_cpt.data.spec import valid_num_samples, valid_sources
from neox_cpt.neox import integration
from neox_cpt.neox.plan import LaunchPlan
from neox_cpt.neox.runtime import log_rank0, overridden, prepare

logger = logging.getLogger(__name__)


class PerSourceIterators:
    """Validation iterators by source name (None on ranks without a loader, which get batches by broadcast)."""

    def __init__(self, iterators: Dict[str, Any]) -> None:
        self.iterators = dict(iterators)

    def __repr__(self) -> str:
        return f"PerSourceIterators({list(self.iterators)})"


def _is_loader_rank(neox_args: Any) -> bool:
    """TP rank 0 of the first/last pipeline stage (data_utils.py:530-541)."""
    from megatron import mpu

    if neox_args.is_pipe_parallel:
        rank, size = mpu.get_pipe_parallel_rank(), mpu.get_pipe_parallel_world_size()
        if rank not in (0, size - 1):
            return False
    return mpu.get_model_parallel_rank() == 0


def _broadcast_flags(neox_args: Any, do_train: bool, do_valid: bool, do_test: bool) -> None:
    """NeoX's flag broadcast (data_utils.py:720-733): the ranks without loaders learn what exists."""
    import torch
    from megatron import mpu

    device = "cuda" if torch.cuda.is_available() else "cpu"
    flags = torch.tensor([int(do_train), int(do_valid), int(do_test)], dtype=torch.long, device=device)
    if neox_args.is_pipe_parallel:
        torch.distributed.broadcast(flags, src=0)
    else:
        torch.distributed.broadcast(flags, mpu.get_model_parallel_src_rank(), group=mpu.get_model_parallel_group())
    neox_args.do_train, neox_args.do_valid, neox_args.do_test = (int(x) for x in flags.tolist())


def build_replay_loaders(neox_args: Any, plan: LaunchPlan) -> Dict[str, Any]:
    import torch.distributed as dist
    from megatron.data.data_utils import make_data_loader

    num_iters, num_samples, start = plan.stage_iters, plan.num_samples, plan.data_start
    if plan.data == "parent":  # an anneal branch: the parent's index from the branch point (fixed at its start)
        index_dir = plan.parent_index
        cache_dir = plan.cfg.get("cpt_index_cache_dir") or os.path.dirname(os.path.abspath(index_dir))
        left = len(integration.replay_dataset(index_dir, start_sample=start))
        if left < num_samples:
            raise ValueError(f"cpt_continue_parent_data: the parent's index {index_dir} holds {left} samples after "
                             f"position {start}, the branch needs {num_samples} ({num_iters} iters x "
                             f"{plan.train_batch_size}); branch off earlier or shorten cpt_stage_iters")
    else:
        cache_dir = integration.cache_dir(plan.cfg)
        index_dir = integration.build_replay_index(plan.index_spec(), cache_dir, is_builder=dist.get_rank() == 0,
                                                   barrier=dist.barrier)
    neox_args._cpt_index_dir = str(index_dir)
    loader_rank = _is_loader_rank(neox_args)
    train = (make_data_loader(integration.replay_dataset(index_dir, start_sample=start), neox_args=neox_args)
             if loader_rank else None)
    valid = build_valid_loaders(neox_args, plan.cfg, num_iters, cache_dir, loader_rank)
    log_rank0(f"neox-cpt: replay index {index_dir} from sample {start} ({num_samples} samples = {num_iters} iters x "
              f"{plan.train_batch_size}); validation sources {sorted(valid.iterators) if valid else []}")
    do_train = train is not None and num_iters > 0
    do_valid = valid is not None and loader_rank
    _broadcast_flags(neox_args, do_train, do_valid, False)
    return {"train": train, "valid": valid, "test": None}


def build_valid_loaders(neox_args: Any, cfg: Dict[str, Any], num_iters: int, cache_dir: str,
                        loader_rank: bool) -> Optional[PerSourceIterators]:
    """One loader per validation source, sized like NeoX's (eval_iters per eval_interval, data_utils.py:589)."""
    import torch.distributed as dist
    from megatron.data.data_utils import make_data_loader

    sources = valid_sources(cfg)
    if not sources or not neox_args.eval_iters or not neox_args.eval_interval:
        return None  # NeoX evaluates nothing then (eval_iters: 0), so there is nothing to size or open
    num_samples = valid_num_samples(num_iters, neox_args.train_batch_size, neox_args.eval_interval,
                                    neox_args.eval_iters)
    loaders: Dict[str, Any] = {}
    for first in (True, False):  # rank 0 builds each source's cache first, then everyone opens it
        if first == (dist.get_rank() == 0) and loader_rank:
            for name, prefix in sources:
                ds = integration.source_dataset(prefix, neox_args.seq_length, num_samples, neox_args.seed, cache_dir)
                loaders[name] = make_data_loader(ds, neox_args=neox_args)
        if first:
            dist.barrier()
    return PerSourceIterators({name: loaders.get(name) for name, _ in sources})


def wrap_build_loaders(stock: Callable) -> Callable:
    @functools.wraps(stock)
    def build_train_valid_test_data_loaders(neox_args):
        plan = prepare(neox_args)
        if plan is None:
            return stock(neox_args)
        if plan.data in ("replay", "parent"):
            return build_replay_loaders(neox_args, plan)
        if plan.is_stage:
            with overridden(neox_args, train_iters=plan.stage_iters):
                loaders = stock(neox_args)  # NeoX's datasets, sized to the stage
            if valid_sources(plan.cfg):  # per-source validation instead of NeoX's blended one
                valid = build_valid_loaders(neox_args, plan.cfg, plan.stage_iters, integration.cache_dir(plan.cfg),
                                            _is_loader_rank(neox_args))
                loaders["valid"] = valid if valid is not None else loaders.get("valid")
            return loaders
        return stock(neox_args)

    return build_train_valid_test_data_loaders


def stage_position(neox_args: Any) -> int:
    return neox_args.iteration - getattr(neox_args, "_cpt_stage_start", 0)


def wrap_shift_and_wrap(stock: Callable) -> Callable:
    @functools.wraps(stock)
    def shift_and_wrap_data_loaders(neox_args, data_loaders, loop=True):
        plan = prepare(neox_args)
        if plan is None or not (plan.is_stage or plan.data != "neox"):
            return stock(neox_args, data_loaders, loop=loop)
        position = stage_position(neox_args)
        train = data_loaders.get("train")
        skip = position * neox_args.gradient_accumulation_steps
        if train is not None and skip > len(train):
            raise ValueError(f"neox-cpt: the stage is at position {position} but its data holds only "
                             f"{len(train) // neox_args.gradient_accumulation_steps} iterations; was cpt_stage_iters "
                             "or train_batch_size changed during the stage? Restore them")
        valid = data_loaders.get("valid")
        per_source = valid if isinstance(valid, PerSourceIterators) else None
        plain = dict(data_loaders, valid=None) if per_source is not None else data_loaders
        with overridden(neox_args, iteration=position):  # stock shifts by iteration x GAS (data_utils.py:751)
            train_it, valid_it, test_it = stock(neox_args, plain, loop=loop)
        if per_source is not None:
            valid_it = shift_per_source(neox_args, per_source, position, loop)
        log_rank0(f"neox-cpt: data position {position} iterations into the stage ({skip} micro-batches skipped)")
        return train_it, valid_it, test_it

    return shift_and_wrap_data_loaders


def shift_per_source(neox_args: Any, valid: PerSourceIterators, position: int, loop: bool) -> PerSourceIterators:
    from itertools import cycle

    evals_done = position // neox_args.eval_interval if neox_args.eval_interval else 0
    out = {}
    for name, loader in valid.iterators.items():
        if loader is None:
            out[name] = None
            continue
        loader.batch_sampler.start_iter = (evals_done * neox_args.eval_iters
                                           * neox_args.gradient_accumulation_steps) % len(loader)
        out[name] = cycle(loader) if loop else iter(loader)
    return PerSourceIterators(out)


def wrap_evaluate_and_print_results(stock: Callable) -> Callable:
    @functools.wraps(stock)
    def evaluate_and_print_results(neox_args, prefix, forward_step_func, data_iterator, model, iteration,
                                   verbose=False, timers=None, chart_name="validation", reference_model=None):
        if not isinstance(data_iterator, PerSourceIterators):
            return stock(neox_args, prefix, forward_step_func, data_iterator, model, iteration, verbose=verbose,
                         timers=timers, chart_name=chart_name, reference_model=reference_model)
        for name, it in data_iterator.iterators.items():  # same order on every rank (from the config)
            stock(neox_args, prefix, forward_step_func, it, model, iteration, verbose=verbose, timers=timers,
                  chart_name=f"{chart_name}_{name}", reference_model=reference_model)

    return evaluate_and_print_results
