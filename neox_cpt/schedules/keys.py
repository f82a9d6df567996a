"""The schedule's and the stage's ``cpt_`` keys (each published once, as ``KeySpec``), and the typo check.

Every plugin key is declared once by the part that reads it: ``SCHEDULE_KEYS`` and ``STAGE_KEYS`` here,
``neox_cpt.data.keys.DATA_KEYS`` for the replay index. The NeoX graft (``neox_cpt.neox.keys``) and the key
tables of docs/schedules.md, docs/replay.md and docs/neox.md are generated from these mappings
(``key_table``); tests check the docs are up to date.

    >>> SCHEDULE_KEYS["cpt_warmup_frac"].type, SCHEDULE_KEYS["cpt_warmup_frac"].default
    (<class 'float'>, '0.01')
    >>> from neox_cpt.schedules.keys import check_unknown_keys
    >>> check_unknown_keys({"cpt_replay_frac": 0.05, "cpt_warmup_frac": 0.01})  # other owners' keys pass
    >>> check_unknown_keys({"cpt_warmup_fraction": 0.01})
    Traceback (most recent call last):
    ...
    ValueError: unknown schedule key cpt_warmup_fraction = 0.01; did you mean 'cpt_warmup_frac'?
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional

NEOX_TYPES = (int, float, str, bool, list)
"""Types a plugin key may have: plain types NeoX's ``validate_types`` accepts (a float key also takes ints)."""


@dataclass(frozen=True)
class KeySpec:
    """One plugin key: its type, its default and its meaning (the single description; docs are generated)."""

    type: type
    """Value type, one of ``NEOX_TYPES`` (the NeoX graft declares the key with this type)."""
    default: str
    """What applies when the key is unset, as shown in the docs (``—``: nothing / required). NeoX itself holds
    null for every plugin key, so unset keys stay absent from the config the core reads."""
    doc: str
    """Meaning (markdown, one line)."""

    def __post_init__(self) -> None:
        if self.type not in NEOX_TYPES:
            raise TypeError(f"KeySpec type {self.type!r} is not one of {NEOX_TYPES} (NeoX validate_types)")


def key_table(specs: Mapping[str, KeySpec], extra: Optional[Dict[str, Callable[[str], str]]] = None) -> str:
    """A markdown table of ``specs`` (key, type, meaning, default, then one column per ``extra`` item)."""
    extra = extra or {}
    head = ["key", "type", "meaning", "default", *extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, spec in specs.items():
        cells = [f"`{key}`", spec.type.__name__, spec.doc.replace("|", "/"), spec.default]
        lines.append("| " + " | ".join(cells + [column(key) for column in extra.values()]) + " |")
    return "\n".join(lines)


_F, _I, _S, _B = float, int, str, bool
SCHEDULE_KEYS: Dict[str, KeySpec] = {
    "cpt_lr_schedule": KeySpec(_S, "`cosine`", "recipe: `cosine`, `constant`, `rewarm_constant`, `infinite` or `wsd`"),
    "cpt_lr_max": KeySpec(_F, "NeoX `optimizer.params.lr` (or `lr`)", "peak LR (warmup target)"),
    "cpt_lr_min": KeySpec(_F, "0.1 × `cpt_lr_max`", "final LR (end of the decay / anneal)"),
    "cpt_lr_const": KeySpec(_F, "(max+min)/2; `constant`: `cpt_lr_min`", "infinite: plateau η_const; `constant`: "
                            "the LR held"),
    "cpt_warmup_frac": KeySpec(_F, "0.01", "warmup duration / stage length (the first stage only for infinite)"),
    "cpt_warmup_iters": KeySpec(_I, "—", "warmup duration in steps"),
    "cpt_cooldown_shape": KeySpec(_S, "`cosine`", "infinite cooldown shape: `cosine` or `inv_sqrt`"),
    "cpt_inv_sqrt_alpha": KeySpec(_F, "10", "α of the inv_sqrt shape h(x) = 1/√(1+αx) − 1"),
    "cpt_cooldown_end_frac": KeySpec(_F, "0.6", "infinite, first stage: **end point** T_cd / stage length"),
    "cpt_cooldown_end_iter": KeySpec(_I, "—", "infinite, first stage: **end point** T_cd in stage steps"),
    "cpt_cooldown_frac": KeySpec(_F, "—", "infinite, first stage: cooldown **duration** (T_cd − T_w) / stage length"),
    "cpt_cooldown_iters": KeySpec(_I, "—", "infinite, first stage: cooldown **duration** T_cd − T_w in steps"),
    "cpt_infinite_first_stage": KeySpec(_B, "`true`", "infinite: `true` = warmup + cooldown here; `false` = "
                                        "constant only"),
    "cpt_anneal_start_frac": KeySpec(_F, "no anneal", "infinite: **start point** T_ann / stage length"),
    "cpt_anneal_start_iter": KeySpec(_I, "no anneal", "infinite: **start point** T_ann in stage steps"),
    "cpt_anneal_frac": KeySpec(_F, "no anneal", "infinite: anneal **duration** (T − T_ann) / stage length, ending "
                               "at the stage end"),
    "cpt_anneal_iters": KeySpec(_I, "no anneal", "infinite: anneal **duration** T − T_ann in steps, ending at the "
                                "stage end"),
    "cpt_decay_shape": KeySpec(_S, "`linear`", "wsd decay shape: `linear`, `cosine`, `inv_sqrt` or `exp`"),
    "cpt_decay_frac": KeySpec(_F, "0.2", "wsd: decay **duration** / stage length, ending at the stage end"),
    "cpt_decay_iters": KeySpec(_I, "—", "wsd: decay **duration** in steps"),
}
"""The schedule keys (neox_cpt.schedules.config reads them)."""

STAGE_KEYS: Dict[str, KeySpec] = {
    "cpt_stage_name": KeySpec(_S, "— (`stage` for index names)", "Name of this stage (e.g. `d1_slimpajama`). "
                              "Required with `cpt_init_checkpoint`: it is written next to every checkpoint of the "
                              "stage (`neox_cpt_stage.json`) and is how a relaunch with the same YAML knows it "
                              "resumes this stage instead of starting it; also names the index directory."),
    "cpt_init_checkpoint": KeySpec(_S, "— (not a stage run: plain NeoX resume semantics)", "The checkpoint this "
                                   "stage starts from: a NeoX save directory (its `latest` is used) or one "
                                   "`.../global_stepN` directory of it. Loaded on the first launch only; once "
                                   "`save` holds a checkpoint of this stage, relaunching resumes from there."),
    "cpt_reset_optimizer": KeySpec(_B, "`false`", "Start the stage with a fresh optimizer state (weights only, as "
                                   "NeoX `finetune` but keeping the global iteration); false: AdamW moments are "
                                   "loaded with the weights."),
    "cpt_stage_iters": KeySpec(_I, "NeoX `train_iters`", "Number of optimizer iterations in this stage. The run "
                               "ends at global iteration start + this; schedule and data index are sized to it. "
                               "In a stage `train_iters` is then rewritten to the absolute end iteration."),
    "cpt_stage_tokens": KeySpec(_I, "—", "Length of this stage in training tokens instead of iterations: "
                                "⌈tokens / (global batch × `seq_length`)⌉ iterations. Give `cpt_stage_iters` or "
                                "this, not both."),
    "cpt_continue_parent_data": KeySpec(_B, "`false`", "Anneal branch: train on the data of the stage that wrote "
                                        "`cpt_init_checkpoint`, continuing where it stopped (that stage's replay "
                                        "index, named in the checkpoint's `neox_cpt_stage.json`, from its data "
                                        "position) instead of an index of this config's data keys (give none). The "
                                        "branch must end before the parent's index does."),
    "cpt_stage_start_iter": KeySpec(_I, "the iteration of `cpt_init_checkpoint`", "Global iteration this stage "
                                    "starts at. In NeoX a cross-check (a first launch whose checkpoint differs "
                                    "stops); in a plan (`neox-cpt schedule`) where the stage is drawn."),
}
"""The stage keys: which stage, from which checkpoint, how long (length: ``neox_cpt.schedules.stage``)."""

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


def recipes_reading(key: str) -> str:
    """The recipes that read ``key`` (the docs' "recipes" column)."""
    names = [name for name, keys in RECIPE_KEYS.items() if key in keys]
    return "all" if len(names) == len(RECIPE_KEYS) else ", ".join(names)


def schedule_key_table() -> str:
    """The key table of docs/schedules.md."""
    return key_table(SCHEDULE_KEYS, {"recipes": recipes_reading})


def plugin_keys() -> Dict[str, KeySpec]:
    """Every plugin key of every family (schedule, stage and the data keys of ``neox_cpt.data.keys``)."""
    from neox_cpt.data.keys import DATA_KEYS  # lazy: data.keys imports this module

    return {**SCHEDULE_KEYS, **STAGE_KEYS, **DATA_KEYS}


def check_unknown_keys(cfg: Mapping[str, Any]) -> None:
    """Reject an unknown ``cpt_`` key (a typo of a plugin key) with a 'did you mean'; ignore other keys."""
    known = plugin_keys()
    for key in cfg:
        if isinstance(key, str) and key.startswith("cpt_") and key not in known:
            close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
            family = "schedule" if key.startswith(FAMILY_PREFIXES) else "plugin"
            hint = (f"did you mean {close[0]!r}?" if close
                    else f"the {family} keys are {sorted(SCHEDULE_KEYS if family == 'schedule' else known)}")
            raise ValueError(f"unknown {family} key {key} = {cfg[key]!r}; {hint}")


NEOX_READ_KEYS = ("train_iters", "train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                  "seq_length", "seed", "optimizer", "lr", "eval_interval", "eval_iters", "data_path",
                  "train_data_paths", "train_data_weights", "valid_data_paths", "save", "load", "finetune", "min_lr",
                  "warmup", "lr_decay_style", "lr_decay_iters")
"""The NeoX keys the core reads: a key one or two typos away from one of these is refused by
``check_config_keys`` (no NeoX key is that close to another of them, checked against NeoX ea7aefd)."""


def _edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance (insert, delete, substitute, swap two neighbours)."""
    prev2: list = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def _type_error(value: Any, spec: KeySpec, numeric_list: bool = False) -> Optional[str]:
    """Why ``value`` does not fit ``spec`` (None when it does). A float key takes ints, an int key takes
    whole floats (1.0e3), a list key also takes one item (text or a number)."""
    want, got = spec.type, type(value).__name__
    got = ("an " if got[0] in "aeiou" else "a ") + got
    if want is bool:
        return None if isinstance(value, bool) else f"must be true or false, not {got}"
    if isinstance(value, bool):
        return f"must be a {'number' if want in (int, float) else want.__name__}, not true/false"
    if want is float:
        if isinstance(value, (int, float)):
            return None
        return "is not a number" + (" (YAML reads 1e-4 as text: write 1.0e-4)" if isinstance(value, str)
                                    else f" but {got}")
    if want is int:
        if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
            return None
        return f"must be a whole number (write e.g. 88457, not 8.8e4), not {got}"
    if want is str:
        return None if isinstance(value, str) else f"must be one text value, not {got}"
    if want is list:
        if not isinstance(value, (list, str, int, float)):
            return f"must be a list, not {got}"
        if numeric_list:  # weights and counts: every item a number
            items = value if isinstance(value, list) else [value]
            bad = [v for v in items if isinstance(v, bool) or not isinstance(v, (int, float))]
            if bad:
                return f"must list numbers, one per source; {bad[0]!r} is not a number"
    return None


def check_config_keys(cfg: Mapping[str, Any], neox_typos: bool = True) -> None:
    """Check a whole stage config's keys before any work: unknown ``cpt_`` keys (did you mean), plugin keys of
    the wrong type, and (``neox_typos``) a key that is a typo of a NeoX key the core reads (``seq_lenght``
    would otherwise fall back to the default silently). Null values count as unset.

    >>> check_config_keys({"cpt_lr_schedule": ["cosine"]})
    Traceback (most recent call last):
    ...
    ValueError: cpt_lr_schedule = ['cosine'] must be one text value, not a list
    >>> check_config_keys({"seq_lenght": 2048})
    Traceback (most recent call last):
    ...
    ValueError: unknown key seq_lenght = 2048; did you mean 'seq_length'? (the default would apply silently)
    """
    check_unknown_keys(cfg)
    known = plugin_keys()
    for key, value in cfg.items():
        if value is None:
            continue
        if key in known:
            why = _type_error(value, known[key], str(key).endswith(("_weights", "_consumed_samples")))
            if why:
                raise ValueError(f"{key} = {value!r} {why}")
        elif neox_typos and isinstance(key, str) and key not in NEOX_READ_KEYS:
            close = [k for k in NEOX_READ_KEYS
                     if len(k) >= 5 and abs(len(k) - len(key)) <= 2 and _edit_distance(key, k) <= 2]
            if close:
                raise ValueError(f"unknown key {key} = {value!r}; did you mean {close[0]!r}? (the default would "
                                 "apply silently)")
