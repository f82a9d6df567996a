"""Reading the local run config: one YAML describing a multi-stage continual pre-training run (docs/local.md).

``load_run_config`` reads a YAML path or a mapping, fills defaults, resolves sources (a demo manifest
and/or explicit ``.bin/.idx`` prefixes), converts token budgets to steps and validates everything,
including each stage's schedule (``neox_cpt.schedules.schedule_from_config``) and replay spec
(``neox_cpt.data.spec.replay_spec_from_config``) from the same flat NeoX-style stage mapping a cluster
stage would use (``stage_mapping``). Errors name the key, the value and the fix.

    >>> cfg = load_run_config({
    ...     "data": {"sources": {"old": {"train": "/d/old_train", "valid": "/d/old_valid"},
    ...                          "new": {"train": "/d/new_train", "valid": "/d/new_valid"}}},
    ...     "model": {"vocab_size": 300}, "batch_size": 4, "seq_length": 16,
    ...     "stage_defaults": {"cpt_lr_max": 1.0e-3},
    ...     "stages": [{"name": "d0", "sources": {"old": 1}, "tokens": 640},
    ...                {"name": "d1", "sources": {"new": 1}, "replay_frac": 0.25, "replay_sources": {"old": 1},
    ...                 "steps": 5}]})
    >>> [(s.name, s.num_steps, s.num_tokens, s.init_from) for s in cfg.stages]
    [('d0', 10, 640, None), ('d1', 5, 320, 'd0')]
    >>> stage_mapping(cfg, cfg.stages[1])["cpt_replay_frac"]
    0.25
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from neox_cpt.local.run_config import (EXTRA_STAGE_CPT_KEYS, GENERATED_KEYS, PREVIOUS, SCRATCH, EvalConfig,
                                       ModelConfig, OptimConfig, RunConfig, SourcePaths, StageConfig, stage_mapping)
from neox_cpt.schedules.keys import SCHEDULE_KEYS
from neox_cpt.schedules.stage import stage_num_steps

__all__ = ["EvalConfig", "ModelConfig", "OptimConfig", "RunConfig", "SourcePaths", "StageConfig", "check_run_data",
           "load_run_config", "stage_mapping", "validate_stages"]


# ------------------------------------------------------------------------------------------ loading
def _fail(key: str, value: Any, fix: str) -> ValueError:
    return ValueError(f"{key} = {value!r}: {fix}")


def _check_keys(section: Mapping[str, Any], allowed, where: str) -> None:
    for key in section:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {sorted(allowed)}"
            raise ValueError(f"unknown key {where}{key} = {section[key]!r}; {hint}")


def _int(value: Any, key: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < minimum:
        raise _fail(key, value, f"give a whole number >= {minimum}")
    return int(value)


def _float(value: Any, key: str, low: float = 0.0, high: float = float("inf")) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise _fail(key, value, f"give a number in [{low}, {high}] (YAML reads 1e-4 as text: write 1.0e-4)")
    return float(value)


def _section(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping):
        raise _fail(key, value, "must be a mapping of settings")
    return value


def _dataclass_from(cls, section: Mapping[str, Any], where: str, **conv):
    names = [f for f in cls.__dataclass_fields__]
    _check_keys(section, names, f"{where}.")
    kw = {k: (conv[k](v, f"{where}.{k}") if k in conv and v is not None else v) for k, v in section.items()}
    return cls(**kw)


def _weights(value: Any, key: str) -> Tuple[Tuple[str, Optional[float]], ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if isinstance(value, Mapping):
        return tuple((str(k), None if w is None else _float(w, f"{key}.{k}")) for k, w in value.items())
    if isinstance(value, (list, tuple)):
        return tuple((str(k), None) for k in value)
    raise _fail(key, value, "give a mapping {source: weight} or a list of source names (weights by tokens)")


def _resolve_sources(data: Mapping[str, Any]) -> Tuple[List[SourcePaths], Optional[int]]:
    _check_keys(data, ("manifest", "cache_dir", "sources", "index_cache_dir"), "data.")
    sources: Dict[str, SourcePaths] = {}
    vocab = None
    manifest = data.get("manifest")
    if manifest:
        from neox_cpt.local.manifest import Manifest

        if manifest == "demo":
            from neox_cpt.local.demo_data import prepare_demo_data

            m = prepare_demo_data(cache_dir=data.get("cache_dir"))
        else:
            m = Manifest.load(os.path.expanduser(str(manifest)))
        vocab = m.vocab_size
        for s in m.sources:
            sources[s.name] = SourcePaths(s.name, s.train_prefix, s.valid_prefix)
    explicit = data.get("sources") or {}
    if not isinstance(explicit, Mapping):
        raise _fail("data.sources", explicit, "give a mapping {name: {train: PREFIX, valid: PREFIX}}")
    for name, paths in explicit.items():
        if isinstance(paths, str):
            paths = {"train": paths}
        if not isinstance(paths, Mapping) or "train" not in paths:
            raise _fail(f"data.sources.{name}", paths, "give {train: PREFIX, valid: PREFIX} (.bin/.idx prefixes)")
        _check_keys(paths, ("train", "valid"), f"data.sources.{name}.")
        valid = paths.get("valid")
        sources[str(name)] = SourcePaths(str(name), os.path.abspath(os.path.expanduser(str(paths["train"]))),
                                         os.path.abspath(os.path.expanduser(str(valid))) if valid else None)
    if not sources:
        raise ValueError("data: no sources; set data.manifest (demo or a manifest.json path) or data.sources")
    return list(sources.values()), vocab


STAGE_KEYS = ("name", "sources", "replay_frac", "replay_sources", "tokens", "steps", "init_from",
              "reset_optimizer", "seed")
TOP_KEYS = ("name", "run_dir", "data", "model", "optimizer", "eval", "batch_size", "seq_length", "seed", "device",
            "threads", "log_interval", "checkpoint_interval", "keep_checkpoints", "tensorboard", "stage_defaults",
            "stages")


def _stage(raw: Mapping[str, Any], index: int, names: List[str], batch: int, seq: int,
           defaults: Mapping[str, Any]) -> StageConfig:
    where = f"stages[{index}]."
    if not isinstance(raw, Mapping):
        raise _fail(f"stages[{index}]", raw, "each stage is a mapping (name, sources, tokens, ...)")
    merged = {**defaults, **raw}
    cpt_allowed = set(SCHEDULE_KEYS) | set(EXTRA_STAGE_CPT_KEYS)
    for key, value in merged.items():
        if str(key) in GENERATED_KEYS:
            raise ValueError(f"{where}{key} = {value!r} is set by the trainer from the stage's sources, replay and "
                             "tokens; remove it (use sources / replay_sources / replay_frac / tokens)")
        if str(key).startswith("cpt_") and key not in cpt_allowed:
            close = difflib.get_close_matches(str(key), sorted(cpt_allowed), n=1)
            raise ValueError(f"unknown key {where}{key} = {value!r}; "
                             + (f"did you mean {close[0]!r}?" if close else f"stage cpt_ keys: {sorted(cpt_allowed)}"))
    _check_keys({k: v for k, v in merged.items() if not str(k).startswith("cpt_")}, STAGE_KEYS, where)
    name = str(merged.get("name") or f"stage{index}")
    if name in names or name in (SCRATCH, PREVIOUS):
        raise _fail(f"{where}name", name, "stage names must be unique and not 'scratch' or 'previous'")
    sources = _weights(merged.get("sources"), f"{where}sources")
    if not sources:
        raise _fail(f"{where}sources", merged.get("sources"), "list the stage's new data, e.g. {german: 1.0}")
    if ("tokens" in merged) == ("steps" in merged):
        raise ValueError(f"{where}tokens / steps: give exactly one budget (tokens: 2000000, or steps: 1000)")
    if "steps" in merged:
        steps = _int(merged["steps"], f"{where}steps")
    else:  # the one tokens -> steps rule a NeoX stage uses too (rounds up: at least the requested tokens)
        tokens = _int(merged["tokens"], f"{where}tokens")
        steps = stage_num_steps({"cpt_stage_tokens": tokens, "train_batch_size": batch, "seq_length": seq})
    init = merged.get("init_from", PREVIOUS if index > 0 else SCRATCH)
    if init in (None, SCRATCH, "none"):
        init = None
    elif init == PREVIOUS:
        if index == 0:
            raise _fail(f"{where}init_from", init, "the first stage has no previous stage: use scratch or a path")
        init = names[-1]
    elif str(init) in names:
        init = str(init)
    else:
        path = os.path.abspath(os.path.expanduser(str(init)))
        if index > 0:
            raise _fail(f"{where}init_from", init, f"only the first stage may start from another run; use one of "
                        f"{names}, previous or scratch (or move this stage into its own run)")
        init = path
    reset = merged.get("reset_optimizer", True)
    if not isinstance(reset, bool):
        raise _fail(f"{where}reset_optimizer", reset, "write true or false")
    replay_frac = _float(merged.get("replay_frac", 0.0), f"{where}replay_frac", 0.0, 0.999999)
    replay = _weights(merged.get("replay_sources"), f"{where}replay_sources")
    if replay_frac > 0 and not replay:
        raise _fail(f"{where}replay_frac", replay_frac, "needs replay_sources (e.g. {sotu: 1.0}), or set it to 0")
    seed = merged.get("seed")
    return StageConfig(
        name=name, index=index, sources=sources, num_steps=steps, num_tokens=steps * batch * seq,
        replay_frac=replay_frac, replay_sources=replay, init_from=init, reset_optimizer=reset,
        schedule_keys=tuple((str(k), v) for k, v in merged.items() if str(k).startswith("cpt_")),
        seed=None if seed is None else _int(seed, f"{where}seed", 0))


def load_run_config(config: Union[str, "os.PathLike[str]", Mapping[str, Any]]) -> RunConfig:
    """Read and validate a run config (YAML path or mapping)."""
    if isinstance(config, Mapping):
        raw = dict(config)
    else:
        from neox_cpt.schedules.loader import read_yaml  # the shared reader: duplicate keys, encoding, ...

        path = Path(config)
        if not path.exists():
            raise FileNotFoundError(f"{path}: run config not found (see configs/local/ for examples)")
        raw = read_yaml(path, "run config") or {}
        if not isinstance(raw, Mapping):
            raise ValueError(f"{path}: the run config must be a YAML mapping (model, data, stages, ...)")
        raw.setdefault("name", path.stem)
    _check_keys(raw, TOP_KEYS, "")
    sources, manifest_vocab = _resolve_sources(_section(raw, "data"))
    model = _dataclass_from(ModelConfig, _section(raw, "model"), "model",
                            hidden_size=_int, num_layers=_int, num_heads=_int, intermediate_size=_int,
                            rotary_base=_int, vocab_size=_int,
                            rotary_pct=lambda v, k: _float(v, k, 0.0, 1.0), init_std=lambda v, k: _float(v, k))
    if model.hidden_size % model.num_heads:
        raise _fail("model.num_heads", model.num_heads, f"must divide model.hidden_size = {model.hidden_size}")
    vocab = model.vocab_size or manifest_vocab
    if vocab is None:
        raise ValueError("model.vocab_size is not set and no manifest gives it: set model.vocab_size to the "
                         "tokenizer's size (or data.manifest)")
    optim_raw = dict(_section(raw, "optimizer"))
    if "betas" in optim_raw:
        b = optim_raw["betas"]
        if not isinstance(b, (list, tuple)) or len(b) != 2:
            raise _fail("optimizer.betas", b, "give two numbers, e.g. [0.9, 0.95]")
        optim_raw["betas"] = tuple(_float(x, "optimizer.betas", 0.0, 0.999999) for x in b)
    optim = _dataclass_from(OptimConfig, optim_raw, "optimizer", eps=_float, weight_decay=_float, grad_clip=_float)
    eval_raw = dict(_section(raw, "eval"))
    names = [s.name for s in sources]
    if eval_raw.get("sources"):
        ev_sources = eval_raw["sources"]
        ev_sources = [ev_sources] if isinstance(ev_sources, str) else list(ev_sources)
        for s in ev_sources:
            if s not in names or not next(x for x in sources if x.name == s).valid_prefix:
                raise _fail("eval.sources", s, f"evaluate sources with a valid split: {names}")
        eval_raw["sources"] = tuple(ev_sources)
    ev = _dataclass_from(EvalConfig, eval_raw, "eval", interval_steps=_int, num_samples=_int, batch_size=_int)
    batch = _int(raw.get("batch_size", 16), "batch_size")
    seq = _int(raw.get("seq_length", 128), "seq_length")
    defaults = _section(raw, "stage_defaults")
    stages_raw = raw.get("stages")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise _fail("stages", stages_raw, "give a list of stages (name, sources, tokens, schedule keys)")
    stages: List[StageConfig] = []
    for i, st in enumerate(stages_raw):
        stages.append(_stage(st, i, [s.name for s in stages], batch, seq, defaults))
        for n, _ in stages[-1].sources + stages[-1].replay_sources:
            if n not in names:
                raise _fail(f"stages[{i}].sources", n, f"not a defined source; known: {names}")
    device = str(raw.get("device", "auto"))
    if not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
        raise _fail("device", device, "use auto, cpu, cuda or cuda:N")
    tb = raw.get("tensorboard", True)
    if not isinstance(tb, bool):
        raise _fail("tensorboard", tb, "write true or false")
    data = _section(raw, "data")
    cfg = RunConfig(
        stages=tuple(stages), sources=tuple(sources), vocab_size=int(vocab), model=model, optim=optim, eval=ev,
        batch_size=batch, seq_length=seq, seed=_int(raw.get("seed", 1234), "seed", 0), device=device,
        threads=_int(raw.get("threads", 0) or 0, "threads", 0),
        log_interval=_int(raw.get("log_interval", 10), "log_interval"),
        checkpoint_interval=_int(raw.get("checkpoint_interval", 100), "checkpoint_interval"),
        keep_checkpoints=_int(raw.get("keep_checkpoints", 1), "keep_checkpoints", 0), tensorboard=tb,
        index_cache_dir=os.path.abspath(str(data["index_cache_dir"])) if data.get("index_cache_dir") else None,
        run_dir=str(raw["run_dir"]) if raw.get("run_dir") else None, name=str(raw.get("name") or ""))
    validate_stages(cfg)
    return cfg


def validate_stages(cfg: RunConfig) -> None:
    """Run A's schedule reader and B's replay-spec reader on every stage (no file access)."""
    from neox_cpt.data.spec import replay_spec_from_config
    from neox_cpt.schedules import schedule_from_config

    for stage in cfg.stages:
        mapping = stage_mapping(cfg, stage)
        try:
            schedule_from_config(mapping)
            replay_spec_from_config(mapping)
        except ValueError as exc:
            raise ValueError(f"stages[{stage.index}] ({stage.name}): {exc}") from None


def check_run_data(cfg: RunConfig) -> int:
    """Open and fully check every dataset the run reads (each stage's training sources and every evaluated
    validation split): present, a consistent ``.bin/.idx`` pair, not empty, and no token id at or above the
    model's vocabulary (which the embedding would fail on mid-run). Returns how many datasets were checked."""
    from neox_cpt.data.check import check_dataset

    used = {name for st in cfg.stages for name, _ in st.sources + st.replay_sources}
    checked = set()
    for src in cfg.sources:
        paths = [("train", src.train_prefix)] if src.name in used else []
        if src.valid_prefix and src.name in cfg.eval_sources:
            paths.append(("valid", src.valid_prefix))
        for split, prefix in paths:
            if prefix not in checked:
                check_dataset(prefix, f"data.sources.{src.name}.{split}", cfg.vocab_size,
                              "model.vocab_size" if cfg.model.vocab_size else "the manifest's vocab_size")
                checked.add(prefix)
    return len(checked)
