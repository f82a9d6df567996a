"""The local run config as data: frozen dataclasses for the model, optimiser, evaluation, sources and
stages of a run, and ``stage_mapping`` (a stage as the flat NeoX-style mapping the schedule and replay readers
take). :mod:`neox_cpt.local.config` reads and validates YAML into these.

    >>> st = StageConfig("d1", 1, (("german", 1.0),), num_steps=100, num_tokens=204_800, replay_frac=0.25,
    ...                  replay_sources=(("sotu", 1.0),), init_from="d0")
    >>> st.train_shares()
    {'german': 0.75, 'sotu': 0.25}
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Tuple

SCRATCH = "scratch"
PREVIOUS = "previous"
# cpt_ keys a stage may set besides the schedule keys (the rest of the replay keys are generated from
# `sources` / `replay_sources` / `replay_frac`).
EXTRA_STAGE_CPT_KEYS = ("cpt_replay_weighting", "cpt_replay_allow_cycling", "cpt_max_epochs")
GENERATED_KEYS = ("cpt_train_data_paths", "cpt_train_data_weights", "cpt_replay_data_paths",
                  "cpt_replay_data_weights", "cpt_replay_frac", "cpt_stage_iters", "cpt_stage_tokens",
                  "cpt_stage_name", "cpt_index_cache_dir")


@dataclass(frozen=True)
class ModelConfig:
    """A small GPT-NeoX (``transformers.GPTNeoXForCausalLM``)."""

    hidden_size: int = 128
    """Width of the residual stream."""
    num_layers: int = 4
    """Transformer blocks."""
    num_heads: int = 4
    """Attention heads (must divide hidden_size)."""
    intermediate_size: Optional[int] = None
    """MLP width; None = 4 x hidden_size."""
    rotary_pct: float = 0.25
    """Share of each head's dimensions that get rotary embeddings (NeoX/Pythia: 0.25)."""
    rotary_base: int = 10000
    """Rotary base (theta)."""
    vocab_size: Optional[int] = None
    """Embedding rows; None = the manifest's tokenizer size (required without a manifest)."""
    init_std: float = 0.02
    """Std of the normal initialisation."""


@dataclass(frozen=True)
class OptimConfig:
    """AdamW as in the paper."""

    betas: Tuple[float, float] = (0.9, 0.95)
    """Adam beta1, beta2."""
    eps: float = 1e-8
    """Adam epsilon."""
    weight_decay: float = 0.1
    """Decoupled weight decay of the matrices (embeddings and linear weights); biases and norms get none."""
    grad_clip: float = 1.0
    """Max global gradient norm (0 = no clipping)."""


@dataclass(frozen=True)
class EvalConfig:
    """Per-source validation."""

    interval_steps: int = 100
    """Evaluate every this many stage steps (and at each stage's end)."""
    num_samples: int = 64
    """Validation samples per source: the first N of its valid split (fixed, deterministic)."""
    batch_size: int = 16
    """Samples per forward pass during evaluation."""
    sources: Tuple[str, ...] = ()
    """Sources to evaluate; empty = every source with a valid split."""


@dataclass(frozen=True)
class SourcePaths:
    """A named source: its training and validation ``.bin/.idx`` prefixes."""

    name: str
    """Source name used in stages, metrics and reports."""
    train_prefix: str
    """Absolute prefix of the training split."""
    valid_prefix: Optional[str] = None
    """Absolute prefix of the validation split (None: not evaluated)."""


@dataclass(frozen=True)
class StageConfig:
    """One stage of the run."""

    name: str
    """Stage name (unique in the run)."""
    index: int
    """Position in the run, 0-based."""
    sources: Tuple[Tuple[str, Optional[float]], ...]
    """New data: (source, weight); weights None = proportional to tokens."""
    num_steps: int
    """Optimizer steps (token budget / (batch_size x seq_length), rounded up)."""
    num_tokens: int
    """Tokens trained: num_steps x batch_size x seq_length."""
    replay_frac: float = 0.0
    """Share of every batch drawn from the replay sources."""
    replay_sources: Tuple[Tuple[str, Optional[float]], ...] = ()
    """Earlier data to replay: (source, weight)."""
    init_from: Optional[str] = None
    """None = scratch; an earlier stage's name; or an absolute path (run dir or checkpoint dir)."""
    reset_optimizer: bool = True
    """Fresh AdamW state at the stage start (paper); False keeps the moments of the initial checkpoint."""
    schedule_keys: Tuple[Tuple[str, Any], ...] = ()
    """The stage's cpt_ keys (schedule and extra replay keys), merged over ``stage_defaults``."""
    seed: Optional[int] = None
    """Seed of this stage's data index (None = the run seed)."""

    @property
    def init_is_path(self) -> bool:
        return self.init_from is not None and os.path.isabs(self.init_from)

    def train_shares(self) -> Dict[str, float]:
        """Source -> share of the stage's samples (replay included; token-weighted sources: equal split)."""
        shares: Dict[str, float] = {}
        for group, total in ((self.sources, 1.0 - self.replay_frac), (self.replay_sources, self.replay_frac)):
            weights = [1.0 if w is None else float(w) for _, w in group]
            for (name, _), w in zip(group, weights):
                if total > 0:
                    shares[name] = shares.get(name, 0.0) + total * w / sum(weights)
        return {k: round(v, 9) for k, v in shares.items()}


@dataclass(frozen=True)
class RunConfig:
    """A resolved, validated local run."""

    stages: Tuple[StageConfig, ...]
    """The stages in order."""
    sources: Tuple[SourcePaths, ...]
    """Every named source."""
    vocab_size: int
    """Model vocabulary (resolved)."""
    model: ModelConfig = ModelConfig()
    """The model."""
    optim: OptimConfig = OptimConfig()
    """The optimiser."""
    eval: EvalConfig = EvalConfig()
    """Validation."""
    batch_size: int = 16
    """Sequences per optimizer step (no gradient accumulation)."""
    seq_length: int = 128
    """Tokens per sequence (samples hold seq_length + 1)."""
    seed: int = 1234
    """Model init, RNG and (default) data seed."""
    device: str = "auto"
    """auto (cuda when available, else cpu), cpu, cuda, cuda:N."""
    threads: int = 0
    """torch CPU threads; 0 = the cores this process may use."""
    log_interval: int = 10
    """Steps per train record and progress line."""
    checkpoint_interval: int = 100
    """Steps between periodic checkpoints (stage ends are always saved)."""
    keep_checkpoints: int = 1
    """Periodic checkpoints kept besides stage-end ones."""
    tensorboard: bool = True
    """Write TensorBoard events when torch.utils.tensorboard works."""
    index_cache_dir: Optional[str] = None
    """Where stage indexes are built (None = beside the first data prefix, B's default)."""
    run_dir: Optional[str] = None
    """Default run directory (CLI --run-dir overrides)."""
    name: str = ""
    """Run label."""

    def source(self, name: str) -> SourcePaths:
        for s in self.sources:
            if s.name == name:
                return s
        raise ValueError(f"source {name!r} is not defined: known sources are {[s.name for s in self.sources]}; "
                         "add it under data.sources (train/valid prefixes) or use a manifest that has it")

    @property
    def eval_sources(self) -> Tuple[str, ...]:
        return self.eval.sources or tuple(s.name for s in self.sources if s.valid_prefix)

    def to_dict(self) -> Dict[str, Any]:
        """The resolved config (what run.yml holds)."""
        d = asdict(self)
        for st in d["stages"]:
            st["sources"] = {k: v for k, v in st["sources"]}
            st["replay_sources"] = {k: v for k, v in st["replay_sources"]}
            st["schedule_keys"] = {k: v for k, v in st["schedule_keys"]}
        d["optim"]["betas"] = list(self.optim.betas)
        d["eval"]["sources"] = list(self.eval.sources)
        return d


def stage_mapping(cfg: RunConfig, stage: StageConfig) -> Dict[str, Any]:
    """The flat NeoX-style stage config of ``stage``: what A's and B's config readers take."""
    out: Dict[str, Any] = {
        "cpt_stage_name": stage.name, "cpt_stage_iters": stage.num_steps, "train_iters": stage.num_steps,
        "train_batch_size": cfg.batch_size, "seq_length": cfg.seq_length,
        "seed": cfg.seed if stage.seed is None else stage.seed,
        "cpt_train_data_paths": [cfg.source(n).train_prefix for n, _ in stage.sources],
        "cpt_replay_frac": stage.replay_frac,
    }
    if all(w is not None for _, w in stage.sources):
        out["cpt_train_data_weights"] = [float(w) for _, w in stage.sources]  # type: ignore[arg-type]
    if stage.replay_sources:
        out["cpt_replay_data_paths"] = [cfg.source(n).train_prefix for n, _ in stage.replay_sources]
        if all(w is not None for _, w in stage.replay_sources):
            out["cpt_replay_data_weights"] = [float(w) for _, w in stage.replay_sources]  # type: ignore[arg-type]
    if cfg.index_cache_dir:
        out["cpt_index_cache_dir"] = cfg.index_cache_dir
    out.update(dict(stage.schedule_keys))
    return out
