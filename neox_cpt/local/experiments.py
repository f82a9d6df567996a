"""The paper's comparison at laptop scale, as data: which runs, which stages, which token budgets.

``comparison_plan(shifts, budget)`` lists the runs of the comparison (PAPER.md) for each shift, D0 first:
a D0-only model (cosine) and a D0 model on the infinite schedule (pre-anneal), shared by every shift; then
per shift D1 from scratch, re-training on the union with the same total tokens, and continual runs from
the D0 checkpoint: re-warm + re-decay with 0 %, the recommended and a higher replay share, constant
eta_min (no re-warm) and the infinite schedule (no re-warm, anneal at the end), the last two with the
recommended replay. Replay is compute-equivalent: it replaces new tokens in a stage of fixed size.

    >>> from neox_cpt.local.experiments import comparison_plan, FULL
    >>> runs = comparison_plan(("german",), FULL)
    >>> [r.name for r in runs][:4]
    ['d0', 'd0_infinite', 'german/d1_scratch', 'german/union']
    >>> cpt = next(r for r in runs if r.name == "german/cpt_replay25")
    >>> cpt.init_from, dict(cpt.stages[0].sources)
    ('d0', {'german': 0.75, 'sotu': 0.25})

``run_demo`` and ``run_comparison`` (below the plan) turn runs into trainer configs, train and report.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

logger = logging.getLogger(__name__)

D0_SOURCE = "sotu"
"""The pre-training data of every shift: State of the Union addresses (English)."""


@dataclass(frozen=True)
class Shift:
    """A distribution shift: the new data and the paper's recommended replay share for it."""

    d1: str
    """Source name of the new data."""
    replay_frac: float
    """Recommended replay share (paper: 25 % for a strong shift, 5 % for a weak one)."""
    high_replay_frac: float = 0.5
    """The 'more replay' comparison point."""


SHIFTS: Dict[str, Shift] = {
    "german": Shift("german", 0.25),  # strong shift: English -> German man pages
    "bible": Shift("bible", 0.05),    # weak shift: English speeches -> English King James Bible
}


@dataclass(frozen=True)
class Budget:
    """Token budgets of the comparison."""

    d0_tokens: int
    """Tokens of D0 pre-training (and of the D0 part of the union)."""
    d1_tokens: int
    """Tokens of a continual stage (and of D1 from scratch, and the D1 part of the union)."""
    label: str = "full"
    """Shown in the report title (``reduced`` for the shortened run)."""


# ~7k tokens/s at hidden 128 on 2 idle cores: FULL trains 4 x d0 + 14 x d1 = 15.4M tokens (~37 min plus
# evaluation), REDUCED a quarter of that (for a busy machine). A continual stage of 0.4 x D0 costs 29 % of
# the union re-training's tokens (the paper: 40 % for German, 50 % for SlimPajama).
FULL = Budget(d0_tokens=1_600_000, d1_tokens=640_000)
REDUCED = Budget(d0_tokens=400_000, d1_tokens=160_000, label="reduced")


@dataclass(frozen=True)
class StagePlan:
    """One stage of a planned run."""

    name: str
    """Stage name (``d0``, ``d1``, ``union``)."""
    sources: Tuple[Tuple[str, float], ...]
    """(source, share of the stage's samples); replay sources included; shares sum to 1."""
    num_tokens: int
    """Tokens the stage trains."""
    schedule: Tuple[Tuple[str, Any], ...]
    """Schedule keys (``cpt_lr_schedule`` and its options) without the LR values, which the base config sets."""
    replay_frac: float = 0.0
    """Share of the stage's samples drawn from D0 (the replayed data)."""


@dataclass(frozen=True)
class RunPlan:
    """One run of the comparison."""

    name: str
    """Run directory relative to the comparison root (``german/cpt_replay25``)."""
    label: str
    """What the run is, in the paper's words."""
    stages: Tuple[StagePlan, ...]
    """Its stages (one for every run of the comparison)."""
    init_from: Optional[str] = None
    """Name of the run whose final checkpoint the first stage starts from; None = from scratch."""
    tags: Tuple[str, ...] = field(default=())
    """Roles in the targets: ``d0``, ``union``, ``no_replay``, ``recommended``."""

    @property
    def num_tokens(self) -> int:
        """Tokens this run trains itself (the D0 checkpoint it starts from is already paid for)."""
        return sum(s.num_tokens for s in self.stages)


COSINE = (("cpt_lr_schedule", "cosine"),)
CONSTANT_MIN = (("cpt_lr_schedule", "constant"),)  # the constant recipe holds cpt_lr_min by default
INFINITE_FIRST = (("cpt_lr_schedule", "infinite"), ("cpt_cooldown_end_frac", 0.6))
INFINITE_NEXT = (("cpt_lr_schedule", "infinite"), ("cpt_infinite_first_stage", False), ("cpt_anneal_frac", 0.2))


def _cpt(shift: Shift, name: str, label: str, replay: float, budget: Budget, schedule: Tuple[Tuple[str, Any], ...],
         init_from: str = "d0", tags: Tuple[str, ...] = ()) -> RunPlan:
    sources = ((shift.d1, round(1.0 - replay, 6)),) + (((D0_SOURCE, replay),) if replay > 0 else ())
    stage = StagePlan("d1", sources, budget.d1_tokens, schedule, replay_frac=replay)
    return RunPlan(f"{shift.d1}/{name}", label, (stage,), init_from=init_from, tags=tags)


def shift_runs(shift: Shift, budget: Budget) -> List[RunPlan]:
    """The runs of one shift (without the shared D0 runs)."""
    total = budget.d0_tokens + budget.d1_tokens
    union_sources = ((D0_SOURCE, budget.d0_tokens / total), (shift.d1, budget.d1_tokens / total))
    rec, high = shift.replay_frac, shift.high_replay_frac
    pct = lambda x: f"{round(100 * x)}"  # noqa: E731
    return [
        RunPlan(f"{shift.d1}/d1_scratch", f"{shift.d1} from scratch",
                (StagePlan("d1", ((shift.d1, 1.0),), budget.d1_tokens, COSINE),)),
        RunPlan(f"{shift.d1}/union", f"re-train on {D0_SOURCE} ∪ {shift.d1} (same total tokens)",
                (StagePlan("union", union_sources, total, COSINE),), tags=("union",)),
        _cpt(shift, "cpt_replay0", "CPT re-warm + re-decay, 0 % replay", 0.0, budget, COSINE, tags=("no_replay",)),
        _cpt(shift, f"cpt_replay{pct(rec)}", f"CPT re-warm + re-decay, {pct(rec)} % replay (recommended)", rec,
             budget, COSINE, tags=("recommended",)),
        _cpt(shift, f"cpt_replay{pct(high)}", f"CPT re-warm + re-decay, {pct(high)} % replay", high, budget, COSINE),
        _cpt(shift, "cpt_const_min", f"CPT constant eta_min (no re-warm), {pct(rec)} % replay", rec, budget,
             CONSTANT_MIN),
        _cpt(shift, "cpt_infinite", f"CPT infinite schedule (no re-warm, anneal), {pct(rec)} % replay", rec,
             budget, INFINITE_NEXT, init_from="d0_infinite"),
    ]


def comparison_plan(shifts: Sequence[str], budget: Budget) -> List[RunPlan]:
    """Every run of the comparison, each after the run it starts from."""
    unknown = [s for s in shifts if s not in SHIFTS]
    if unknown or not shifts:
        raise ValueError(f"shift = {list(shifts)!r}: choose from {sorted(SHIFTS)} (or both)")
    runs = [
        RunPlan("d0", f"{D0_SOURCE} only (D0, cosine)", (StagePlan("d0", ((D0_SOURCE, 1.0),), budget.d0_tokens,
                                                                 COSINE),), tags=("d0",)),
        RunPlan("d0_infinite", f"{D0_SOURCE} only (D0, infinite schedule, pre-anneal)",
                (StagePlan("d0", ((D0_SOURCE, 1.0),), budget.d0_tokens, INFINITE_FIRST),)),
    ]
    for name in shifts:
        runs += shift_runs(SHIFTS[name], budget)
    return runs


def token_accounting(runs: Sequence[RunPlan]) -> Dict[str, Dict[str, float]]:
    """Per run: tokens it trains, tokens per source, and its share of the union run's tokens (same shift)."""
    union = {r.name.split("/")[0]: r.num_tokens for r in runs if "union" in r.tags}
    table: Dict[str, Dict[str, float]] = {}
    for run in runs:
        per_source: Dict[str, float] = {}
        for stage in run.stages:
            for source, share in stage.sources:
                per_source[source] = per_source.get(source, 0.0) + share * stage.num_tokens
        shift = run.name.split("/")[0]
        row: Dict[str, float] = {"tokens": run.num_tokens, **{f"tokens_{k}": v for k, v in per_source.items()}}
        if shift in union:
            row["vs_union"] = run.num_tokens / union[shift]
        table[run.name] = row
    return table


def total_tokens(runs: Sequence[RunPlan]) -> int:
    """Tokens the whole comparison trains (the time it takes is about this over the trainer's tokens/s)."""
    return sum(r.num_tokens for r in runs)


def plan_table(runs: Sequence[RunPlan]) -> List[Mapping[str, Any]]:
    """Rows for docs: name, label, start, tokens, sources."""
    return [{"run": r.name, "what": r.label, "starts_from": r.init_from or "scratch", "tokens": r.num_tokens,
             "sources": ", ".join(f"{s} {100 * w:.0f} %" for st in r.stages for s, w in st.sources)} for r in runs]


@dataclass(frozen=True)
class Target:
    """One of the comparison's targets, measured."""

    what: str
    """The target in words."""
    value: str
    """What was measured."""
    met: Optional[bool]
    """Whether it holds (None when a needed run is missing)."""


def target_checks(rows: Mapping[str, Any], shift: str) -> List[Target]:
    """The issue's targets for one shift from report rows (``neox_cpt.local.report.Row``) keyed by run name."""
    rec = SHIFTS[shift].replay_frac
    none = rows.get(f"{shift}/cpt_replay0")
    best = rows.get(f"{shift}/cpt_replay{round(100 * rec)}")
    union = rows.get(f"{shift}/union")
    out: List[Target] = []
    if none is None or best is None or none.forgetting is None or best.forgetting is None:
        return [Target("replay targets", "runs missing", None)]
    out.append(Target("without replay the D0 loss rises clearly", f"+{none.forgetting:.3f} nats",
                      none.forgetting > 0.05))
    removed = 1.0 - best.forgetting / none.forgetting if none.forgetting > 0 else float("nan")
    out.append(Target(f"{round(100 * rec)} % replay removes >= half of that rise",
                      f"{100 * removed:.0f} % removed (+{best.forgetting:.3f} left)", removed >= 0.5))
    cost = best.d1_loss - none.d1_loss
    out.append(Target("at a D1 cost < 0.05 nats", f"{cost:+.3f} nats", cost < 0.05))
    if union is None or union.avg_loss is None or best.compute_vs_union is None:
        out.append(Target("within 2 % of union re-training", "union run missing", None))
        return out
    gap = best.avg_loss / union.avg_loss - 1.0
    out.append(Target("CPT avg loss within 2 % of union re-training",
                      f"{best.avg_loss:.3f} vs {union.avg_loss:.3f} ({100 * gap:+.1f} %)", gap <= 0.02))
    out.append(Target("on <= 60 % of the union's tokens", f"{100 * best.compute_vs_union:.0f} %",
                      best.compute_vs_union <= 0.6))
    return out


def targets_markdown(targets_by_shift: Mapping[str, Sequence[Target]]) -> str:
    """A Markdown table of the targets per shift."""
    mark = {True: "yes", False: "**no**", None: "n/a"}
    lines = ["| shift | target | measured | met |", "|---|---|---|---|"]
    for shift, targets in targets_by_shift.items():
        lines += [f"| {shift} | {t.what} | {t.value} | {mark[t.met]} |" for t in targets]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- trainer configs and runs


def repo_configs_dir() -> Path:
    """``configs/local`` of the source tree (the package is installed editable by ``make demo``)."""
    return Path(__file__).resolve().parents[2] / "configs" / "local"


def load_yaml(path: Path) -> Dict[str, Any]:
    import yaml

    if not path.is_file():
        raise FileNotFoundError(f"{path}: config not found; run from a checkout of neox-cpt (pip install -e .) or "
                                "pass --config PATH")
    return dict(yaml.safe_load(path.read_text()) or {})


def trainer_config(run: RunPlan, base: Mapping[str, Any], root: Path, eval_sources: Sequence[str]) -> Dict[str, Any]:
    """The local trainer's run config (docs/local.md) for a planned run: ``base`` plus its one stage."""
    (stage,) = run.stages
    replay = [(s, w) for s, w in stage.sources if stage.replay_frac > 0 and s == D0_SOURCE]
    new = [(s, w) for s, w in stage.sources if (s, w) not in replay]
    entry: Dict[str, Any] = {"name": stage.name, "sources": {s: float(w) for s, w in new},
                             "tokens": stage.num_tokens, **dict(stage.schedule)}
    if replay:
        entry.update(replay_frac=stage.replay_frac, replay_sources={D0_SOURCE: 1.0})
    if run.init_from:
        entry.update(init_from=str((root / run.init_from).resolve()), reset_optimizer=True)
    cfg = {k: v for k, v in base.items() if k not in ("stages", "run_dir")}
    cfg["name"] = run.name
    cfg["eval"] = {**dict(base.get("eval") or {}), "sources": list(eval_sources)}
    cfg["stages"] = [entry]
    return cfg


def _eval_sources(run: RunPlan, shifts: Sequence[str]) -> List[str]:
    if run.name.startswith(tuple(f"{s}/" for s in SHIFTS)):
        return [D0_SOURCE, run.name.split("/")[0]]
    return [D0_SOURCE] + [SHIFTS[s].d1 for s in shifts]


def _train_one(config: Mapping[str, Any], run_dir: str, name: str) -> float:
    """Train one run (in a worker process when jobs > 1); returns its wall seconds."""
    from neox_cpt.local.trainer import train

    if not logging.getLogger().handlers:  # a spawned worker: log like the CLI does
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    t0 = time.perf_counter()
    train(config, run_dir, progress=lambda line: logger.info("%s | %s", name, line))
    return time.perf_counter() - t0


def start_order(runs: Sequence[RunPlan]) -> List[RunPlan]:
    """The order parallel workers take runs in: runs that others start from first (they gate the most work),
    then the longest, so that no long run starts last and leaves the other workers idle; ties keep plan order."""
    parents = {r.init_from for r in runs if r.init_from}
    return sorted(runs, key=lambda r: (r.name not in parents, -r.num_tokens))


def default_jobs(num_runs: int) -> int:
    """Runs trained at once when ``--jobs`` is not given: one per usable core (each with one torch thread —
    two single-thread runs do more than one two-thread run here), at most ``num_runs``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, num_runs))


def die_with_parent(parent_pid: int) -> None:
    """Worker initializer: have the kernel send this worker SIGTERM when its parent dies (Linux prctl), so a
    killed comparison leaves no runs training on; what they leave is only whole checkpoints (atomic saves)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def run_plan(runs: Sequence[RunPlan], base: Mapping[str, Any], root: Path, shifts: Sequence[str],
             jobs: int = 1) -> Dict[str, float]:
    """Train every run under ``root`` (finished runs are reused), each after the run it starts from, up to
    ``jobs`` at a time in worker processes; returns wall seconds per run."""
    configs = {r.name: trainer_config(r, base, root, _eval_sources(r, shifts)) for r in runs}
    times: Dict[str, float] = {}
    if jobs <= 1:
        for i, run in enumerate(runs, 1):
            logger.info("compare | run %d/%d: %s (%s, %s tokens)", i, len(runs), run.name, run.label,
                        f"{run.num_tokens:,}")
            times[run.name] = _train_one(configs[run.name], str(root / run.name), run.name)
        return times
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    pending, done, running = start_order(runs), set(), {}
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        while pending or running:
            ready = [r for r in pending if r.init_from is None or r.init_from in done]
            for run in ready[: jobs - len(running)]:
                pending.remove(run)
                logger.info("compare | start %s (%s, %s tokens)", run.name, run.label, f"{run.num_tokens:,}")
                running[pool.submit(_train_one, configs[run.name], str(root / run.name), run.name)] = run
            if not running:
                raise ValueError(f"runs {[r.name for r in pending]} start from runs that are not in the plan")
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                run = running.pop(future)
                times[run.name] = future.result()
                done.add(run.name)
                logger.info("compare | done %s in %.0f s (%d/%d)", run.name, times[run.name], len(done), len(runs))
    return times


def shift_report(root: Path, shift: str, runs: Sequence[RunPlan], title: str) -> Tuple[Path, List[Target]]:
    """The report of one shift (the shared D0 runs first) and its targets."""
    from neox_cpt.local.report import Roles, load_run, table_rows
    from neox_cpt.local.report_render import write_report

    names = [r.name for r in runs if "/" not in r.name or r.name.startswith(f"{shift}/")]
    unfinished = [n for n in names if not (root / n / "summary.json").is_file()]
    if unfinished:
        logger.warning("compare | %s: leaving out unfinished runs %s", shift, unfinished)
    loaded = [load_run(root / n, name=n) for n in names if n not in unfinished]
    roles = Roles(D0_SOURCE, SHIFTS[shift].d1)
    targets = target_checks({r.name: r for r in table_rows(loaded, roles)}, shift)
    notes = "## Targets\n\n" + targets_markdown({shift: targets})
    return write_report(loaded, root / shift / "report", roles=roles, title=title, notes=notes), targets


def run_comparison(root: Path, shifts: Sequence[str] = ("german", "bible"), reduced: bool = False,
                   config: Optional[Path] = None, threads: Optional[int] = None, jobs: int = 0) -> Path:
    """Train the comparison under ``root`` and write one report per shift plus ``root/results.md``.

    ``jobs`` runs at a time (0: ``default_jobs``); ``threads`` torch threads each (default: 1 when runs share
    the machine, else the config's)."""
    from neox_cpt.local.demo_data import prepare_demo_data

    manifest = prepare_demo_data()
    missing = [s for s in shifts if SHIFTS[s].d1 not in manifest.source_names]
    if missing:
        raise ValueError(f"--shift {','.join(missing)}: those sources could not be prepared "
                         f"({dict(manifest.unavailable)}); run --shift bible")
    budget = REDUCED if reduced else FULL
    runs = comparison_plan(shifts, budget)
    base = load_yaml(config or repo_configs_dir() / "compare.yml")
    if jobs <= 0:
        jobs = default_jobs(len(runs))
    if threads is not None:
        base["threads"] = threads
    elif jobs > 1:
        base["threads"] = 1
    logger.info("compare | %d runs, %d at a time, %s torch thread(s) each", len(runs), jobs, base.get("threads", 0))
    t0 = time.perf_counter()
    times = run_plan(runs, base, root, shifts, jobs=jobs)
    total = time.perf_counter() - t0
    parts = [f"# neox-cpt comparison ({budget.label} budget: D0 {budget.d0_tokens:,} tokens, "
             f"D1 stage {budget.d1_tokens:,} tokens)", "", f"Wall time of this invocation: {total / 60:.1f} min "
             f"({len(runs)} runs; finished runs are reused).", ""]
    all_targets = {}
    for shift in shifts:
        report, all_targets[shift] = shift_report(root, shift, runs, f"sotu -> {shift} ({budget.label} budget)")
        parts += [f"- {shift}: [{report.relative_to(root)}]({report.relative_to(root)})"]
    parts += ["", "## Targets", "", targets_markdown(all_targets), "", "## Wall time per run (this invocation)", "",
              "| run | seconds |", "|---|---|"] + [f"| {k} | {v:.0f} |" for k, v in times.items()]
    path = root / "results.md"
    path.write_text("\n".join(parts) + "\n")
    return path


def run_demo(out: Path, config: Optional[Path] = None, threads: Optional[int] = None) -> Path:
    """The embedded default: data, then configs/local/demo.yml (German) or demo_english.yml, then the report."""
    from neox_cpt.local.demo_data import prepare_demo_data
    from neox_cpt.local.report import Roles, load_run
    from neox_cpt.local.report_render import write_report
    from neox_cpt.local.trainer import train

    manifest = prepare_demo_data()
    d1 = "german"
    if config is None:
        config = repo_configs_dir() / "demo.yml"
        if "german" not in manifest.source_names:
            logger.warning("demo | the German man pages are unavailable (%s): falling back to the English pair "
                           "sotu -> bible (configs/local/demo_english.yml)", dict(manifest.unavailable).get("german"))
            config, d1 = repo_configs_dir() / "demo_english.yml", "bible"
    cfg = load_yaml(config)
    if threads is not None:
        cfg["threads"] = threads
    run_dir = out / ("run" if d1 == "german" else "run_english")
    train(cfg, run_dir)
    run = load_run(run_dir, name=f"sotu -> {d1}")
    return write_report([run], out / "report", roles=Roles(D0_SOURCE, d1),
                        title=f"neox-cpt demo: sotu -> {d1}, re-warm + re-decay + replay",
                        notes=f"Config: `{config}`. Run directory: `{run_dir}`.")
