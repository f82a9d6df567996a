"""The plugin's YAML keys: one frozen dataclass per owner, merged into the fields grafted onto NeoXArgs.

Stage keys live in :class:`StageConfig` (this module); schedule keys and data keys come from the config
dataclasses of ``neox_cpt.schedules`` and ``neox_cpt.data`` (see :data:`KEY_CLASSES`), so every key has a
single definition and a single docstring. :func:`graft_fields` turns them into ``(name, type, default,
doc)`` rows whose types pass NeoX's ``validate_types`` (plain ``int``/``float``/``str``/``bool``/``list``/
``dict``, ``None`` defaults, no ``Optional``).

    >>> rows = {r.name: r for r in graft_fields([StageConfig])}
    >>> rows["cpt_reset_optimizer"].type, rows["cpt_reset_optimizer"].default
    (<class 'bool'>, False)
    >>> rows["cpt_stage_iters"].doc.split(".")[0]
    'Number of optimizer iterations in this stage'
"""
import ast
import dataclasses
import importlib
import inspect
import logging
import textwrap
import typing
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageConfig:
    """Keys that make a NeoX run one stage of a continual pre-training sequence."""

    cpt_stage_name: Optional[str] = None
    """Name of this stage (e.g. "d1_slimpajama"). Required with cpt_init_checkpoint: it is written next to
    every checkpoint of the stage (neox_cpt_stage.json) and is how a relaunch with the same YAML knows it
    resumes this stage instead of starting it."""
    cpt_init_checkpoint: Optional[str] = None
    """The checkpoint this stage starts from: a NeoX save directory (its `latest` is used) or one
    `.../global_stepN` directory of it. Loaded on the first launch only; once `save` holds a checkpoint of
    this stage, relaunching resumes from there. Unset: not a stage run (plain NeoX resume semantics)."""
    cpt_reset_optimizer: bool = False
    """Start the stage with a fresh optimizer state (weights only, as NeoX `finetune` but keeping the
    global iteration). Default false: AdamW moments are loaded with the weights."""
    cpt_stage_iters: Optional[int] = None
    """Number of optimizer iterations in this stage. The run ends at global iteration start + this, the
    schedule and data loaders are sized to it. Defaults to `train_iters`; `train_iters` itself is then
    rewritten to the absolute end iteration once the start iteration is known."""
    cpt_stage_tokens: Optional[int] = None
    """Length of this stage in training tokens instead of iterations (converted with train_batch_size x
    seq_length, rounded up to whole iterations). Give cpt_stage_iters or this, not both."""
    cpt_stage_start_iter: Optional[int] = None
    """Optional cross-check: the global iteration this stage starts at. The plugin takes the start from the
    iteration stored in cpt_init_checkpoint; if this is set and differs, the first launch stops."""


# Config dataclasses whose cpt_* fields are grafted, as "module:Class"; a missing one is skipped with a
# warning, so the plugin still loads while an owner's module is absent.
KEY_CLASSES: Tuple[str, ...] = ("neox_cpt.neox.keys:StageConfig",)

# Owners that publish their keys as a plain {key: doc} mapping: "module:MAPPING" -> {key: (type, default)}.
# The docs come from the owner's mapping (single source); the NeoX types are declared here.
KEY_MAPPINGS: Dict[str, Dict[str, Tuple[Any, Any]]] = {
    "neox_cpt.schedules.keys:SCHEDULE_KEYS": {
        "cpt_lr_schedule": (str, None), "cpt_lr_max": (float, None), "cpt_lr_min": (float, None),
        "cpt_lr_const": (float, None), "cpt_warmup_frac": (float, None), "cpt_warmup_iters": (int, None),
        "cpt_cooldown_shape": (str, None), "cpt_inv_sqrt_alpha": (float, None),
        "cpt_cooldown_end_frac": (float, None), "cpt_cooldown_end_iter": (int, None),
        "cpt_cooldown_frac": (float, None), "cpt_cooldown_iters": (int, None),
        "cpt_infinite_first_stage": (bool, None), "cpt_anneal_start_frac": (float, None),
        "cpt_anneal_start_iter": (int, None), "cpt_anneal_frac": (float, None), "cpt_anneal_iters": (int, None),
        "cpt_decay_shape": (str, None), "cpt_decay_frac": (float, None), "cpt_decay_iters": (int, None),
    },
    "neox_cpt.neox.keys:DATA_KEY_DOCS": {
        "cpt_train_data_paths": (list, None), "cpt_train_data_weights": (list, None),
        "cpt_replay_data_paths": (list, None), "cpt_replay_data_weights": (list, None),
        "cpt_replay_weighting": (str, None), "cpt_replay_frac": (float, None), "cpt_replay_seen_only": (bool, None),
        "cpt_replay_index_paths": (list, None), "cpt_replay_consumed_samples": (list, None),
        "cpt_replay_reshuffle": (bool, None), "cpt_replay_allow_cycling": (bool, None),
        "cpt_valid_data_paths": (list, None), "cpt_index_cache_dir": (str, None), "cpt_data_parallel_size": (int, None),
    },
}

# The replay index's keys (neox_cpt.data.spec.REPLAY_CONFIG_KEYS publishes the names only; meanings as in
# docs/replay.md). A test checks this table and REPLAY_CONFIG_KEYS name the same keys.
DATA_KEY_DOCS: Dict[str, str] = {
    "cpt_train_data_paths": "New data of this stage: .bin/.idx prefixes (default: NeoX train_data_paths or "
                            "data_path).",
    "cpt_train_data_weights": "Share of each new source inside the new group (normalised); default: by tokens.",
    "cpt_replay_data_paths": "Earlier data to replay: .bin/.idx prefixes, sampled afresh. With "
                             "cpt_replay_seen_only: the data prefix each index refers to.",
    "cpt_replay_data_weights": "Share of each replay source inside the replay group (normalised).",
    "cpt_replay_weighting": "'given' (cpt_replay_data_weights) or 'tokens' (by each source's token count).",
    "cpt_replay_frac": "Fraction of every batch drawn from the replay sources, in [0, 1) (paper: 0.05 weak shift, "
                       "0.25 strong shift); replay replaces new tokens, the stage budget is unchanged.",
    "cpt_replay_seen_only": "Replay only samples an earlier run actually consumed, from its index files "
                            "(cpt_replay_index_paths) instead of fresh samples of the old data.",
    "cpt_replay_index_paths": "Seen-only: each earlier stage's neox-cpt index directory, or a stock NeoX index "
                              "prefix (..._indexmap_..._ac).",
    "cpt_replay_consumed_samples": "Seen-only: samples each earlier run consumed (its iteration x "
                                   "train_batch_size); the plugin fills it from cpt_init_checkpoint when unset.",
    "cpt_replay_reshuffle": "Seen-only: replay the consumed samples in a fresh order (default true).",
    "cpt_replay_allow_cycling": "Seen-only: allow drawing more replay samples than were consumed (reported).",
    "cpt_valid_data_paths": "Validation sources, each evaluated and logged separately (default: NeoX "
                            "valid_data_paths).",
    "cpt_index_cache_dir": "Where replay indexes are built and found (default: neox_cpt_index/ next to the first "
                           "new data prefix).",
    "cpt_data_parallel_size": "Only for tools without NeoX (build-index): the data-parallel size that turns "
                              "train_micro_batch_size_per_gpu x gradient_accumulation_steps into a global batch.",
}


class GraftField(NamedTuple):
    name: str
    type: Any
    default: Any
    doc: str
    owner: str


def field_docs(cls: type) -> Dict[str, str]:
    """The docstring written under each field of a dataclass (parsed from its source)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    docs: Dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for node, nxt in zip(body, body[1:] + [None]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr):
            if isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
                docs[node.target.id] = " ".join(inspect.cleandoc(nxt.value.value).split())
    return docs


_PLAIN = (int, float, str, bool, list, dict)


def neox_type(hint: Any, key: str) -> Any:
    """Map a type hint to one NeoX's validate_types accepts: Optional[X] -> X, Tuple/Sequence -> list."""
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin is typing.Union:
        if len(args) == 1:
            return neox_type(args[0], key)
        mapped = tuple(dict.fromkeys(neox_type(a, key) for a in args))
        if float in mapped and int not in mapped:
            mapped = mapped + (int,)  # NeoX only lets ints through for a bare float
        return typing.Union[mapped]
    if origin is typing.Literal:
        return hint
    if origin in (list, tuple, typing.Sequence, getattr(typing, "Sequence", None)) or hint in (list, tuple):
        return list
    if origin in (dict, typing.Mapping) or hint is dict:
        return dict
    if hint in _PLAIN:
        return hint
    raise TypeError(f"plugin key {key}: type {hint!r} cannot be expressed as a NeoX config type")


def _load_class(spec: str) -> Optional[type]:
    module_name, _, cls_name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as exc:
        logger.warning("neox-cpt: config class %s not available (%s); its keys are not grafted", spec, exc)
        return None


def key_classes(specs: Sequence[str] = KEY_CLASSES) -> List[type]:
    return [c for c in (_load_class(s) for s in specs) if c is not None]


def mapping_fields(mappings: Mapping[str, Mapping[str, Tuple[Any, Any]]] = KEY_MAPPINGS) -> List["GraftField"]:
    """Rows for owners that publish ``{key: doc}``; a key without a declared type is an error (add it)."""
    rows: List[GraftField] = []
    for spec, types in mappings.items():
        docs = _load_class(spec)
        if docs is None:
            continue
        for key, doc in docs.items():
            if key not in types:
                raise TypeError(f"plugin key {key} ({spec}) has no NeoX type in neox_cpt.neox.keys.KEY_MAPPINGS")
            typ, default = types[key]
            rows.append(GraftField(key, typ, default, " ".join(str(doc).split()), spec))
    return rows


def graft_fields(classes: Optional[Sequence[type]] = None) -> List[GraftField]:
    """All ``cpt_*`` fields of the config dataclasses, NeoX-typed, with their docstrings; duplicates raise."""
    rows: List[GraftField] = [] if classes is not None else mapping_fields()
    owners: Dict[str, str] = {r.name: r.owner for r in rows}
    for cls in key_classes() if classes is None else classes:
        hints = typing.get_type_hints(cls, include_extras=False)
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            if not f.name.startswith("cpt_"):
                continue
            if f.name in owners:
                raise ValueError(f"plugin key {f.name} defined twice ({owners[f.name]} and {cls.__name__})")
            owners[f.name] = cls.__name__
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                default = f.default_factory()  # type: ignore[misc]
            else:
                default = None
            if isinstance(default, tuple):
                default = list(default)
            rows.append(GraftField(f.name, neox_type(hints[f.name], f.name), default,
                                   docs.get(f.name, ""), f"{cls.__module__}.{cls.__name__}"))
    return rows


def plugin_values(cfg: Any, rows: Optional[Sequence[GraftField]] = None) -> Dict[str, Any]:
    """The plugin keys set to a non-default value in a NeoXArgs object or a mapping."""
    rows = graft_fields() if rows is None else rows
    get = cfg.get if isinstance(cfg, Mapping) else (lambda k, d=None: getattr(cfg, k, d))
    return {r.name: get(r.name, r.default) for r in rows if get(r.name, r.default) != r.default}


def stage_config(cfg: Mapping[str, Any]) -> StageConfig:
    """Validate the stage keys of a flat stage config (other keys ignored); errors name key, value and fix."""
    values = {f.name: cfg.get(f.name, f.default) for f in dataclasses.fields(StageConfig)}
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
    return StageConfig(**values)


def markdown_table(rows: Optional[Sequence[GraftField]] = None) -> str:
    """The key table of docs/neox.md, generated from the docstrings (``python -m neox_cpt.neox.keys``)."""
    rows = graft_fields() if rows is None else rows
    lines = ["| key | type | default | meaning | owner |", "|---|---|---|---|---|"]
    for r in rows:
        typ = getattr(r.type, "__name__", str(r.type).replace("typing.", ""))
        owner = ("data" if "DATA_KEY_DOCS" in r.owner else "schedules" if "schedules" in r.owner else "stages")
        lines.append(f"| `{r.name}` | {typ} | {'' if r.default is None else r.default} | "
                     f"{r.doc.replace('|', '/')} | {owner} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
