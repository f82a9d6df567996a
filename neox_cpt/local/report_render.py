"""Render the report: ``report.md`` with the paper-style table and PNG plots (matplotlib, imported lazily
inside each plotting function, Agg backend). The numbers come from :mod:`neox_cpt.local.report`.

    >>> from neox_cpt.local.report import load_run
    >>> from neox_cpt.local.report_render import write_report
    >>> write_report([load_run("runs/demo/d0"), load_run("runs/demo/german/cpt_replay25")], "/tmp/r")  # doctest: +SKIP
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from neox_cpt.local.report import Roles, Row, Run, fmt, fmt_tokens, infer_roles, lr_curve, table_rows

logger = logging.getLogger(__name__)


def _stage_marks(runs: Sequence[Run], key: str) -> List[int]:
    """Stage starts (``start_step`` or ``start_tokens``) after 0, deduplicated, for vertical lines."""
    return sorted({int(getattr(s, key)) for r in runs for s in r.stages if getattr(s, key) > 0})


LINE_STYLES = ("-", "--", "-.", ":")


def run_colours(runs: Sequence[Run]) -> Dict[str, str]:
    """One colour per run, the same in every plot: matplotlib's cycle (``C0``, ``C1``, ...) in input order.

    >>> run_colours([Run("a", Path("a"), (), (), (), {}), Run("b", Path("b"), (), (), (), {})])
    {'a': 'C0', 'b': 'C1'}
    """
    return {run.name: f"C{i % 10}" for i, run in enumerate(runs)}


def plot_lr(runs: Sequence[Run], path: Path) -> None:
    """LR against the global step, every run, stage boundaries dashed grey. Each run has its own colour and
    line style, so runs with the same schedule (drawn on top of each other) stay visible."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = run_colours(runs)
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    for i, run in enumerate(runs):
        steps, lrs = lr_curve(run)
        ax.plot(steps, lrs, label=run.name, lw=1.6, color=colours[run.name], ls=LINE_STYLES[i % len(LINE_STYLES)])
    for step in _stage_marks(runs, "start_step"):
        ax.axvline(step, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("global step (dashed grey: stage boundaries)")
    ax.set_ylabel("learning rate")
    ax.set_title("LR across stages")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_valid_loss(runs: Sequence[Run], sources: Sequence[str], path: Path,
                    titles: Optional[Mapping[str, str]] = None, uniform: Optional[float] = None) -> None:
    """Validation loss of each source (one panel each, ``titles[source]`` on top) against lineage tokens, stage
    boundaries dashed; ``uniform``: the loss of a uniform guess over the vocabulary, dotted."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = run_colours(runs)
    fig, axes = plt.subplots(1, len(sources), figsize=(5.0 * len(sources), 3.8), squeeze=False)
    for ax, source in zip(axes[0], sources):
        for run in runs:
            points = [(e["tokens"], e["loss"]) for e in run.evals if e["source"] == source]
            if points:
                xs, ys = zip(*points)
                ax.plot([x / 1e6 for x in xs], ys, marker=".", ms=3, lw=1.2, label=run.name, color=colours[run.name])
        for tokens in _stage_marks(runs, "start_tokens"):
            ax.axvline(tokens / 1e6, color="grey", ls="--", lw=0.8)
        if uniform is not None:
            ax.axhline(uniform, color="grey", ls=":", lw=1.0, label=f"uniform guess ({uniform:.2f})")
        ax.set_title((titles or {}).get(source, f"validation loss: {source}"), fontsize=9)
        ax.set_xlabel("tokens trained (M)")
        ax.set_ylabel("loss (nats/token)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_tradeoff(rows: Sequence[Row], roles: Roles, path: Path, colours: Optional[Mapping[str, str]] = None,
                  with_d0: bool = False) -> None:
    """Forgetting (x) against adaptation (D1 loss, y) of the runs that train on D1: down-left is better.
    ``colours``: run name -> colour (``run_colours``), so a run has the colour it has in the other plots;
    ``with_d0``: also the D0-only runs (square markers at x = 0: where the continual runs started)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    points = [r for r in rows if r.forgetting is not None and r.d1_loss is not None
              and (with_d0 or r.kind != "d0-only")]
    xs = [r.forgetting for r in points] or [0.0]
    middle = (min(xs) + max(xs)) / 2
    for i, row in enumerate(sorted(points, key=lambda r: r.forgetting)):
        ax.scatter(row.forgetting, row.d1_loss, color=(colours or {}).get(row.name), s=40, zorder=3,
                   marker="s" if row.kind == "d0-only" else "o")
        # labels point inwards (no label leaves the axes); neighbours along x alternate above and below
        right = row.forgetting > middle
        ax.annotate(row.name.split("/")[-1], (row.forgetting, row.d1_loss), fontsize=7,
                    xytext=(-5 if right else 5, 5 if i % 2 == 0 else -11), textcoords="offset points",
                    ha="right" if right else "left")
    ax.axvline(0.0, color="grey", lw=0.8)
    ax.margins(x=0.1, y=0.12)
    ax.set_xlabel(f"forgetting: rise of {roles.d0} loss over the D0-only model (nats)")
    ax.set_ylabel(f"adaptation: {roles.d1} loss (nats)")
    ax.set_title("forgetting vs adaptation (down-left is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown_table(rows: Sequence[Row], roles: Roles) -> str:
    """The paper-style table plus forgetting, as Markdown."""
    lines = [f"| run | kind | {roles.d0} (D0) | {roles.d1} (D1) | AVG | forgetting (Δ D0) | tokens trained "
             "| compute vs union |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        compute = "n/a" if r.compute_vs_union is None else f"{100 * r.compute_vs_union:.0f} %"
        forgetting = fmt(r.forgetting, "+.3f")
        lines.append(f"| {r.name} | {r.kind} | {fmt(r.d0_loss)} | {fmt(r.d1_loss)} | {fmt(r.avg_loss)} "
                     f"| {forgetting} | {fmt_tokens(r.tokens)} | {compute} |")
    return "\n".join(lines)


def stages_table(runs: Sequence[Run]) -> str:
    """Every run's stages: steps, tokens, sources, replay, schedule recipe, start checkpoint."""
    lines = ["| run | stage | global steps | tokens | train sources | replay | schedule | starts from |",
             "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        for s in run.stages:
            shares = ", ".join(f"{k} {100 * v:.0f} %" for k, v in s.train_sources.items())
            recipe = (s.schedule or {}).get("recipe") or "?"
            init = s.init_from or ("scratch" if s.index == 0 else "previous stage")
            if s.init_from and os.path.isabs(s.init_from):
                init = os.path.join(*Path(s.init_from).parts[-3:])
            lines.append(f"| {run.name} | {s.name} | {s.start_step}–{s.start_step + s.num_steps} "
                         f"| {fmt_tokens(s.num_tokens)} | {shares} | {100 * s.replay_frac:.0f} % | {recipe} "
                         f"| {init} |")
    return "\n".join(lines)


def render_plots(runs: Sequence[Run], out: Path, roles: Optional[Roles], titles: Optional[Mapping[str, str]] = None,
                 uniform: Optional[float] = None, tradeoff_d0: bool = False) -> Optional[List[Row]]:
    """``lr.png``, ``valid_loss.png`` and (with roles) ``tradeoff.png`` into ``out``; returns the table rows
    (None without roles). ``titles``, ``uniform``: see ``plot_valid_loss``; ``tradeoff_d0``: ``with_d0``."""
    out.mkdir(parents=True, exist_ok=True)
    sources = [roles.d0, roles.d1] if roles else list(dict.fromkeys(s for r in runs for s in r.sources))
    plot_lr(runs, out / "lr.png")
    plot_valid_loss(runs, sources, out / "valid_loss.png", titles=titles, uniform=uniform)
    if roles is None:
        return None
    rows = table_rows(runs, roles)
    plot_tradeoff(rows, roles, out / "tradeoff.png", colours=run_colours(runs), with_d0=tradeoff_d0)
    return rows


HOW_TO_READ = (
    "How to read it: D0 is the data the model was pre-trained on (the old data), D1 the new data of the "
    "continual stage. kind: `d0-only` = trained on D0 only, `d1-only` = trained on D1 only, from scratch, "
    "`union` = trained from scratch on D0 and D1 together (the expensive re-training that continual "
    "pre-training tries to match), `cpt` = continual pre-training: starts from a D0 model and trains on D1 "
    "(with replay: a share of every batch is D0 data again). Losses are validation cross-entropy in nats "
    "per token (lower is better).")


def write_report(runs: Sequence[Run], out_dir: "os.PathLike[str] | str", roles: Optional[Roles] = None,
                 title: str = "neox-cpt report", notes: str = "") -> Path:
    """Write ``report.md`` and its PNGs into ``out_dir``; returns the path of report.md."""
    if not runs:
        raise ValueError("no runs given; pass one or more run directories")
    out = Path(out_dir)
    try:
        roles = roles or infer_roles(runs)
    except ValueError as exc:
        logger.warning("%s", exc)
        roles = None
    rows = render_plots(runs, out, roles)
    parts = [f"# {title}", ""] + ([notes, ""] if notes else []) + ["## Runs", "", stages_table(runs), ""]
    if roles is not None and rows is not None:
        parts += ["## Final validation loss (the paper's table)", "", markdown_table(rows, roles), "",
                  HOW_TO_READ, "",
                  f"Losses are the final validation loss per source (nats/token). AVG is the plain mean of D0 "
                  f"and D1. Forgetting is the run's final {roles.d0} loss minus the D0-only model's "
                  f"{roles.d0} loss (the end of the D0 pre-training stage, or the D0-only run); adaptation is "
                  f"the {roles.d1} loss itself. Tokens count a continual run's updates only (its D0 "
                  "pre-training is already paid for, as in the paper); compute is relative to the union "
                  "re-training run when one is among the inputs.", "",
                  "![forgetting vs adaptation](tradeoff.png)", ""]
    parts += ["## Learning rate", "", "![LR across stages](lr.png)", "",
              "## Validation loss per source", "", "![validation loss](valid_loss.png)", ""]
    report = out / "report.md"
    report.write_text("\n".join(parts))
    return report
