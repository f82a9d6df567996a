"""The LR scheduler NeoX and DeepSpeed drive, computing every LR with the schedules core.

``StageLR`` honours the contract of ``megatron.learning_rates.AnnealingLR`` as DeepSpeed uses it
(NEOX.md): ``step()`` without arguments after each applied optimizer update (DeepSpeed retries
``step(train_batch_size)`` if ``step()`` raises TypeError, so it never does); not callable (a callable
is taken for a factory); ``self.optimizer`` is re-read at every step because NeoX re-points it at
DeepSpeed's wrapper (training.py:1259); muP groups get ``lr / width_mult``; ``state_dict`` /
``load_state_dict`` go through DeepSpeed checkpoints, and the LR is written into the param groups again
after every load (the optimizer state's LR is never trusted).

Clocks: ``stage_start`` is the global iteration at which the stage began; ``position`` counts the updates
completed in the stage, so NeoX's ``iteration == stage_start + position``. Step convention (INTERFACES.md):
the update that completes stage step s uses ``schedule.lr_at(s)``, so the groups always hold
``lr_at(position + 1)`` -- the first warmup update is not 0 (NeoX #1373).

    >>> from types import SimpleNamespace
    >>> from neox_cpt.schedules.recipes import warmup_cosine
    >>> opt = SimpleNamespace(param_groups=[{"lr": 0.0}])
    >>> sched = StageLR(opt, warmup_cosine(100, 1e-3, 1e-4, 10), stage_start=500)
    >>> opt.param_groups[0]["lr"], sched.iteration
    (0.0001, 500)
    >>> sched.step(); round(opt.param_groups[0]["lr"], 6), sched.position
    (0.0002, 1)
"""
import logging
from typing import Any, Dict, List, Optional

logger = logging.getLogger(__name__)

STATE_FORMAT = "neox_cpt.StageLR/1"
ANNEALING_KEYS = ("start_lr", "warmup_iter", "num_iters", "decay_style", "end_iter", "min_lr")


class StageLR:
    """LR scheduler for one stage: ``lr_at(position + 1)`` into every param group (muP aware)."""

    def __init__(self, optimizer: Any, schedule: Any, stage_start: int = 0, position: int = 0,
                 stage_name: Optional[str] = None, use_mup: bool = False) -> None:
        self.optimizer = optimizer
        self.schedule = schedule
        self.stage_start = int(stage_start)
        self.position = int(position)
        self.stage_name = stage_name
        self.use_mup = bool(use_mup)
        self.loaded_from: Optional[Dict[str, Any]] = None
        """What the last load_state_dict saw from a *previous* stage (stock or ours); for logs and tests."""
        self.restored = False
        """True once load_state_dict restored this stage's own clocks (a resume)."""
        self.apply()

    # -- clocks ---------------------------------------------------------------------------------------
    @property
    def iteration(self) -> int:
        """Global iteration (NeoX's counter) after ``position`` updates of this stage."""
        return self.stage_start + self.position

    num_iters = iteration  # AnnealingLR's name for the same counter

    def begin_stage(self, start_iteration: int) -> None:
        """Start the stage at global iteration ``start_iteration`` (position 0) and re-apply the LR."""
        self.stage_start, self.position = int(start_iteration), 0
        self.apply()

    # -- DeepSpeed / NeoX contract ----------------------------------------------------------------------
    def get_lr(self) -> float:
        """The LR the next update uses (before muP scaling)."""
        return float(self.schedule.lr_at(self.position + 1))

    def get_last_lr(self) -> List[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def apply(self) -> float:
        lr = self.get_lr()
        for group in self.optimizer.param_groups:
            width_mult = group.get("width_mult") if self.use_mup else None
            group["lr"] = lr / width_mult if width_mult else lr
        return lr

    def step(self, step_num: Optional[int] = None, **_ignored: Any) -> None:
        """One update done (``step_num``: AnnealingLR's absolute global iteration, for old callers)."""
        try:
            if step_num is None:
                self.position += 1
            else:
                position = int(step_num) - self.stage_start
                if position < 0:
                    raise ValueError(f"step({step_num}) is before this stage's start ({self.stage_start})")
                self.position = position
            self.apply()
        except TypeError as exc:  # DeepSpeed would silently retry step(train_batch_size): fail loudly
            raise RuntimeError(f"neox-cpt StageLR.step failed: {exc}") from exc

    # -- checkpoints ------------------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        return {"format": STATE_FORMAT, "stage_name": self.stage_name, "stage_start": self.stage_start,
                "position": self.position, "num_iters": self.iteration,
                "fingerprint": self.schedule.fingerprint(), "schedule": self.schedule.to_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore this stage's clocks, or note a previous stage's state (stock AnnealingLR or ours)."""
        if state.get("format") == STATE_FORMAT:
            if state.get("stage_name") == self.stage_name:
                if state["fingerprint"] != self.schedule.fingerprint():
                    from neox_cpt.schedules.torch_adapter import _describe_change

                    raise ValueError(
                        f"cpt_* schedule keys: the checkpoint of stage {self.stage_name!r} was trained with "
                        f"schedule {state['fingerprint']} but the config now gives {self.schedule.fingerprint()} "
                        f"({_describe_change(state.get('schedule') or {}, self.schedule)}); restore the stage's "
                        "schedule keys, or start a new stage (new cpt_stage_name) from the checkpoint")
                self.stage_start, self.position = int(state["stage_start"]), int(state["position"])
                self.restored = True
            else:
                self.loaded_from = dict(state)
        elif all(key in state for key in ANNEALING_KEYS):
            # A stock NeoX checkpoint (stage 0). Outside a stage the schedule continues at its iteration.
            self.loaded_from = dict(state)
            if self.stage_name is None:
                self.stage_start, self.position = 0, int(state["num_iters"])
        else:
            raise ValueError(f"lr_scheduler state with keys {sorted(state)} is neither neox-cpt's nor NeoX "
                             f"AnnealingLR's ({', '.join(ANNEALING_KEYS)}); was the checkpoint written by "
                             "another scheduler? Use cpt_reset_optimizer: true to skip loading it")
        self.apply()

    def __repr__(self) -> str:
        return (f"StageLR(stage={self.stage_name!r}, start={self.stage_start}, position={self.position}, "
                f"schedule={self.schedule.fingerprint()}, lr={self.get_lr():.3e})")

