"""The numbers of the report: load local run directories and compute the paper-style table.

The pure part (``load_run``, ``infer_roles``, ``table_rows``) turns run directories (the "Local run
directory" contract of docs/local.md: ``stages.json``, ``metrics.jsonl``, ``summary.json``) into numbers:
per run the final D0 and D1 validation loss, their mean (the paper's AVG), the tokens it trained, its
compute relative to re-training on the union, and forgetting (rise of the D0 loss over the D0-only model)
and adaptation (the D1 loss). :mod:`neox_cpt.local.report_render` writes them out with plots.

    >>> from neox_cpt.local.report import load_run, infer_roles, table_rows
    >>> runs = [load_run(p) for p in ("runs/compare/d0_only", "runs/compare/cpt_25")]  # doctest: +SKIP
    >>> for row in table_rows(runs, infer_roles(runs)): print(row.name, row.avg_loss)  # doctest: +SKIP

Compute is counted as the paper does: a run that continues from a D0 model (its own first stage or
another run's checkpoint) counts only its tokens after D0 pre-training, which is already paid for.
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    """One entry of ``stages.json``."""

    name: str
    """Stage name (``d0``, ``d1``, ...)."""
    index: int
    """Position of the stage in its run (0-based)."""
    start_step: int
    """Global step at which the stage starts."""
    num_steps: int
    """Optimizer updates in the stage."""
    start_tokens: int
    """Lineage tokens already trained when the stage starts."""
    num_tokens: int
    """Tokens the stage trains."""
    replay_frac: float
    """Share of each batch drawn from earlier data."""
    train_sources: Mapping[str, float]
    """Training source name -> share of the stage's samples (replay sources included)."""
    valid_sources: Tuple[str, ...]
    """Sources whose validation loss is evaluated."""
    schedule: Optional[Mapping[str, Any]] = None
    """``StageSchedule.to_dict()`` of the stage, when present."""
    init_from: Optional[str] = None
    """Checkpoint (path or stage name) the stage starts from; None for the run's own previous state."""


@dataclass(frozen=True)
class Run:
    """A loaded run directory."""

    name: str
    """Label in tables and legends (the directory name)."""
    path: Path
    """The run directory."""
    stages: Tuple[Stage, ...]
    """Its stages in order."""
    train: Tuple[Mapping[str, Any], ...]
    """``kind == "train"`` records of metrics.jsonl."""
    evals: Tuple[Mapping[str, Any], ...]
    """``kind == "eval"`` records of metrics.jsonl."""
    summary: Mapping[str, Any]
    """summary.json ({} while the run has not finished)."""

    def final_loss(self, source: str) -> Optional[float]:
        """Final validation loss of ``source``: summary.json's, else the last eval record's; None if never evaluated."""
        final = self.summary.get("final") or {}
        if source in final:
            return float(final[source])
        hits = [e for e in self.evals if e.get("source") == source]
        return float(hits[-1]["loss"]) if hits else None

    def stage_end_loss(self, stage_index: int, source: str) -> Optional[float]:
        """The last validation loss of ``source`` evaluated during stage ``stage_index``."""
        hits = [e for e in self.evals if e.get("source") == source and e.get("stage") == stage_index]
        if not hits:  # some writers name the stage instead of numbering it
            name = self.stages[stage_index].name
            hits = [e for e in self.evals if e.get("source") == source and e.get("stage") == name]
        return float(hits[-1]["loss"]) if hits else None

    @property
    def tokens_trained(self) -> int:
        """Tokens this run's own stages trained (summary.json, else the stages' planned tokens)."""
        if "tokens_trained" in self.summary:
            return int(self.summary["tokens_trained"])
        return sum(s.num_tokens for s in self.stages)

    @property
    def sources(self) -> Tuple[str, ...]:
        """Validation sources in first-seen order."""
        seen: Dict[str, None] = {}
        for s in self.stages:
            seen.update(dict.fromkeys(s.valid_sources))
        seen.update(dict.fromkeys(e["source"] for e in self.evals))
        return tuple(seen)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); the run may have been interrupted while writing it — "
                         "re-run or resume it") from None


def _read_metrics(path: Path) -> List[Mapping[str, Any]]:
    records: List[Mapping[str, Any]] = []
    lines = path.read_text().splitlines() if path.exists() else []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):  # a run still writing: its last line may be partial
                logger.warning("%s: ignoring a partial last line", path)
                continue
            raise ValueError(f"{path}: line {number} is not valid JSON: {line[:80]!r}; "
                             "the file is corrupted (resume the run to rewrite it)") from None
    return records


def _stage(entry: Mapping[str, Any], path: Path) -> Stage:
    try:
        return Stage(
            name=str(entry["name"]), index=int(entry["index"]), start_step=int(entry["start_step"]),
            num_steps=int(entry["num_steps"]), start_tokens=int(entry.get("start_tokens", 0)),
            num_tokens=int(entry["num_tokens"]), replay_frac=float(entry.get("replay_frac") or 0.0),
            train_sources=dict(entry.get("train_sources") or {}),
            valid_sources=tuple(entry.get("valid_sources") or ()),
            schedule=entry.get("schedule"), init_from=entry.get("init_from") or None)
    except KeyError as exc:
        raise ValueError(f"{path}: a stage entry lacks the key {exc.args[0]!r} ({dict(entry)!r}); "
                         "stages.json must follow the Local run directory format of docs/local.md") from None


def load_run(run_dir: "os.PathLike[str] | str", name: Optional[str] = None) -> Run:
    """Load one run directory; FileNotFoundError naming the missing file if it is not one."""
    path = Path(run_dir)
    stages_path = path / "stages.json"
    if not stages_path.is_file():
        raise FileNotFoundError(f"{stages_path} not found: {str(path)!r} is not a run directory "
                                "(give directories written by `neox-cpt train`)")
    stages = tuple(_stage(e, stages_path) for e in _read_json(stages_path))
    records = _read_metrics(path / "metrics.jsonl")
    summary_path = path / "summary.json"
    summary = _read_json(summary_path) if summary_path.is_file() else {}
    return Run(name=name or path.resolve().name, path=path, stages=stages,
               train=tuple(r for r in records if r.get("kind") == "train"),
               evals=tuple(r for r in records if r.get("kind") == "eval"), summary=summary)


# ----------------------------------------------------------------------------------------------- roles


@dataclass(frozen=True)
class Roles:
    """Which validation source is the old data (D0) and which the new (D1)."""

    d0: str
    """The pre-training source."""
    d1: str
    """The new source of the continual stage."""


def parent_run(run: Run, runs: Sequence[Run]) -> Optional[Run]:
    """The input run whose checkpoint ``run``'s first stage starts from, if it is among ``runs``."""
    init = run.stages[0].init_from if run.stages else None
    if not init:
        return None
    target = Path(init).resolve()
    for other in runs:
        root = other.path.resolve()
        if other is not run and (target == root or root in target.parents):
            return other
    return None


def infer_roles(runs: Sequence[Run], d0: Optional[str] = None, d1: Optional[str] = None) -> Roles:
    """D0 = the sources trained before a continual stage, D1 = those it adds (own stages or via a parent run)."""
    if d0 and d1:
        return Roles(d0, d1)
    for run in runs:
        lineage = list(run.stages)
        parent = parent_run(run, runs)
        if parent is not None:
            lineage = list(parent.stages) + lineage
        if len(lineage) < 2:
            continue
        old = [s for s in lineage[0].train_sources]
        new = [s for s in lineage[-1].train_sources if s not in old]
        if len(old) == 1 and len(new) == 1:
            return Roles(d0 or old[0], d1 or new[0])
    raise ValueError("cannot tell which source is D0 and which is D1: no input run continues a one-source model "
                     "on one new source; pass --d0 SOURCE --d1 SOURCE")


def run_kind(run: Run, roles: Roles, runs: Sequence[Run]) -> str:
    """``d0-only``, ``d1-only``, ``union`` or ``cpt`` (continues a D0 model on D1)."""
    trained = [set(s.train_sources) for s in run.stages]
    parent = parent_run(run, runs)
    if parent is not None and any(roles.d1 in t for t in trained):
        return "cpt"
    if all(t <= {roles.d0} for t in trained):
        return "d0-only"
    if all(t <= {roles.d1} for t in trained):
        return "d1-only"
    if trained and trained[0] == {roles.d0}:
        return "cpt"
    return "union"


def d0_reference(run: Run, roles: Roles, runs: Sequence[Run]) -> Optional[float]:
    """D0 loss of the D0-only model this run is compared with: the end of its own D0 stage(s), else its
    parent run's final D0 loss, else (a run started from a checkpoint) its own evaluation before the first
    update, else the first D0-only input run's final D0 loss."""
    d0_stages = [s for s in run.stages if set(s.train_sources) <= {roles.d0}]
    if d0_stages and len(d0_stages) < len(run.stages):
        loss = run.stage_end_loss(d0_stages[-1].index, roles.d0)
        if loss is not None:
            return loss
    parent = parent_run(run, runs)
    if parent is not None and run_kind(parent, roles, runs) == "d0-only":
        return parent.final_loss(roles.d0)
    if run.stages and run.stages[0].init_from:  # the evaluation before its first update: the model it started from
        start = [e for e in run.evals if e.get("source") == roles.d0 and e.get("stage") == 0
                 and e.get("stage_step") == 0]
        if start:
            return float(start[0]["loss"])
    for other in runs:
        if run_kind(other, roles, runs) == "d0-only":
            return other.final_loss(roles.d0)
    return None


def counted_tokens(run: Run, roles: Roles, runs: Sequence[Run]) -> int:
    """Tokens charged to the run: a continual run's D0 pre-training stages are already paid for."""
    if run_kind(run, roles, runs) != "cpt":
        return run.tokens_trained
    paid = sum(s.num_tokens for s in run.stages if set(s.train_sources) <= {roles.d0})
    return run.tokens_trained - paid


@dataclass(frozen=True)
class Row:
    """One line of the paper-style table."""

    name: str
    """Run label."""
    kind: str
    """``d0-only``, ``d1-only``, ``union`` or ``cpt``."""
    d0_loss: Optional[float]
    """Final D0 validation loss."""
    d1_loss: Optional[float]
    """Final D1 validation loss (adaptation: lower is better)."""
    avg_loss: Optional[float]
    """Plain mean of the two (the paper's AVG)."""
    tokens: int
    """Tokens charged to the run (``counted_tokens``)."""
    compute_vs_union: Optional[float]
    """``tokens`` / the union run's tokens; None without a union run."""
    forgetting: Optional[float]
    """Final D0 loss minus the D0-only model's D0 loss (``d0_reference``)."""


def table_rows(runs: Sequence[Run], roles: Roles) -> List[Row]:
    """The paper's table, one row per run, in input order."""
    unions = [r for r in runs if run_kind(r, roles, runs) == "union"]
    union_tokens = max((r.tokens_trained for r in unions), default=0)
    rows = []
    for run in runs:
        d0, d1 = run.final_loss(roles.d0), run.final_loss(roles.d1)
        ref = d0_reference(run, roles, runs)
        tokens = counted_tokens(run, roles, runs)
        rows.append(Row(
            name=run.name, kind=run_kind(run, roles, runs), d0_loss=d0, d1_loss=d1,
            avg_loss=(d0 + d1) / 2 if d0 is not None and d1 is not None else None, tokens=tokens,
            compute_vs_union=tokens / union_tokens if union_tokens else None,
            forgetting=d0 - ref if d0 is not None and ref is not None else None))
    return rows


def lr_curve(run: Run) -> Tuple[List[int], List[float]]:
    """(global steps, LR) over the run's stages from their schedules (from each stage's position 0, so a
    re-warm shows its start from 0); the train records' LR as a fallback."""
    steps: List[int] = []
    lrs: List[float] = []
    if run.stages and all(s.schedule for s in run.stages):
        from neox_cpt.schedules.schedule import StageSchedule

        for stage in run.stages:
            schedule = StageSchedule.from_dict(stage.schedule)  # type: ignore[arg-type]
            stride = max(1, stage.num_steps // 400)
            for pos in list(range(0, stage.num_steps + 1, stride)) + [stage.num_steps]:
                steps.append(stage.start_step + pos)
                lrs.append(schedule.lr_at(pos))
        return steps, lrs
    return [int(r["global_step"]) for r in run.train], [float(r["lr"]) for r in run.train]


def fmt(value: Optional[float], spec: str = ".3f") -> str:
    """Table cell: ``value`` formatted, or ``n/a``."""
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def fmt_tokens(num_tokens: int) -> str:
    """1234567 -> ``1.23M``."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(num_tokens) >= scale:
            return f"{num_tokens / scale:.2f}{suffix}"
    return str(num_tokens)
