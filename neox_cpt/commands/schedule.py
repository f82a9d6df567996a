"""``neox-cpt schedule``: print or plot the LR of a multi-stage plan given as NeoX-style stage configs.

Each positional CONFIG is one stage, in order (``a.yml,b.yml`` merges several files into one stage, NeoX
style). A stage starts where the previous one ends unless it sets ``cpt_stage_start_iter``. ``--branch``
configs (e.g. an anneal branch) are drawn dashed from their own start and are not part of the plan.

    $ neox-cpt schedule configs/schedules/405M_pretrain_cosine.yml configs/schedules/405M_cpt_slimpajama.yml
    $ neox-cpt schedule configs/schedules/405M_pretrain_cosine.yml --steps 0,1,1324,132366 --csv
    $ neox-cpt schedule configs/schedules/405M_infinite_*stage*.yml --plot infinite.png
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from neox_cpt.schedules.loader import load_stage_config, plan_from_configs
from neox_cpt.schedules.plan import Plan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("configs", nargs="+", metavar="CONFIG.yml",
                        help="one stage per argument, in order; a,b merges files into one stage")
    parser.add_argument("--steps", help="global steps to print: 0,50,100 and/or start:stop:step ranges")
    parser.add_argument("--csv", action="store_true", help="CSV output (step,lr with --steps; else phases)")
    parser.add_argument("--plot", metavar="OUT.png", help="draw LR vs global step (and tokens) to this file")
    parser.add_argument("--branch", action="append", default=[], metavar="CONFIG.yml",
                        help="a branch stage (e.g. an anneal) drawn dashed from its cpt_stage_start_iter")
    parser.add_argument("--title", default=None, help="plot title")


def parse_steps(text: str) -> List[float]:
    """``"0,50,100"`` and ``"0:1000:250"`` (stop inclusive) into a list of steps."""
    steps: List[float] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if ":" in part:
                start, stop, *rest = (int(x) for x in part.split(":"))
                stride = rest[0] if rest else 1
                if stride <= 0 or len(rest) > 1:
                    raise ValueError
                steps.extend(range(start, stop + 1, stride))
            else:
                value = float(part)
                if not math.isfinite(value):
                    raise ValueError
                steps.append(int(value) if value.is_integer() else value)
        except ValueError:
            raise ValueError(f"--steps item {part!r} is not a step or a start:stop:step range; "
                             "write e.g. --steps 0,50,100 or --steps 0:1000:100") from None
    if not steps:
        raise ValueError(f"--steps = {text!r} lists no steps; write e.g. --steps 0,50,100")
    return steps


def load_plan(specs: Sequence[str]) -> Plan:
    """A Plan from CLI stage arguments (each a path, or comma-separated paths merged into one stage)."""
    return plan_from_configs([load_stage_config(spec.split(",")) for spec in specs])


def _fmt_tokens(tokens: Optional[float]) -> str:
    if tokens is None:
        return "-"
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if tokens >= scale:
            return f"{tokens / scale:.3g}{unit}"
    return f"{tokens:g}"


def phase_rows(plan: Plan) -> List[dict]:
    """One row per phase of every stage, positions on the global step axis."""
    rows = []
    for stage in plan.stages:
        for row in stage.schedule.phase_table():
            start = stage.start_step + row["start_step"]
            end = stage.start_step + row["end_step"]
            rows.append({"stage": stage.name, "phase": row["phase"], "shape": row["shape"], "start_step": start,
                         "end_step": end, "lr_start": row["lr_start"], "lr_end": row["lr_end"],
                         "start_tokens": plan.tokens_at(start), "end_tokens": plan.tokens_at(end)})
    return rows


def print_phases(plan: Plan, as_csv: bool) -> None:
    rows = phase_rows(plan)
    if as_csv:
        print("stage,phase,shape,start_step,end_step,lr_start,lr_end")
        for r in rows:
            print(f"{r['stage']},{r['phase']},{r['shape']},{r['start_step']},{r['end_step']},"
                  f"{r['lr_start']!r},{r['lr_end']!r}")
        return
    print(f"plan {plan.fingerprint()}: {len(plan.stages)} stage(s), global steps {plan.start_step}..{plan.end_step}"
          + (f", {plan.tokens_per_step:,} tokens/step" if plan.tokens_per_step else ""))
    header = f"{'stage':<14} {'phase':<9} {'shape':<9} {'steps':>21} {'tokens':>15} {'lr':>21}"
    print(header)
    for r in rows:
        steps = f"{r['start_step']:,}..{r['end_step']:,}"
        tokens = f"{_fmt_tokens(r['start_tokens'])}..{_fmt_tokens(r['end_tokens'])}"
        lrs = f"{r['lr_start']:.4g} -> {r['lr_end']:.4g}"
        print(f"{r['stage']:<14} {r['phase']:<9} {r['shape']:<9} {steps:>21} {tokens:>15} {lrs:>21}")
    for stage in plan.stages:
        print(f"stage {stage.name}: schedule {stage.schedule.recipe} fingerprint {stage.schedule.fingerprint()}, "
              f"holds {stage.schedule.final_lr:.4g} after step {stage.end_step:,}")


def print_steps(plan: Plan, steps: Sequence[float], as_csv: bool) -> None:
    if as_csv:
        print("step,lr")
        for g in steps:
            print(f"{g},{plan.lr_at(g)!r}")
        return
    print(f"{'step':>10} {'tokens':>10} {'stage':<14} {'lr':>12}")
    for g in steps:
        print(f"{g:>10} {_fmt_tokens(plan.tokens_at(g)):>10} {plan.stages[plan.stage_at(g)].name:<14} "
              f"{plan.lr_at(g):>12.6g}")


def _curve(plan: Plan, num_points: int = 2000) -> tuple:
    """Steps (dense, plus every phase join so corners are exact) and the LR there."""
    lo, hi = plan.start_step, plan.end_step
    points = {lo + (hi - lo) * i / num_points for i in range(num_points + 1)}
    for r in phase_rows(plan):
        points.update((r["start_step"], r["end_step"]))
    xs = sorted(points)
    return xs, [plan.lr_at(x) for x in xs]


def plot_plan(plan: Plan, out: str, branches: Sequence[Tuple[str, Plan]] = (), title: Optional[str] = None) -> None:
    """Draw LR vs global step (top axis: tokens when known), stage boundaries dotted, each (label, branch plan)
    dashed; save to ``out``."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        raise ValueError("--plot needs matplotlib, which is not installed: pip install 'neox-cpt[plot]'") from None
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
    xs, ys = _curve(plan)
    ax.plot(xs, ys, lw=1.6, color="C0", label="main line")
    top = max(ys)
    for i, (label, branch) in enumerate(branches):
        bx, by = _curve(branch)
        top = max(top, max(by))
        ax.plot(bx, by, lw=1.4, ls="--", color=f"C{i + 1}", label=f"branch: {label}")
    for stage in plan.stages:
        ax.axvline(stage.start_step, color="0.6", lw=0.8, ls=":")
        ax.text(stage.start_step, 1.0, f" {stage.name}", transform=ax.get_xaxis_transform(), va="top",
                ha="left", fontsize=8, color="0.3")
    ax.axvline(plan.end_step, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel("global step")
    ax.set_ylabel("learning rate")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _pos: f"{v:.1e}" if v else "0"))
    ax.set_ylim(0, top * 1.12)  # headroom for the stage labels
    ax.grid(alpha=0.3)
    if branches:
        ax.legend(fontsize=8, loc="lower left")
    tps = plan.tokens_per_step
    if tps:
        most = plan.end_step * tps
        unit, scale = next(((u, v) for u, v in (("B", 1e9), ("M", 1e6), ("K", 1e3)) if most >= 10 * v), ("", 1.0))
        sec = ax.secondary_xaxis("top", functions=(lambda s: s * tps / scale, lambda t: t * scale / tps))
        sec.set_xlabel(f"tokens{f' ({unit})' if unit else ''}, {tps:,} tokens/step")
    if title:
        ax.set_title(title, fontsize=10, pad=24 if tps else 6)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    plan = load_plan(args.configs)
    if args.steps:
        steps = parse_steps(args.steps)
        bad = [g for g in steps if g < plan.start_step]
        if bad:
            raise ValueError(f"--steps {bad[0]!r} is before the plan starts at global step {plan.start_step}; "
                             "give steps within the plan (after the end, the final LR holds)")
        print_steps(plan, steps, args.csv)
    else:
        print_phases(plan, args.csv)
    if args.plot:
        branches = [(Path(spec.split(",")[-1]).stem, load_plan([spec])) for spec in args.branch]
        plot_plan(plan, args.plot, branches, args.title)
        print(f"wrote {args.plot}")
    return 0
