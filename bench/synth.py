"""Synthetic NeoX datasets of /work/shared/ANCHORS.md, written once and cached under bench/.data/.

Two uint16 ``.bin/.idx`` datasets with lognormal document lengths (sigma 1, clipped to [8, 65536],
mean ~1000 tokens): "new" 5M documents / ~5.0B tokens and "old" 1M documents / ~1.0B tokens
(times ``data_scale``). Token ids are a fixed random block repeated with a rotating offset: their values
do not matter to index building, and this writes ~12 GB at disk speed instead of RNG speed.

    $ python bench/synth.py --data-scale 0.01      # prints the two prefixes
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from neox_cpt.data.indexed import IndexedDataset, IndexedDatasetWriter, write_indexed_dataset_from_arrays  # noqa

DATA_ROOT = Path(__file__).resolve().parent / ".data"
SOURCES = {"new": (5_000_000, 0), "old": (1_000_000, 1)}  # name -> (documents at scale 1, seed)
MEAN_TOKENS, SIGMA, MIN_TOKENS, MAX_TOKENS = 1000, 1.0, 8, 65536
CHUNK_TOKENS = 1 << 26  # 128 MB of uint16 per write
VOCAB = 50_000


def doc_sizes(num_docs: int, seed: int) -> np.ndarray:
    """Lognormal lengths whose untruncated mean is MEAN_TOKENS (mu = ln(mean) - sigma^2 / 2)."""
    rng = np.random.default_rng(seed)
    mu = math.log(MEAN_TOKENS) - SIGMA ** 2 / 2
    return np.clip(np.rint(rng.lognormal(mu, SIGMA, num_docs)), MIN_TOKENS, MAX_TOKENS).astype(np.int32)


def _token_chunks(total: int, seed: int):
    block = np.random.default_rng(seed + 100).integers(0, VOCAB, size=CHUNK_TOKENS + 4099, dtype=np.uint16)
    done, k = 0, 0
    while done < total:
        n = min(CHUNK_TOKENS, total - done)
        shift = (k * 4099) % 4096  # rotate so consecutive chunks differ
        yield block[shift: shift + n]
        done += n
        k += 1


def ensure_data(data_scale: float = 1.0, log=print) -> dict:
    """Prefixes of the "new" and "old" datasets at this scale, writing them if absent."""
    root = DATA_ROOT / f"synth-{data_scale:g}"
    meta_path = root / "meta.json"
    if meta_path.is_file():
        return json.loads(meta_path.read_text())["prefixes"]
    root.mkdir(parents=True, exist_ok=True)
    prefixes, stats = {}, {}
    for name, (num_docs, seed) in SOURCES.items():
        n = max(1, round(num_docs * data_scale))
        sizes = doc_sizes(n, seed)
        prefix = str(root / f"{name}_text_document")
        t0 = time.perf_counter()
        ds = write_indexed_dataset_from_arrays(prefix, sizes, _token_chunks(int(sizes.sum(dtype=np.int64)), seed))
        log(f"wrote {prefix}: {len(ds):,} docs, {ds.num_tokens:,} tokens, mean {ds.num_tokens / len(ds):.1f} "
            f"in {time.perf_counter() - t0:.1f}s")
        prefixes[name] = prefix
        stats[name] = {"documents": len(ds), "tokens": ds.num_tokens}
    meta_path.write_text(json.dumps({"prefixes": prefixes, "stats": stats, "data_scale": data_scale}, indent=1))
    return prefixes


def ensure_sparse(name: str, num_docs: int, seed: int, root: Path = DATA_ROOT / "sparse") -> str:
    """A dataset with a real ``.idx`` (the same lognormal document sizes) and a *sparse* ``.bin`` of the right
    size: index building reads only the ``.idx``, so Pile-sized plans fit on a small disk (reads return 0s)."""
    prefix = str(root / f"{name}_text_document")
    if Path(prefix + ".idx").is_file():
        return prefix
    root.mkdir(parents=True, exist_ok=True)
    sizes = doc_sizes(num_docs, seed)
    with IndexedDatasetWriter(prefix, np.uint16) as w:
        w._bin.truncate(int(sizes.sum(dtype=np.int64)) * 2)  # a hole: no blocks allocated
        w._sizes.frombytes(sizes.tobytes())
    return prefix


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-scale", type=float, default=1.0)
    args = ap.parse_args()
    for name, prefix in ensure_data(args.data_scale).items():
        ds = IndexedDataset(prefix)
        print(name, prefix, len(ds), ds.num_tokens)
