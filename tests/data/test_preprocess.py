"""Tokenizing JSONL/text into .bin/.idx: decode round trip, EOD, worker-count independence, both tokenizer kinds."""
import gzip
import io
import json

import numpy as np
import pytest

from neox_cpt.cli import main as cli_main
from neox_cpt.data.indexed import IndexedDataset
from neox_cpt.data.preprocess import preprocess_documents, read_documents
from neox_cpt.data.tokenizer import load_tokenizer

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Continual pre-training re-warms and re-decays the learning rate.",
    "",  # tokenizes to nothing: skipped, like NeoX
    "Replay mixes a small fraction of old data into every batch. Ünïcödé ok.",
] + [f"document number {i} has some words: {' '.join(str(j) for j in range(i % 7))}" for i in range(60)]


@pytest.fixture(scope="module")
def hf_tokenizer(tmp_path_factory):
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TEXTS * 3, trainer)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return str(path)


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    spm = pytest.importorskip("sentencepiece")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TEXTS * 5), model_writer=model, vocab_size=120, model_type="bpe",
        normalization_rule_name="identity", character_coverage=1.0, minloglevel=2)
    path = tmp_path_factory.mktemp("spm") / "spm.model"
    path.write_bytes(model.getvalue())
    return str(path)


def _jsonl(tmp_path, texts, name="in.jsonl", key="text"):
    path = tmp_path / name
    path.write_text("".join(json.dumps({key: t, "meta": 1}) + "\n" for t in texts))
    return str(path)


def test_hf_round_trip_with_eod(tmp_path, hf_tokenizer):
    tok = load_tokenizer(hf_tokenizer)
    assert tok.kind == "hf" and tok.eod_id == 0 and tok.vocab_size == 400
    ds = preprocess_documents(read_documents([_jsonl(tmp_path, TEXTS)]), hf_tokenizer, tmp_path / "out",
                              chunk_docs=7, progress=False)
    assert ds.prefix == str(tmp_path / "out_text_document") and ds.dtype == np.uint16
    kept = [t for t in TEXTS if t]
    assert len(ds) == len(kept) and ds.doc_idx.tolist() == list(range(len(kept) + 1))
    for i, text in enumerate(kept):
        ids = ds.get(i).tolist()
        assert ids[-1] == tok.eod_id and tok.eod_id not in ids[:-1]
        assert tok.decode(ids[:-1]) == text
        assert ids[:-1] == tok.encode_batch([text])[0]
    ds.validate()


def test_workers_do_not_change_bytes(tmp_path, hf_tokenizer):
    docs = TEXTS * 5
    one = preprocess_documents(docs, hf_tokenizer, tmp_path / "w1", workers=1, chunk_docs=5, progress=False)
    two = preprocess_documents(iter(docs), hf_tokenizer, tmp_path / "w2", workers=2, chunk_docs=3, progress=False)
    for ext in (".bin", ".idx"):
        assert open(one.prefix + ext, "rb").read() == open(two.prefix + ext, "rb").read()


def test_no_eod_and_explicit_eod(tmp_path, hf_tokenizer):
    tok = load_tokenizer(hf_tokenizer)
    plain = preprocess_documents(TEXTS[:2], hf_tokenizer, tmp_path / "a", append_eod=False, progress=False)
    assert plain.get(0).tolist() == tok.encode_batch(TEXTS[:1])[0]
    pad = preprocess_documents(TEXTS[:2], hf_tokenizer, tmp_path / "b", eod_id=1, progress=False)
    assert pad.get(1).tolist() == tok.encode_batch(TEXTS[1:2])[0] + [1]
    with pytest.raises(ValueError, match=r"--eod-id 400: outside the tokenizer's 400 ids"):
        load_tokenizer(hf_tokenizer, eod_id=400)


def test_sentencepiece_round_trip(tmp_path, spm_model):
    tok = load_tokenizer(spm_model)
    assert tok.kind == "sentencepiece" and tok.eod_id == tok.impl.eos_id() == 2  # no <|endoftext|>: eos
    ds = preprocess_documents(TEXTS[:4], spm_model, tmp_path / "s", workers=2, chunk_docs=1, progress=False)
    kept = [t for t in TEXTS[:4] if t]
    assert len(ds) == len(kept)
    for i, text in enumerate(kept):
        ids = ds.get(i).tolist()
        assert ids[-1] == 2 and tok.decode(ids[:-1]) == text


def test_cli_reads_txt_jsonl_and_gz(tmp_path, hf_tokenizer, capsys):
    tok = load_tokenizer(hf_tokenizer)
    (tmp_path / "a.txt").write_text(TEXTS[0])
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as f:
        f.write(json.dumps({"body": TEXTS[1]}) + "\n\n" + json.dumps({"body": TEXTS[3]}) + "\n")
    rc = cli_main(["preprocess", "--input", f"{tmp_path / 'a.txt'},{tmp_path / 'b.jsonl.gz'}", "--json-key", "body",
                   "--tokenizer", hf_tokenizer, "--output-prefix", str(tmp_path / "cli"), "--workers", "2",
                   "--no-progress"])
    assert rc == 0 and "3 documents" in capsys.readouterr().out
    ds = IndexedDataset(tmp_path / "cli_body_document")
    assert [tok.decode(ds.get(i).tolist()[:-1]) for i in range(3)] == [TEXTS[0], TEXTS[1], TEXTS[3]]


def test_errors_name_the_input(tmp_path, hf_tokenizer, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "ok"}) + "\n" + json.dumps({"content": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: no key 'text' \(found \['content'\]\).*--json-key"):
        preprocess_documents(read_documents([str(bad)]), hf_tokenizer, tmp_path / "o", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]  # nothing half-written
    bad.write_text("{not json\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: not valid JSON"):
        list(read_documents([str(bad)]))
    with pytest.raises(FileNotFoundError, match=r"--input .*missing\.jsonl: file not found"):
        read_documents([str(tmp_path / "missing.jsonl")])
    with pytest.raises(FileNotFoundError, match=r"--tokenizer .*nope\.json: file not found"):
        load_tokenizer(tmp_path / "nope.json")
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(ValueError, match=r"junk\.json: not a valid Hugging Face tokenizer\.json"):
        load_tokenizer(tmp_path / "junk.json")
    rc = cli_main(["preprocess", "--input", str(tmp_path / "missing.jsonl"), "--tokenizer", hf_tokenizer,
                   "--output-prefix", str(tmp_path / "o")])
    assert rc == 2 and "missing.jsonl: file not found" in capsys.readouterr().err
