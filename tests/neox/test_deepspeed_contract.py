"""StageLR against the real DeepSpeed engine on the CPU (deepspeed is in the test extra).

``deepspeed.initialize(model, optimizer=AdamW, lr_scheduler=StageLR)`` must keep our object (not call it),
call ``step()`` once per optimizer step, store ``state_dict()`` in ``save_checkpoint`` and feed it back in
``load_checkpoint``, after which the LR in the param groups is the schedule's again.
"""
import os

import pytest

torch = pytest.importorskip("torch")
deepspeed = pytest.importorskip("deepspeed")

from neox_cpt.neox.scheduler import StageLR  # noqa: E402
from neox_cpt.schedules.recipes import warmup_cosine  # noqa: E402

pytestmark = pytest.mark.slow
SCHEDULE = warmup_cosine(20, 1e-3, 1e-4, 4)
CONFIG = {"train_batch_size": 2, "train_micro_batch_size_per_gpu": 2, "steps_per_print": 10**6}


@pytest.fixture(scope="module", autouse=True)
def no_shm_comm_build():
    """DeepSpeed's CPU backend JIT-compiles a shared-memory all-reduce op (1-2.5 min on 2 cores) when it
    initialises torch.distributed; a world of size 1 never uses it, and the contract under test is the
    scheduler's, so skip that build."""
    import importlib

    ds_comm_torch = importlib.import_module("deepspeed.comm.torch")  # `import a.b.torch as x` gives torch

    original = ds_comm_torch.build_shm_op
    ds_comm_torch.build_shm_op = lambda: None
    yield
    ds_comm_torch.build_shm_op = original


@pytest.fixture(scope="module", autouse=True)
def single_process_env():
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29517", "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


class StockLikeScheduler:
    """Saves what NeoX's AnnealingLR saves (learning_rates.py:121-130), to test loading a stage-0 checkpoint."""

    def __init__(self, optimizer):
        self.optimizer, self.num_iters = optimizer, 0

    def step(self):
        self.num_iters += 1

    def state_dict(self):
        return {"start_lr": 3e-4, "warmup_iter": 1.0, "num_iters": self.num_iters, "decay_style": "cosine",
                "end_iter": 100, "min_lr": 3e-5}

    def load_state_dict(self, state):
        self.num_iters = state["num_iters"]


def engine_with(make_scheduler, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.5)
    scheduler = make_scheduler(optimizer)
    engine, ds_optimizer, _, ds_scheduler = deepspeed.initialize(model=model, optimizer=optimizer,
                                                                 lr_scheduler=scheduler, config=CONFIG)
    return engine, ds_optimizer, ds_scheduler, scheduler


def train(engine, steps):
    for _ in range(steps):
        loss = engine(torch.randn(2, 4)).pow(2).mean()
        engine.backward(loss)
        engine.step()


def test_engine_steps_our_scheduler_and_checkpoints_it(tmp_path):
    engine, ds_opt, ds_sched, ours = engine_with(lambda o: StageLR(o, SCHEDULE, stage_name="d1"))
    assert ds_sched is ours  # not treated as a factory
    lrs = []
    for _ in range(6):
        lrs.append(ds_opt.param_groups[0]["lr"])
        train(engine, 1)
    assert ours.position == 6
    assert lrs == pytest.approx([SCHEDULE.lr_at(k) for k in range(1, 7)])  # update k uses lr_at(k)
    assert lrs[0] == pytest.approx(2.5e-4)  # the first warmup update is not 0
    engine.save_checkpoint(str(tmp_path), tag="global_step6")

    engine2, ds_opt2, _, ours2 = engine_with(lambda o: StageLR(o, SCHEDULE, stage_name="d1"), seed=1)
    ds_opt2.param_groups[0]["lr"] = 9.0
    engine2.load_checkpoint(str(tmp_path))
    assert (ours2.stage_start, ours2.position) == (0, 6)
    assert ds_opt2.param_groups[0]["lr"] == pytest.approx(SCHEDULE.lr_at(7))  # re-applied after the load
    train(engine2, 2)
    assert ours2.position == 8 and ds_opt2.param_groups[0]["lr"] == pytest.approx(SCHEDULE.lr_at(9))


def test_loading_a_stock_stage0_checkpoint_into_a_stage(tmp_path):
    engine, _, _, stock = engine_with(StockLikeScheduler)
    train(engine, 3)
    engine.save_checkpoint(str(tmp_path), tag="global_step3")

    engine2, ds_opt2, _, ours = engine_with(lambda o: StageLR(o, SCHEDULE, stage_name="d1"), seed=2)
    engine2.load_checkpoint(str(tmp_path))  # optimizer + scheduler states, as NeoX does by default
    assert ours.loaded_from["num_iters"] == 3 and set(ours.loaded_from) >= {"start_lr", "end_iter"}
    ours.begin_stage(3)  # what the stage loader does with the checkpoint's iteration
    assert ours.iteration == 3 and ds_opt2.param_groups[0]["lr"] == pytest.approx(SCHEDULE.lr_at(1))
    train(engine2, 1)
    assert ours.iteration == 4 and ds_opt2.param_groups[0]["lr"] == pytest.approx(SCHEDULE.lr_at(2))


def test_a_type_error_inside_step_is_not_retried_with_a_batch_size():
    engine, _, _, ours = engine_with(lambda o: StageLR(o, SCHEDULE))

    def broken(pos):
        raise TypeError("boom")

    ours.schedule = type("S", (), {"lr_at": staticmethod(broken)})()
    with pytest.raises(RuntimeError, match="boom"):
        train(engine, 1)
