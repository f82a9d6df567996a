"""The schedule's ``cpt_`` keys: names, meanings, which recipe reads which, and the typo check.

The docs' key table (docs/schedules.md) mirrors ``SCHEDULE_KEYS``; a test checks every key is documented.

    >>> from neox_cpt.schedules.keys import check_unknown_keys
    >>> check_unknown_keys({"cpt_replay_frac": 0.05, "cpt_warmup_frac": 0.01})  # other owners' keys pass
    >>> check_unknown_keys({"cpt_warmup_fraction": 0.01})
    Traceback (most recent call last):
    ...
    ValueError: unknown schedule key cpt_warmup_fraction = 0.01; did you mean 'cpt_warmup_frac'?
"""
from __future__ import annotations

import difflib
from typing import Any, Dict, Mapping

SCHEDULE_KEYS: Dict[str, str] = {
    "cpt_lr_schedule": "recipe: cosine | constant | rewarm_constant | infinite | wsd (default cosine)",
    "cpt_lr_max": "peak LR (default: NeoX optimizer.params.lr)",
    "cpt_lr_min": "final LR (default 0.1 x cpt_lr_max)",
    "cpt_lr_const": "infinite: plateau LR (default (max+min)/2); constant: the LR held (default cpt_lr_min)",
    "cpt_warmup_frac": "warmup duration as a fraction of the stage (default 0.01)",
    "cpt_warmup_iters": "warmup duration in steps",
    "cpt_cooldown_shape": "infinite cooldown shape: cosine | inv_sqrt (default cosine)",
    "cpt_inv_sqrt_alpha": "alpha of the inv_sqrt shape (default 10)",
    "cpt_cooldown_end_frac": "infinite: END POINT of the cooldown as a fraction of the stage (default 0.6)",
    "cpt_cooldown_end_iter": "infinite: END POINT of the cooldown in stage steps",
    "cpt_cooldown_frac": "infinite: cooldown DURATION (after warmup) as a fraction of the stage",
    "cpt_cooldown_iters": "infinite: cooldown DURATION (after warmup) in steps",
    "cpt_infinite_first_stage": "infinite: true = warmup+cooldown here; false = constant only (default true)",
    "cpt_anneal_start_frac": "infinite: START POINT of the anneal as a fraction of the stage",
    "cpt_anneal_start_iter": "infinite: START POINT of the anneal in stage steps",
    "cpt_anneal_frac": "infinite: anneal DURATION (ending at the stage end) as a fraction of the stage",
    "cpt_anneal_iters": "infinite: anneal DURATION (ending at the stage end) in steps",
    "cpt_decay_shape": "wsd decay shape: linear | cosine | inv_sqrt | exp (default linear)",
    "cpt_decay_frac": "wsd: decay DURATION (ending at the stage end) as a fraction of the stage (default 0.2)",
    "cpt_decay_iters": "wsd: decay DURATION in steps",
}
"""The schedule keys this module owns, with their meaning (the docs' key table)."""

SHARED_KEYS = ("cpt_stage_iters", "cpt_stage_tokens", "cpt_stage_start_iter", "cpt_stage_name")
"""Stage keys owned by the stages code that the schedule also reads."""

FAMILY_PREFIXES = ("cpt_lr", "cpt_warmup", "cpt_cooldown", "cpt_anneal", "cpt_decay", "cpt_inv_sqrt",
                   "cpt_infinite")
"""An unknown key with one of these prefixes is a typo of a schedule key: rejected with a suggestion."""

NEOX_LR_KEYS = ("min_lr", "warmup", "lr_decay_style", "lr_decay_iters")
"""NeoX's own schedule keys: superseded by the cpt_ keys (a warning names them when present)."""

_COMMON = {"cpt_lr_schedule", "cpt_lr_max", "cpt_lr_min"}
_WARMUP = {"cpt_warmup_frac", "cpt_warmup_iters"}
RECIPE_KEYS: Dict[str, set] = {
    "cosine": _COMMON | _WARMUP,
    "constant": _COMMON | {"cpt_lr_const"},
    "rewarm_constant": _COMMON | _WARMUP,
    "infinite": _COMMON | _WARMUP | {k for k in SCHEDULE_KEYS if k.startswith(
        ("cpt_cooldown", "cpt_anneal", "cpt_infinite", "cpt_inv_sqrt", "cpt_lr_const"))},
    "wsd": _COMMON | _WARMUP | {"cpt_decay_shape", "cpt_decay_frac", "cpt_decay_iters", "cpt_inv_sqrt_alpha"},
}


def check_unknown_keys(cfg: Mapping[str, Any]) -> None:
    """Reject unknown keys of the schedule family (typos) with a 'did you mean'; ignore everything else."""
    known = list(SCHEDULE_KEYS) + list(SHARED_KEYS)
    for key in cfg:
        if isinstance(key, str) and key.startswith(FAMILY_PREFIXES) and key not in SCHEDULE_KEYS:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"the schedule keys are {sorted(SCHEDULE_KEYS)}"
            raise ValueError(f"unknown schedule key {key} = {cfg[key]!r}; {hint}")
