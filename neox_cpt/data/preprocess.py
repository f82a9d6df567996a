"""Tokenize documents into a NeoX ``{prefix}_text_document.bin/.idx`` dataset, with worker processes.

One document becomes one sequence (document-level, as GPT-NeoX's ``tools/datasets/preprocess_data.py``
writes it), followed by the end-of-document id unless ``append_eod=False``. Documents that tokenize to
nothing are skipped, as NeoX does. Workers encode chunks of documents in parallel; results are written
in input order, so the output bytes do not depend on the number of workers.

    >>> from neox_cpt.data.preprocess import preprocess_documents        # doctest: +SKIP
    >>> ds = preprocess_documents(["first doc", "second doc"], "tokenizer.json", "data/demo")  # doctest: +SKIP
    >>> ds.prefix, len(ds)                                                # doctest: +SKIP
    ('data/demo_text_document', 2)

Inputs for the CLI (:func:`read_documents`): ``.jsonl`` / ``.json`` lines with a ``text`` key (another key
with ``json_key``), optionally ``.gz``; any other file is one document (e.g. ``.txt``).
"""
from __future__ import annotations

import collections
import gzip
import json
import logging
import multiprocessing as mp
import os
import sys
import signal
import time
import zlib
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from neox_cpt.data.indexed import IndexedDataset, IndexedDatasetWriter, best_dtype
from neox_cpt.data.tokenizer import load_tokenizer

log = logging.getLogger(__name__)

_WORKER = {}  # per worker process: the loaded tokenizer and options (set by _init_worker)


def read_documents(paths: Sequence[str], json_key: str = "text") -> Iterator[str]:
    """Documents from JSON-lines files (``json_key`` of each line) and whole-file text files.

    Missing files raise here, before any work; the files are then read lazily.
    """
    for path in paths:
        if Path(path).is_dir():
            raise IsADirectoryError(f"--input {path}: is a directory; give the files inside it")
        if not Path(path).exists():  # a named pipe (e.g. <(zcat a.jsonl.gz)) is fine too
            raise FileNotFoundError(f"--input {path}: file not found")
        if not os.access(path, os.R_OK):
            raise PermissionError(f"--input {path}: not readable (permission denied)")
    return _iter_documents(paths, json_key)


def _iter_documents(paths: Sequence[str], json_key: str) -> Iterator[str]:
    for path in paths:
        try:
            yield from _read_file(Path(path), json_key)
        except UnicodeDecodeError as exc:
            raise ValueError(f"--input {path}: not UTF-8 text (byte {exc.start} of the "
                             f"{'decompressed ' if str(path).endswith('.gz') else ''}text is "
                             f"{exc.object[exc.start:exc.start + 1]!r}); convert it to UTF-8") from None
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise ValueError(f"--input {path}: not a complete gzip file ({exc or type(exc).__name__}); "
                             "re-download or re-compress it, or drop the .gz suffix if it is plain text") from None


def _read_file(p: Path, json_key: str) -> Iterator[str]:
    name = p.name[:-3] if p.name.endswith(".gz") else p.name
    opener = gzip.open if p.name.endswith(".gz") else open
    if not name.endswith((".jsonl", ".json")):
        with opener(p, "rt", encoding="utf-8") as f:
            yield f.read()
        return
    with opener(p, "rt", encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"--input {p}:{line_no}: not valid JSON ({exc.msg}); one JSON object per line") from exc
            if not isinstance(record, dict) or json_key not in record:
                keys = sorted(record)[:8] if isinstance(record, dict) else type(record).__name__
                raise ValueError(f"--input {p}:{line_no}: no key {json_key!r} (found {keys}); "
                                 f"choose the text field with --json-key")
            text = record[json_key]
            if not isinstance(text, str):
                raise ValueError(f"--input {p}:{line_no}: {json_key!r} is {type(text).__name__}, not a string")
            yield text


def _init_worker(tokenizer_path: str, eod_id: Optional[int], append_eod: bool) -> None:
    # Ctrl-C reaches the whole process group: the parent handles it (one line, temp files removed) and
    # terminates the pool; workers printing their own KeyboardInterrupt tracebacks would bury that line.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the processes are the parallelism
    _WORKER["tok"] = load_tokenizer(tokenizer_path, eod_id)
    _WORKER["append_eod"] = append_eod


def _encode_chunk(texts: List[str]) -> Tuple[np.ndarray, np.ndarray]:
    return _encode(_WORKER["tok"], _WORKER["append_eod"], texts)


def _encode(tok, append_eod: bool, texts: List[str]) -> Tuple[np.ndarray, np.ndarray]:
    """(sizes int64[k], concatenated token ids int64) for the non-empty documents of a chunk."""
    ids = [d for d in tok.encode_batch(texts) if len(d)]
    sizes = np.fromiter((len(d) + append_eod for d in ids), np.int64, len(ids))
    tokens = np.empty(int(sizes.sum()), np.int64)
    pos = 0
    for d in ids:
        tokens[pos: pos + len(d)] = d
        pos += len(d)
        if append_eod:
            tokens[pos] = tok.eod_id
            pos += 1
    return sizes, tokens


def _chunks(docs: Iterable[str], chunk_docs: int) -> Iterator[List[str]]:
    chunk: List[str] = []
    for doc in docs:
        chunk.append(doc)
        if len(chunk) == chunk_docs:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _ordered_map(pool, fn, items: Iterator, max_in_flight: int) -> Iterator:
    """Like ``pool.imap`` but reads at most ``max_in_flight`` items ahead (bounded memory on huge inputs)."""
    pending: collections.deque = collections.deque()
    for item in items:
        pending.append(pool.apply_async(fn, (item,)))
        if len(pending) >= max_in_flight:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


class _Progress:
    """tqdm when installed and stderr is a terminal-ish stream; otherwise one log line every few seconds."""

    def __init__(self, enabled: bool, total: Optional[int]) -> None:
        self.bar, self.enabled, self.last = None, enabled, time.monotonic()
        self.docs = self.tokens = 0
        self.start = self.last
        if enabled:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, unit="doc", unit_scale=True, desc="preprocess", file=sys.stderr)
            except ImportError:
                pass

    def update(self, docs: int, tokens: int) -> None:
        self.docs += docs
        self.tokens += tokens
        if self.bar is not None:
            self.bar.update(docs)
            self.bar.set_postfix_str(f"{self.tokens:,} tokens", refresh=False)
        elif self.enabled and time.monotonic() - self.last > 5:
            self.last = time.monotonic()
            rate = self.tokens / max(self.last - self.start, 1e-9)
            log.info("preprocess | %s docs | %s tokens | %s tok/s", f"{self.docs:,}", f"{self.tokens:,}", f"{rate:,.0f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def check_output_prefix(output_prefix: "os.PathLike[str] | str") -> None:
    """Refuse an ``--output-prefix`` whose directory cannot hold the dataset (before any work)."""
    parent = Path(str(output_prefix)).parent
    for p in (parent, *parent.parents):
        if p.exists():
            if not p.is_dir():
                raise NotADirectoryError(f"--output-prefix {output_prefix}: {p} is a file, not a directory; choose "
                                         "another output prefix")
            if not os.access(p, os.W_OK) and p == parent:
                raise PermissionError(f"--output-prefix {output_prefix}: directory {p} is not writable")
            return


def preprocess_documents(
    docs: Iterable[str],
    tokenizer_path: "os.PathLike[str] | str",
    output_prefix: "os.PathLike[str] | str",
    workers: int = 1,
    append_eod: bool = True,
    eod_id: Optional[int] = None,
    json_key: str = "text",
    chunk_docs: int = 256,
    dtype: Optional[np.dtype] = None,
    progress: bool = True,
    total_docs: Optional[int] = None,
) -> IndexedDataset:
    """Tokenize ``docs`` into ``{output_prefix}_{json_key}_document.bin/.idx`` and open the result.

    ``workers`` > 1 encodes in that many processes (the output is identical for any count). ``dtype``
    defaults to ``best_dtype(vocab_size)`` (uint16 below 65,500 ids, else int32). The files appear
    atomically when everything is written; an error leaves nothing behind.
    """
    if workers < 1:
        raise ValueError(f"--workers {workers}: must be >= 1")
    if chunk_docs < 1:
        raise ValueError(f"chunk_docs={chunk_docs}: must be >= 1")
    check_output_prefix(output_prefix)
    tok = load_tokenizer(tokenizer_path, eod_id)  # validates the file and the EOD id before any work
    dtype = np.dtype(dtype) if dtype is not None else best_dtype(tok.vocab_size)
    prefix = f"{output_prefix}_{json_key}_document"
    init_args = (str(tokenizer_path), tok.eod_id, append_eod)
    bar = _Progress(progress, total_docs)
    t0 = time.perf_counter()
    num_docs_in = 0

    def counted(it):
        nonlocal num_docs_in
        for chunk in it:
            num_docs_in += len(chunk)
            yield chunk

    pool = None
    try:
        with IndexedDatasetWriter(prefix, dtype) as writer:
            chunks = counted(_chunks(docs, chunk_docs))
            if workers == 1:
                results: Iterable = (_encode(tok, append_eod, c) for c in chunks)
            else:
                # fork is cheapest where available; workers load their own tokenizer either way.
                ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
                pool = ctx.Pool(workers, initializer=_init_worker, initargs=init_args)
                results = _ordered_map(pool, _encode_chunk, chunks, max_in_flight=4 * workers)
            for sizes, tokens in results:
                writer.add_documents(sizes, tokens)
                bar.update(len(sizes), int(tokens.size))
            if writer.num_documents == 0:  # raised inside the writer: its temporary files are removed
                raise ValueError(f"--input: no document with text ({num_docs_in} read, all empty); nothing was "
                                 f"written to {prefix}.bin/.idx: check the inputs (and --json-key)")
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    ds = IndexedDataset(prefix)
    skipped = num_docs_in - len(ds)
    log.info("wrote %s.{bin,idx}: %s documents (%s empty skipped), %s tokens, %s, in %.1fs", prefix,
             f"{len(ds):,}", f"{skipped:,}", f"{ds.num_tokens:,}", ds.dtype.name, time.perf_counter() - t0)
    return ds
