"""Tiny synthetic sources and run configs shared by the trainer and config tests (helpers; no tests here)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from neox_cpt.data.indexed import IndexedDatasetWriter

VOCAB = 300


def write_source(prefix: Path, lo: int, hi: int, num_docs: int, seed: int) -> None:
    """Documents of arithmetic token runs inside [lo, hi) (a learnable, source-specific pattern) + EOD 0."""
    rng = np.random.default_rng(seed)
    with IndexedDatasetWriter(str(prefix), np.uint16) as w:
        for _ in range(num_docs):
            n = int(rng.integers(10, 120))
            start = int(rng.integers(lo, hi))
            step = int(rng.integers(1, 4))
            w.add_document(np.append((start - lo + np.arange(n) * step) % (hi - lo) + lo, 0))


def make_sources(root: Path) -> Dict[str, Dict[str, str]]:
    """Two sources, "old" (ids 1..149) and "new" (150..299), each with train and valid splits."""
    out = {}
    for i, (name, lo, hi) in enumerate((("old", 1, 150), ("new", 150, VOCAB))):
        write_source(root / f"{name}_train", lo, hi, 150, seed=10 + i)
        write_source(root / f"{name}_valid", lo, hi, 20, seed=20 + i)
        out[name] = {"train": str(root / f"{name}_train"), "valid": str(root / f"{name}_valid")}
    return out


def base_config(sources: Dict[str, Dict[str, str]], **overrides: Any) -> Dict[str, Any]:
    """Two stages: d0 on "old" (10 steps), d1 on "new" with 25 % replay of "old" (8 steps)."""
    cfg: Dict[str, Any] = {
        "data": {"sources": sources},
        "model": {"vocab_size": VOCAB, "hidden_size": 32, "num_layers": 2, "num_heads": 2},
        "batch_size": 4, "seq_length": 16, "seed": 7, "threads": 1, "tensorboard": False,
        "log_interval": 1, "checkpoint_interval": 3, "keep_checkpoints": 1,
        "eval": {"interval_steps": 4, "num_samples": 6, "batch_size": 4},
        "stage_defaults": {"cpt_lr_max": 3.0e-3, "cpt_warmup_iters": 2},
        "stages": [
            {"name": "d0", "sources": {"old": 1.0}, "steps": 10},
            {"name": "d1", "sources": {"new": 1.0}, "replay_frac": 0.25, "replay_sources": {"old": 1.0},
             "steps": 8},
        ],
    }
    cfg.update(overrides)
    return cfg


def records(run_dir: Path, kind: str) -> List[Dict[str, Any]]:
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def without_timing(recs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "tok_per_s"} for r in recs]
