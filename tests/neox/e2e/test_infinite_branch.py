"""Scenario d: the infinite schedule as a chain of stages, and an anneal branch taken while the main line goes on.

    D0 (stock, 10 iters) -> s1: warmup 2, cooldown to const by stage step 6, constant (iters 11..22)
                         -> s2: constant, no re-warm (iters 23..38, saves every 4)
    s2 killed after 29 (latest: global_step28) -> branch from s2's save directory, as the shipped
    405M_inf_anneal.yml writes it (so from its latest, global_step28): anneal over 6 iters (29..34,
    saves every 2), killed after 31 (its latest: 30) -> s2 relaunched: resumes at 28, saves 32, 36, 38 (its
    `latest` moves on) -> branch relaunched: resumes at 30 and must train on exactly s2's batches 31..34.
"""
import numpy as np
import pytest

import neox_e2e as e2e

pytestmark = [pytest.mark.slow, pytest.mark.neox]
S1_START, S1_ITERS, S2_ITERS, BRANCH_AT, BRANCH_ITERS = 10, 12, 16, 28, 6
S2_START = S1_START + S1_ITERS
LR = dict(cpt_lr_schedule="infinite", cpt_lr_max=0.001, cpt_lr_min=0.0001, cpt_lr_const=0.0005)


@pytest.fixture(scope="module")
def chain(runs):
    d0 = runs.d0("1proc")
    w = runs.workdir / "d-infinite"
    index = str(w / "index")
    s1 = e2e.tiny_config(w / "s1", cpt_stage_name="s1", cpt_init_checkpoint=str(d0.dir / "ckpt"),
                         cpt_stage_iters=S1_ITERS, cpt_stage_start_iter=S1_START, train_iters=S1_ITERS,
                         cpt_infinite_first_stage=True, cpt_warmup_iters=2, cpt_cooldown_end_iter=6, **LR,
                         cpt_train_data_paths=[runs.data["new"]], cpt_replay_data_paths=[runs.data["old"]],
                         cpt_replay_frac=0.25, cpt_index_cache_dir=index, eval_iters=0)
    s2 = e2e.tiny_config(w / "s2", cpt_stage_name="s2", cpt_init_checkpoint=str(w / "s1" / "ckpt"),
                         cpt_stage_iters=S2_ITERS, cpt_stage_start_iter=S2_START, train_iters=S2_ITERS,
                         cpt_infinite_first_stage=False, **LR, cpt_train_data_paths=[runs.data["digits"]],
                         cpt_replay_data_paths=[runs.data["new"]], cpt_replay_frac=0.25, cpt_index_cache_dir=index,
                         eval_iters=0, master_port=e2e.free_port())
    branch = e2e.tiny_config(w / "branch", cpt_stage_name="anneal",
                             cpt_init_checkpoint=str(w / "s2" / "ckpt"),  # its `latest` (global_step28) at start
                             cpt_stage_iters=BRANCH_ITERS, cpt_stage_start_iter=BRANCH_AT, train_iters=BRANCH_ITERS,
                             cpt_infinite_first_stage=False, cpt_anneal_frac=1.0, **LR, cpt_continue_parent_data=True,
                             eval_iters=0, checkpoint_factor=2, master_port=e2e.free_port())
    out = {"s1": e2e.check_ok(e2e.launch(runs.neox, s1, w / "s1", "s1"))}
    out["s2a"] = e2e.check_checkout(e2e.launch(runs.neox, s2, w / "s2", "s2", kill_after_iteration=BRANCH_AT + 1))
    out["b1"] = e2e.check_checkout(e2e.launch(runs.neox, branch, w / "branch", "b1", kill_after_iteration=BRANCH_AT + 3,
                                              config_name="branch"))
    out["s2b"] = e2e.launch(runs.neox, s2, w / "s2", "s2-resumed", config_name="s2")
    out["b2"] = e2e.launch(runs.neox, branch, w / "branch", "b2", config_name="branch")
    return out


def lrs_match_schedule(tb_dir, config, updates):
    logged = e2e.merged_scalars(tb_dir)["train/learning_rate"]
    expected = e2e.schedule_lrs(config, f"{min(updates) + 1}:{max(updates) + 1}")
    assert sorted(logged) == list(updates)
    for i in updates:
        assert logged[i] == pytest.approx(expected[i + 1], rel=1e-6, abs=1e-12), f"iteration {i}"
    return logged


def test_d_stage1_warmup_cooldown_constant_then_stage2_constant(chain):
    s1 = chain["s1"]
    lrs = lrs_match_schedule(s1.dir / "tb", s1.config, range(S1_START + 1, S2_START + 1))
    assert lrs[S1_START + 1] == pytest.approx(0.001)  # LR of update 2: the end of the warmup
    assert lrs[S2_START] == pytest.approx(0.0005)  # constant phase
    s2 = e2e.check_ok(chain["s2b"])
    assert s2.lines(f"neox-cpt: resumed stage 's2' at global iteration {BRANCH_AT}")
    lrs = lrs_match_schedule(s2.dir / "tb", s2.config, range(S2_START + 1, S2_START + S2_ITERS + 1))
    assert all(lr == pytest.approx(0.0005) for lr in lrs.values())  # no re-warm
    assert (s2.dir / "ckpt" / "latest").read_text().strip() == f"global_step{S2_START + S2_ITERS}"


def test_d_anneal_branch_resumed_after_main_line_saves_keeps_its_batches(chain):
    b1, b2 = chain["b1"], chain["b2"]
    assert b1.killed_at == BRANCH_AT + 3
    assert b1.lines(f"neox-cpt: started stage 'anneal' at global iteration {BRANCH_AT}")
    assert e2e.check_ok(b2).lines(f"neox-cpt: resumed stage 'anneal' at global iteration {BRANCH_AT + 2}")
    end = BRANCH_AT + BRANCH_ITERS
    lrs = lrs_match_schedule(b2.dir / "tb", b2.config, range(BRANCH_AT + 1, end + 1))
    assert lrs[end] == pytest.approx(0.0001)  # annealed to cpt_lr_min
    main = {**e2e.recorded_batches(chain["s2a"].dir, "s2"), **e2e.recorded_batches(chain["s2b"].dir, "s2-resumed")}
    branch = {**e2e.recorded_batches(b1.dir, "b1"), **e2e.recorded_batches(b2.dir, "b2")}
    assert sorted(branch) == list(range(BRANCH_AT + 1, end + 1))
    for update in branch:  # the batches the main line trained on at the same global iterations
        assert all(np.array_equal(a, b) for a, b in zip(branch[update], main[update])), f"update {update}"
    first, again = e2e.assert_preflight_predicted(b1), e2e.assert_preflight_predicted(b2)
    assert (first["data"], first["data_start"], first["next_sample"]) == ("parent", 48, 48)  # s2's position 6 x 8
    assert (again["mode"], again["data_start"], again["next_sample"]) == ("resume", 48, 64)
