"""One local training step, side by side: the model's own logits + ``F.cross_entropy`` (the anchor's bare
loop in ANCHORS.md) against neox-cpt's ``lm_loss`` (fused, chunked output layer + loss).

Both sides train the same model (same init, same batch) with the paper's AdamW and clipping; rounds
alternate between them so that whatever else the machine does hits both. Reported: tokens/s per side
(median over rounds), their ratio, and the first step's loss on each side (equal up to rounding).

    python bench/trainer_step.py                      # hidden 128, 2 threads, 8 rounds of 10 steps
    python bench/trainer_step.py --threads 1 --hidden 256 --out bench/results/trainer_step.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10, help="steps per round")
    ap.add_argument("--out", default=None, help="write the result as JSON here")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    from neox_cpt.local.config import ModelConfig, OptimConfig
    from neox_cpt.local.model import build_model, build_optimizer, lm_loss

    torch.set_num_threads(args.threads)

    def plain_loss(model, tokens):
        logits = model(input_ids=tokens[:, :-1]).logits
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))

    sides = {"anchor (logits + F.cross_entropy)": plain_loss, "neox-cpt lm_loss (fused, chunked)": lm_loss}
    tokens = torch.randint(0, args.vocab, (args.batch, args.seq + 1), generator=torch.Generator().manual_seed(0))
    state = {}
    for name in sides:
        torch.manual_seed(0)
        model = build_model(ModelConfig(hidden_size=args.hidden, num_layers=args.layers, num_heads=4), args.vocab,
                            args.seq)
        state[name] = (model, build_optimizer(model, OptimConfig()))
    for group in (g for _, opt in state.values() for g in opt.param_groups):
        group["lr"] = 1e-3

    def run_steps(name: str, n: int) -> float:
        model, opt = state[name]
        loss = None
        for _ in range(n):
            loss = sides[name](model, tokens)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        return float(loss.detach())

    with torch.no_grad():
        first = {name: float(sides[name](state[name][0], tokens)) for name in sides}
    for name in sides:  # warm-up
        run_steps(name, 2)
    rates = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name in sides:
            t0 = time.perf_counter()
            run_steps(name, args.steps)
            rates[name].append(args.steps * args.batch * args.seq / (time.perf_counter() - t0))
    anchor, ours = list(sides)
    result = {
        "setting": {k: getattr(args, k) for k in ("hidden", "layers", "vocab", "batch", "seq", "threads", "rounds",
                                                  "steps")},
        "tokens_per_s_median": {k: statistics.median(v) for k, v in rates.items()},
        "tokens_per_s_rounds": rates,
        "speedup_median": statistics.median(o / a for o, a in zip(rates[ours], rates[anchor])),
        "first_loss": first,
    }
    for name in sides:
        print(f"{name:36s} {result['tokens_per_s_median'][name]:8,.0f} tokens/s (median of {args.rounds} rounds)")
    print(f"speed-up (median of per-round ratios): {result['speedup_median']:.2f}x; first-step loss "
          f"{first[anchor]:.6f} vs {first[ours]:.6f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
