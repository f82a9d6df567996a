"""Stand-in for megatron/checkpointing.py load_checkpoint (:376) / save_checkpoint (:354) on DeepSpeed.

Modelled: tag ``global_step{iteration}`` (:154); ``latest`` names the newest tag (DeepSpeed); ``finetune``
or ``no_load_optim`` skip optimizer + scheduler states (:382-386); with an explicit ``iteration`` a missing
checkpoint raises ValueError (:397-410), otherwise 0 is returned (:414); the iteration comes from the
checkpoint unless finetune (:419-430). Checkpoints are JSON files here instead of torch files.
"""
import json
import os


def load_checkpoint(neox_args, model, optimizer, lr_scheduler, inference=False, iteration=None):
    load_states = not neox_args.no_load_optim and not neox_args.finetune
    if iteration is not None:
        tag = f"global_step{iteration}"
    else:
        latest = os.path.join(neox_args.load, "latest")
        tag = open(latest).read().strip() if os.path.isfile(latest) else None
    path = os.path.join(neox_args.load, tag or "-", "state.json")
    if not os.path.isfile(path):
        if iteration is not None:
            raise ValueError(f"Unable to load checkpoint for iteration {iteration}.")
        return 0
    with open(path) as f:
        state = json.load(f)
    model.loaded = dict(path=path, optimizer=load_states)
    if load_states and getattr(optimizer, "dummy", False):  # DeepSpeed: the dummy has 1 group, the state more
        raise ValueError("loaded state dict has a different number of parameter groups")
    if load_states:
        for group in optimizer.param_groups:  # DeepSpeed restores the LR kept in optimizer state
            group["lr"] = state["optimizer_lr"]
        if lr_scheduler is not None:
            lr_scheduler.load_state_dict(state["lr_scheduler"])
    return 0 if neox_args.finetune else state["iteration"]


def save_checkpoint(neox_args, iteration, model, optimizer, lr_scheduler):
    tag = f"global_step{iteration}"
    os.makedirs(os.path.join(neox_args.save, tag), exist_ok=True)
    state = {"iteration": iteration, "lr_scheduler": lr_scheduler.state_dict(),
             "optimizer_lr": optimizer.param_groups[0]["lr"]}
    with open(os.path.join(neox_args.save, tag, "state.json"), "w") as f:
        json.dump(state, f)
    with open(os.path.join(neox_args.save, "latest"), "w") as f:
        f.write(tag)
