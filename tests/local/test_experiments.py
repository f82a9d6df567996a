"""The comparison plan: which runs, which budgets, token accounting (no training here)."""
from __future__ import annotations

import pytest

from neox_cpt.local.experiments import FULL, REDUCED, SHIFTS, Budget, comparison_plan, token_accounting, total_tokens
from neox_cpt.local.runs import default_jobs, start_order

BUDGET = Budget(d0_tokens=1000, d1_tokens=400)


def test_runs_and_order():
    runs = comparison_plan(("german", "bible"), BUDGET)
    names = [r.name for r in runs]
    assert names == ["d0", "d0_infinite",
                     "german/d1_scratch", "german/union", "german/cpt_replay0", "german/cpt_replay5",
                     "german/cpt_replay25", "german/cpt_replay50", "german/cpt_const_min", "german/cpt_infinite",
                     "bible/d1_scratch", "bible/union", "bible/cpt_replay0", "bible/cpt_replay1", "bible/cpt_replay5",
                     "bible/cpt_replay50", "bible/cpt_const_min", "bible/cpt_infinite"]
    # every run comes after the run it starts from
    for i, run in enumerate(runs):
        if run.init_from:
            assert run.init_from in names[:i]
    by_name = {r.name: r for r in runs}
    assert by_name["german/cpt_infinite"].init_from == "d0_infinite"
    assert by_name["bible/cpt_const_min"].init_from == "d0"
    assert by_name["german/union"].init_from is None and by_name["german/d1_scratch"].init_from is None


def test_parallel_workers_take_gating_runs_first_then_the_longest():
    order = [r.name for r in start_order(comparison_plan(("german", "bible"), BUDGET))]
    # the two D0 runs gate twelve continual runs; then the unions (1,400 tokens) before the 400-token runs,
    # which keep their plan order
    assert order[:4] == ["d0", "d0_infinite", "german/union", "bible/union"]
    assert order[4:] == ["german/d1_scratch", "german/cpt_replay0", "german/cpt_replay5", "german/cpt_replay25",
                         "german/cpt_replay50", "german/cpt_const_min", "german/cpt_infinite", "bible/d1_scratch",
                         "bible/cpt_replay0", "bible/cpt_replay1", "bible/cpt_replay5", "bible/cpt_replay50",
                         "bible/cpt_const_min", "bible/cpt_infinite"]


def test_default_jobs_is_one_per_core_capped_by_the_runs(monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert default_jobs(16) == 4
    assert default_jobs(3) == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert default_jobs(16) == 1


def test_sources_and_schedules():
    by_name = {r.name: r for r in comparison_plan(("german", "bible"), BUDGET)}
    assert dict(by_name["german/cpt_replay25"].stages[0].sources) == {"german": 0.75, "sotu": 0.25}
    assert dict(by_name["bible/cpt_replay5"].stages[0].sources) == {"bible": 0.95, "sotu": 0.05}
    assert dict(by_name["german/cpt_replay0"].stages[0].sources) == {"german": 1.0}
    assert dict(by_name["bible/union"].stages[0].sources) == {"sotu": 1000 / 1400, "bible": 400 / 1400}
    assert dict(by_name["german/cpt_const_min"].stages[0].schedule)["cpt_lr_schedule"] == "constant"
    assert dict(by_name["german/cpt_const_min"].stages[0].sources)["sotu"] == SHIFTS["german"].replay_frac
    infinite = dict(by_name["german/cpt_infinite"].stages[0].schedule)
    assert infinite == {"cpt_lr_schedule": "infinite", "cpt_infinite_first_stage": False, "cpt_anneal_frac": 0.2}
    assert dict(by_name["d0_infinite"].stages[0].schedule)["cpt_cooldown_end_frac"] == 0.6
    for run in by_name.values():
        for stage in run.stages:
            assert sum(w for _, w in stage.sources) == pytest.approx(1.0)


def test_token_accounting():
    runs = comparison_plan(("german",), BUDGET)
    table = token_accounting(runs)
    assert table["german/union"] == {"tokens": 1400, "tokens_sotu": 1000.0, "tokens_german": 400.0, "vs_union": 1.0}
    assert table["german/cpt_replay25"]["tokens_german"] == 300.0
    assert table["german/cpt_replay25"]["tokens_sotu"] == 100.0
    assert table["german/cpt_replay25"]["vs_union"] == pytest.approx(400 / 1400)
    assert "vs_union" not in table["d0"]
    # 2 D0 runs + union (d0 + d1) + 6 runs of d1 tokens
    assert total_tokens(runs) == 2 * 1000 + 1400 + 7 * 400


def test_budgets_meet_the_compute_target():
    for budget in (FULL, REDUCED):
        table = token_accounting(comparison_plan(("german", "bible"), budget))
        assert table["german/cpt_replay25"]["vs_union"] <= 0.6
        assert table["bible/cpt_replay5"]["vs_union"] <= 0.6
    assert REDUCED.label == "reduced" and REDUCED.d0_tokens < FULL.d0_tokens


DEMO = {"stages": [{"name": "d0", "sources": {"sotu": 1.0}, "tokens": 1000},
                   {"name": "d1", "sources": {"german": 1.0}, "replay_frac": 0.25, "replay_sources": {"sotu": 1.0},
                    "tokens": 400, "init_from": "previous", "reset_optimizer": True, "cpt_lr_max": 1.0e-3}]}


def test_demo_plan_trains_d0_once_and_the_stage_without_and_with_replay():
    from neox_cpt.local.experiments import demo_plan

    d0, none, replay = demo_plan(DEMO)
    assert (d0.name, d0.init_from, d0.num_tokens, d0.stages[0].sources) == ("d0", None, 1000, (("sotu", 1.0),))
    assert (none.name, none.init_from, none.num_tokens) == ("german/cpt_replay0", "d0", 400)
    assert (none.stages[0].sources, none.stages[0].replay_frac) == ((("german", 1.0),), 0.0)
    assert (replay.name, replay.init_from, replay.stages[0].replay_frac) == ("german/cpt_replay25", "d0", 0.25)
    assert replay.stages[0].sources == (("german", 0.75), ("sotu", 0.25))
    assert none.stages[0].schedule == replay.stages[0].schedule == (("cpt_lr_max", 1.0e-3),)
    assert [r.label for r in (d0, none, replay)] == ["pre-trained on sotu (D0)", "continued on german, no replay",
                                                     "continued on german, 25 % replay"]


@pytest.mark.parametrize("change, message", [
    (lambda c: c["stages"].pop(), "must be two stages"),
    (lambda c: c["stages"][1].update(replay_frac=0.0), "compares no replay with replay"),
    (lambda c: c["stages"][1].update(replay_sources={"bible": 1.0}), "replay_sources: {sotu: 1.0}"),
    (lambda c: c["stages"][0].update(sources={"sotu": 0.5, "bible": 0.5}), r"stages\[0\].sources"),
    (lambda c: c["stages"][1].update(sources={"sotu": 1.0}), "is the D0 source"),
    (lambda c: c["stages"][1].update(tokens=None), r"stages\[1\].tokens = None"),
    (lambda c: c["stages"][1].update(reset_optimizer=False), "reset_optimizer = False"),
    (lambda c: c["stages"][1].update(init_from="scratch"), "init_from = 'scratch'"),
    (lambda c: c["stages"][0].update(init_from="runs/x"), "from scratch; remove the key"),
    (lambda c: c["stages"][0].update(seed=3), r"sets \['seed'\]"),
])
def test_demo_plan_names_what_is_wrong(change, message):
    import copy

    from neox_cpt.local.experiments import demo_plan

    cfg = copy.deepcopy(DEMO)
    change(cfg)
    with pytest.raises(ValueError, match=message):
        demo_plan(cfg, where="demo.yml")


def test_continual_runs_need_not_wait_for_a_finished_d0_outside_their_plan(tmp_path):
    """The demo trains its D0 model first, then the two continual runs as a plan of their own: they start at
    once (before the fix the parallel runner refused them: 'start from runs that are not in the plan')."""
    from neox_cpt.local.experiments import demo_plan
    from neox_cpt.local.runs import finished_outside

    _, *branches = demo_plan(DEMO)
    assert finished_outside(branches, tmp_path) == set()  # d0 not trained yet: they must wait
    (tmp_path / "d0").mkdir()
    (tmp_path / "d0" / "summary.json").write_text("{}")
    assert finished_outside(branches, tmp_path) == {"d0"}
    assert finished_outside(demo_plan(DEMO), tmp_path) == set()  # in the plan: its own run decides


def test_unknown_shift():
    with pytest.raises(ValueError, match="choose from"):
        comparison_plan(("french",), BUDGET)


def test_target_checks():
    from neox_cpt.local.experiments import target_checks, targets_markdown
    from neox_cpt.local.report import Row

    def row(name, d0, d1, forgetting, compute):
        return Row(name, "cpt", d0, d1, (d0 + d1) / 2, 100, compute, forgetting)

    rows = {r.name: r for r in (row("german/cpt_replay0", 4.0, 2.0, 0.5, 0.4),
                                row("german/cpt_replay25", 3.7, 2.04, 0.2, 0.4),
                                row("german/union", 3.6, 2.1, 0.1, 1.0))}
    targets = target_checks(rows, "german")
    assert [t.met for t in targets] == [True, True, True, True, True]
    assert targets[1].value == "60 % removed (+0.200 left)"
    assert targets[3].value == "2.870 vs 2.850 (+0.7 %)"
    rows["german/cpt_replay25"] = row("german/cpt_replay25", 3.9, 2.06, 0.4, 0.4)
    assert [t.met for t in target_checks(rows, "german")] == [True, False, False, False, True]
    assert target_checks({}, "bible")[0].met is None
    assert "| german | without replay the D0 loss rises clearly | +0.500 nats | yes |" in targets_markdown(
        {"german": targets})


def _fake_run(path, start_step, start_tokens, tokens, sources, final, init=None):
    import json

    path.mkdir(parents=True)
    stage = {"name": "s", "index": 0, "start_step": start_step, "num_steps": 10, "start_tokens": start_tokens,
             "num_tokens": tokens, "replay_frac": 0.0, "schedule": None, "init_from": init,
             "train_sources": sources, "valid_sources": list(final)}
    (path / "stages.json").write_text(json.dumps([stage]))
    lines = [{"kind": "eval", "global_step": start_step + 10, "stage": 0, "stage_step": 10,
              "tokens": start_tokens + tokens, "source": s, "loss": v} for s, v in final.items()]
    (path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (path / "summary.json").write_text(json.dumps({"final": final, "tokens_trained": tokens}))


def test_shift_report_on_synthetic_runs(tmp_path):
    """The per-shift report reads the planned run directories and checks the targets (exact numbers)."""
    pytest.importorskip("matplotlib")
    from neox_cpt.local.runs import shift_report

    runs = comparison_plan(("german",), BUDGET)
    d0 = {"sotu": 4.0, "german": 8.0}
    _fake_run(tmp_path / "d0", 0, 0, 1000, {"sotu": 1.0}, d0)
    _fake_run(tmp_path / "d0_infinite", 0, 0, 1000, {"sotu": 1.0}, {"sotu": 4.1, "german": 8.0})
    _fake_run(tmp_path / "german/union", 0, 0, 1400, {"sotu": 0.7, "german": 0.3}, {"sotu": 4.0, "german": 3.1})
    init = str(tmp_path / "d0")
    _fake_run(tmp_path / "german/cpt_replay0", 10, 1000, 400, {"german": 1.0}, {"sotu": 5.0, "german": 3.0}, init)
    _fake_run(tmp_path / "german/cpt_replay25", 10, 1000, 400, {"german": 0.75, "sotu": 0.25},
              {"sotu": 4.25, "german": 3.0}, init)
    # the other runs have not finished: left out of the report, not an error
    report, targets = shift_report(tmp_path, "german", runs, "test")
    assert [t.met for t in targets] == [True, True, True, False, True]  # avg 2.1 % above the union's
    assert targets[0].value == "+1.000 nats" and targets[1].value == "75 % removed (+0.250 left)"
    assert targets[3].value == "3.625 vs 3.550 (+2.1 %)" and targets[4].value == "29 %"
    text = report.read_text()
    assert "| german | 25 % replay removes >= half of that rise | 75 % removed (+0.250 left) | yes |" in text
    assert "| german/cpt_replay25 | cpt | 4.250 | 3.000 | 3.625 | +0.250 | 400 | 29 % |" in text


_PARENT = """
import multiprocessing, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from neox_cpt.local.runs import die_with_parent
pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent,
                           initargs=(os.getpid(),))
print(pool.submit(os.getpid).result(), flush=True)
pool.submit(time.sleep, 120)          # the worker is busy, as a training run is
time.sleep(120)
"""


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux's")
def test_workers_die_with_a_killed_parent():
    import os
    import signal
    import subprocess
    import sys
    import time

    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        time.sleep(0.5)                       # let the worker take the sleep task
        assert _alive(worker)
        parent.send_signal(signal.SIGKILL)    # no cleanup runs in the parent
        parent.wait(10)
        deadline = time.time() + 10
        while _alive(worker) and time.time() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the busy worker outlived its killed parent"
    finally:
        parent.kill()


def _alive(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False
