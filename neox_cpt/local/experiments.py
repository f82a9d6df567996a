"""The paper's comparison at laptop scale, as data: which runs, which stages, which token budgets.

``comparison_plan(shifts, budget)`` lists the runs of the comparison (PAPER.md) for each shift, D0 first:
a D0-only model (cosine) and a D0 model on the infinite schedule (pre-anneal), shared by every shift; then
per shift D1 from scratch, re-training on the union with the same total tokens, and continual runs from
the D0 checkpoint: re-warm + re-decay with 0 %, a lower, the recommended and a higher replay share, constant
eta_min (no re-warm) and the infinite schedule (no re-warm, anneal at the end), the last two with the
recommended replay. Replay is compute-equivalent: it replaces new tokens in a stage of fixed size.

    >>> from neox_cpt.local.experiments import comparison_plan, FULL
    >>> runs = comparison_plan(("german",), FULL)
    >>> [r.name for r in runs][:4]
    ['d0', 'd0_infinite', 'german/d1_scratch', 'german/union']
    >>> cpt = next(r for r in runs if r.name == "german/cpt_replay25")
    >>> cpt.init_from, dict(cpt.stages[0].sources)
    ('d0', {'german': 0.75, 'sotu': 0.25})

``demo_plan(config)`` plans ``neox-cpt demo`` from a two-stage run config: its first stage alone (the D0 model),
then its continual stage twice from that model, side by side: without replay and with the config's replay.

``neox_cpt.local.runs`` turns planned runs into trainer configs, trains them and reports.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

D0_SOURCE = "sotu"
"""The pre-training data of every shift: State of the Union addresses (English)."""


@dataclass(frozen=True)
class Shift:
    """A distribution shift: the new data and the paper's recommended replay share for it."""

    d1: str
    """Source name of the new data."""
    replay_frac: float
    """Recommended replay share (paper: 25 % for a strong shift, 5 % for a weak one)."""
    low_replay_frac: float
    """The 'less replay' comparison point (a share the paper also tried for this kind of shift)."""
    high_replay_frac: float = 0.5
    """The 'more replay' comparison point."""


SHIFTS: Dict[str, Shift] = {
    "german": Shift("german", 0.25, 0.05),  # strong shift: English -> German man pages
    "bible": Shift("bible", 0.05, 0.01),    # weak shift: English speeches -> English King James Bible
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


# FULL trains 4 x d0 + 16 x d1 = 16.6M tokens: 50.7 min on 2 idle cores, two single-thread runs at a time
# (docs/results.md); REDUCED a quarter of that (for a busy machine). A continual stage of 0.4 x D0 costs 29 %
# of the union re-training's tokens (the paper: 40 % for German, 50 % for SlimPajama).
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
    replay_source: str = D0_SOURCE
    """The source that is replayed (the D0 data)."""


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
    low, rec, high = shift.low_replay_frac, shift.replay_frac, shift.high_replay_frac
    pct = lambda x: f"{round(100 * x)}"  # noqa: E731
    return [
        RunPlan(f"{shift.d1}/d1_scratch", f"{shift.d1} from scratch",
                (StagePlan("d1", ((shift.d1, 1.0),), budget.d1_tokens, COSINE),)),
        RunPlan(f"{shift.d1}/union", f"re-train on {D0_SOURCE} ∪ {shift.d1} (same total tokens)",
                (StagePlan("union", union_sources, total, COSINE),), tags=("union",)),
        _cpt(shift, "cpt_replay0", "CPT re-warm + re-decay, 0 % replay", 0.0, budget, COSINE, tags=("no_replay",)),
        _cpt(shift, f"cpt_replay{pct(low)}", f"CPT re-warm + re-decay, {pct(low)} % replay", low, budget, COSINE),
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


# ------------------------------------------------------------------------------------------------- the demo

_DEMO_STAGE_KEYS = {"name", "sources", "tokens", "replay_frac", "replay_sources", "init_from", "reset_optimizer"}


def _one_source(sources: Any, where: str) -> str:
    names = list(sources) if isinstance(sources, (list, tuple, dict)) else []
    if len(names) != 1:
        raise ValueError(f"{where}.sources = {sources!r}: the demo needs exactly one source here "
                         "(e.g. {sotu: 1.0}); for blends use `neox-cpt train`")
    return str(names[0])


def demo_plan(config: Mapping[str, Any], where: str = "config") -> List[RunPlan]:
    """The runs of ``neox-cpt demo`` from a two-stage run config (``configs/local/demo.yml``): ``d0`` = its
    first stage alone; ``<d1>/cpt_replay0`` and ``<d1>/cpt_replay<pct>`` = its second stage from the end of
    ``d0`` without replay and with the config's ``replay_frac`` (compute-equivalent: same tokens, replay
    replaces new data). The D0 model is trained once and serves both continual runs.

    >>> cfg = {"stages": [{"name": "d0", "sources": {"sotu": 1.0}, "tokens": 1000},
    ...                   {"name": "d1", "sources": {"german": 1.0}, "tokens": 400, "replay_frac": 0.25,
    ...                    "replay_sources": {"sotu": 1.0}}]}
    >>> [(r.name, r.init_from, dict(r.stages[0].sources)) for r in demo_plan(cfg)][1:]
    [('german/cpt_replay0', 'd0', {'german': 1.0}), ('german/cpt_replay25', 'd0', {'german': 0.75, 'sotu': 0.25})]
    """
    stages = config.get("stages")
    if not isinstance(stages, list) or len(stages) != 2:
        raise ValueError(f"{where}: stages must be two stages (pre-training on D0, then the continual stage on "
                         f"D1); got {len(stages) if isinstance(stages, list) else stages!r}")
    for i, stage in enumerate(stages):
        unknown = sorted(set(stage) - _DEMO_STAGE_KEYS - {k for k in stage if str(k).startswith("cpt_")})
        if unknown:
            raise ValueError(f"{where}: stages[{i}] sets {unknown}, which the demo does not pass on; remove them "
                             f"(it keeps {sorted(_DEMO_STAGE_KEYS)} and the cpt_ schedule keys)")
        if not isinstance(stage.get("tokens"), int) or stage["tokens"] <= 0:
            raise ValueError(f"{where}: stages[{i}].tokens = {stage.get('tokens')!r}: give the stage's budget as a "
                             "positive number of tokens (e.g. tokens: 400000)")
    first, second = stages
    d0 = _one_source(first.get("sources"), f"{where}: stages[0]")
    d1 = _one_source(second.get("sources"), f"{where}: stages[1]")
    replay = float(second.get("replay_frac") or 0.0)
    replayed = dict(second.get("replay_sources") or {})
    if not 0.0 < replay < 1.0 or list(replayed) != [d0]:
        raise ValueError(f"{where}: stages[1] has replay_frac = {second.get('replay_frac')!r}, replay_sources = "
                         f"{replayed or None!r}: the demo compares no replay with replay of the D0 data; set "
                         f"replay_frac between 0 and 1 and replay_sources: {{{d0}: 1.0}}")
    if d1 == d0:
        raise ValueError(f"{where}: stages[1].sources = {{{d1}: ...}} is the D0 source; give new data")
    if first.get("init_from", "scratch") != "scratch":
        raise ValueError(f"{where}: stages[0].init_from = {first['init_from']!r}: the demo pre-trains its D0 model "
                         "from scratch; remove the key")
    if second.get("init_from", "previous") not in ("previous", first.get("name", "stage0")):
        raise ValueError(f"{where}: stages[1].init_from = {second['init_from']!r}: the continual stage starts from "
                         "the end of the first stage (previous)")
    if second.get("reset_optimizer", True) is not True:
        raise ValueError(f"{where}: stages[1].reset_optimizer = {second['reset_optimizer']!r}: the demo resets the "
                         "optimizer at the continual stage, as the paper does; remove the key")
    schedule = lambda s: tuple((k, v) for k, v in s.items() if str(k).startswith("cpt_"))  # noqa: E731
    d0_run = RunPlan("d0", f"pre-trained on {d0} (D0)", (StagePlan(str(first.get("name", "d0")), ((d0, 1.0),),
                                                         first["tokens"], schedule(first)),), tags=("d0",))
    name = str(second.get("name", "d1"))
    runs = [d0_run]
    for frac, tag in ((0.0, "no_replay"), (replay, "recommended")):
        sources = ((d1, round(1.0 - frac, 6)),) + (((d0, frac),) if frac > 0 else ())
        pct = f"{100 * frac:g}"
        label = f"continued on {d1}, " + (f"{pct} % replay" if frac > 0 else "no replay")
        runs.append(RunPlan(f"{d1}/cpt_replay{pct}", label,
                            (StagePlan(name, sources, second["tokens"], schedule(second), replay_frac=frac,
                                       replay_source=d0),), init_from="d0", tags=(tag,)))
    return runs
