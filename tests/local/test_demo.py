"""The demo's shipped configs and the comparison's generated trainer configs load and validate (no data,
no network: sources are replaced by placeholder prefixes, which validation does not open)."""
from __future__ import annotations


import pytest

from neox_cpt.local.config import load_run_config
from neox_cpt.local.experiments import FULL, comparison_plan, demo_plan
from neox_cpt.local.runs import load_yaml, repo_configs_dir, trainer_config
from neox_cpt.schedules import schedule_from_config

FAKE_DATA = {"sources": {s: {"train": f"/nonexistent/{s}_train", "valid": f"/nonexistent/{s}_valid"}
                         for s in ("sotu", "bible", "german")}}


def offline(cfg):
    return {**cfg, "data": FAKE_DATA, "model": {**cfg["model"], "vocab_size": 8192}}


@pytest.mark.parametrize("name, d1, replay", [("demo.yml", "german", 0.25), ("demo_english.yml", "bible", 0.05)])
def test_demo_configs(name, d1, replay):
    raw = load_yaml(repo_configs_dir() / name)
    assert raw["data"] == {"manifest": "demo"}
    cfg = load_run_config(offline(raw))
    d0, cpt = cfg.stages
    assert (d0.name, d0.num_steps, d0.num_tokens) == ("d0", 489, 489 * 2048)  # 1.0M tokens, rounded up to whole steps
    assert (cpt.init_from, cpt.reset_optimizer, cpt.num_steps) == ("d0", True, 196)  # 0.4M tokens
    assert cpt.train_shares() == {d1: 1 - replay, "sotu": replay}
    assert cfg.eval_sources == ("sotu", d1)


@pytest.mark.parametrize("name, d1, replay", [("demo.yml", "german", 0.25), ("demo_english.yml", "bible", 0.05)])
def test_demo_runs_validate(tmp_path, name, d1, replay):
    """The demo's three generated runs are the config's stages: the same steps, schedule and sources."""
    raw = load_yaml(repo_configs_dir() / name)
    d0, none, rep = [load_run_config(offline(trainer_config(r, raw, tmp_path, ["sotu", d1])))
                     for r in demo_plan(raw, where=name)]
    by_hand = load_run_config(offline(raw))
    assert d0.stages[0].num_steps == by_hand.stages[0].num_steps == 489
    assert none.stages[0].num_steps == rep.stages[0].num_steps == by_hand.stages[1].num_steps == 196
    assert none.stages[0].train_shares() == {d1: 1.0}
    assert rep.stages[0].train_shares() == by_hand.stages[1].train_shares() == {d1: 1 - replay, "sotu": replay}
    assert rep.stages[0].init_from == str(tmp_path / "d0") and rep.stages[0].reset_optimizer
    assert rep.threads == 0 and rep.eval_sources == ("sotu", d1)


def test_compare_configs_validate(tmp_path):
    base = load_yaml(repo_configs_dir() / "compare.yml")
    runs = comparison_plan(("german", "bible"), FULL)
    by_name = {}
    for run in runs:
        cfg = load_run_config(offline(trainer_config(run, base, tmp_path, ["sotu", "german"])))
        by_name[run.name] = cfg
        (stage,) = cfg.stages
        assert stage.num_tokens - run.num_tokens < 2048  # budgets round up to whole steps
    cpt = by_name["german/cpt_replay25"].stages[0]
    assert cpt.init_from == str(tmp_path / "d0") and cpt.init_is_path
    assert cpt.train_shares() == {"german": 0.75, "sotu": 0.25}
    assert by_name["bible/union"].stages[0].train_shares() == pytest.approx(
        {"sotu": FULL.d0_tokens / (FULL.d0_tokens + FULL.d1_tokens),
         "bible": FULL.d1_tokens / (FULL.d0_tokens + FULL.d1_tokens)}, abs=1e-6)
    assert by_name["german/d1_scratch"].stages[0].init_from is None

    def schedule(name):
        from neox_cpt.local.config import stage_mapping
        cfg = by_name[name]
        return schedule_from_config(stage_mapping(cfg, cfg.stages[0]))

    const = schedule("german/cpt_const_min")
    assert const.lr_at(1) == const.lr_at(const.num_steps) == pytest.approx(2e-4)  # eta_min, no re-warm
    rewarm = schedule("german/cpt_replay25")
    assert rewarm.lr_at(0) == 0.0 and max(rewarm.lrs(range(20))) == pytest.approx(2e-3)
    inf = schedule("german/cpt_infinite")
    assert inf.lr_at(1) == pytest.approx(1.1e-3)  # continues at eta_const = (max + min) / 2: no re-warm
    assert inf.lr_at(inf.num_steps) == pytest.approx(2e-4)  # annealed at the end
    d0_inf = schedule("d0_infinite")
    assert d0_inf.lr_at(d0_inf.num_steps) == pytest.approx(1.1e-3)  # pre-anneal checkpoint


def test_schedules_only_demo(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from neox_cpt.cli import main

    assert main(["demo", "--schedules-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "schedules" / "schedules.png").read_bytes()[:4] == b"\x89PNG"
    table = (tmp_path / "schedules" / "schedules.md").read_text()
    assert "| re-warm + re-decay | d1_german | warmup | 132,366–133,251 | 0 | 0.0003 |" in table
    assert "schedule plans:" in capsys.readouterr().out


@pytest.mark.parametrize("available, root, d1", [(("sotu", "bible", "german"), "", "german"),
                                               (("sotu", "bible"), "english", "bible")])
@pytest.mark.parametrize("threads, jobs, d0_threads, branch_threads, workers", [
    (None, 0, None, 1, 2), (1, 0, 1, 1, 2), (None, 1, None, 0, 1), (2, 1, 2, 2, 1)])
def test_demo_trains_d0_then_both_continual_runs(monkeypatch, tmp_path, available, root, d1, threads, jobs,
                                                 d0_threads, branch_threads, workers):
    """D0 alone (every core unless --threads), then the two continual runs side by side (one thread each);
    without the German man pages the English pair, under out/english."""
    import types

    import neox_cpt.local.demo_data as demo_data
    import neox_cpt.local.demo_report as demo_report
    import neox_cpt.local.model as model
    import neox_cpt.local.report as report
    import neox_cpt.local.runs as runs

    calls = []
    manifest = types.SimpleNamespace(source_names=available, unavailable=(("german", "no apt-get"),))
    monkeypatch.setattr(demo_data, "prepare_demo_data", lambda: manifest)
    monkeypatch.setattr(model, "usable_cores", lambda: 2)
    monkeypatch.setattr(runs, "run_plan", lambda plan, base, root, sources, jobs=1: calls.append(
        ([r.name for r in plan], base.get("threads"), root, [sources(r) for r in plan], jobs)) or {})
    monkeypatch.setattr(report, "load_run", lambda path, name: (path, name))
    monkeypatch.setattr(demo_report, "write_demo_report", lambda loaded, out, **kw: (loaded, out, kw))
    loaded, out, kw = runs.run_demo(tmp_path, threads=threads, jobs=jobs)
    top = tmp_path / root
    assert calls == [(["d0"], d0_threads, top, [["sotu", d1]], 1),
                     ([f"{d1}/cpt_replay0", f"{d1}/cpt_replay{25 if d1 == 'german' else 5}"], branch_threads, top,
                      [["sotu", d1]] * 2, workers)]
    assert out == top / "report" and (kw["d0"], kw["d1"]) == ("sotu", d1)
    assert [p for p, _ in loaded] == [top / "d0", top / f"{d1}/cpt_replay0",
                                      top / f"{d1}/cpt_replay{25 if d1 == 'german' else 5}"]


def test_bad_demo_config_stops_before_data_preparation(monkeypatch, tmp_path):
    """A user's --config is checked first: a mistake costs no minutes of data preparation."""
    import neox_cpt.local.demo_data as demo_data
    import neox_cpt.local.runs as runs

    prepared = []
    monkeypatch.setattr(demo_data, "prepare_demo_data", lambda: prepared.append(1))
    bad = tmp_path / "demo.yml"
    bad.write_text("stages:\n  - {name: d0, sources: {sotu: 1.0}, tokens: 1000}\n")
    with pytest.raises(ValueError, match="stages must be two stages"):
        runs.run_demo(tmp_path / "out", config=bad)
    assert prepared == [] and not (tmp_path / "out").exists()
