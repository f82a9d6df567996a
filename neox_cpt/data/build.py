"""Build a replay index into a directory, streaming every array to disk in fixed-size chunks.

Arrays (all ``.npy``; N = num_samples, n_i = draws of source i, D_i = its documents):

- the blend, in closed form: position p belongs to the replay group iff floor(x (p+1)) > floor(x p)
  (x in ppm) and is that group's pick m; ``blend_table_{new,replay}`` uint8/uint16 [D] and
  ``blend_count_{new,replay}`` int32 [D] hold one period (D = 1e6) of the group's source sequence and
  ``blend_weight`` int64 [sources] the integer weights, so p takes source ``table[m % D]`` as its draw
  ``(m // D) * weight[s] + count[m % D]``. Nothing per position is stored (``blend_only`` writes the
  per-position arrays when something wants them);
- data sources with draws: ``source{i}_doc_perm`` [D_i] (the stored document permutation),
  ``source{i}_sample_doc`` [n_i] (document position, over epochs, where sample j starts) and
  ``source{i}_sample_offset`` uint16/int32 [n_i] (token offset there). Draw k reads sample ``P_i(k)``, a keyed
  permutation of [0, n_i) computed on the fly; seen-only sources store nothing (draw k -> a consumed
  position of the earlier index).

Memory stays bounded: the chunk buffers plus one int32 per document of the largest data source. The
caller (``neox_cpt.data.cache``) builds into a temporary directory and publishes it by rename.

    >>> position_dtype(146_000_000), position_dtype(3_000_000_000), source_dtype(300)
    (dtype('int32'), dtype('int64'), dtype('uint16'))
"""
from __future__ import annotations

import json
import logging
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from neox_cpt.data import reference
from neox_cpt.data.indexed import IndexedDataset
from neox_cpt.data.sources import Resolved, source_key
from neox_cpt.data.spec import ReplayIndexSpec
from neox_cpt.native import NATIVE

log = logging.getLogger(__name__)

KERNELS = NATIVE if NATIVE is not None else reference
CHUNK = 1 << 22  # positions per kernel call: 4M x (1 + 4) bytes of blend buffers
WORKERS = 2  # chunks built at once (each on its own thread; the kernels release the GIL)
PERIOD = 1_000_000  # within-group weights are integers summing to this (resolution 1e-6, like replay_frac)
Progress = Callable[[str, int, int], None]
# Part of every cache key: bump it whenever the files or their meaning change, so that no index built by
# older code is ever reused (2: blend stored as one period per group, per-epoch order of the last block;
# 3: sources keyed by content, not path and mtime).
FORMAT_VERSION = 3


class NpyStream:
    """Write a 1-D ``.npy`` of known length chunk by chunk (header first, then raw little-endian data)."""

    def __init__(self, path: Path, dtype: Any, length: int) -> None:
        self.path, self.dtype, self.length, self.written = Path(path), np.dtype(dtype), int(length), 0
        self.f = open(self.path, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (self.length,)}
        np.lib.format.write_array_header_1_0(self.f, header)
        self.f.flush()
        self.data_offset = self.f.tell()
        self.lock = threading.Lock()

    def write(self, chunk: np.ndarray) -> None:
        chunk = np.ascontiguousarray(chunk, self.dtype)
        self.f.write(memoryview(chunk).cast("B"))
        self.written += len(chunk)

    def write_at(self, index: int, chunk: np.ndarray) -> None:
        """Write entries ``index : index + len(chunk)`` (any order; thread-safe: one pwrite)."""
        chunk = np.ascontiguousarray(chunk, self.dtype)
        self.f.flush()
        data = memoryview(chunk).cast("B")
        offset = self.data_offset + index * self.dtype.itemsize
        while len(data):
            done = os.pwrite(self.f.fileno(), data, offset)
            data, offset = data[done:], offset + done
        with self.lock:
            self.written += len(chunk)

    def close(self, fsync: bool = False) -> None:
        if self.written != self.length:
            raise RuntimeError(f"{self.path}: wrote {self.written} of {self.length} entries")
        self.f.flush()
        if fsync:
            os.fsync(self.f.fileno())
        self.f.close()


def group_weights(resolved: List[Resolved], group: str) -> List[float]:
    """Normalised weights inside a group: given ones, else proportional to tokens."""
    members = [r for r in resolved if r.group == group]
    raw = [r.spec.weight if r.spec.weight is not None else float(r.num_tokens) for r in members]
    total = sum(raw)
    return [w / total for w in raw] if total > 0 else [0.0] * len(raw)


def source_dtype(num_sources: int) -> np.dtype:
    return np.dtype(np.uint8) if num_sources <= 256 else np.dtype(np.uint16)


def position_dtype(max_value: int) -> np.dtype:
    return np.dtype(np.int32) if max_value < 2**31 else np.dtype(np.int64)


def quantize(shares: List[float], period: int, names: List[str]) -> List[int]:
    """Integer weights summing to ``period`` (largest remainder, lowest index first on ties)."""
    total = sum(shares)
    exact = [x / total * period for x in shares]
    out = [int(math.floor(x)) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - out[i]), i))
    for i in order[: period - sum(out)]:
        out[i] += 1
    for name, x, q in zip(names, shares, out):
        if x > 0 and q == 0:
            raise ValueError(f"source {name}: its weight is below 1e-6 of its group, too small to ever be drawn; "
                             f"raise its weight or remove it")
    return out


def blend_tables(entries: List[Dict[str, Any]], src_dtype: np.dtype):
    """Per group (new, replay): one period of its source sequence, its draw counts, and integer weights."""
    weight_of = np.zeros(len(entries), np.int64)
    tables = []
    for group in ("new", "replay"):
        members = [i for i, e in enumerate(entries) if e["group"] == group]
        if not members:  # a group without sources is never picked (replay_frac 0)
            tables.append((np.zeros(1, src_dtype), np.zeros(1, np.int32)))
            continue
        a = quantize([entries[i]["weight"] for i in members], PERIOD, [entries[i]["name"] for i in members])
        weight_of[members] = a
        table, count = np.empty(PERIOD, src_dtype), np.empty(PERIOD, np.int32)
        KERNELS.blend_table(np.array(a, np.int64), np.array(members, np.int64), table, count)
        tables.append((table, count))
    return tables, weight_of


def draws_per_source(spec: ReplayIndexSpec, tables, weight_of: np.ndarray) -> np.ndarray:
    """Draws of each source over the whole stage, in closed form (before anything is built)."""
    n_replay = spec.replay_ppm * spec.num_samples // 1_000_000
    counts = np.zeros(len(weight_of), np.int64)
    for (table, _), picks in zip(tables, (spec.num_samples - n_replay, n_replay)):
        q, r = divmod(picks, len(table))
        counts += np.bincount(table[:r], minlength=len(weight_of))[: len(weight_of)]
        counts += q * weight_of * (np.bincount(table, minlength=len(weight_of))[: len(weight_of)] > 0)
    return counts


def plan_draws(spec: ReplayIndexSpec, entries: List[Dict[str, Any]], tables=None, weight_of=None) -> None:
    """Record in each source entry the samples the stage draws from it (and a seen-only source's cycles);
    refuse, before anything is written, a seen-only source asked for more than was consumed (unless
    cycling is allowed) and a data source cycled over more than ``spec.max_epochs`` epochs."""
    if tables is None:
        tables, weight_of = blend_tables(entries, source_dtype(len(entries)))
    for e, n in zip(entries, draws_per_source(spec, tables, weight_of).tolist()):
        e["samples"] = int(n)
        avail = e.get("available_samples")
        if avail is not None and n > avail and not spec.allow_cycling:
            raise ValueError(
                f"seen-only replay source {e['path']}: this stage draws {n} samples from it but the earlier run "
                f"consumed only {avail}; lower cpt_replay_frac or its weight, raise cpt_replay_consumed_samples "
                f"if more were consumed, or set cpt_replay_allow_cycling: true to repeat them "
                f"({math.ceil(n / avail)} cycles)")
        if e["kind"] == "data" and n:
            tokens = int(e["identity"]["data"]["num_tokens"])
            epochs = math.ceil((n * spec.seq_length + 1) / tokens)
            if epochs > spec.max_epochs:
                raise ValueError(
                    f"data source {e['path']}: this stage draws {n} samples ({n * spec.seq_length + 1} tokens) "
                    f"from its {tokens} tokens, {epochs} epochs, above cpt_max_epochs = {spec.max_epochs}; check "
                    f"the path (a test file?), lower its weight or cpt_replay_frac, or raise cpt_max_epochs to "
                    f"repeat it that often")
        if e["kind"] != "data":
            e["cycles"] = math.ceil(n / avail) if n else 0


def build_into(out_dir: Path, spec: ReplayIndexSpec, description: Dict[str, Any],
               progress: Optional[Progress] = None) -> Dict[str, Any]:
    """Write every array, then counts.json, then description.json (last: it marks the directory complete).

    The blend is stored as one period per group; each sample-index chunk seeks to its start, so chunks
    run independently on WORKERS threads (the kernels release the GIL).
    """
    out_dir = Path(out_dir)
    tick = progress or (lambda stage, done, total: None)
    entries = [dict(e) for e in description["sources"]]  # realised values go to counts.json only
    if spec.replay_ppm == 0 and spec.replay:
        log.warning("cpt_replay_frac is 0: the %d replay source(s) are ignored", len(spec.replay))
    src_dtype, draw_dtype = source_dtype(len(entries)), position_dtype(spec.num_samples)
    tables, weight_of = blend_tables(entries, src_dtype)

    # 1. What the blend asks of each source (build_index checked it before creating anything).
    plan_draws(spec, entries, tables, weight_of)
    for e in entries:
        if e.get("cycles", 0) > 1:
            log.warning("seen-only source %s is cycled %d times (cpt_replay_allow_cycling)", e["name"], e["cycles"])

    # 2. The blend: one period per group (positions are closed-form from it).
    for (table, count), group in zip(tables, ("new", "replay")):
        np.save(out_dir / f"blend_table_{group}.npy", table)
        np.save(out_dir / f"blend_count_{group}.npy", count)
    np.save(out_dir / "blend_weight.npy", weight_of)
    tick("blend", 1, 1)

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        # 3. Per-source sample index of every data source with draws, sized to its draws.
        for i, e in enumerate(entries):
            if e["kind"] == "data" and e["samples"] > 0:
                _sample_index(pool, out_dir, i, e, _doc_permutation(out_dir, i, e, tick), spec.seq_length, tick)

    counts_doc = {"num_samples": spec.num_samples, "seq_length": spec.seq_length, "sources": [
        {k: e[k] for k in ("name", "group", "kind", "weight", "share_requested", "samples", "epochs", "cycles")
         if k in e} | {"share_realised": e["samples"] / spec.num_samples, "tokens": e["samples"] * spec.seq_length,
                       "weight_ppm": int(weight_of[i])}
        for i, e in enumerate(entries)]}
    _write_json(out_dir / "counts.json", counts_doc)
    description = dict(description)
    description["arrays"] = {"blend_source": src_dtype.name, "blend_draw": draw_dtype.name}
    # Sizes of everything written before: a directory is trusted only if they all match (cache.is_complete).
    description["files"] = {f.name: f.stat().st_size for f in sorted(out_dir.iterdir())}
    _write_json(out_dir / "description.json", description)
    return counts_doc


def _write_blend(pool: ThreadPoolExecutor, out_dir: Path, num_samples: int, replay_ppm: int, tables,
                 weight_of: np.ndarray, draw_dtype: np.dtype, tick: Progress) -> None:
    (t_new, c_new), (t_rep, c_rep) = tables
    src_out = NpyStream(out_dir / "blend_source.npy", t_new.dtype, num_samples)
    draw_out = NpyStream(out_dir / "blend_draw.npy", draw_dtype, num_samples)

    def chunk(start: int, m: int, bufs) -> None:
        KERNELS.blend(start, replay_ppm, t_new, c_new, t_rep, c_rep, weight_of, bufs[0][:m], bufs[1][:m])
        src_out.write_at(start, bufs[0][:m])
        draw_out.write_at(start, bufs[1][:m])

    _chunked(pool, num_samples, (t_new.dtype, draw_dtype), chunk, "blend", tick)
    src_out.close()
    draw_out.close()


def blend_only(out_dir: Path, num_samples: int, new_weights: List[float], replay_weights: List[float],
               replay_frac: float) -> np.ndarray:
    """Just the blend arrays of a plan into ``out_dir`` (for benchmarks); returns the draws per source."""
    entries = [{"group": "new", "weight": w, "name": f"new{i}"} for i, w in enumerate(new_weights)]
    entries += [{"group": "replay", "weight": w, "name": f"replay{i}"} for i, w in enumerate(replay_weights)]
    spec = ReplayIndexSpec(new=(), num_samples=num_samples, replay_frac=replay_frac)
    tables, weight_of = blend_tables(entries, source_dtype(len(entries)))
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        _write_blend(pool, Path(out_dir), num_samples, spec.replay_ppm, tables, weight_of,
                     position_dtype(num_samples), lambda *a: None)
    return draws_per_source(spec, tables, weight_of)


def _chunked(pool: ThreadPoolExecutor, total: int, dtypes, fn, stage: str, tick: Progress) -> None:
    """Run fn(start, m, buffers) over [0, total) in CHUNK pieces, WORKERS at a time (bounded memory)."""
    size = min(CHUNK, total)
    buffers = [tuple(np.empty(size, dt) for dt in dtypes) for _ in range(WORKERS)]
    starts = list(range(0, total, CHUNK))
    for r in range(0, len(starts), WORKERS):
        batch = starts[r: r + WORKERS]
        jobs = [pool.submit(fn, s, min(CHUNK, total - s), buffers[w]) for w, s in enumerate(batch)]
        for job in jobs:
            job.result()
        tick(stage, min(total, batch[-1] + CHUNK), total)


def _doc_permutation(out_dir: Path, i: int, e: Dict[str, Any], tick: Progress) -> np.ndarray:
    """Write source i's stored document permutation; return the document sizes in permutation order."""
    ds = IndexedDataset(e["path"])
    n_docs = len(ds)
    perm_dtype = position_dtype(n_docs)
    perm_out = NpyStream(out_dir / f"source{i}_doc_perm.npy", perm_dtype, n_docs)
    slot_sizes = np.empty(n_docs, np.int32)
    buf = np.empty(min(CHUNK, n_docs), perm_dtype)
    sizes = np.asarray(ds.sizes)
    for start in range(0, n_docs, CHUNK):
        m = min(CHUNK, n_docs - start)
        KERNELS.permute_range(start, n_docs, e["key_docs"], buf[:m])
        perm_out.write(buf[:m])
        np.take(sizes, buf[:m], out=slot_sizes[start: start + m])
        tick(f"{e['name']}: documents", start + m, n_docs)
    perm_out.close()
    return slot_sizes


def _sample_index(pool: ThreadPoolExecutor, out_dir: Path, i: int, e: Dict[str, Any], slot_sizes: np.ndarray,
                  seq: int, tick: Progress) -> None:
    n_docs, n_samples = len(slot_sizes), e["samples"]
    if n_samples == 0:
        return
    tokens_per_epoch = int(slot_sizes.sum(dtype=np.int64))
    needed = n_samples * seq + 1  # the last sample ends one token after the next one would start
    epochs = e["epochs"] = math.ceil(needed / tokens_per_epoch)
    if epochs > 1:
        log.warning("source %s: %d samples need %d tokens, %.2f x its %d tokens: cycled over %d epochs "
                    "(each epoch a new document order)", e["name"], n_samples, needed, needed / tokens_per_epoch,
                    tokens_per_epoch, epochs)
    doc_dtype = position_dtype(n_docs * epochs)
    # An offset is below its document's length: uint16 when no document is longer than 65,536 tokens.
    off_dtype = np.dtype(np.uint16) if int(slot_sizes.max()) <= 65536 else np.dtype(np.int32)
    doc_out = NpyStream(out_dir / f"source{i}_sample_doc.npy", doc_dtype, n_samples)
    off_out = NpyStream(out_dir / f"source{i}_sample_offset.npy", off_dtype, n_samples)

    def chunk(start: int, m: int, bufs) -> None:
        state = np.zeros(2, np.int64)
        KERNELS.sample_seek(slot_sizes, e["key_docs"], seq, start, state)
        KERNELS.sample_index(slot_sizes, e["key_docs"], seq, state, bufs[0][:m], bufs[1][:m])
        doc_out.write_at(start, bufs[0][:m])
        off_out.write_at(start, bufs[1][:m])

    _chunked(pool, n_samples, (doc_dtype, off_dtype), chunk, f"{e['name']}: samples", tick)
    doc_out.close()
    off_out.close()


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def describe(spec: ReplayIndexSpec, resolved: List[Resolved]) -> Dict[str, Any]:
    """The canonical description: everything that changes the arrays (hashed into the cache key)."""
    x = spec.replay_ppm / 1_000_000
    shares = {"new": [(1 - x) * w for w in group_weights(resolved, "new")],
              "replay": [x * w for w in group_weights(resolved, "replay")]}
    groups_w = {"new": group_weights(resolved, "new"), "replay": group_weights(resolved, "replay")}
    seen = {"new": 0, "replay": 0}
    names = spec.source_names()
    sources = []
    for index, r in enumerate(resolved):
        k = seen[r.group]
        seen[r.group] += 1
        entry = {
            "name": names[index], "group": r.group, "kind": r.spec.kind,
            "path": str(Path(r.spec.path).resolve()) if r.spec.kind != "neox_index" else os.path.abspath(r.spec.path),
            "weight": groups_w[r.group][k], "weight_given": r.spec.weight,
            "share_requested": shares[r.group][k], "identity": r.identity,
            "key_docs": source_key(spec.seed, index, "docs"), "key_samples": source_key(spec.seed, index, "samples"),
        }
        if r.spec.kind != "data":
            entry.update(available_samples=r.available_samples, reshuffle=r.spec.reshuffle)
            if r.spec.data_path:
                entry["data_path"] = str(Path(r.spec.data_path).resolve())
        sources.append(entry)
    return {
        "format": "neox-cpt-replay-index", "version": FORMAT_VERSION,
        "spec": {"num_samples": spec.num_samples, "seq_length": spec.seq_length, "seed": spec.seed,
                 "replay_frac": spec.replay_frac, "replay_ppm": spec.replay_ppm, "allow_cycling": spec.allow_cycling},
        "sources": sources,
    }
