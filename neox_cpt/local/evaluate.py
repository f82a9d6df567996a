"""Per-source validation: fixed samples of each source's valid split, mean next-token cross-entropy.

The samples are the first ``num_samples`` of ``neox_cpt.data.dataset.SourceDataset`` over the valid
prefix (NeoX samples of ``seq_length + 1`` tokens stitched across documents, seed ``VALID_SEED``), so
they depend only on the valid files, ``seq_length`` and ``num_samples``: every run that evaluates a
source sees the same tokens. A split holding fewer samples than asked gives all it has (one epoch, a
warning), never repeated ones. The loss is the mean over every predicted token of every sample.

    >>> # sets = load_validation_sets(cfg)          # {"sotu": int64[64, 129], ...}
    >>> # evaluate(model, sets, batch_size=16)       # {"sotu": 3.12, ...}
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional

import numpy as np

from neox_cpt.local.config import RunConfig

logger = logging.getLogger(__name__)

VALID_SEED = 1234
"""Seed of the validation sample order (fixed: independent of the run's seed)."""


def validation_tokens(prefix: str, seq_length: int, num_samples: int, cache_dir: Optional[str] = None,
                      name: str = "") -> np.ndarray:
    """int64[n, seq_length + 1]: the first ``n = min(num_samples, one epoch)`` samples of ``prefix``."""
    from neox_cpt.data.dataset import SourceDataset
    from neox_cpt.data.indexed import IndexedDataset

    available = (IndexedDataset(prefix).num_tokens - 1) // seq_length
    if available < 1:
        raise ValueError(f"validation split of {name or prefix} holds fewer than seq_length + 1 = {seq_length + 1} "
                         "tokens; give it more text or lower seq_length")
    n = min(num_samples, available)
    if n < num_samples:
        logger.warning("validation %s: %d samples asked, the split holds %d; evaluating on %d",
                       name or prefix, num_samples, available, n)
    ds = SourceDataset(prefix, seq_length, n, VALID_SEED, cache_dir)
    return np.stack([ds[i]["text"] for i in range(n)])


def load_validation_sets(cfg: RunConfig) -> Dict[str, np.ndarray]:
    """Source name -> its validation samples, for every evaluated source."""
    return {name: validation_tokens(str(cfg.source(name).valid_prefix), cfg.seq_length, cfg.eval.num_samples,
                                    cfg.index_cache_dir, name)
            for name in cfg.eval_sources}


def evaluate(model: Any, sets: Dict[str, np.ndarray], batch_size: int, device: Any = "cpu") -> Dict[str, float]:
    """Mean next-token cross-entropy (nats per token) of ``model`` on each set; restores train mode."""
    import torch

    from neox_cpt.local.model import lm_loss

    was_training = model.training
    model.eval()
    out: Dict[str, float] = {}
    with torch.no_grad():
        for name, tokens in sets.items():
            total = 0.0
            for i in range(0, len(tokens), batch_size):
                batch = torch.from_numpy(tokens[i:i + batch_size]).to(device)
                total += float(lm_loss(model, batch, reduction="sum"))
            out[name] = total / (tokens.shape[0] * (tokens.shape[1] - 1))
    model.train(was_training)
    return out
