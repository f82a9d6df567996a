"""The blend step alone (which source each global position takes) for 2 and 10 sources, both implementations.

neox-cpt: ``neox_cpt.data.build.blend_only`` (the builder's blend step, writing ``blend_source.npy`` and
``blend_draw.npy``), then, for context, a full cold ``build_index`` of the same plan through the public API.
The 10 sources are hard links of the synthetic files under other names (4 "new" sharing 0.95 as
0.4/0.3/0.2/0.1, 6 "old" sharing 0.05 equally), each a source of its own in the plan.
megatron-core: ``helpers.build_blending_indices`` into full-size in-RAM arrays (int16 + int64 per position)
with the same global weights, as ``BlendedDataset`` does before saving them (save not included).

    $ python bench/run_blend.py --num-samples 146000000 --new NEW_PREFIX --old OLD_PREFIX
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

NEW_SPLIT, NUM_OLD = (0.4, 0.3, 0.2, 0.1), 6
REPLAY_FRAC = 0.05
REPEATS = 3  # best of 3: the first touch of fresh memory on this VM can be several times slower


def linked_sources(prefix: str, names) -> list:
    """Hard links ``{dir}/links/{name}.bin/.idx`` of one dataset: distinct paths, shared bytes."""
    out = []
    links = Path(prefix).parent / "links"
    links.mkdir(exist_ok=True)
    for name in names:
        target = links / name
        for ext in (".bin", ".idx"):
            if not Path(str(target) + ext).exists():
                os.link(prefix + ext, str(target) + ext)
        out.append(str(target))
    return out


def plans(new: str, old: str) -> dict:
    """sources -> (new prefixes, new weights, replay prefixes, replay weights)."""
    return {
        2: ([new], [1.0], [old], [1.0]),
        10: (linked_sources(new, [f"new{k}" for k in range(len(NEW_SPLIT))]), list(NEW_SPLIT),
             linked_sources(old, [f"old{k}" for k in range(NUM_OLD)]), [1.0] * NUM_OLD),
    }


def neox_cpt_blend(num_samples: int, new_p, new_w, old_p, old_w) -> dict:
    """``blend_only`` (the builder's blend step: arrays streamed to .npy), then a full cold build."""
    from neox_cpt.data.build import blend_only
    from neox_cpt.data.cache import build_index
    from neox_cpt.data.spec import replay_spec_from_config

    out = {}
    cache = tempfile.mkdtemp(prefix="blend-", dir=Path(__file__).parent / ".data")
    try:
        runs = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            blend_only(Path(cache), num_samples, new_w, old_w, REPLAY_FRAC)
            runs.append(time.perf_counter() - t0)
            shutil.rmtree(cache)
            os.mkdir(cache)
        out["blend_s"], out["runs"] = min(runs), runs
        cfg = {"cpt_train_data_paths": new_p, "cpt_train_data_weights": new_w, "cpt_replay_data_paths": old_p,
               "cpt_replay_data_weights": old_w, "cpt_replay_frac": REPLAY_FRAC, "seq_length": 2048, "seed": 1234}
        t0 = time.perf_counter()
        build_index(replay_spec_from_config(cfg, num_samples=num_samples), cache, progress=False)
        out["build_s"] = time.perf_counter() - t0
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return out


def megatron_blend(num_samples: int, new_p, new_w, old_p, old_w) -> dict:
    from megatron.core.datasets import helpers

    weights = np.array([(1 - REPLAY_FRAC) * w / sum(new_w) for w in new_w] +
                       [REPLAY_FRAC * w / sum(old_w) for w in old_w], np.float64)
    runs = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        dataset_index = np.zeros(num_samples, dtype=np.int16)
        dataset_sample_index = np.zeros(num_samples, dtype=np.int64)
        helpers.build_blending_indices(dataset_index, dataset_sample_index, weights, len(weights), num_samples, False)
        runs.append(time.perf_counter() - t0)
        del dataset_index, dataset_sample_index
    return {"blend_s": min(runs), "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--num-samples", type=int, required=True)
    ap.add_argument("--new", required=True)
    ap.add_argument("--old", required=True)
    ap.add_argument("--impl", choices=["both", "megatron", "neox-cpt"], default="both")
    args = ap.parse_args()
    out = {}
    for name, fn in {"neox-cpt": neox_cpt_blend, "megatron": megatron_blend}.items():
        if args.impl in ("both", name):
            for k, plan in plans(args.new, args.old).items():
                r = fn(args.num_samples, *plan)
                out[f"{name} {k} sources"] = r["blend_s"]
                out[f"{name} {k} sources runs"] = r["runs"]
                if "build_s" in r:
                    out[f"{name} {k} sources full build"] = r["build_s"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
