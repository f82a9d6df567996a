"""What a replay index is built from: the sources, their weights, the replay fraction and the budget.

A stage trains on ``num_samples`` samples of ``seq_length + 1`` tokens. A fraction ``replay_frac`` of
them comes from the *replay* sources (earlier data) and the rest from the *new* sources; inside each
group the sources share by their weights (or by their token counts). The spec is pure data: building it
touches no file (``neox_cpt.data.cache.build_index`` resolves and validates the files).

    >>> spec = ReplayIndexSpec(
    ...     new=(SourceSpec("data/slimpajama_text_document"),),
    ...     replay=(SourceSpec("data/pile_text_document"),),
    ...     replay_frac=0.05, num_samples=1000, seq_length=2048, seed=1234)
    >>> spec.validate().replay_frac
    0.05
    >>> replay_spec_from_config({"cpt_train_data_paths": ["a"], "train_iters": 10, "train_batch_size": 8,
    ...                          "seq_length": 128}).num_samples
    80
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Tuple

from neox_cpt.data.keys import DATA_KEYS
from neox_cpt.schedules.stage import global_batch_size, stage_num_steps

#: Source kinds. "data": a NeoX .bin/.idx prefix, sampled afresh. "neox_cpt_index": the samples a previous
#: neox-cpt stage consumed (its index directory). "neox_index": the samples a stock GPT-NeoX run consumed
#: (its ``..._indexmap_..._{doc,sample,shuffle}_idx.npy`` files).
KINDS = ("data", "neox_cpt_index", "neox_index")


@dataclass(frozen=True)
class SourceSpec:
    """One source of samples."""

    path: str
    """Data prefix (kind "data"), previous index directory ("neox_cpt_index") or stock NeoX index-file
    prefix ending in ``..._{packing}pi[_ac]`` ("neox_index")."""
    weight: Optional[float] = None
    """Share inside its group (new or replay), normalised over the group; None: by tokens."""
    kind: str = "data"
    """One of KINDS."""
    consumed_samples: Optional[int] = None
    """Seen-only kinds: how many samples of that index the earlier run consumed (its data position)."""
    reshuffle: bool = True
    """Seen-only kinds: replay the consumed samples in a fresh order (False: in the order they were seen)."""
    data_path: Optional[str] = None
    """"neox_index" only: the data prefix the NeoX index refers to (default: parsed from the file name)."""
    name: Optional[str] = None
    """Display name (default: the file name of ``path``)."""

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        return self.path.rstrip("/").split("/")[-1] or self.path


@dataclass(frozen=True)
class ReplayIndexSpec:
    """Everything that determines a stage's blended index (plus the cache key of the files it reads)."""

    new: Tuple[SourceSpec, ...]
    """New data of this stage (kind "data")."""
    replay: Tuple[SourceSpec, ...] = ()
    """Earlier data to replay (any kind)."""
    replay_frac: float = 0.0
    """Fraction x of every window of positions taken by the replay group, in [0, 1); resolved to 1e-6."""
    num_samples: int = 0
    """Samples this stage consumes (stage steps x global batch, see ``num_samples_from_config``)."""
    seq_length: int = 2048
    """Tokens per sample minus one (NeoX's ``seq_length``)."""
    seed: int = 1234
    """Seed of every document and sample order."""
    allow_cycling: bool = False
    """Seen-only sources: allow drawing more samples than were consumed (cycled, reported)."""
    max_epochs: int = 1000
    """Data sources: the most epochs one may be cycled over before the build is refused (not in the key)."""
    name: str = "stage"
    """Name of the cache directory (``<name>-<hash>``); not part of the key."""

    def validate(self) -> "ReplayIndexSpec":
        """Check the values (no file access); returns self. Errors name the key, the value and the fix."""
        if not self.new:
            raise ValueError("cpt_train_data_paths is empty: a stage needs at least one new data source")
        if not isinstance(self.replay_frac, (int, float)) or not (0.0 <= self.replay_frac < 1.0):
            raise ValueError(f"cpt_replay_frac={self.replay_frac!r}: must lie in [0, 1) (e.g. 0.05 for 5% replay; "
                             f"1.0 would leave no new data)")
        if self.replay_frac > 0 and not 0 < self.replay_ppm < 1_000_000:
            raise ValueError(f"cpt_replay_frac={self.replay_frac!r} resolves to {self.replay_ppm / 1e6:g} (the blend "
                             f"works in steps of 1e-6): {'no new data' if self.replay_ppm else 'no replay'} would be "
                             f"left; give a fraction in [1e-6, 0.999999]")
        if self.replay_frac > 0 and not self.replay:
            raise ValueError(f"cpt_replay_frac={self.replay_frac} but no replay source is given: set "
                             f"cpt_replay_data_paths (or the seen-only keys), or cpt_replay_frac: 0")
        if int(self.num_samples) != self.num_samples or self.num_samples <= 0:
            raise ValueError(f"num_samples={self.num_samples!r}: must be a positive integer "
                             f"(train_iters x train_batch_size)")
        if int(self.seq_length) != self.seq_length or self.seq_length < 1:
            raise ValueError(f"seq_length={self.seq_length!r}: must be a positive integer")
        if not isinstance(self.max_epochs, int) or isinstance(self.max_epochs, bool) or self.max_epochs < 1:
            raise ValueError(f"cpt_max_epochs={self.max_epochs!r}: must be a positive integer (default 1000)")
        if int(self.seed) != self.seed or not (0 <= self.seed < 2**63):
            raise ValueError(f"seed={self.seed!r}: must be an integer in [0, 2^63)")
        if self.num_samples * 1_000_000 >= 2**63:
            raise ValueError(f"num_samples={self.num_samples}: too large (limit 9.2e12)")
        for group, key in ((self.new, "cpt_train_data_weights"), (self.replay, "cpt_replay_data_weights")):
            _check_weights([s.weight for s in group], key)
        for s in self.new:
            if s.kind != "data":
                raise ValueError(f"cpt_train_data_paths: {s.path!r} has kind {s.kind!r}; new data must be a "
                                 f".bin/.idx prefix (seen-only indexes are replay sources)")
        for s in self.replay:
            if s.kind not in KINDS:
                raise ValueError(f"replay source {s.path!r}: kind {s.kind!r} is not one of {KINDS}")
            if s.kind != "data" and (s.consumed_samples is None or s.consumed_samples <= 0):
                raise ValueError(f"cpt_replay_consumed_samples for {s.path!r} is {s.consumed_samples!r}: seen-only "
                                 f"replay needs the positive number of samples the earlier run consumed")
        return self

    def source_names(self) -> Tuple[str, ...]:
        """Display names of new then replay sources, made unique (``name#2`` for a repeated file name)."""
        names, seen = [], {}
        for s in self.new + self.replay:
            n = s.display_name
            seen[n] = seen.get(n, 0) + 1
            names.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
        return tuple(names)

    @property
    def replay_ppm(self) -> int:
        """The replay fraction in parts per million (the exact integer the blend uses)."""
        return int(round(self.replay_frac * 1_000_000))

    def replace(self, **changes: Any) -> "ReplayIndexSpec":
        return dataclasses.replace(self, **changes)


def _check_weights(weights: Sequence[Optional[float]], key: str) -> None:
    given = [w for w in weights if w is not None]
    if not given:
        return
    if len(given) != len(weights):
        raise ValueError(f"{key}: give a weight for every source or for none (got {list(weights)})")
    for w in given:
        if not isinstance(w, (int, float)) or math.isnan(w) or math.isinf(w) or w < 0:
            raise ValueError(f"{key}={list(weights)}: every weight must be a finite number >= 0 (got {w!r})")
    if sum(given) <= 0:
        raise ValueError(f"{key}={list(weights)}: all weights are zero; give at least one positive weight")


# ------------------------------------------------------------------------------------------ config
def _list(cfg: Mapping[str, Any], key: str) -> Optional[list]:
    value = cfg.get(key)
    if value is None:
        return None
    if isinstance(value, (str, int, float)):
        return [value]
    return list(value)


def _per_source(cfg: Mapping[str, Any], key: str, n: int) -> list:
    values = _list(cfg, key)
    if values is None:
        return [None] * n
    if len(values) != n:
        raise ValueError(f"{key} has {len(values)} entries but there are {n} sources; give one per source")
    return values


def _normalise(cfg: Mapping[str, Any]) -> dict:
    """NeoX spelling (``-`` -> ``_``); a key set to None (NeoX's default for grafted keys) counts as unset."""
    return {str(k).replace("-", "_"): v for k, v in cfg.items() if v is not None}


def num_samples_from_config(cfg: Mapping[str, Any]) -> int:
    """Stage samples = stage steps (``stage_num_steps``: the schedule's own length) x global batch."""
    cfg = _normalise(cfg)
    batch = global_batch_size(cfg)
    if batch is None:
        raise ValueError("train_batch_size is not set: give it, or train_micro_batch_size_per_gpu, "
                         "gradient_accumulation_steps and cpt_data_parallel_size")
    return stage_num_steps(cfg) * batch


# NeoX's defaults for the evaluation cadence (megatron/neox_arguments/neox_args.py:1344,1354 at ea7aefd).
NEOX_EVAL_INTERVAL = 1000
NEOX_EVAL_ITERS = 100


def valid_num_samples(num_iters: int, batch: int, eval_interval: int, eval_iters: int) -> int:
    """Samples one validation source serves over a stage of ``num_iters`` steps, sized as NeoX sizes its
    validation set (data_utils.py:589): (num_iters // eval_interval + 1) evaluations x eval_iters x batch."""
    return (num_iters // eval_interval + 1) * eval_iters * batch


def valid_num_samples_from_config(cfg: Mapping[str, Any]) -> int:
    """``valid_num_samples`` for a stage config (NeoX's defaults where eval_interval/eval_iters are unset), so
    ``neox-cpt build-index`` prebuilds exactly the validation indexes the NeoX run opens."""
    cfg = _normalise(cfg)
    return valid_num_samples(stage_num_steps(cfg), num_samples_from_config(cfg) // stage_num_steps(cfg),
                             int(cfg.get("eval_interval", NEOX_EVAL_INTERVAL)),
                             int(cfg.get("eval_iters", NEOX_EVAL_ITERS)))


def valid_sources(cfg: Mapping[str, Any]) -> list:
    """(name, prefix) of each validation source: cpt_valid_data_paths, else NeoX valid_data_paths.

    >>> valid_sources({"valid_data_paths": ["/d/pile_val_text_document", "/d/sp_val_text_document"]})
    [('pile_val', '/d/pile_val_text_document'), ('sp_val', '/d/sp_val_text_document')]
    """
    import os

    prefixes = cfg.get("cpt_valid_data_paths") or cfg.get("valid_data_paths") or []
    prefixes = [prefixes] if isinstance(prefixes, str) else prefixes
    names: list = []
    for prefix in prefixes:
        name = os.path.basename(str(prefix).rstrip("/"))
        name = name[: -len("_text_document")] if name.endswith("_text_document") else name
        names.append(name if name not in names else f"{name}_{len(names)}")
    return list(zip(names, [str(p) for p in prefixes]))


def replay_spec_from_config(cfg: Mapping[str, Any], num_samples: Optional[int] = None) -> ReplayIndexSpec:
    """The spec a stage config describes (keys documented in docs/replay.md); validated.

    New data: ``cpt_train_data_paths`` (+ ``cpt_train_data_weights``), falling back to NeoX's
    ``train_data_paths``/``train_data_weights`` or ``data_path``. Replay: ``cpt_replay_data_paths``
    (+ ``cpt_replay_data_weights`` or ``cpt_replay_weighting: tokens``), or with ``cpt_replay_seen_only``
    the earlier indexes ``cpt_replay_index_paths`` + ``cpt_replay_consumed_samples``.
    """
    cfg = _normalise(cfg)
    new_paths = _list(cfg, "cpt_train_data_paths")
    new_weights_key = "cpt_train_data_weights"
    if new_paths is None:
        new_paths = _list(cfg, "train_data_paths") or _list(cfg, "data_path")
        new_weights_key = "train_data_weights" if cfg.get("train_data_paths") else new_weights_key
    if not new_paths:
        raise ValueError("cpt_train_data_paths is not set (nor train_data_paths / data_path): list the .bin/.idx "
                         "prefixes of this stage's new data")
    new_weights = _per_source(cfg, new_weights_key, len(new_paths))
    new = tuple(SourceSpec(str(p), None if w is None else float(w)) for p, w in zip(new_paths, new_weights))

    seen_only = bool(cfg.get("cpt_replay_seen_only", False))
    weighting = cfg.get("cpt_replay_weighting", "given")
    if weighting not in ("given", "tokens"):
        raise ValueError(f"cpt_replay_weighting={weighting!r}: must be 'given' (cpt_replay_data_weights) or 'tokens'")
    if seen_only:
        paths = _list(cfg, "cpt_replay_index_paths")
        if not paths:
            raise ValueError("cpt_replay_seen_only is true but cpt_replay_index_paths is empty: list each earlier "
                             "stage's neox-cpt index directory or stock NeoX index prefix (..._indexmap_..._ac)")
        consumed = _per_source(cfg, "cpt_replay_consumed_samples", len(paths))
        data = _per_source(cfg, "cpt_replay_data_paths", len(paths))
    else:
        paths = _list(cfg, "cpt_replay_data_paths") or []
        consumed, data = [None] * len(paths), [None] * len(paths)
    weights = _per_source(cfg, "cpt_replay_data_weights", len(paths))
    if weighting == "tokens":
        weights = [None] * len(paths)
    reshuffle = bool(cfg.get("cpt_replay_reshuffle", True))
    replay = []
    for p, w, c, dp in zip(paths, weights, consumed, data):
        kind = "data" if not seen_only else ("neox_index" if "_indexmap_" in str(p) else "neox_cpt_index")
        replay.append(SourceSpec(str(p), None if w is None else float(w), kind,
                                 None if c is None else int(c), reshuffle, None if dp is None else str(dp)))
    frac = cfg.get("cpt_replay_frac", 0.0)
    return ReplayIndexSpec(
        new=new, replay=tuple(replay), replay_frac=float(frac) if isinstance(frac, (int, float)) else frac,
        num_samples=int(num_samples) if num_samples is not None else num_samples_from_config(cfg),
        seq_length=int(cfg.get("seq_length", 2048)), seed=int(cfg.get("seed", 1234)),
        allow_cycling=bool(cfg.get("cpt_replay_allow_cycling", False)),
        max_epochs=cfg.get("cpt_max_epochs", 1000),
        name=str(cfg.get("cpt_stage_name") or "stage"),
    ).validate()


def cache_dir_from_config(cfg: Mapping[str, Any]) -> str:
    """``cpt_index_cache_dir``, or ``<directory of the first new data prefix>/neox_cpt_index``."""
    cfg = _normalise(cfg)
    if cfg.get("cpt_index_cache_dir"):
        return str(cfg["cpt_index_cache_dir"])
    first = (_list(cfg, "cpt_train_data_paths") or _list(cfg, "train_data_paths") or _list(cfg, "data_path") or ["."])[0]
    import os
    return os.path.join(os.path.dirname(os.path.abspath(str(first))), "neox_cpt_index")


REPLAY_CONFIG_KEYS = tuple(DATA_KEYS)
"""The data keys' names (declared with type, default and meaning in ``neox_cpt.data.keys``)."""
