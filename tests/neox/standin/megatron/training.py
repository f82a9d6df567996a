"""Stand-in for megatron/training.py: the names neox-cpt swaps, with NeoX's signatures, and a tiny
``pretrain`` that calls them in NeoX's order (training.py:219-352): data loaders (:246), scheduler (:1172)
inside setup (:1143), checkpoint load when ``load`` is set (:1234-1255), ``lr_scheduler.optimizer`` re-pointed
(:1259), shift_and_wrap (:270), the loop ``while iteration < train_iters`` (:1479) where the "engine" steps
the scheduler after each update (DeepSpeed engine.py _take_model_step), saves (:1527) and evaluations (:1538).
"""
from megatron.checkpointing import load_checkpoint, save_checkpoint  # training.py:51
from megatron.data.data_utils import build_train_valid_test_data_loaders, shift_and_wrap_data_loaders  # :53
from megatron.learning_rates import AnnealingLR  # training.py:47


class Optimizer:
    """What NeoX's scheduler sees: ``param_groups`` (a list of dicts). ``dummy``: NeoX's stand-in optimizer
    (one parameter, lr 0) that get_optimizer builds when no_load_optim is set (training.py:958-962, 987-992)."""

    def __init__(self, num_groups=1, width_mults=None, dummy=False):
        self.dummy = dummy
        self.param_groups = [{"lr": 0.0} for _ in range(num_groups)]
        for group, mult in zip(self.param_groups, width_mults or []):
            group["width_mult"] = mult


class Model:
    def __init__(self, dummy_optimizer=False):
        self.optimizer = Optimizer(dummy=dummy_optimizer)
        self.batches = []


def get_learning_rate_scheduler(optimizer, neox_args):  # training.py:1105
    num_iters = max(1, neox_args.lr_decay_iters or neox_args.train_iters)
    return AnnealingLR(optimizer, start_lr=neox_args.lr, warmup_iter=neox_args.warmup * num_iters,
                       total_iters=num_iters, decay_style=neox_args.lr_decay_style, last_iter=0,
                       min_lr=neox_args.min_lr, use_mup=neox_args.use_mup)


def setup_model_and_optimizer(neox_args, use_cache=False, iteration=None):  # training.py:1143
    model = Model(dummy_optimizer=bool(neox_args.no_load_optim and neox_args.deepspeed))  # get_optimizer :958
    optimizer = model.optimizer
    lr_scheduler = get_learning_rate_scheduler(optimizer=optimizer, neox_args=neox_args)
    if neox_args.load is not None:
        neox_args.iteration = load_checkpoint(neox_args=neox_args, model=model, optimizer=optimizer,
                                              lr_scheduler=lr_scheduler, iteration=iteration)
    else:
        neox_args.iteration = 0
    if lr_scheduler is not None:
        lr_scheduler.optimizer = model.optimizer
    return model, optimizer, lr_scheduler, None


def evaluate_and_print_results(neox_args, prefix, forward_step_func, data_iterator, model, iteration,
                               verbose=False, timers=None, chart_name="validation",
                               reference_model=None):  # training.py:1664
    batch = next(data_iterator) if data_iterator is not None else None
    model.evals = getattr(model, "evals", []) + [(iteration, chart_name, batch)]


def pretrain(neox_args, stop_at=None):  # training.py:219 (stop_at simulates a crash)
    neox_args.iteration = neox_args.iteration or 0
    data_loaders = build_train_valid_test_data_loaders(neox_args=neox_args)
    model, optimizer, lr_scheduler, _ = setup_model_and_optimizer(neox_args=neox_args,
                                                                  iteration=None)
    train_it, valid_it, _ = shift_and_wrap_data_loaders(neox_args=neox_args, data_loaders=data_loaders)
    iteration = neox_args.iteration
    lrs = []
    while iteration < neox_args.train_iters:
        if stop_at is not None and iteration >= stop_at:
            return model, lr_scheduler, lrs
        model.batches.append(next(train_it))
        lrs.append((iteration + 1, model.optimizer.param_groups[0]["lr"]))  # LR this update uses
        lr_scheduler.step()  # DeepSpeed: after each applied optimizer update
        iteration += 1
        neox_args.iteration = iteration
        if neox_args.save and iteration % neox_args.checkpoint_factor == 0:
            save_checkpoint(neox_args=neox_args, iteration=iteration, model=model, optimizer=optimizer,
                            lr_scheduler=lr_scheduler)
        if neox_args.eval_interval and iteration % neox_args.eval_interval == 0 and neox_args.do_valid:
            evaluate_and_print_results(neox_args, f"iteration {iteration}", None, valid_it, model, iteration)
    return model, lr_scheduler, lrs
