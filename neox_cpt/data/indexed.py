"""GPT-NeoX / Megatron ``MMIDIDX`` indexed datasets: a zero-copy reader and an atomic writer.

A dataset is two files sharing a prefix. ``{prefix}.bin`` holds the tokens of every sequence back to
back; ``{prefix}.idx`` is, little-endian::

    b"MMIDIDX\\x00\\x00"   magic (9 bytes)
    u64 version = 1
    u8  dtype code       (1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float32, 7 float64, 8 uint16)
    u64 num_sequences    (n)
    u64 num_doc_idx      (d; NeoX's preprocess writes one sequence per document, so d = n + 1)
    int32[n] sizes       tokens per sequence
    int64[n] pointers    byte offset of each sequence in .bin
    int64[d] doc_idx     sequence index where each document starts, then n

These are the bytes GPT-NeoX's ``tools/datasets/preprocess_data.py`` writes and Megatron's
``MMapIndexedDataset`` reads. Example::

    >>> import numpy as np, tempfile, os
    >>> prefix = os.path.join(tempfile.mkdtemp(), "demo")
    >>> with IndexedDatasetWriter(prefix, np.uint16) as w:
    ...     w.add_document([5, 6, 7]); w.add_document([8, 0])
    >>> ds = IndexedDataset(prefix)
    >>> len(ds), ds.num_tokens, ds.get(0).tolist(), ds.get(1, offset=1).tolist()
    (2, 5, [5, 6, 7], [0])
"""
from __future__ import annotations

import array
import hashlib
import os
import struct
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Union

import numpy as np

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
DTYPE_CODES: Dict[int, type] = {
    1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float32, 7: np.float64, 8: np.uint16,
}
FLOAT_CODES = (6, 7)
"""Float dtype codes: defined by the format but never token data (refused when reading, never written)."""
_HEADER = struct.Struct("<9sQBQQ")  # magic, version, dtype code, num_sequences, num_doc_idx

PathLike = Union[str, "os.PathLike[str]"]
_BLOCK = 1 << 20  # entries per block of the full passes (validate, num_tokens, max_token): bounded memory


def best_dtype(vocab_size: int) -> np.dtype:
    """Token dtype NeoX uses for a vocabulary: uint16 below 65,500 ids, else int32."""
    if vocab_size <= 0:
        raise ValueError(f"vocab_size={vocab_size}: must be a positive number of token ids")
    return np.dtype(np.uint16) if vocab_size < 65500 else np.dtype(np.int32)


def dtype_code(dtype: Any) -> int:
    """The MMIDIDX code of an integer token dtype (raises ValueError for anything else).

    Float codes are readable but never written: implementations disagree on them (NeoX: 6 float32,
    7 float64; megatron-core 0.16: 6 float64, 7 float32) and token ids are integers anyway.
    """
    dt = np.dtype(dtype)
    for code, candidate in DTYPE_CODES.items():
        if code in (6, 7):
            continue
        if np.dtype(candidate) == dt:
            return code
    raise ValueError(f"dtype={dt}: not a token dtype MMIDIDX can store; use one of "
                     f"uint8, int8, int16, int32, int64, uint16 (best_dtype(vocab_size) picks one)")


def _paths(prefix: PathLike):
    prefix = str(prefix)
    for ext in (".bin", ".idx"):  # accept a path given with its extension
        if prefix.endswith(ext):
            prefix = prefix[: -len(ext)]
    return prefix, Path(prefix + ".bin"), Path(prefix + ".idx")


class IndexedDataset:
    """Memory-mapped reader of ``{prefix}.bin`` / ``{prefix}.idx``; every array is a zero-copy view."""

    def __init__(self, prefix: PathLike) -> None:
        self.prefix, self.bin_path, self.idx_path = _paths(prefix)
        for path, what in ((self.idx_path, "index"), (self.bin_path, "token")):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path}: {what} file not found; give the dataset prefix without .bin/.idx (both files "
                    f"must exist, e.g. as written by `neox-cpt preprocess`)")
        idx_size = self.idx_path.stat().st_size
        if idx_size < _HEADER.size:
            raise ValueError(f"{self.idx_path}: truncated index ({idx_size} bytes, header alone is "
                             f"{_HEADER.size}); re-run preprocessing to rewrite the dataset")
        with open(self.idx_path, "rb") as f:
            magic, version, code, num_seq, num_doc = _HEADER.unpack(f.read(_HEADER.size))
        if magic != MAGIC:
            raise ValueError(f"{self.idx_path}: bad magic {magic!r} (expected {MAGIC!r}); not a NeoX/Megatron "
                             f"MMIDIDX index (the older 'TNTIDX' lazy/cached formats are not supported): "
                             f"re-run preprocessing with the mmap implementation")
        if version != VERSION:
            raise ValueError(f"{self.idx_path}: index version {version}, only version {VERSION} is supported; "
                             f"re-run preprocessing to rewrite the dataset")
        if code not in DTYPE_CODES:
            raise ValueError(f"{self.idx_path}: unknown dtype code {code} (known: {sorted(DTYPE_CODES)}); "
                             f"the file is corrupt or from an unsupported writer: re-run preprocessing")
        if code in FLOAT_CODES:
            raise ValueError(f"{self.idx_path}: dtype code {code} is a float type ({np.dtype(DTYPE_CODES[code]).name}"
                             f"); token ids are integers (codes {sorted(set(DTYPE_CODES) - set(FLOAT_CODES))}): the "
                             f"file is not token data: re-run preprocessing")
        self.dtype = np.dtype(DTYPE_CODES[code])
        expected = _HEADER.size + num_seq * 12 + num_doc * 8
        if idx_size != expected:
            raise ValueError(f"{self.idx_path}: {idx_size} bytes but its header ({num_seq} sequences, "
                             f"{num_doc} doc_idx entries) needs {expected}; the file is truncated or corrupt: "
                             f"re-run preprocessing")
        idx = np.memmap(self.idx_path, dtype=np.uint8, mode="r")
        off = _HEADER.size
        self.sizes: np.ndarray = idx[off: off + 4 * num_seq].view("<i4")
        off += 4 * num_seq
        self.pointers: np.ndarray = idx[off: off + 8 * num_seq].view("<i8")
        off += 8 * num_seq
        self.doc_idx: np.ndarray = idx[off: off + 8 * num_doc].view("<i8")
        self._offsets = (_HEADER.size, _HEADER.size + 4 * num_seq, _HEADER.size + 12 * num_seq)  # sizes, ptrs, doc_idx
        self._check_doc_idx(num_seq)

        bin_size = self.bin_path.stat().st_size
        need = int(self.pointers[-1]) + int(self.sizes[-1]) * self.dtype.itemsize if num_seq else 0
        if need > bin_size:
            raise ValueError(f"{self.bin_path}: {bin_size} bytes but {self.idx_path.name} points up to byte "
                             f"{need}; the .bin is truncated or belongs to another .idx: re-run preprocessing")
        if need < bin_size:
            raise ValueError(f"{self.bin_path}: {bin_size} bytes but {self.idx_path.name} describes {need} "
                             f"({self.dtype.name} tokens); the .bin belongs to another .idx or holds another "
                             f"dtype: re-run preprocessing")
        # np.memmap cannot map an empty file; an empty dataset gets an empty array instead.
        self.tokens: np.ndarray = (np.memmap(self.bin_path, dtype=self.dtype, mode="r",
                                             shape=(bin_size // self.dtype.itemsize,))
                                   if bin_size >= self.dtype.itemsize else np.empty(0, self.dtype))
        self._num_tokens: Optional[int] = None
        self._identity: Optional[Dict[str, Any]] = None

    def _check_doc_idx(self, num_seq: int) -> None:
        d = self.doc_idx  # O(1) here; validate() checks that it rises
        if len(d) == 0 or d[0] != 0 or d[-1] != num_seq:
            head = d[:3].tolist()
            raise ValueError(f"{self.idx_path}: inconsistent doc_idx (starts {head}, ends "
                             f"{d[-1] if len(d) else None}, length {len(d)}): it must rise from 0 to the number "
                             f"of sequences ({num_seq}); re-run preprocessing to rewrite the dataset")

    def __len__(self) -> int:
        return len(self.sizes)

    @property
    def num_tokens(self) -> int:
        """Tokens in the dataset (the sum of the sizes: read once, on first use, so opening stays O(1))."""
        if self._num_tokens is None:
            self._num_tokens = sum(int(b.sum(dtype=np.int64)) for b in self._blocks(0, "<i4", len(self)))
        return self._num_tokens

    def _blocks(self, which: int, dtype: str, count: int):
        """``count`` entries of one .idx array (0 sizes, 1 pointers, 2 doc_idx) in blocks of ``_BLOCK``, read
        with ``pread``: a full pass over a multi-GB index leaves its pages in the page cache, not in this
        process's resident memory (a memory-mapped pass would count every page it touched)."""
        item = np.dtype(dtype).itemsize
        fd = os.open(self.idx_path, os.O_RDONLY)
        try:
            for lo in range(0, count, _BLOCK):
                n = min(_BLOCK, count - lo)
                data = os.pread(fd, n * item, self._offsets[which] + lo * item)
                if len(data) != n * item:
                    raise ValueError(f"{self.idx_path}: shorter than its header says (the file changed while "
                                     f"being read?); re-run the command")
                yield np.frombuffer(data, dtype)
        finally:
            os.close(fd)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.get(i)

    def get(self, i: int, offset: int = 0, length: Optional[int] = None) -> np.ndarray:
        """Tokens ``offset : offset + length`` of sequence ``i`` (to its end if ``length`` is None)."""
        size = int(self.sizes[i])
        if length is None:
            length = size - offset
        if offset < 0 or length < 0 or offset + length > size:
            raise IndexError(f"{self.prefix}: sequence {i} has {size} tokens; offset={offset} "
                             f"length={length} is out of range")
        start = int(self.pointers[i]) // self.dtype.itemsize + offset
        return self.tokens[start: start + length]

    def validate(self) -> "IndexedDataset":
        """The full check of the .idx against itself and the .bin (reads every size; returns self).

        Rejects a negative size, a pointer that is not the running sum of the sizes (times the token size),
        a ``doc_idx`` that falls, and a ``.bin`` whose length differs from the sum of the sizes, each
        naming the file, the first entry at fault and the fix. Vectorised in blocks (no large temporaries).
        Builders and ``--check`` call it (they read every size anyway); opening is O(1) and checks only
        the header, the ends of ``doc_idx`` and the last pointer against the ``.bin`` size.

        >>> import numpy as np, tempfile, os
        >>> prefix = os.path.join(tempfile.mkdtemp(), "v")
        >>> with IndexedDatasetWriter(prefix, np.uint16) as w:
        ...     w.add_document([1, 2]); w.add_document([3])
        >>> IndexedDataset(prefix).validate().num_tokens
        3
        """
        previous, lo = None, 0  # the last entry of the block before: falls across blocks are found too
        for block in self._blocks(2, "<i8", len(self.doc_idx)):
            joined = block if previous is None else np.concatenate(([previous], block))
            falls = np.flatnonzero(joined[1:] < joined[:-1])
            if len(falls):
                i = lo + int(falls[0]) + (1 if previous is None else 0)
                raise ValueError(f"{self.idx_path}: inconsistent doc_idx (entry {i} = {int(self.doc_idx[i])} is "
                                 f"below entry {i - 1} = {int(self.doc_idx[i - 1])}): it must rise from 0 to the "
                                 f"number of sequences ({len(self.sizes)}); re-run preprocessing to rewrite the "
                                 f"dataset")
            previous, lo = int(block[-1]), lo + len(block)
        n, itemsize, running = len(self.sizes), self.dtype.itemsize, 0
        blocks = zip(self._blocks(0, "<i4", n), self._blocks(1, "<i8", n))
        for lo, (sizes32, pointers) in zip(range(0, n, _BLOCK), blocks):
            sizes = sizes32.astype(np.int64)
            negative = np.flatnonzero(sizes < 0)
            if len(negative):
                i = lo + int(negative[0])
                raise ValueError(f"{self.idx_path}: sequence {i} has a negative size ({int(self.sizes[i])} "
                                 f"tokens); the index is corrupt: re-run preprocessing")
            expected = np.empty(len(sizes), np.int64)
            expected[0] = running
            np.cumsum(sizes[:-1], out=expected[1:])
            expected[1:] += running
            running += int(sizes.sum())
            bad = np.flatnonzero(expected * itemsize != pointers)
            if len(bad):
                i = lo + int(bad[0])
                raise ValueError(f"{self.idx_path}: pointer of sequence {i} is {int(self.pointers[i])} but the "
                                 f"sizes before it say {int(expected[bad[0]]) * itemsize} (the running sum); the "
                                 f"index is corrupt: re-run preprocessing")
        self._num_tokens = running
        bin_size = self.bin_path.stat().st_size
        if running * itemsize != bin_size:
            raise ValueError(f"{self.bin_path}: {bin_size} bytes but the sizes in {self.idx_path.name} add up to "
                             f"{running} {self.dtype.name} tokens ({running * itemsize} bytes); the .bin belongs to "
                             f"another .idx or holds another dtype: re-run preprocessing")
        return self

    def max_token(self) -> int:
        """The largest token id in the ``.bin`` (reads every token; -1 when empty); compare with a vocab size."""
        top = -1
        for lo in range(0, len(self.tokens), _BLOCK * 16):
            top = max(top, int(self.tokens[lo: lo + _BLOCK * 16].max()))
        return top

    def identity(self) -> Dict[str, Any]:
        """What a cache key needs so that a replaced file never matches: path, sizes, mtimes, .idx hash."""
        if self._identity is None:
            b, i = self.bin_path.stat(), self.idx_path.stat()
            # SHA-256: hardware-accelerated on current x86/ARM CPUs (~1.5 GB/s here, 3x BLAKE2b).
            h = hashlib.sha256()
            with open(self.idx_path, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
            digest = h.hexdigest()
            self._identity = {
                "path": str(Path(self.prefix).resolve()), "dtype": self.dtype.name,
                "num_sequences": len(self), "num_tokens": self.num_tokens,
                "bin_size": b.st_size, "bin_mtime_ns": b.st_mtime_ns,
                "idx_size": i.st_size, "idx_mtime_ns": i.st_mtime_ns, "idx_sha256": digest,
            }
        return dict(self._identity)

    def __repr__(self) -> str:
        return f"IndexedDataset({self.prefix!r}, sequences={len(self)}, tokens={self.num_tokens}, dtype={self.dtype})"


class IndexedDatasetWriter:
    """Streams tokens to ``{prefix}.bin``/``.idx``; files appear only at :meth:`finalize` (tmp + rename).

    Used as a context manager it finalizes on success and removes its temporary files on an exception,
    so a crash never leaves a half-written dataset under the final names.
    """

    def __init__(self, prefix: PathLike, dtype: Any = np.uint16) -> None:
        self.prefix, self.bin_path, self.idx_path = _paths(prefix)
        self.dtype = np.dtype(dtype)
        self._code = dtype_code(self.dtype)
        # The directories this writer creates, outermost first: an abort removes them again (if still empty).
        self._made = [p for p in (self.bin_path.parent, *self.bin_path.parent.parents) if not p.exists()][::-1]
        self.bin_path.parent.mkdir(parents=True, exist_ok=True)
        suffix = f".{os.getpid()}.tmp"  # per process: two writers of one prefix never share a temp file
        self._bin_tmp = Path(str(self.bin_path) + suffix)
        self._idx_tmp = Path(str(self.idx_path) + suffix)
        self._bin = open(self._bin_tmp, "wb")
        self._sizes = array.array("i")  # int32 tokens per sequence (compact: 4 bytes per document)
        self._done = False
        if np.issubdtype(self.dtype, np.integer):
            info = np.iinfo(self.dtype)
            self._range = (int(info.min), int(info.max))
        else:
            self._range = None

    def _check(self, arr: np.ndarray) -> np.ndarray:
        if self._done:
            raise ValueError(f"{self.prefix}: writer already finalized or aborted; open a new writer")
        arr = np.asarray(arr)
        if self._range is not None and arr.size and arr.dtype != self.dtype:
            lo, hi = int(arr.min()), int(arr.max())
            if lo < self._range[0] or hi > self._range[1]:
                raise ValueError(f"{self.prefix}: token ids span [{lo}, {hi}], outside {self.dtype.name} "
                                 f"{list(self._range)}; choose dtype=best_dtype(vocab_size) (int32 for big vocabularies)")
        return arr.astype(self.dtype, copy=False).ravel()

    def add_document(self, tokens: Iterable[int]) -> None:
        """Append one document stored as one sequence (what NeoX's preprocess does)."""
        arr = self._check(tokens if isinstance(tokens, np.ndarray) else np.asarray(list(tokens)))
        if arr.size > np.iinfo(np.int32).max:
            raise ValueError(f"{self.prefix}: a document of {arr.size} tokens exceeds the int32 size field; split it")
        self._write(arr)
        self._sizes.append(arr.size)

    def add_documents(self, sizes: np.ndarray, tokens: np.ndarray) -> None:
        """Bulk append: ``tokens`` is the concatenation of ``len(sizes)`` documents."""
        sizes = np.asarray(sizes, np.int64)
        tokens = self._check(tokens)
        if sizes.size and (sizes.min() < 0 or sizes.max() > np.iinfo(np.int32).max):
            raise ValueError(f"{self.prefix}: document sizes must lie in [0, 2^31); got [{sizes.min()}, {sizes.max()}]")
        if int(sizes.sum()) != tokens.size:
            raise ValueError(f"{self.prefix}: sizes sum to {int(sizes.sum())} but {tokens.size} tokens were given")
        self._write(tokens)
        self._sizes.frombytes(sizes.astype(np.int32).tobytes())

    def _write(self, tokens: np.ndarray) -> None:
        try:
            self._bin.write(tokens.tobytes())
        except OSError as exc:  # e.g. a full disk: name the dataset (the raw error names no file)
            raise OSError(exc.errno, f"{exc.strerror} (writing {self.bin_path.name}; nothing is kept)",
                          str(self.bin_path)) from None

    @property
    def num_documents(self) -> int:
        return len(self._sizes)

    def finalize(self) -> None:
        """Write the .idx, then publish both files by rename (the .idx last: it commits the dataset)."""
        if self._done:
            raise ValueError(f"{self.prefix}: writer already finalized or aborted")
        try:
            self._finalize()
        except OSError as exc:  # a full disk shows up at flush/fsync: name the dataset
            if exc.filename is not None or exc.errno is None:
                raise
            raise OSError(exc.errno, f"{exc.strerror} (writing {self.bin_path.name}; nothing is kept)",
                          str(self.bin_path)) from None

    def _finalize(self) -> None:
        self._bin.flush()
        os.fsync(self._bin.fileno())
        self._bin.close()
        sizes = np.frombuffer(self._sizes, np.int32) if len(self._sizes) else np.zeros(0, np.int32)
        pointers = np.zeros(len(sizes), np.int64)
        np.cumsum(sizes[:-1], out=pointers[1:])
        pointers *= self.dtype.itemsize
        # One sequence per document, as NeoX's preprocess writes: doc_idx = 0, 1, ..., n.
        doc_idx = np.arange(len(sizes) + 1, dtype="<i8")
        with open(self._idx_tmp, "wb") as f:
            f.write(_HEADER.pack(MAGIC, VERSION, self._code, len(sizes), len(doc_idx)))
            f.write(sizes.astype("<i4").tobytes())
            f.write(pointers.astype("<i8").tobytes())
            f.write(doc_idx.tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(self._bin_tmp, self.bin_path)
        os.replace(self._idx_tmp, self.idx_path)
        self._done = True

    def abort(self) -> None:
        """Drop everything written so far (idempotent)."""
        if not self._bin.closed:
            try:
                self._bin.close()
            except OSError:  # its buffered bytes cannot be written (full disk): they are dropped anyway
                pass
        for tmp in (self._bin_tmp, self._idx_tmp):
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
        for made in reversed(self._made):
            try:
                made.rmdir()
            except OSError:  # not empty (someone else wrote there) or already gone
                break
        self._made = []
        self._done = True

    def __enter__(self) -> "IndexedDatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._done:
            try:
                self.finalize()
            except BaseException:
                self.abort()
                raise


def write_indexed_dataset_from_arrays(prefix: PathLike, sizes: np.ndarray, tokens_chunks: Iterable[np.ndarray],
                                      dtype: Any = np.uint16) -> IndexedDataset:
    """Write a dataset whose document sizes are known up front from token chunks of any length.

    ``tokens_chunks`` yields arrays whose concatenation has ``sizes.sum()`` tokens; chunks need not align
    with documents. Used by the benchmark to write billions of tokens without holding them in memory.
    """
    sizes = np.asarray(sizes, np.int64)
    with IndexedDatasetWriter(prefix, dtype) as w:
        total = 0
        for chunk in tokens_chunks:
            chunk = w._check(chunk)
            w._bin.write(chunk.tobytes())
            total += chunk.size
        if total != int(sizes.sum()):
            raise ValueError(f"{prefix}: sizes sum to {int(sizes.sum())} but the chunks hold {total} tokens")
        w._sizes.frombytes(sizes.astype(np.int32).tobytes())
    return IndexedDataset(prefix)
