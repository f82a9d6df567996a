"""The local model and optimiser: a small ``transformers.GPTNeoXForCausalLM`` and the paper's AdamW.

The loss is computed here (cross-entropy of ``tokens[:, 1:]`` given ``tokens[:, :-1]``) rather than by the
model's ``labels=`` argument, whose shifting convention changed in transformers 5.x; samples are NeoX
samples of ``seq_length + 1`` tokens.

    >>> import torch
    >>> from neox_cpt.local.config import ModelConfig, OptimConfig
    >>> model = build_model(ModelConfig(hidden_size=32, num_layers=2, num_heads=2), vocab_size=300, seq_length=16)
    >>> opt = build_optimizer(model, OptimConfig())
    >>> loss = lm_loss(model, torch.randint(0, 300, (2, 17)))
    >>> import math; abs(loss.item() - math.log(300)) < 0.3   # about ln(300) = 5.7 at initialisation
    True
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List

from neox_cpt.local.config import ModelConfig, OptimConfig

logger = logging.getLogger(__name__)


def resolve_device(device: str) -> Any:
    """``auto`` -> cuda when available, else cpu."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device = {device!r} but torch sees no GPU; use device: auto or cpu")
    return torch.device(device)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def set_threads(threads: int) -> int:
    """torch intra-op threads: ``threads``, or the cores this process may use when 0."""
    import torch

    n = threads or usable_cores()
    torch.set_num_threads(n)
    return n


def build_model(cfg: ModelConfig, vocab_size: int, seq_length: int) -> Any:
    """A freshly initialised GPT-NeoX (rotary on ``rotary_pct`` of each head, parallel residual, untied).

    Initialisation draws from torch's global RNG: seed it first for a reproducible model.
    """
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    # rotary_pct / rotary_emb_base are the 4.x names; 5.x reads them into rope_parameters.
    hf = GPTNeoXConfig(
        vocab_size=vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size or 4 * cfg.hidden_size,
        rotary_pct=cfg.rotary_pct, rotary_emb_base=cfg.rotary_base, max_position_embeddings=seq_length,
        use_parallel_residual=True, tie_word_embeddings=False, hidden_dropout=0.0, attention_dropout=0.0,
        initializer_range=cfg.init_std, use_cache=False, bos_token_id=None, eos_token_id=None)
    rope = getattr(hf, "rope_parameters", None) or {}
    pct = rope.get("partial_rotary_factor", getattr(hf, "rotary_pct", None))
    if pct is not None and abs(float(pct) - cfg.rotary_pct) > 1e-9:
        raise RuntimeError(f"transformers ignored rotary_pct = {cfg.rotary_pct} (got {pct}); report this version")
    model = GPTNeoXForCausalLM(hf)
    if hf.tie_word_embeddings or model.get_output_embeddings().weight is model.get_input_embeddings().weight:
        raise RuntimeError("transformers tied the input and output embeddings; GPT-NeoX keeps them untied")
    return model


def num_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def param_groups(model: Any, weight_decay: float) -> List[Dict[str, Any]]:
    """Decay the matrices (linear weights, embeddings); not biases or LayerNorm gains (1-D tensors)."""
    decay, no_decay = [], []
    for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: Any, cfg: OptimConfig) -> Any:
    """AdamW(betas, eps, decoupled weight decay); the LR is written each step by ScheduleLR."""
    import torch

    # foreach=False: the plain per-tensor loop, the same arithmetic on every torch build.
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=0.0, betas=tuple(cfg.betas), eps=cfg.eps,
                             foreach=False)


def lm_loss(model: Any, tokens: Any, reduction: str = "mean") -> Any:
    """Cross-entropy of next-token prediction on ``tokens`` (int64 [batch, seq_length + 1]), ``mean`` or ``sum``.

    The model's body gives the final hidden states; the output layer and the loss are one fused, chunked
    operation (``neox_cpt.local.head_loss``), so the full logits matrix is never formed.
    """
    from neox_cpt.local.head_loss import head_cross_entropy

    head = model.get_output_embeddings()
    if getattr(head, "bias", None) is not None:
        raise RuntimeError("the output layer has a bias; GPT-NeoX's has none and lm_loss does not add one")
    inputs, labels = tokens[:, :-1], tokens[:, 1:]
    hidden = model.base_model(input_ids=inputs).last_hidden_state
    return head_cross_entropy(hidden.reshape(-1, hidden.shape[-1]), head.weight, labels.reshape(-1),
                              reduction=reduction)
