"""Map-style datasets over a built replay index, returning NeoX's sample format.

``ReplayDataset(index_dir, start_sample=0)[i]`` is ``{"text": int64[seq_length + 1]}`` for global
position ``start_sample + i`` of the stage: ``start_sample`` is the stage-local data position (samples
already consumed), so a resumed run continues exactly where it stopped. No index wraps: reading past
the end raises IndexError. Deterministic: the same directory gives the same samples in any process.
Opening checks that every source (and, for seen-only replay, every source of the earlier index) is still
the content the index was built on: a ``stat`` per file while the files are unchanged
(``neox_cpt.data.sources.check_sources``), so a replaced file is refused, never silently read.

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

import ctypes
import json
import mmap
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np

from neox_cpt.data.indexed import IndexedDataset
from neox_cpt.data.reference import Permutation, epoch_key
from neox_cpt.data.sources import DESCRIPTION, locations, raise_if_changed
from neox_cpt.native import NATIVE

PathLike = Union[str, "Path"]
#: Tell the kernel that the token file and the per-source arrays are read at random (``madvise``
#: MADV_RANDOM: no readahead). A sample is ~4 KB; default readahead fetches far more from each of the
#: ~3 places a sample touches. bench/replay_index.py measures cold reads with and without it.
RANDOM_ACCESS_ADVICE = True


class ReplayDataset:
    """Samples of a built index, from stage-local position ``start_sample`` on."""

    def __init__(self, index_dir: PathLike, start_sample: int = 0, verify: bool = True) -> None:
        self.index_dir = Path(index_dir)
        desc_path = self.index_dir / DESCRIPTION
        if not desc_path.is_file():
            raise FileNotFoundError(f"{desc_path}: not found; {self.index_dir} is not a complete neox-cpt index "
                                    f"(build it with `neox-cpt build-index CONFIG`)")
        with open(desc_path) as f:
            self.description: Dict[str, Any] = json.load(f)
        with open(self.index_dir / "counts.json") as f:
            self.counts: Dict[str, Any] = json.load(f)
        for name, size in self.description.get("files", {}).items():  # a stat each: catches a truncated copy
            found = (self.index_dir / name).stat().st_size if (self.index_dir / name).exists() else None
            if found != size:
                raise ValueError(f"{self.index_dir / name}: {found} bytes, but {DESCRIPTION} lists {size}; the "
                                 f"index directory is damaged (an interrupted copy?): delete {self.index_dir} and "
                                 f"rebuild it (`neox-cpt build-index CONFIG`), or copy it again")
        self.num_samples: int = self.description["spec"]["num_samples"]
        self.seq_length: int = self.description["spec"]["seq_length"]
        if not 0 <= start_sample <= self.num_samples:
            raise ValueError(f"start_sample={start_sample}: outside [0, {self.num_samples}] for {self.index_dir}; "
                             f"it is the number of samples this stage already consumed")
        self.start_sample = int(start_sample)
        self.replay_ppm: int = self.description["spec"]["replay_ppm"]
        # Mapped, not read: opening stays constant-time (the tables are one period, 5 MB per group).
        load = lambda name: random_access(np.asarray(np.load(self.index_dir / f"{name}.npy", mmap_mode="r")))  # noqa
        self._tables = [load("blend_table_new"), load("blend_table_replay")]
        self._table_counts = [load("blend_count_new"), load("blend_count_replay")]
        self._weight_of = load("blend_weight")
        self._draw_dtype = np.dtype(self.description["arrays"]["blend_draw"])
        if verify:
            raise_if_changed(self.index_dir)
        entries = self.description["sources"]
        for e, c, where in zip(entries, self.counts["sources"], locations(self.index_dir, self.description)):
            e.update(where, samples=c["samples"])
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
            reader = self._readers[s] = open_reader(self.index_dir, s, self._entries[s], self.seq_length)
        if out is None:
            out = np.empty(self.seq_length + 1, np.int64)
        return reader.read(k, out)

    def __getitem__(self, i: int) -> Dict[str, np.ndarray]:
        return {"text": self.read_position(self._position(int(i)))}

    def __repr__(self) -> str:
        return (f"ReplayDataset({str(self.index_dir)!r}, start_sample={self.start_sample}, samples={len(self)}, "
                f"sources={self.source_names})")


# -------------------------------------------------------------------------------------------- readers
def _permute_one(k: int, n: int, key: int) -> int:
    if NATIVE is not None:
        out = np.empty(1, np.int64)
        NATIVE.permute(np.array([k], np.int64), n, key, out)
        return int(out[0])
    return int(Permutation(n, key)(np.array([k]))[0])


def random_access(arr: np.ndarray) -> np.ndarray:
    """Advise the kernel that ``arr``'s pages (a memory-mapped array) are read at random: MADV_RANDOM on
    its address range (if ``RANDOM_ACCESS_ADVICE``). Returns ``arr``; no-op where madvise is unavailable."""
    if not (RANDOM_ACCESS_ADVICE and arr.size and hasattr(mmap, "MADV_RANDOM")):
        return arr
    page = mmap.PAGESIZE
    start = arr.ctypes.data // page * page
    end = arr.ctypes.data + arr.nbytes
    if _LIBC is not None:
        _LIBC.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), mmap.MADV_RANDOM)
    return arr


def _libc():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


class DataReader:
    """Draw k of a data source: sample ``P(k)`` of its sample index, read by walking the document order."""

    def __init__(self, index_dir: Path, i: int, entry: Dict[str, Any], seq_length: int) -> None:
        self.ds = IndexedDataset(entry["path"])
        self.num_samples = entry["samples"]
        self.key_docs, self.key_samples = entry["key_docs"], entry["key_samples"]
        self.length = seq_length + 1
        self.tokens = random_access(self.ds.tokens)
        self.pointers, self.sizes = random_access(self.ds.pointers), random_access(self.ds.sizes)
        if self.num_samples:
            load = lambda name: random_access(np.load(index_dir / f"source{i}_{name}.npy", mmap_mode="r"))  # noqa
            self.doc_perm, self.sample_doc, self.sample_offset = load("doc_perm"), load("sample_doc"), load(
                "sample_offset")

    def read(self, k: int, out: np.ndarray) -> np.ndarray:
        j = _permute_one(k, self.num_samples, self.key_samples)
        d, o = int(self.sample_doc[j]), int(self.sample_offset[j])
        if NATIVE is not None:
            NATIVE.gather(self.tokens, self.pointers, self.sizes, self.doc_perm, self.key_docs, d, o, out)
        else:
            from neox_cpt.data import reference

            reference.gather(self.tokens, self.pointers, self.sizes, self.doc_perm, self.key_docs, d, o, out)
        return out


class SeenReader:
    """Draw k of a seen-only source: consumed position ``k mod c`` (or a fresh permutation of them per cycle)."""

    def __init__(self, entry: Dict[str, Any], read_position: Callable[[int, np.ndarray], np.ndarray]) -> None:
        self.consumed = entry["available_samples"]
        self.reshuffle = entry["reshuffle"]
        self.key = entry["key_samples"]
        self.read_position = read_position

    def position(self, k: int) -> int:
        cycle, r = divmod(k, self.consumed)
        return _permute_one(r, self.consumed, epoch_key(self.key, cycle)) if self.reshuffle else r

    def read(self, k: int, out: np.ndarray) -> np.ndarray:
        return self.read_position(self.position(k), out)


def open_reader(index_dir: Path, i: int, entry: Dict[str, Any], seq_length: int):
    """The reader of source ``i`` of an index (``entry``: its description entry, with where it lies now)."""
    kind = entry["kind"]
    if kind == "data":
        return DataReader(index_dir, i, entry, seq_length)
    if kind == "neox_cpt_index":
        prev = ReplayDataset(entry["path"], verify=False)  # the opening index verified it, transitively
        return SeenReader(entry, lambda pos, out: prev.read_position(pos, out))
    from neox_cpt.data.neox_index import NeoXIndexReader

    reader = NeoXIndexReader(entry["path"], entry.get("data_path"), seq_length)
    return SeenReader(entry, lambda pos, out: reader.read(pos, out))


def source_spec(prefix: PathLike, seq_length: int, num_samples: Optional[int] = None, seed: int = 1234,
                cache_dir: Optional[PathLike] = None):
    """The spec of a single source's fixed-length samples (``SourceDataset``; one epoch when num_samples is None)."""
    from neox_cpt.data.fingerprint import data_identity, store_of
    from neox_cpt.data.spec import ReplayIndexSpec, SourceSpec

    if num_samples is None:
        num_samples = (data_identity(prefix, store_of(cache_dir))["num_tokens"] - 1) // seq_length
    return ReplayIndexSpec(new=(SourceSpec(str(prefix)),), num_samples=int(num_samples), seq_length=int(seq_length),
                           seed=int(seed), name="source")


class SourceDataset(ReplayDataset):
    """A single source's fixed-length samples (e.g. per-source validation), built through the same cache.

    ``num_samples=None`` takes one epoch: ``(tokens - 1) // seq_length`` samples.
    """

    def __init__(self, prefix: PathLike, seq_length: int, num_samples: Optional[int] = None, seed: int = 1234,
                 cache_dir: Optional[PathLike] = None, start_sample: int = 0) -> None:
        from neox_cpt.data.cache import build_index

        if cache_dir is None:
            cache_dir = Path(str(prefix)).resolve().parent / "neox_cpt_index"
        spec = source_spec(prefix, seq_length, num_samples, seed, cache_dir)
        super().__init__(build_index(spec, cache_dir, progress=False), start_sample)


__all__ = ["ReplayDataset", "SourceDataset", "open_reader", "source_spec"]
