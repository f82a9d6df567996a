"""The demo's report (``runs/demo/report/report.md``): the result of ``neox-cpt demo`` in plain words.

``write_demo_report`` takes the demo's three loaded runs (the D0 model, the continual run without replay and
the one with replay, in that order), draws the plots of :mod:`neox_cpt.local.report_render` (one colour per
run in every plot) and writes a report that a reader without the code can follow: what each dataset is,
what D0/D1, forgetting and adaptation mean, why an English model's German loss is high, and how the result
compares with the paper's table for the same kind of shift. ``demo_summary`` computes its numbers.

    >>> from neox_cpt.local.demo_report import demo_summary
    >>> demo_summary([5.0, 9.0, 5.1], [10.0, 5.0, 5.2])["removed"]   # doctest: +ELLIPSIS
    0.975...
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from neox_cpt.local.report import Roles, Run, fmt
from neox_cpt.local.report_render import render_plots, run_colours, stages_table

DATASETS = {
    "sotu": "State of the Union addresses: the yearly speech of the US president to Congress, 1790 to today "
            "(English, formal political prose)",
    "german": "German manual pages of Linux commands and files (Debian's `manpages-de`: technical German)",
    "bible": "the King James Bible (English of 1611: the same language as the speeches, in an older style)",
}
"""Plain-words description of each demo source (docs/data.md has where each comes from)."""

PAPER = ("Ibrahim et al. 2024, *Simple and Scalable Strategies to Continually Pre-train Large Language "
         "Models* (arXiv:2403.08763)")
# The paper's 405M results (its Table 2): final validation loss of D0 (Pile), of D1 and their mean (AVG, as
# printed); the Pile-only model's Pile loss is 2.17, so forgetting = D0 - 2.17.
PAPER_TABLES: Dict[str, Dict[str, Any]] = {
    "german": {"shift": "Pile (English) → German Common Crawl, a strong shift", "d1": "German", "replay": 25,
               "tokens": "300B tokens of Pile, then 200B", "union": "500B",
               "rows": (("0 % replay", 3.56, 1.11, 2.34), ("25 % replay", 2.33, 1.16, 1.75),
                        ("re-train on the union", 2.26, 1.25, 1.75))},
    "bible": {"shift": "Pile → SlimPajama (English → English), a weak shift", "d1": "SlimPajama", "replay": 5,
              "tokens": "300B tokens of Pile, then 300B", "union": "600B",
              "rows": (("0 % replay", 2.44, 2.50, 2.47), ("5 % replay", 2.23, 2.51, 2.37),
                       ("re-train on the union", 2.17, 2.53, 2.35))},
}
PAPER_D0_ONLY = 2.17
COLOUR_NAMES = {"C0": "blue", "C1": "orange", "C2": "green"}
"""matplotlib's first three cycle colours (``run_colours``) in words."""


def demo_summary(d0_losses: Sequence[Optional[float]], d1_losses: Sequence[Optional[float]]) -> Dict[str, float]:
    """The headline numbers from the final losses of (D0 model, no replay, replay): forgetting of each continual
    run, the share of forgetting replay removed, and what replay cost on D1 (nan where a loss is missing)."""
    val = [float("nan") if v is None else float(v) for v in list(d0_losses) + list(d1_losses)]
    (d0_model, d0_none, d0_replay), (d1_model, d1_none, d1_replay) = val[:3], val[3:]
    forget_none, forget_replay = d0_none - d0_model, d0_replay - d0_model
    return {"forget_none": forget_none, "forget_replay": forget_replay,
            "removed": 1.0 - forget_replay / forget_none if forget_none > 0.01 else float("nan"),
            "d1_cost": d1_replay - d1_none, "d1_drop": d1_model - d1_none}


def _eval(run: Run, source: str, first: bool) -> Optional[float]:
    hits = [e for e in run.evals if e.get("source") == source]
    return float(hits[0 if first else -1]["loss"]) if hits else None


def _schedule_words(run: Run) -> str:
    from neox_cpt.schedules.schedule import StageSchedule

    stage = run.stages[-1]
    if not stage.schedule:
        return f"{stage.num_steps} steps"
    rows = StageSchedule.from_dict(stage.schedule).phase_table()
    phases = ", then ".join(f"{r['phase']} {r['lr_start']:.3g} → {r['lr_end']:.3g} over steps {r['start_step']}–"
                            f"{r['end_step']}" for r in rows)
    return f"{stage.num_steps} steps: {phases}"


def _paper_section(d1: str, s: Dict[str, float], replay_pct: str, d0_tokens: int) -> List[str]:
    paper = PAPER_TABLES.get(d1)
    if paper is None:
        return []
    (_, d0_none, d1_none, _), (_, d0_rep, d1_rep, avg_rep), (_, _, _, avg_union) = paper["rows"]
    removed = 1 - (d0_rep - PAPER_D0_ONLY) / (d0_none - PAPER_D0_ONLY)
    lines = ["## Against the paper", "",
             f"{PAPER} reports in its Table 2 a 405M-parameter GPT-NeoX trained on {paper['tokens']} "
             f"({paper['shift']}). Its final validation losses (the Pile-only model's Pile loss is {PAPER_D0_ONLY}):",
             "",
             "| run (paper, 405M) | Pile (D0) | " + paper["d1"] + " (D1) | average | forgetting |",
             "|---|---|---|---|---|"]
    for name, a, b, avg in paper["rows"]:
        union = f" ({paper['union']} tokens)" if "union" in name else ""
        lines.append(f"| {name}{union} | {a:.2f} | {b:.2f} | {avg:.2f} | {a - PAPER_D0_ONLY:+.2f} |")
    same = s["forget_none"] > 0.05 and s["removed"] >= 0.5
    lines += ["", ("The same shape here" if same else "Here the shape differs") + ": without replay the paper's "
              f"model forgets {d0_none - PAPER_D0_ONLY:+.2f} nats of the old data (here {fmt(s['forget_none'], '+.2f')}); "
              f"{paper['replay']} % replay removes {100 * removed:.0f} % of that (here {fmt(100 * s['removed'], '.0f')} %) "
              f"for {d1_rep - d1_none:+.2f} nats on the new data (here {fmt(s['d1_cost'], '+.2f')}). The paper's "
              "point is that this recipe (LR re-warm + re-decay + replay) lands at the average loss of re-training "
              f"from scratch on both datasets together ({avg_rep:.2f} vs {avg_union:.2f}) with "
              f"{'40' if d1 == 'german' else '50'} % of its compute; the demo does not train that expensive "
              "baseline — `neox-cpt demo --compare` does (docs/results.md in the repository).", "",
              "The absolute numbers are not comparable: the paper's model has 405M parameters and saw 300B tokens "
              f"before the shift, this one a few million parameters and {d0_tokens:,} tokens, with another "
              "tokenizer and other data. A model this small, trained this briefly, forgets more without replay: "
              "each update of the new stage moves it further from what it learned."
              + (f" Its new-data loss also still falls steeply with every token, so the {replay_pct} % of new tokens "
                 "that replay takes away cost more here than in the paper." if s["d1_cost"] > d1_rep - d1_none + 0.02
                 else ""), ""]
    return lines


def write_demo_report(runs: Sequence[Run], out_dir: "os.PathLike[str] | str", d0: str, d1: str,
                      config: "os.PathLike[str] | str", root: "os.PathLike[str] | str",
                      wall_s: Optional[float] = None, manifest: Any = None) -> Path:
    """Write ``report.md`` and its plots for the demo's (D0 model, no replay, replay) runs; returns its path."""
    if len(runs) != 3:
        raise ValueError(f"the demo report needs 3 runs (D0 model, no replay, replay); got {len(runs)}")
    out = Path(out_dir)
    roles = Roles(d0, d1)
    vocab = getattr(manifest, "vocab_size", None)
    uniform = math.log(vocab) if vocab else None
    titles = {d0: f"{d0} (D0, English, old data)", d1: f"{d1} (D1, new data)"}
    rows = render_plots(runs, out, roles, titles=titles, uniform=uniform, tradeoff_d0=True) or []
    model, none, replay = runs
    s = demo_summary([r.d0_loss for r in rows], [r.d1_loss for r in rows])
    replay_pct = f"{100 * replay.stages[-1].replay_frac:g}"
    colour = {name: COLOUR_NAMES.get(c, c) for name, c in run_colours(runs).items()}

    def tokens_of(name: str) -> str:
        try:
            return f"; {manifest.source(name).num_train_tokens:,} training tokens"
        except Exception:  # no manifest, or a source outside the demo data: leave the count out
            return ""

    start_d1, end_d1 = _eval(model, d1, first=True), _eval(model, d1, first=False)
    d0_tokens, d1_tokens = model.stages[0].num_tokens, none.stages[-1].num_tokens
    parts = [f"# neox-cpt demo: {d0} → {d1}, without and with replay", "",
             "A small language model is first pre-trained on one dataset and then *continually* pre-trained on a "
             "new one, the way a large model is updated when new data arrives instead of being trained again from "
             f"scratch (the method of {PAPER}). The question is how much of the old data the model forgets, and "
             "how replay — mixing some old data into every batch of the new stage — prevents it.", "",
             "## What was trained", "",
             f"- **D0, the old data: `{d0}`** — {DATASETS.get(d0, d0)}{tokens_of(d0)}.",
             f"- **D1, the new data: `{d1}`** — {DATASETS.get(d1, d1)}{tokens_of(d1)}.",
             "",
             "D0 and D1 are the paper's names: D0 is what the model was pre-trained on, D1 the data that arrives "
             "later.",
             "",
             "Each dataset has a held-out validation part that is never trained on; the loss on it (cross-entropy "
             "in nats per token, lower is better) measures how well the model predicts that kind of text. A loss "
             "of L means the model gives the right next token a probability of about e^−L (5.0 ≈ 1 in 150).", "",
             "Three runs (each has one colour in every plot):", "",
             f"1. **{model.name}** ({colour[model.name]}): a {d0_tokens:,}-token pre-training of a "
             f"GPT-NeoX-architecture model from random weights on `{d0}` only.",
             f"2. **{none.name}** ({colour[none.name]}): starts from the end of run 1 and trains on "
             f"{d1_tokens:,} tokens of `{d1}` only; the learning rate is warmed up again and decayed "
             "again (the paper's re-warm + re-decay), with a fresh optimizer state.",
             f"3. **{replay.name}** ({colour[replay.name]}): the same, but {replay_pct} % of every batch is `{d0}` "
             f"again (replay). The stage has the same size, so it sees {replay_pct} % fewer `{d1}` tokens.", "",
             "Runs 2 and 3 both start from the one model of run 1 and were trained side by side.", "",
             "## The result", "",
             f"| run | {d0} loss (D0) | {d1} loss (D1) | average | forgetting | tokens trained |",
             "|---|---|---|---|---|---|"]
    for row, run in zip(rows, runs):
        forget = "(reference)" if run is model else fmt(row.forgetting, "+.3f")
        parts.append(f"| {run.name} | {fmt(row.d0_loss)} | {fmt(row.d1_loss)} | {fmt(row.avg_loss)} | {forget} | "
                     f"{row.tokens:,} |")
    parts += ["",
              f"- **Forgetting** = a continual run's final `{d0}` loss minus the `{d0}` loss of the model it started "
              f"from (run 1): how much worse it got at the old data.",
              f"- **Adaptation** = the final `{d1}` loss: how well it learned the new data.",
              "- **Average** = the plain mean of the two losses (the paper's AVG). **Tokens trained** counts only "
              "the run's own training: a continual run starts from a model that is already paid for.", "",
              f"Without replay, continuing on `{d1}` changed the `{d0}` loss by {fmt(s['forget_none'], '+.2f')} nats"
              + (": the model lost much of what it knew about it" if s["forget_none"] > 0.5 else "")
              + f". With {replay_pct} % replay the change is {fmt(s['forget_replay'], '+.2f')} nats — replay removed "
              f"{fmt(100 * s['removed'], '.0f')} % of the forgetting — while its `{d1}` loss is "
              f"{fmt(replay.final_loss(d1))} instead of "
              f"{fmt(none.final_loss(d1))} ({fmt(s['d1_cost'], '+.2f')} nats, the price of seeing fewer `{d1}` "
              "tokens).", "",
              "![forgetting vs adaptation: down-left is better](tradeoff.png)", "",
              "## Validation loss during training", "",
              "![validation loss of both datasets](valid_loss.png)", "",
              f"Left: the `{d0}` loss falls during pre-training (run 1), then rises in the continual runs, much more "
              f"without replay. Right: the `{d1}` loss of the same runs; dashed grey lines mark where the continual "
              "stage starts, the dotted line is the loss of a uniform guess over the whole vocabulary"
              + (f" (ln {vocab:,} = {uniform:.2f})." if uniform else "."), "",
              f"**Why is the `{d1}` loss of the pre-trained model so high?** A model with random weights guesses "
              f"almost uniformly, so its loss is close to the uniform guess on any text (here {fmt(start_d1)} on "
              f"`{d1}` at the start). Pre-training on `{d0}` makes it confident about how `{d0}` continues — which "
              f"words and word pieces follow which. That confidence is wrong for `{d1}`: the pieces its words are "
              f"made of, and their order, are rare in `{d0}`, so the model gives the actual next piece even less "
              f"probability than a uniform guess would, and the `{d1}` loss rises (to {fmt(end_d1)} at the end of "
              f"run 1). That is not forgetting — the model never saw `{d1}`; the continual stage then brings it down.",
              "", "## Learning rate", "", "![learning rate of the three runs](lr.png)", "",
              f"Run 1: {_schedule_words(model)}. Runs 2 and 3 have the same schedule (their lines lie on top of each "
              f"other): {_schedule_words(none)} (step numbers count within the stage).", ""]
    parts += _paper_section(d1, s, replay_pct, d0_tokens)
    root_path = Path(root)
    parts += ["## Details", "", stages_table(runs), "",
              f"Config: `{config}`. Run directories under `{root_path}`: "
              + ", ".join(f"`{Path(r.path).relative_to(root_path) if _inside(r.path, root_path) else r.path}`"
                          for r in runs) + " (each has `metrics.jsonl` with every loss, `summary.json`, checkpoints)."
              + (f" Wall time of this invocation: {wall_s / 60:.1f} min (finished runs are reused)." if wall_s else "")
              + _train_times(runs),
              ""]
    report = out / "report.md"
    report.write_text("\n".join(parts))
    return report


def _train_times(runs: Sequence[Run]) -> str:
    """`` Training time per run: d0 258 s, ...`` from the runs' summary.json (empty when none has it)."""
    times = [(r.name, r.summary.get("wall_s"), r.summary.get("tok_per_s")) for r in runs]
    if not any(t for _, t, _ in times):
        return ""
    return " Wall time of each run's training (when it trained): " + "; ".join(
        f"{name}: {t:.0f} s" + (f" ({v:,.0f} tokens/s)" if v else "") for name, t, v in times if t is not None) + "."


def _inside(path: "os.PathLike[str] | str", root: Path) -> bool:
    try:
        Path(path).relative_to(root)
        return True
    except ValueError:
        return False
