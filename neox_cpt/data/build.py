"""Build a replay index into a directory, streaming every array to disk in fixed-size chunks.

Arrays (all ``.npy``; N = num_samples, n_i = draws of source i, D_i = its documents):

- ``blend_source`` uint8/uint16 [N]: the source of global position p;
- ``blend_draw`` int32/int64 [N]: how many draws of that source precede p (draw k of the source);
- data sources with draws: ``source{i}_doc_perm`` [D_i] (the stored document permutation),
  ``source{i}_sample_doc`` [n_i] (document position, over epochs, where sample j starts) and
  ``source{i}_sample_offset`` int32 [n_i] (token offset there). Draw k reads sample ``P_i(k)``, a keyed
  permutation of [0, n_i) computed on the fly; seen-only sources store nothing (draw k -> a consumed
  position of the earlier index).

Memory stays bounded: the chunk buffers plus one int32 per document of the largest data source. The
caller (``neox_cpt.data.cache``) builds into a temporary directory and publishes it by rename.

    >>> # see neox_cpt.data.cache.build_index for the entry point
"""
from __future__ import annotations

import json
import logging
import math
import os
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
Progress = Callable[[str, int, int], None]


class NpyStream:
    """Write a 1-D ``.npy`` of known length chunk by chunk (header first, then raw little-endian data)."""

    def __init__(self, path: Path, dtype: Any, length: int) -> None:
        self.path, self.dtype, self.length, self.written = Path(path), np.dtype(dtype), int(length), 0
        self.f = open(self.path, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (self.length,)}
        np.lib.format.write_array_header_1_0(self.f, header)

    def write(self, chunk: np.ndarray) -> None:
        chunk = np.ascontiguousarray(chunk, self.dtype)
        self.f.write(memoryview(chunk).cast("B"))
        self.written += len(chunk)

    def close(self) -> None:
        if self.written != self.length:
            raise RuntimeError(f"{self.path}: wrote {self.written} of {self.length} entries")
        self.f.flush()
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


def build_into(out_dir: Path, spec: ReplayIndexSpec, description: Dict[str, Any],
               progress: Optional[Progress] = None) -> Dict[str, Any]:
    """Write every array, then counts.json, then description.json (last: it marks the directory complete)."""
    out_dir = Path(out_dir)
    tick = progress or (lambda stage, done, total: None)
    n_total, ppm = spec.num_samples, spec.replay_ppm
    entries = [dict(e) for e in description["sources"]]  # realised values go to counts.json only
    if ppm == 0 and spec.replay:
        log.warning("cpt_replay_frac is 0: the %d replay source(s) are ignored", len(spec.replay))

    # 1. Blend: which source and which draw of it each global position takes.
    group = np.array([1 if e["group"] == "replay" else 0 for e in entries], np.int8)
    weights = np.array([e["share_requested"] for e in entries], np.float64)
    counts = np.zeros(len(entries), np.int64)
    src_dtype, draw_dtype = source_dtype(len(entries)), position_dtype(n_total)
    src_out = NpyStream(out_dir / "blend_source.npy", src_dtype, n_total)
    draw_out = NpyStream(out_dir / "blend_draw.npy", draw_dtype, n_total)
    src_buf, draw_buf = np.empty(min(CHUNK, n_total), src_dtype), np.empty(min(CHUNK, n_total), draw_dtype)
    for start in range(0, n_total, CHUNK):
        m = min(CHUNK, n_total - start)
        KERNELS.blend(start, ppm, group, weights, counts, src_buf[:m], draw_buf[:m])
        src_out.write(src_buf[:m])
        draw_out.write(draw_buf[:m])
        tick("blend", start + m, n_total)
    src_out.close()
    draw_out.close()
    del src_buf, draw_buf

    # 2. Check what the blend asks of each source before the expensive part.
    for e, n in zip(entries, counts.tolist()):
        e["samples"] = int(n)
        avail = e.get("available_samples")
        if avail is not None and n > avail and not spec.allow_cycling:
            raise ValueError(
                f"seen-only replay source {e['path']}: this stage draws {n} samples from it but the earlier run "
                f"consumed only {avail}; lower cpt_replay_frac or its weight, raise cpt_replay_consumed_samples if "
                f"more were consumed, or set cpt_replay_allow_cycling: true to repeat them ({math.ceil(n / avail)} cycles)")

    # 3. Per-source sample index of every data source, sized to its draws.
    for i, e in enumerate(entries):
        if e["kind"] == "data" and e["samples"] > 0:
            _build_source(out_dir, i, e, spec.seq_length, tick)
        elif e["kind"] != "data":
            e["cycles"] = math.ceil(e["samples"] / e["available_samples"]) if e["samples"] else 0
            if e["cycles"] > 1:
                log.warning("seen-only source %s is cycled %d times (cpt_replay_allow_cycling)", e["name"], e["cycles"])

    counts_doc = {"num_samples": n_total, "seq_length": spec.seq_length, "sources": [
        {k: e[k] for k in ("name", "group", "kind", "weight", "share_requested", "samples", "epochs", "cycles")
         if k in e} | {"share_realised": e["samples"] / n_total, "tokens": e["samples"] * spec.seq_length}
        for e in entries]}
    _write_json(out_dir / "counts.json", counts_doc)
    description = dict(description)
    description["arrays"] = {"blend_source": src_dtype.name, "blend_draw": draw_dtype.name}
    _write_json(out_dir / "description.json", description)
    return counts_doc


def _build_source(out_dir: Path, i: int, e: Dict[str, Any], seq: int, tick: Progress) -> None:
    ds = IndexedDataset(e["path"])
    n_docs, n_samples = len(ds), e["samples"]
    tokens_per_epoch = ds.num_tokens
    needed = n_samples * seq + 1  # the last sample ends one token after the next one would start
    epochs = math.ceil(needed / tokens_per_epoch)
    e["epochs"] = epochs
    if epochs > 1:
        log.warning("source %s: %d samples need %d tokens, %.2f x its %d tokens: cycled over %d epochs "
                    "(each epoch a new document order)", e["name"], n_samples, needed, needed / tokens_per_epoch,
                    tokens_per_epoch, epochs)
    key_docs = e["key_docs"]
    perm_dtype = position_dtype(n_docs)
    perm_out = NpyStream(out_dir / f"source{i}_doc_perm.npy", perm_dtype, n_docs)
    slot_sizes = np.empty(n_docs, np.int32)
    buf = np.empty(min(CHUNK, n_docs), perm_dtype)
    sizes = np.asarray(ds.sizes)
    for start in range(0, n_docs, CHUNK):
        m = min(CHUNK, n_docs - start)
        KERNELS.permute_range(start, n_docs, key_docs, buf[:m])
        perm_out.write(buf[:m])
        slot_sizes[start: start + m] = sizes[buf[:m]]
        tick(f"{e['name']}: documents", start + m, n_docs)
    perm_out.close()
    del buf

    doc_dtype = position_dtype(n_docs * epochs)
    doc_out = NpyStream(out_dir / f"source{i}_sample_doc.npy", doc_dtype, n_samples)
    off_out = NpyStream(out_dir / f"source{i}_sample_offset.npy", np.int32, n_samples)
    state = np.zeros(2, np.int64)
    doc_buf, off_buf = np.empty(min(CHUNK, n_samples), doc_dtype), np.empty(min(CHUNK, n_samples), np.int32)
    for start in range(0, n_samples, CHUNK):
        m = min(CHUNK, n_samples - start)
        KERNELS.sample_index(slot_sizes, key_docs, seq, state, doc_buf[:m], off_buf[:m])
        doc_out.write(doc_buf[:m])
        off_out.write(off_buf[:m])
        tick(f"{e['name']}: samples", start + m, n_samples)
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
    sources = []
    for index, r in enumerate(resolved):
        k = seen[r.group]
        seen[r.group] += 1
        entry = {
            "name": r.spec.display_name, "group": r.group, "kind": r.spec.kind,
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
        "format": "neox-cpt-replay-index", "version": 1,
        "spec": {"num_samples": spec.num_samples, "seq_length": spec.seq_length, "seed": spec.seed,
                 "replay_frac": spec.replay_frac, "replay_ppm": spec.replay_ppm, "allow_cycling": spec.allow_cycling},
        "sources": sources,
    }
