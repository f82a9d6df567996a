"""The plugin's YAML keys as NeoX sees them: every family's ``KeySpec`` mapping, grafted onto NeoXArgs.

Each part publishes its keys once, in the core: ``SCHEDULE_KEYS`` and ``STAGE_KEYS``
(``neox_cpt.schedules.keys``) and ``DATA_KEYS`` (``neox_cpt.data.keys``). :func:`graft_fields` turns them
into ``(name, type, default, doc, owner)`` rows for the graft: the type is the KeySpec's (plain ``int``/
``float``/``str``/``bool``/``list``, which NeoX's ``validate_types`` accepts) and the NeoX default is null
for every key, so an unset key stays absent from the config the core reads and the core applies its own
default. ``python -m neox_cpt.neox.keys`` rewrites the generated key tables in docs/.

    >>> rows = {r.name: r for r in graft_fields()}
    >>> rows["cpt_reset_optimizer"].type, rows["cpt_reset_optimizer"].default, rows["cpt_lr_max"].owner
    (<class 'bool'>, None, 'schedules')
"""
import logging
import os
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence

from neox_cpt.data.keys import DATA_KEYS, data_key_table
from neox_cpt.schedules.keys import SCHEDULE_KEYS, STAGE_KEYS, KeySpec, key_table, schedule_key_table

logger = logging.getLogger(__name__)

FAMILIES: Dict[str, Mapping[str, KeySpec]] = {"schedules": SCHEDULE_KEYS, "data": DATA_KEYS, "stages": STAGE_KEYS}
"""Owner -> its keys; the graft's fields in this order."""


class GraftField(NamedTuple):
    name: str
    type: Any
    default: Any
    doc: str
    owner: str


def graft_fields(families: Mapping[str, Mapping[str, KeySpec]] = FAMILIES) -> List[GraftField]:
    """One NeoX field per plugin key (default null); a key declared by two families raises."""
    rows: List[GraftField] = []
    owners: Dict[str, str] = {}
    for owner, specs in families.items():
        for name, spec in specs.items():
            if name in owners:
                raise ValueError(f"plugin key {name} declared twice ({owners[name]} and {owner})")
            owners[name] = owner
            rows.append(GraftField(name, spec.type, None, spec.doc, owner))
    return rows


def plugin_values(cfg: Any, rows: Optional[Sequence[GraftField]] = None) -> Dict[str, Any]:
    """The plugin keys set to a non-default value in a NeoXArgs object or a mapping."""
    rows = graft_fields() if rows is None else rows
    get = cfg.get if isinstance(cfg, Mapping) else (lambda k, d=None: getattr(cfg, k, d))
    return {r.name: get(r.name, r.default) for r in rows if get(r.name, r.default) != r.default}


def stage_config(cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """Validate the stage keys of a flat stage config (other keys ignored); errors name key, value and fix."""
    values = {name: cfg.get(name) for name in STAGE_KEYS}
    if values["cpt_reset_optimizer"] is None:
        values["cpt_reset_optimizer"] = False
    if not isinstance(values["cpt_reset_optimizer"], bool):
        raise ValueError(f"cpt_reset_optimizer: {values['cpt_reset_optimizer']!r} is not a boolean; write true "
                         "or false")
    for key in ("cpt_stage_iters", "cpt_stage_tokens", "cpt_stage_start_iter"):
        value = values[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0
                                  or (value == 0 and key != "cpt_stage_start_iter")):
            bound = ">= 0" if key == "cpt_stage_start_iter" else "> 0"
            raise ValueError(f"{key}: {value!r} must be a whole number {bound} (write e.g. 88457, not 8.8e4)")
    iters = values["cpt_stage_iters"]
    for key in ("cpt_stage_name", "cpt_init_checkpoint"):
        if values[key] is not None and (not isinstance(values[key], str) or not values[key].strip()):
            raise ValueError(f"{key}: {values[key]!r} must be a non-empty string")
    if values["cpt_init_checkpoint"] is not None:
        if values["cpt_stage_name"] is None:
            raise ValueError("cpt_stage_name: missing; a stage (cpt_init_checkpoint is set) needs a name, "
                             "e.g. cpt_stage_name: d1 -- it tells a resume of this stage from its first launch")
        if not cfg.get("save"):
            raise ValueError("save: missing; a stage (cpt_init_checkpoint is set) must save its checkpoints, "
                             "set save: /path/to/this/stage/checkpoints")
        load = cfg.get("load")
        if load and load != cfg.get("save"):
            raise ValueError(f"load: {load!r} differs from save: {cfg.get('save')!r}; in a stage the starting "
                             "checkpoint is cpt_init_checkpoint and resumes come from save: remove load "
                             "(or set it equal to save)")
        if cfg.get("finetune"):
            raise ValueError("finetune: true conflicts with cpt_init_checkpoint; remove finetune "
                             "(use cpt_reset_optimizer: true for a fresh optimizer)")
        if iters is None and cfg.get("cpt_stage_tokens") is None and not cfg.get("train_iters"):
            raise ValueError("cpt_stage_iters: missing (and cpt_stage_tokens, train_iters unset); set "
                             "cpt_stage_iters to the number of iterations of this stage")
    return values


def stage_key_table() -> str:
    """The key table of docs/neox.md (the stage keys; the other families have theirs in their own docs)."""
    return key_table(STAGE_KEYS)


# doc file (relative to the repository) -> the generated table between its <!-- keys:start/end --> markers
DOC_TABLES = {"docs/schedules.md": schedule_key_table, "docs/replay.md": data_key_table,
              "docs/neox.md": stage_key_table}
_START, _END = "<!-- keys:start -->\n", "\n<!-- keys:end -->"


def doc_table(text: str) -> str:
    """The generated block of a doc's text."""
    return text.split(_START, 1)[1].split(_END, 1)[0]


def write_doc_tables(root: str) -> List[str]:
    """Rewrite the generated key tables of the docs under ``root``; returns the files that changed."""
    changed = []
    for rel, table in DOC_TABLES.items():
        path = os.path.join(root, rel)
        with open(path) as f:
            text = f.read()
        new = text.replace(_START + doc_table(text) + _END, _START + table() + _END)
        if new != text:
            with open(path, "w") as f:
                f.write(new)
            changed.append(rel)
    return changed


if __name__ == "__main__":
    print(write_doc_tables(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
