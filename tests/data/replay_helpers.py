"""Tiny datasets for the replay-index tests (written in tmp_path with B2's IndexedDatasetWriter)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import numpy as np

from neox_cpt.data.indexed import IndexedDatasetWriter


def write_docs(prefix: Path, docs: Sequence[Sequence[int]], dtype=np.uint16) -> str:
    with IndexedDatasetWriter(str(prefix), dtype) as w:
        for d in docs:
            w.add_document(np.asarray(d, dtype=np.int64))
    return str(prefix)


def numbered_docs(sizes: Sequence[int], base: int = 0) -> List[List[int]]:
    """Document i holds tokens base + 100 i + t (t < 100) so every token tells its document and offset."""
    return [[base + 100 * i + (t % 100) for t in range(s)] for i, s in enumerate(sizes)]


def random_sizes(n: int, seed: int, lo: int = 1, hi: int = 40) -> List[int]:
    return np.random.default_rng(seed).integers(lo, hi, n).tolist()
