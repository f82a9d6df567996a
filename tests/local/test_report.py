"""The report's numbers on tiny synthetic run directories (exact expected values), and that it renders."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from neox_cpt.local.report import (Roles, counted_tokens, d0_reference, fmt_tokens, infer_roles, load_run,
                                   lr_curve, run_kind, table_rows)
from neox_cpt.schedules.schedule import Phase, StageSchedule

SCHEDULE = StageSchedule((Phase("linear", 10, 0.0, 1e-3, name="warmup"),
                          Phase("cosine", 90, 1e-3, 1e-4, name="decay")), recipe="cosine").to_dict()


def stage(name, index, start_step, num_steps, start_tokens, num_tokens, sources, replay=0.0, init=None):
    return {"name": name, "index": index, "start_step": start_step, "num_steps": num_steps,
            "start_tokens": start_tokens, "num_tokens": num_tokens, "replay_frac": replay,
            "schedule": SCHEDULE if num_steps == 100 else None, "init_from": init, "reset_optimizer": True,
            "train_sources": sources, "valid_sources": ["en", "de"]}


def write_run(path: Path, stages, evals, final=None, tokens_trained=None, extra_lines=""):
    """A run directory in the INTERFACES.md format. evals: (stage, step, tokens, source, loss)."""
    path.mkdir(parents=True)
    (path / "stages.json").write_text(json.dumps(stages))
    lines = []
    for stage_index, step, tokens, source, loss in evals:
        lines.append(json.dumps({"kind": "train", "global_step": step, "stage": stage_index, "stage_step": step,
                                 "tokens": tokens, "lr": 1e-3, "loss": loss + 0.1, "tok_per_s": 100.0}))
        lines.append(json.dumps({"kind": "eval", "global_step": step, "stage": stage_index, "stage_step": step,
                                 "tokens": tokens, "source": source, "loss": loss}))
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n" + extra_lines)
    if final is not None:
        (path / "summary.json").write_text(json.dumps({"final": final, "tokens_trained": tokens_trained,
                                                       "tokens_total": tokens_trained, "wall_s": 1.0}))
    return path


@pytest.fixture()
def runs(tmp_path):
    d0 = write_run(tmp_path / "d0_only", [stage("d0", 0, 0, 100, 0, 1000, {"en": 1.0})],
                   [(0, 50, 500, "en", 4.0), (0, 50, 500, "de", 5.0), (0, 100, 1000, "en", 3.0),
                    (0, 100, 1000, "de", 4.5)], final={"en": 3.0, "de": 4.5}, tokens_trained=1000)
    cpt = write_run(tmp_path / "cpt", [stage("d1", 0, 100, 60, 1000, 600, {"de": 0.75, "en": 0.25}, 0.25,
                                             init=str(d0 / "checkpoints" / "step_100"))],
                    [(0, 160, 1600, "en", 3.2), (0, 160, 1600, "de", 2.0)],
                    final={"en": 3.2, "de": 2.0}, tokens_trained=600)
    union = write_run(tmp_path / "union", [stage("union", 0, 0, 200, 0, 2000, {"en": 0.5, "de": 0.5})],
                      [(0, 200, 2000, "en", 3.1), (0, 200, 2000, "de", 2.1)],
                      final={"en": 3.1, "de": 2.1}, tokens_trained=2000)
    # One directory holding both stages (the demo's layout); no summary.json yet: finals come from evals.
    demo = write_run(tmp_path / "demo", [stage("d0", 0, 0, 100, 0, 1000, {"en": 1.0}),
                                         stage("d1", 1, 100, 60, 1000, 600, {"de": 0.75, "en": 0.25}, 0.25)],
                     [(0, 100, 1000, "en", 3.05), (0, 100, 1000, "de", 4.4), (1, 160, 1600, "en", 3.25),
                      (1, 160, 1600, "de", 2.05)], extra_lines='{"kind": "ev')
    scratch = write_run(tmp_path / "d1_scratch", [stage("d1", 0, 0, 100, 0, 1000, {"de": 1.0})],
                        [(0, 100, 1000, "en", 6.0), (0, 100, 1000, "de", 2.5)],
                        final={"en": 6.0, "de": 2.5}, tokens_trained=1000)
    return [load_run(p) for p in (d0, cpt, union, demo, scratch)]


def test_roles_kinds_and_references(runs):
    roles = infer_roles(runs)
    assert roles == Roles("en", "de")
    assert [run_kind(r, roles, runs) for r in runs] == ["d0-only", "cpt", "union", "cpt", "d1-only"]
    # The demo's reference is the end of its own D0 stage; the others use the D0-only run.
    assert [d0_reference(r, roles, runs) for r in runs] == [3.0, 3.0, 3.0, 3.05, 3.0]
    # Continual runs are charged only for their tokens after D0 pre-training.
    assert [counted_tokens(r, roles, runs) for r in runs] == [1000, 600, 2000, 600, 1000]


def test_table_rows_exact(runs):
    rows = {r.name: r for r in table_rows(runs, infer_roles(runs))}
    cpt = rows["cpt"]
    assert (cpt.d0_loss, cpt.d1_loss, cpt.tokens) == (3.2, 2.0, 600)
    assert cpt.avg_loss == pytest.approx(2.6, abs=1e-12)
    assert cpt.forgetting == pytest.approx(0.2, abs=1e-12)
    assert cpt.compute_vs_union == pytest.approx(0.3, abs=1e-12)
    demo = rows["demo"]
    assert (demo.d0_loss, demo.d1_loss) == (3.25, 2.05)  # from the last eval records (no summary.json)
    assert demo.forgetting == pytest.approx(0.2, abs=1e-12)
    assert demo.compute_vs_union == pytest.approx(0.3, abs=1e-12)
    assert rows["union"].compute_vs_union == 1.0
    assert rows["union"].forgetting == pytest.approx(0.1, abs=1e-12)
    assert rows["d0_only"].forgetting == 0.0 and rows["d0_only"].avg_loss == 3.75
    assert rows["d1_scratch"].forgetting == 3.0 and rows["d1_scratch"].compute_vs_union == 0.5


def test_without_union_or_d0_only(runs):
    subset = [runs[3]]  # the demo alone: no union run, reference from its own D0 stage
    (row,) = table_rows(subset, infer_roles(subset))
    assert row.compute_vs_union is None and row.tokens == 600
    assert row.forgetting == pytest.approx(0.2, abs=1e-12)
    with pytest.raises(ValueError, match="--d0 SOURCE --d1 SOURCE"):
        infer_roles([runs[0], runs[2]])
    assert infer_roles([runs[0]], d0="en", d1="de") == Roles("en", "de")


def test_lr_curve_from_schedules(runs):
    steps, lrs = lr_curve(runs[3])  # two stages of 100 and 60 steps; only the first has a schedule
    assert steps == [100, 100, 160, 160] and set(lrs) == {1e-3}  # falls back to the train records' LR
    steps, lrs = lr_curve(runs[0])
    assert steps[0] == 0 and steps[-1] == 100 and len(steps) == 102
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(5e-4) and lrs[10] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-4)


def test_bad_inputs(tmp_path, runs):
    with pytest.raises(FileNotFoundError, match="stages.json"):
        load_run(tmp_path / "nope")
    bad = write_run(tmp_path / "bad", [stage("d0", 0, 0, 100, 0, 1000, {"en": 1.0})], [],
                    extra_lines='{"kind": "eval"\n{"kind": "eval", "source": "en", "loss": 1.0}\n')
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        load_run(bad)
    (tmp_path / "nokey").mkdir()
    (tmp_path / "nokey" / "stages.json").write_text('[{"name": "d0"}]')
    with pytest.raises(ValueError, match="lacks the key 'index'"):
        load_run(tmp_path / "nokey")
    assert fmt_tokens(1_234_567) == "1.23M" and fmt_tokens(999) == "999"


@pytest.mark.slow  # the first matplotlib import and four plots: ~7 s on a busy 2-core machine
def test_write_report_and_cli(tmp_path, runs):
    pytest.importorskip("matplotlib")
    from neox_cpt.cli import main

    out = tmp_path / "report"
    assert main(["report"] + [str(r.path) for r in runs] + ["--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "| cpt | cpt | 3.200 | 2.000 | 2.600 | +0.200 | 600 | 30 % |" in text
    assert "| union | union | 3.100 | 2.100 | 2.600 | +0.100 | 2.00k | 100 % |" in text
    for png in ("lr.png", "valid_loss.png", "tradeoff.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["report", str(runs[0].path), "--d0", "en"]) == 2  # --d0 without --d1 is an error


def test_reference_from_start_eval_without_parent(tmp_path, runs):
    # A continual run whose parent is not among the inputs: its step-0 evaluation is the D0 model's loss.
    cpt = write_run(tmp_path / "alone", [stage("d1", 0, 100, 60, 1000, 600, {"de": 0.75, "en": 0.25}, 0.25,
                                               init="/elsewhere/d0/checkpoints/step_100")],
                    [(0, 160, 1600, "en", 3.2), (0, 160, 1600, "de", 2.0)],
                    final={"en": 3.2, "de": 2.0}, tokens_trained=600)
    start = {"kind": "eval", "global_step": 100, "stage": 0, "stage_step": 0, "tokens": 1000, "source": "en",
             "loss": 3.01}
    (cpt / "metrics.jsonl").write_text(json.dumps(start) + "\n" + (cpt / "metrics.jsonl").read_text())
    run = load_run(cpt)
    roles = Roles("en", "de")
    assert d0_reference(run, roles, [run, runs[0]]) == 3.01  # not the D0-only run's 3.0


def _demo_runs(tmp_path):
    """The demo's layout: a D0 run, then two continual runs from its end (no replay, 25 % replay)."""
    d0 = write_run(tmp_path / "d0", [stage("d0", 0, 0, 100, 0, 1000, {"en": 1.0})],
                   [(0, 0, 0, "en", 9.0), (0, 0, 0, "de", 9.01), (0, 100, 1000, "en", 3.0), (0, 100, 1000, "de", 9.8)],
                   final={"en": 3.0, "de": 9.8}, tokens_trained=1000)
    init = str(d0)
    none = write_run(tmp_path / "de/cpt_replay0", [stage("d1", 0, 100, 100, 1000, 400, {"de": 1.0}, init=init)],
                     [(0, 200, 1400, "en", 7.0), (0, 200, 1400, "de", 2.0)], final={"en": 7.0, "de": 2.0},
                     tokens_trained=400)
    replay = write_run(tmp_path / "de/cpt_replay25", [stage("d1", 0, 100, 100, 1000, 400, {"de": 0.75, "en": 0.25},
                                                            0.25, init=init)],
                       [(0, 200, 1400, "en", 3.5), (0, 200, 1400, "de", 2.2)], final={"en": 3.5, "de": 2.2},
                       tokens_trained=400)
    labels = ("pre-trained on en (D0)", "continued on de, no replay", "continued on de, 25 % replay")
    return [load_run(p, name=n) for p, n in zip((d0, none, replay), labels)]


def test_demo_summary():
    from neox_cpt.local.demo_report import demo_summary

    s = demo_summary([3.0, 7.0, 3.5], [9.8, 2.0, 2.2])
    assert s["forget_none"] == 4.0 and s["forget_replay"] == 0.5
    assert s["removed"] == pytest.approx(0.875, abs=1e-12) and s["d1_cost"] == pytest.approx(0.2, abs=1e-12)
    assert math.isnan(demo_summary([3.0, 3.0, 3.5], [9.8, 2.0, 2.2])["removed"])  # no forgetting to remove
    assert math.isnan(demo_summary([3.0, None, 3.5], [9.8, 2.0, 2.2])["forget_none"])


@pytest.mark.slow  # matplotlib: three plots
def test_demo_report_in_plain_words(tmp_path):
    pytest.importorskip("matplotlib")
    import types

    from neox_cpt.local.demo_report import write_demo_report

    runs = _demo_runs(tmp_path)
    manifest = types.SimpleNamespace(vocab_size=8192, source=lambda name: types.SimpleNamespace(num_train_tokens=12345))
    path = write_demo_report(runs, tmp_path / "report", d0="en", d1="de", config="demo.yml", root=tmp_path,
                             wall_s=90.0, manifest=manifest)
    text = path.read_text()
    assert "| pre-trained on en (D0) | 3.000 | 9.800 | 6.400 | (reference) | 1,000 |" in text
    assert "| continued on de, no replay | 7.000 | 2.000 | 4.500 | +4.000 | 400 |" in text
    assert "| continued on de, 25 % replay | 3.500 | 2.200 | 2.850 | +0.500 | 400 |" in text
    assert "replay removed 88 % of the forgetting" in text and "(+0.20 nats, the price" in text
    assert "(here 9.010 on `de` at the start)" in text and "(to 9.800 at the end of run 1)" in text
    assert "(ln 8,192 = 9.01)" in text and "Wall time of this invocation: 1.5 min" in text
    assert "continued on de, no replay: 1 s" in text
    assert "**continued on de, no replay** (orange)" in text
    assert "Table 2" not in text  # no paper table for an unknown shift
    for png in ("lr.png", "valid_loss.png", "tradeoff.png"):
        assert (tmp_path / "report" / png).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # matplotlib
def test_one_colour_per_run_in_every_plot(tmp_path, monkeypatch):
    """Before: the trade-off plot coloured its points by their order along x (the D0 run has no point there),
    so a run's dot had another colour than its curves."""
    pytest.importorskip("matplotlib")
    from matplotlib.colors import to_hex
    from matplotlib.figure import Figure

    from neox_cpt.local.report_render import write_report

    figures = {}
    monkeypatch.setattr(Figure, "savefig", lambda fig, path, **kw: figures.update({Path(path).name: fig}))
    runs = _demo_runs(tmp_path)
    write_report(runs, tmp_path / "out", roles=Roles("en", "de"))
    want = {r.name: to_hex(f"C{i}") for i, r in enumerate(runs)}
    for name in ("lr.png", "valid_loss.png"):
        for ax in figures[name].axes:
            lines = {line.get_label(): to_hex(line.get_color()) for line in ax.lines if line.get_label() in want}
            assert lines and all(lines[k] == want[k] for k in lines), (name, lines)
    (ax,) = figures["tradeoff.png"].axes
    labels = [t.get_text() for t in ax.texts]
    dots = [to_hex(c.get_facecolor()[0]) for c in ax.collections]
    assert dict(zip(labels, dots)) == {r.name: want[r.name] for r in runs[1:]}
