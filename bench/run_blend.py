"""The blend step alone (which source each global position takes), 2 and 10 sources, both implementations.

neox-cpt: the native ``blend`` kernel run chunk by chunk into ``.npy`` streams, as
``neox_cpt.data.build.build_into`` does. megatron-core: ``helpers.build_blending_indices`` into full-size
in-RAM arrays (int16 + int64 per position), as ``BlendedDataset`` does before saving them. Prints one JSON line.

    $ python bench/run_blend.py --num-samples 146000000
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

# 2 sources: the plan. 10 sources: 4 new sources sharing 0.95 and 6 replay sources sharing 0.05.
PLANS = {
    2: ([0.95], [0.05]),
    10: ([0.95 * w for w in (0.4, 0.3, 0.2, 0.1)], [0.05 / 6] * 6),
}


def neox_cpt_blend(num_samples: int, new, replay) -> float:
    from neox_cpt.data.build import CHUNK, KERNELS, NpyStream, position_dtype, source_dtype

    weights = np.array(list(new) + list(replay), np.float64)
    group = np.array([0] * len(new) + [1] * len(replay), np.int8)
    counts = np.zeros(len(weights), np.int64)
    ppm = round(sum(replay) * 1_000_000)
    sd, dd = source_dtype(len(weights)), position_dtype(num_samples)
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent / ".data") as tmp:
        t0 = time.perf_counter()
        src_out = NpyStream(Path(tmp) / "s.npy", sd, num_samples)
        draw_out = NpyStream(Path(tmp) / "d.npy", dd, num_samples)
        sbuf, dbuf = np.empty(min(CHUNK, num_samples), sd), np.empty(min(CHUNK, num_samples), dd)
        for start in range(0, num_samples, CHUNK):
            m = min(CHUNK, num_samples - start)
            KERNELS.blend(start, ppm, group, weights, counts, sbuf[:m], dbuf[:m])
            src_out.write(sbuf[:m])
            draw_out.write(dbuf[:m])
        src_out.close()
        draw_out.close()
        return time.perf_counter() - t0


def megatron_blend(num_samples: int, new, replay) -> float:
    from megatron.core.datasets import helpers

    weights = np.array(list(new) + list(replay), np.float64)
    t0 = time.perf_counter()
    dataset_index = np.zeros(num_samples, dtype=np.int16)
    dataset_sample_index = np.zeros(num_samples, dtype=np.int64)
    helpers.build_blending_indices(dataset_index, dataset_sample_index, weights, len(weights), num_samples, False)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--num-samples", type=int, required=True)
    ap.add_argument("--impl", choices=["both", "megatron", "neox-cpt"], default="both")
    args = ap.parse_args()
    impls = {"neox-cpt": neox_cpt_blend, "megatron": megatron_blend}
    out = {}
    for name, fn in impls.items():
        if args.impl in ("both", name):
            for k, (new, replay) in PLANS.items():
                out[f"{name} {k} sources"] = fn(args.num_samples, new, replay)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
