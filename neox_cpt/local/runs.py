"""Running the comparison and the demo: planned runs (``neox_cpt.local.experiments``) become trainer
configs, are trained (in parallel worker processes, each after the run it starts from) and reported.

    >>> # run_comparison(Path("runs/compare"))     # neox-cpt demo --compare: 16 runs, results.md + reports
    >>> # run_demo(Path("runs/demo"))              # neox-cpt demo: D0, then D1 without and with replay
"""
from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from neox_cpt.local.experiments import (D0_SOURCE, FULL, REDUCED, SHIFTS, RunPlan, Target, comparison_plan,
                                        demo_plan, target_checks, targets_markdown)

logger = logging.getLogger(__name__)


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
    replay = [(s, w) for s, w in stage.sources if stage.replay_frac > 0 and s == stage.replay_source]
    new = [(s, w) for s, w in stage.sources if (s, w) not in replay]
    entry: Dict[str, Any] = {"name": stage.name, "sources": {s: float(w) for s, w in new},
                             "tokens": stage.num_tokens, **dict(stage.schedule)}
    if replay:
        entry.update(replay_frac=stage.replay_frac, replay_sources={stage.replay_source: 1.0})
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
    from neox_cpt.local.model import usable_cores

    return max(1, min(usable_cores(), num_runs))


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


def finished_outside(runs: Sequence[RunPlan], root: Path) -> Set[str]:
    """The runs that ``runs`` start from which are not among them but have finished under ``root`` (the demo's
    D0 model, trained before its continual runs): nothing has to wait for them."""
    names = {r.name for r in runs}
    return {r.init_from for r in runs if r.init_from and r.init_from not in names
            and (root / r.init_from / "summary.json").is_file()}


def run_plan(runs: Sequence[RunPlan], base: Mapping[str, Any], root: Path,
             eval_sources: Callable[[RunPlan], Sequence[str]], jobs: int = 1) -> Dict[str, float]:
    """Train every run under ``root`` (finished runs are reused), each after the run it starts from, up to
    ``jobs`` at a time in worker processes; ``eval_sources(run)`` names the sources it evaluates. Returns
    wall seconds per run."""
    configs = {r.name: trainer_config(r, base, root, eval_sources(r)) for r in runs}
    times: Dict[str, float] = {}
    if jobs <= 1:
        for i, run in enumerate(runs, 1):
            logger.info("runs | run %d/%d: %s (%s, %s tokens)", i, len(runs), run.name, run.label,
                        f"{run.num_tokens:,}")
            times[run.name] = _train_one(configs[run.name], str(root / run.name), run.name)
        return times
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    done, pending, running = finished_outside(runs, root), start_order(runs), {}
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        while pending or running:
            ready = [r for r in pending if r.init_from is None or r.init_from in done]
            for run in ready[: jobs - len(running)]:
                pending.remove(run)
                logger.info("runs | start %s (%s, %s tokens)", run.name, run.label, f"{run.num_tokens:,}")
                running[pool.submit(_train_one, configs[run.name], str(root / run.name), run.name)] = run
            if not running:
                raise ValueError(f"runs {[r.name for r in pending]} start from runs that are neither in the plan nor "
                                 f"finished under {root}")
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                run = running.pop(future)
                times[run.name] = future.result()
                done.add(run.name)
                logger.info("runs | done %s in %.0f s (%d/%d)", run.name, times[run.name], len(times), len(runs))
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
    reused = {r.name for r in runs if (root / r.name / "summary.json").is_file()}
    times = run_plan(runs, base, root, lambda r: _eval_sources(r, shifts), jobs=jobs)
    total = time.perf_counter() - t0
    parts = [f"# neox-cpt comparison ({budget.label} budget: D0 {budget.d0_tokens:,} tokens, "
             f"D1 stage {budget.d1_tokens:,} tokens)", "", f"Wall time of this invocation: {total / 60:.1f} min "
             f"({len(runs)} runs; finished runs are reused).", ""]
    all_targets = {}
    for shift in shifts:
        report, all_targets[shift] = shift_report(root, shift, runs, f"sotu -> {shift} ({budget.label} budget)")
        parts += [f"- {shift}: [{report.relative_to(root)}]({report.relative_to(root)})"]
    parts += ["", "## Targets", "", targets_markdown(all_targets), "", "## Wall time per run", "",
              "| run | seconds | trained |", "|---|---|---|"]
    parts += [_time_row(root, k, v, k in reused) for k, v in times.items()]
    path = root / "results.md"
    path.write_text("\n".join(parts) + "\n")
    return path


def _time_row(root: Path, name: str, seconds: float, reused: bool) -> str:
    if not reused:
        return f"| {name} | {seconds:.0f} | in this invocation |"
    import json

    wall = json.loads((root / name / "summary.json").read_text()).get("wall_s")
    return f"| {name} | {wall:.0f} | earlier (reused) |" if wall is not None else f"| {name} | ? | earlier (reused) |"


def run_demo(out: Path, config: Optional[Path] = None, threads: Optional[int] = None, jobs: int = 0) -> Path:
    """``neox-cpt demo``: data, then the runs of ``demo_plan`` (configs/local/demo.yml: sotu -> German; without
    the German man pages demo_english.yml: sotu -> Bible, under ``out/english``), then the report.

    The D0 run trains alone with the config's threads (0 = every core); then the two continual runs train side
    by side, ``jobs`` at a time (0: one per core, at most 2) with one torch thread each. ``threads`` overrides
    the threads of every run."""
    from neox_cpt.local.demo_data import prepare_demo_data
    from neox_cpt.local.demo_report import write_demo_report
    from neox_cpt.local.report import load_run

    if config is not None:  # a user's --config is checked before the data preparation, which takes minutes
        demo_plan(load_yaml(config), where=str(config))
    manifest = prepare_demo_data()
    root = out
    if config is None:
        config = repo_configs_dir() / "demo.yml"
        if "german" not in manifest.source_names:
            logger.warning("demo | the German man pages are unavailable (%s): falling back to the English pair "
                           "sotu -> bible (configs/local/demo_english.yml)", dict(manifest.unavailable).get("german"))
            config, root = repo_configs_dir() / "demo_english.yml", out / "english"
    base = load_yaml(config)
    runs = demo_plan(base, where=str(config))
    d0, d1 = runs[0].stages[0].sources[0][0], runs[1].stages[0].sources[0][0]
    missing = [s for s in (d0, d1) if s not in manifest.source_names]
    if missing and (base.get("data") or {}).get("manifest") == "demo":
        raise ValueError(f"{config}: sources {missing} are not in the demo data ({list(manifest.source_names)}; "
                         f"unavailable: {dict(manifest.unavailable)})")
    d0_run, branches = runs[0], runs[1:]
    jobs = jobs if jobs > 0 else default_jobs(len(branches))
    d0_base = {**base, "threads": threads} if threads is not None else base
    branch_threads = threads if threads is not None else (1 if jobs > 1 else base.get("threads", 0))
    logger.info("demo | %s, then %s and %s (%d at a time, %s torch thread(s) each)", d0_run.name, *[r.name for r in
                branches], jobs, branch_threads)
    t0 = time.perf_counter()
    times = run_plan([d0_run], d0_base, root, lambda r: [d0, d1])
    times.update(run_plan(branches, {**base, "threads": branch_threads}, root, lambda r: [d0, d1], jobs=jobs))
    loaded = [load_run(root / r.name, name=r.label) for r in runs]
    return write_demo_report(loaded, root / "report", d0=d0, d1=d1, config=config, root=root,
                             wall_s=time.perf_counter() - t0, manifest=manifest)
