"""Stand-in for megatron/learning_rates.py AnnealingLR (:24): its state_dict keys (:121-130) and the
``step(step_num=None)`` contract (:108). Only the cosine and constant styles are modelled."""
import math


class AnnealingLR:
    def __init__(self, optimizer, start_lr, warmup_iter, total_iters, decay_style, last_iter, min_lr=0.0,
                 use_checkpoint_lr_scheduler=True, override_lr_scheduler=False, use_mup=False):
        self.optimizer, self.start_lr, self.min_lr = optimizer, start_lr, min_lr
        self.warmup_iter, self.num_iters, self.end_iter = warmup_iter, last_iter, total_iters
        self.decay_style, self.use_mup = decay_style, use_mup
        self.step(self.num_iters)

    def get_lr(self):
        if self.warmup_iter > 0 and self.num_iters <= self.warmup_iter:
            return float(self.start_lr) * max(1, self.num_iters) / self.warmup_iter
        if self.decay_style == "cosine":
            x = (self.num_iters - self.warmup_iter) / (self.end_iter - self.warmup_iter)
            return max(self.min_lr, self.min_lr + (self.start_lr - self.min_lr) / 2 * (1 + math.cos(math.pi * x)))
        return self.start_lr

    def step(self, step_num=None):
        self.num_iters = self.num_iters + 1 if step_num is None else step_num
        for group in self.optimizer.param_groups:
            group["lr"] = self.get_lr()

    def state_dict(self):
        return {"start_lr": self.start_lr, "warmup_iter": self.warmup_iter, "num_iters": self.num_iters,
                "decay_style": self.decay_style, "end_iter": self.end_iter, "min_lr": self.min_lr}

    def load_state_dict(self, sd):
        self.num_iters = sd["num_iters"]
        self.step(self.num_iters)
