"""Map-style datasets over a built replay index, returning NeoX's sample format.

``ReplayDataset(index_dir, start_sample=0)[i]`` is ``{"text": int64[seq_length + 1]}`` for global
position ``start_sample + i`` of the stage: ``start_sample`` is the stage-local data position (samples
already consumed), so a resumed run continues exactly where it stopped. No index wraps: reading past
the end raises IndexError. Deterministic: the same directory gives the same samples in any process.

    >>> import tempfile, numpy as np
    >>> from neox_cpt.data.cache import build_index
    >>> from neox_cpt.data.indexed import IndexedDatasetWriter
    >>> from neox_cpt.data.spec import ReplayIndexSpec, SourceSpec
    >>> tmp = tempfile.mkdtemp()
    >>> for name, token in (("new", 1), ("old", 2)):
    ...     with IndexedDatasetWriter(f"{tmp}/{name}", np.uint16) as w:
    ...         w.add_document([token] * 100)
    >>> spec = ReplayIndexSpec(new=(SourceSpec(f"{tmp}/new"),), replay=(SourceSpec(f"{tmp}/old"),),
    ...                        replay_frac=0.25, num_samples=8, seq_length=4)
    >>> ds = ReplayDataset(build_index(spec, f"{tmp}/cache", progress=False), start_sample=2)
    >>> len(ds), [ds.source_names[ds.source_of(i)] for i in range(len(ds))]
    (6, ['new', 'old', 'new', 'new', 'new', 'old'])
    >>> ds[1]["text"].tolist()
    [2, 2, 2, 2, 2]
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np

from neox_cpt.data.sources import DESCRIPTION, open_reader

PathLike = Union[str, "Path"]


class ReplayDataset:
    """Samples of a built index, from stage-local position ``start_sample`` on."""

    def __init__(self, index_dir: PathLike, start_sample: int = 0) -> None:
        self.index_dir = Path(index_dir)
        desc_path = self.index_dir / DESCRIPTION
        if not desc_path.is_file():
            raise FileNotFoundError(f"{desc_path}: not found; {self.index_dir} is not a complete neox-cpt index "
                                    f"(build it with `neox-cpt build-index CONFIG`)")
        with open(desc_path) as f:
            self.description: Dict[str, Any] = json.load(f)
        with open(self.index_dir / "counts.json") as f:
            self.counts: Dict[str, Any] = json.load(f)
        self.num_samples: int = self.description["spec"]["num_samples"]
        self.seq_length: int = self.description["spec"]["seq_length"]
        if not 0 <= start_sample <= self.num_samples:
            raise ValueError(f"start_sample={start_sample}: outside [0, {self.num_samples}] for {self.index_dir}; "
                             f"it is the number of samples this stage already consumed")
        self.start_sample = int(start_sample)
        self.replay_ppm: int = self.description["spec"]["replay_ppm"]
        load = lambda name: np.load(self.index_dir / f"{name}.npy")  # noqa: E731 - small arrays, read once
        self._tables = [load("blend_table_new"), load("blend_table_replay")]
        self._table_counts = [load("blend_count_new"), load("blend_count_replay")]
        self._weight_of = load("blend_weight")
        self._draw_dtype = np.dtype(self.description["arrays"]["blend_draw"])
        entries = self.description["sources"]
        for e, c in zip(entries, self.counts["sources"]):
            e["samples"] = c["samples"]
        self.source_names: List[str] = [e["name"] for e in entries]
        self._entries = entries
        self._readers: List[Optional[Any]] = [None] * len(entries)  # opened on first use

    def __len__(self) -> int:
        return self.num_samples - self.start_sample

    def _position(self, i: int) -> int:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"sample {i} outside [0, {n}) of {self.index_dir} (start_sample={self.start_sample})")
        return self.start_sample + i

    def _locate(self, p: int):
        """(source, draw) of absolute position p: the group by the floor rule, then its stored period."""
        before = self.replay_ppm * p // 1_000_000
        g = 1 if self.replay_ppm * (p + 1) // 1_000_000 > before else 0
        q, r = divmod(before if g else p - before, len(self._tables[g]))
        s = int(self._tables[g][r])
        return s, q * int(self._weight_of[s]) + int(self._table_counts[g][r])

    def source_of(self, i: int) -> int:
        """Index (into ``source_names``) of the source of sample i."""
        return self._locate(self._position(i))[0]

    def blend_arrays(self, start: int = 0, stop: Optional[int] = None):
        """(source, draw) of absolute positions [start, stop) as arrays (the per-position blend)."""
        from neox_cpt.data.build import KERNELS

        stop = self.num_samples if stop is None else stop
        src, draw = np.empty(stop - start, self._tables[0].dtype), np.empty(stop - start, self._draw_dtype)
        KERNELS.blend(start, self.replay_ppm, self._tables[0], self._table_counts[0], self._tables[1],
                      self._table_counts[1], self._weight_of, src, draw)
        return src, draw

    def read_position(self, p: int, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Tokens of absolute stage position p (ignores start_sample) as int64[seq_length + 1]."""
        if not 0 <= p < self.num_samples:
            raise IndexError(f"position {p} outside [0, {self.num_samples}) of {self.index_dir}")
        s, k = self._locate(p)
        reader = self._readers[s]
        if reader is None:
            from neox_cpt.data.sources import open_reader as _open

            reader = self._readers[s] = _open(self.index_dir, s, self._entries[s], self.seq_length)
        if out is None:
            out = np.empty(self.seq_length + 1, np.int64)
        return reader.read(k, out)

    def __getitem__(self, i: int) -> Dict[str, np.ndarray]:
        return {"text": self.read_position(self._position(int(i)))}

    def __repr__(self) -> str:
        return (f"ReplayDataset({str(self.index_dir)!r}, start_sample={self.start_sample}, samples={len(self)}, "
                f"sources={self.source_names})")


class SourceDataset(ReplayDataset):
    """A single source's fixed-length samples (e.g. per-source validation), built through the same cache.

    ``num_samples=None`` takes one epoch: ``(tokens - 1) // seq_length`` samples.
    """

    def __init__(self, prefix: PathLike, seq_length: int, num_samples: Optional[int] = None, seed: int = 1234,
                 cache_dir: Optional[PathLike] = None, start_sample: int = 0) -> None:
        from neox_cpt.data.cache import build_index
        from neox_cpt.data.indexed import IndexedDataset
        from neox_cpt.data.spec import ReplayIndexSpec, SourceSpec

        if num_samples is None:
            num_samples = (IndexedDataset(prefix).num_tokens - 1) // seq_length
        if cache_dir is None:
            cache_dir = Path(str(prefix)).resolve().parent / "neox_cpt_index"
        spec = ReplayIndexSpec(new=(SourceSpec(str(prefix)),), num_samples=int(num_samples),
                               seq_length=int(seq_length), seed=int(seed), name="source")
        super().__init__(build_index(spec, cache_dir, progress=False), start_sample)


__all__ = ["ReplayDataset", "SourceDataset", "open_reader"]
