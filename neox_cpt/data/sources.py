"""Sources resolved against the file system: identity for the cache key, sizes for weighting, readers.

``resolve_sources(spec)`` opens every file a spec names, validates it, and returns one ``Resolved`` per
source (new sources first, then replay) with what the cache key must cover. ``open_reader`` turns a
source of a *built* index back into something that reads draw k of that source.

    >>> from neox_cpt.data.sources import source_key
    >>> source_key(1234, 0, "docs") != source_key(1234, 1, "docs")
    True
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from neox_cpt.data.indexed import IndexedDataset
from neox_cpt.data.reference import Permutation, epoch_key
from neox_cpt.data.spec import ReplayIndexSpec, SourceSpec
from neox_cpt.native import NATIVE

DESCRIPTION = "description.json"


def source_key(seed: int, index: int, purpose: str) -> int:
    """64-bit key of one order ("docs" or "samples") of source ``index`` under ``seed``."""
    digest = hashlib.sha256(f"neox-cpt/{seed}/{index}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


@dataclass
class Resolved:
    """One source after opening its files."""

    spec: SourceSpec
    group: str
    """"new" or "replay"."""
    num_tokens: int
    """Tokens for ``weighting: tokens`` (seen-only: consumed samples x seq_length)."""
    identity: Dict[str, Any]
    """What the cache key covers for this source."""
    available_samples: Optional[int] = None
    """Seen-only: samples the earlier run consumed; None for data sources (cycled over epochs)."""
    num_documents: int = 0


def _load_description(index_dir: Path) -> Dict[str, Any]:
    path = Path(index_dir) / DESCRIPTION
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; {index_dir} is not a complete neox-cpt index directory "
                                f"(build it with `neox-cpt build-index CONFIG`)")
    with open(path) as f:
        return json.load(f)


def resolve_sources(spec: ReplayIndexSpec) -> List[Resolved]:
    out: List[Resolved] = []
    for group, sources in (("new", spec.new), ("replay", spec.replay)):
        for s in sources:
            if s.kind == "data":
                ds = IndexedDataset(s.path)
                if ds.num_tokens <= 0:
                    raise ValueError(f"{s.path}: the dataset holds no tokens; remove it from the config")
                out.append(Resolved(s, group, ds.num_tokens, {"data": ds.identity()}, None, len(ds)))
            elif s.kind == "neox_cpt_index":
                desc = _load_description(Path(s.path))
                seq = desc["spec"]["seq_length"]
                if seq != spec.seq_length:
                    raise ValueError(f"{s.path}: the earlier stage used seq_length {seq} but this stage has "
                                     f"seq_length {spec.seq_length}; replay from an index with the same seq_length "
                                     f"or set seq_length: {seq}")
                total = desc["spec"]["num_samples"]
                if s.consumed_samples > total:
                    raise ValueError(f"cpt_replay_consumed_samples={s.consumed_samples} for {s.path}: that index has "
                                     f"only {total} samples; give the number the earlier stage actually consumed")
                ident = {"neox_cpt_index": str(Path(s.path).resolve()), "key": desc["key"]}
                out.append(Resolved(s, group, s.consumed_samples * seq, ident, s.consumed_samples))
            else:
                from neox_cpt.data.neox_index import NeoXIndexReader

                reader = NeoXIndexReader(s.path, s.data_path, spec.seq_length)
                if s.consumed_samples > reader.num_samples:
                    raise ValueError(f"cpt_replay_consumed_samples={s.consumed_samples} for {s.path}: its shuffle_idx "
                                     f"holds only {reader.num_samples} samples; give the number the earlier run "
                                     f"consumed from this dataset")
                out.append(Resolved(s, group, s.consumed_samples * spec.seq_length, reader.identity(),
                                    s.consumed_samples))
    return out


# -------------------------------------------------------------------------------------------- readers
def _permute_one(k: int, n: int, key: int) -> int:
    if NATIVE is not None:
        out = np.empty(1, np.int64)
        NATIVE.permute(np.array([k], np.int64), n, key, out)
        return int(out[0])
    return int(Permutation(n, key)(np.array([k]))[0])


class DataReader:
    """Draw k of a data source: sample ``P(k)`` of its sample index, read by walking the document order."""

    def __init__(self, index_dir: Path, i: int, entry: Dict[str, Any], seq_length: int) -> None:
        self.ds = IndexedDataset(entry["path"])
        self.num_samples = entry["samples"]
        self.key_docs, self.key_samples = entry["key_docs"], entry["key_samples"]
        self.length = seq_length + 1
        if self.num_samples:
            self.doc_perm = np.load(index_dir / f"source{i}_doc_perm.npy", mmap_mode="r")
            self.sample_doc = np.load(index_dir / f"source{i}_sample_doc.npy", mmap_mode="r")
            self.sample_offset = np.load(index_dir / f"source{i}_sample_offset.npy", mmap_mode="r")

    def read(self, k: int, out: np.ndarray) -> np.ndarray:
        j = _permute_one(k, self.num_samples, self.key_samples)
        d, o = int(self.sample_doc[j]), int(self.sample_offset[j])
        if NATIVE is not None:
            NATIVE.gather(self.ds.tokens, self.ds.pointers, self.ds.sizes, self.doc_perm, self.key_docs, d, o, out)
        else:
            from neox_cpt.data import reference

            reference.gather(self.ds.tokens, self.ds.pointers, self.ds.sizes, self.doc_perm, self.key_docs, d, o, out)
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
    kind = entry["kind"]
    if kind == "data":
        return DataReader(index_dir, i, entry, seq_length)
    if kind == "neox_cpt_index":
        from neox_cpt.data.dataset import ReplayDataset

        prev = ReplayDataset(entry["path"])
        return SeenReader(entry, lambda pos, out: prev.read_position(pos, out))
    from neox_cpt.data.neox_index import NeoXIndexReader

    reader = NeoXIndexReader(entry["path"], entry.get("data_path"), seq_length)
    return SeenReader(entry, lambda pos, out: reader.read(pos, out))
