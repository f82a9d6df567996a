"""Read the index files of a stock GPT-NeoX run: which samples did it consume, and what were they?

GPT-NeoX (``megatron/data/gpt2_dataset.py``, "packed" implementation) writes three arrays next to the
data, named ``{data_prefix}_{name}_indexmap_{N}ns_{seq}sl_{seed}s_{packing}pi[_ac]_*.npy``:

- ``doc_idx``: document ids in training order (all epochs, shuffled);
- ``sample_idx`` [S + 1, 2]: sample s spans ``doc_idx`` positions ``sample_idx[s, 0] .. sample_idx[s + 1, 0]``
  from offset ``sample_idx[s, 1]`` in the first to offset ``sample_idx[s + 1, 1]`` in the last, inclusive:
  ``seq + 1`` tokens, i.e. tokens ``[s * seq, (s + 1) * seq + 1)`` of the ``doc_idx`` concatenation;
- ``shuffle_idx``: the k-th sample NeoX trains on is ``shuffle_idx[k]``.

A run that consumed ``c`` samples of that dataset saw ``shuffle_idx[:c]`` (for a blend, ``c`` is the
dataset's own count). This module only reads; it shares no code with NeoX.

    >>> parse_neox_index_prefix("/d/pile_text_document_train_indexmap_80ns_2048sl_1234s_packedpi_ac")["seq_length"]
    2048
    >>> info = parse_neox_index_prefix("/d/pile_text_document_train_0_indexmap_80ns_2048sl_1234s_packedpi_ac")
    >>> info["data_prefix"], info["name"]
    ('/d/pile_text_document', 'train_0')
"""
from __future__ import annotations

import os
import re
from typing import Any, Dict, Optional

import numpy as np

from neox_cpt.data.indexed import IndexedDataset

# NeoX names its datasets "train"/"valid"/"test" (data_path) or "train_0", "train_1", ... (train_data_paths,
# data_utils.py:372): the name is matched as one of those, so a "_0" is never taken as part of the data prefix.
_NAME = re.compile(r"^(?P<data>.+)_(?P<name>(?:train|valid|test)(?:_\d+)?)_indexmap_(?P<ns>\d+)ns_(?P<sl>\d+)sl_"
                   r"(?P<seed>\d+)s_(?P<packing>[a-z_]+?)pi(?P<ac>_ac)?$")
SUFFIXES = ("_doc_idx.npy", "_sample_idx.npy", "_shuffle_idx.npy")


def parse_neox_index_prefix(prefix: str) -> Dict[str, Any]:
    """Split a NeoX index-file prefix into its parts (raises ValueError naming the expected form)."""
    for suffix in SUFFIXES:  # accept one of the file names too
        if prefix.endswith(suffix):
            prefix = prefix[: -len(suffix)]
    m = _NAME.match(prefix)
    if not m:
        raise ValueError(f"cpt_replay_index_paths: {prefix!r} is not a GPT-NeoX index prefix; expected "
                         f"'{{data_prefix}}_{{name}}_indexmap_{{N}}ns_{{seq}}sl_{{seed}}s_{{packing}}pi[_ac]' with "
                         f"name train, train_0, train_1, ... (the part before _doc_idx.npy)")
    return {"prefix": prefix, "data_prefix": m["data"], "name": m["name"], "num_samples": int(m["ns"]),
            "seq_length": int(m["sl"]), "seed": int(m["seed"]), "packing": m["packing"], "allow_chopped": bool(m["ac"])}


class NeoXIndexReader:
    """The samples a stock NeoX run consumed, by consumption position k (= ``shuffle_idx[k]``)."""

    def __init__(self, prefix: str, data_prefix: Optional[str] = None, seq_length: Optional[int] = None) -> None:
        info = parse_neox_index_prefix(prefix)
        self.prefix = info["prefix"]
        if info["packing"] != "packed":
            raise ValueError(f"{self.prefix}: packing {info['packing']!r} is not supported for seen-only replay; "
                             f"only NeoX's default 'packed' samples (seq_length + 1 tokens stitched across documents)")
        if seq_length is not None and info["seq_length"] != seq_length:
            raise ValueError(f"{self.prefix}: the earlier run used seq_length {info['seq_length']} but this stage "
                             f"has seq_length {seq_length}; replay from an index with the same seq_length, or "
                             f"set seq_length: {info['seq_length']}")
        self.seq_length = info["seq_length"]
        paths = [self.prefix + s for s in SUFFIXES]
        for p in paths:
            if not os.path.isfile(p):
                raise FileNotFoundError(f"{p}: GPT-NeoX index file not found (cpt_replay_index_paths entry "
                                        f"{self.prefix!r}); point it at the files the earlier run wrote")
        self.paths = paths
        self.doc_idx, self.sample_idx, self.shuffle_idx = (np.load(p, mmap_mode="r", allow_pickle=False) for p in paths)
        if self.sample_idx.ndim != 2 or self.sample_idx.shape[1] != 2:
            raise ValueError(f"{paths[1]}: shape {self.sample_idx.shape}, expected [num_samples + 1, 2]")
        data_prefix = data_prefix or info["data_prefix"]
        if not all(os.path.isfile(f"{data_prefix}{ext}") for ext in (".bin", ".idx")):
            given = "cpt_replay_data_paths entry" if data_prefix != info["data_prefix"] else \
                "the data prefix parsed from the cpt_replay_index_paths entry"
            raise FileNotFoundError(f"{data_prefix}.bin/.idx: not found ({given} {self.prefix!r}); the NeoX index "
                                    f"files refer to that data: set cpt_replay_data_paths to its .bin/.idx prefix")
        self.data = IndexedDataset(data_prefix)
        self.num_samples = int(min(len(self.shuffle_idx), len(self.sample_idx) - 1))

    def identity(self) -> Dict[str, Any]:
        files = [{"path": os.path.abspath(p), "size": os.stat(p).st_size, "mtime_ns": os.stat(p).st_mtime_ns}
                 for p in self.paths]
        return {"neox_index": files, "data": self.data.identity()}

    def read(self, k: int, out: Optional[np.ndarray] = None) -> np.ndarray:
        """The k-th sample the NeoX run trained on from this dataset, as int64[seq_length + 1]."""
        if not 0 <= k < self.num_samples:
            raise IndexError(f"{self.prefix}: consumption position {k} outside [0, {self.num_samples})")
        s = int(self.shuffle_idx[k])
        (d_first, o_first), (d_last, o_last) = self.sample_idx[s].tolist(), self.sample_idx[s + 1].tolist()
        if d_first == d_last:
            parts = [self.data.get(int(self.doc_idx[d_first]), o_first, o_last - o_first + 1)]
        else:
            parts = [self.data.get(int(self.doc_idx[d_first]), o_first)]
            parts += [self.data.get(int(self.doc_idx[d])) for d in range(d_first + 1, d_last)]
            parts.append(self.data.get(int(self.doc_idx[d_last]), 0, o_last + 1))
        tokens = np.concatenate(parts).astype(np.int64)
        if len(tokens) != self.seq_length + 1:
            raise ValueError(f"{self.prefix}: sample {s} has {len(tokens)} tokens, expected {self.seq_length + 1}; "
                             f"the index files do not match {self.data.prefix}")
        if out is not None:
            out[:] = tokens
            return out
        return tokens
