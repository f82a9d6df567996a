"""MMIDIDX reader/writer: round trip, exact bytes, and every malformed-file error."""
import os
import struct

import numpy as np
import pytest

from neox_cpt.data.indexed import (
    IndexedDataset,
    IndexedDatasetWriter,
    best_dtype,
    dtype_code,
    write_indexed_dataset_from_arrays,
)

DOCS = [[5, 6, 7], [8, 0], [65535]]


def _write(prefix, docs=DOCS, dtype=np.uint16):
    with IndexedDatasetWriter(prefix, dtype) as w:
        for d in docs:
            w.add_document(d)
    return str(prefix)


def _hand_idx(code, sizes, pointers, doc_idx, magic=b"MMIDIDX\x00\x00", version=1):
    out = magic + struct.pack("<Q", version) + struct.pack("<B", code)
    out += struct.pack("<Q", len(sizes)) + struct.pack("<Q", len(doc_idx))
    out += struct.pack(f"<{len(sizes)}i", *sizes)
    out += struct.pack(f"<{len(pointers)}q", *pointers)
    out += struct.pack(f"<{len(doc_idx)}q", *doc_idx)
    return out


def test_bytes_match_hand_written_format(tmp_path):
    prefix = _write(tmp_path / "d")
    assert open(prefix + ".idx", "rb").read() == _hand_idx(8, [3, 2, 1], [0, 6, 10], [0, 1, 2, 3])
    assert open(prefix + ".bin", "rb").read() == struct.pack("<6H", 5, 6, 7, 8, 0, 65535)


def test_int32_bytes(tmp_path):
    prefix = _write(tmp_path / "d", [[70000, 1], [2]], np.int32)
    assert open(prefix + ".idx", "rb").read() == _hand_idx(4, [2, 1], [0, 8], [0, 1, 2])
    assert open(prefix + ".bin", "rb").read() == struct.pack("<3i", 70000, 1, 2)


def test_reads_hand_written_files(tmp_path):
    # A file written by someone else (e.g. NeoX's preprocess): several sequences in one document.
    prefix = str(tmp_path / "neox")
    open(prefix + ".idx", "wb").write(_hand_idx(8, [2, 3], [0, 4], [0, 2]))
    open(prefix + ".bin", "wb").write(struct.pack("<5H", 1, 2, 3, 4, 5))
    ds = IndexedDataset(prefix)
    assert ds.dtype == np.uint16 and len(ds) == 2 and ds.num_tokens == 5
    assert ds.sizes.tolist() == [2, 3] and ds.pointers.tolist() == [0, 4] and ds.doc_idx.tolist() == [0, 2]
    assert ds.get(1).tolist() == [3, 4, 5]
    assert ds.get(1, offset=1, length=1).tolist() == [4]
    assert ds.tokens.tolist() == [1, 2, 3, 4, 5]


def test_round_trip_and_views(tmp_path):
    prefix = _write(tmp_path / "d")
    ds = IndexedDataset(prefix + ".bin")  # the extension is accepted too
    assert len(ds) == 3 and ds.num_tokens == 6
    assert [ds.get(i).tolist() for i in range(3)] == DOCS
    assert ds[1].tolist() == [8, 0]
    assert ds.get(0, offset=1).tolist() == [6, 7]
    assert ds.get(0, offset=3).tolist() == []
    view = ds.get(0)
    assert np.shares_memory(view, ds.tokens)  # zero copy
    with pytest.raises(IndexError, match="sequence 0 has 3 tokens"):
        ds.get(0, offset=2, length=2)
    ds.validate()


def test_bulk_writers_match_per_document(tmp_path):
    rng = np.random.default_rng(0)
    sizes = rng.integers(0, 50, size=40)
    tokens = rng.integers(0, 1000, size=int(sizes.sum())).astype(np.uint16)
    docs = np.split(tokens, np.cumsum(sizes)[:-1])
    a = _write(tmp_path / "a", [d.tolist() for d in docs])
    with IndexedDatasetWriter(tmp_path / "b", np.uint16) as w:
        w.add_documents(sizes[:10], tokens[: sizes[:10].sum()])
        w.add_documents(sizes[10:], tokens[sizes[:10].sum():])
    write_indexed_dataset_from_arrays(tmp_path / "c", sizes, np.array_split(tokens, 7))
    for other in ("b", "c"):
        for ext in (".bin", ".idx"):
            assert open(a + ext, "rb").read() == open(str(tmp_path / other) + ext, "rb").read()
    with pytest.raises(ValueError, match="sizes sum to"):
        write_indexed_dataset_from_arrays(tmp_path / "e", sizes, [tokens[:-1]])
    assert not os.path.exists(tmp_path / "e.idx") and not list(tmp_path.glob("e*"))


def test_empty_dataset(tmp_path):
    prefix = _write(tmp_path / "e", [])
    ds = IndexedDataset(prefix)
    assert len(ds) == 0 and ds.num_tokens == 0 and ds.tokens.size == 0 and ds.doc_idx.tolist() == [0]


def test_writer_leaves_nothing_on_exception(tmp_path):
    with pytest.raises(RuntimeError):
        with IndexedDatasetWriter(tmp_path / "x", np.uint16) as w:
            w.add_document([1, 2])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_writer_replaces_atomically_and_identity_changes(tmp_path):
    prefix = _write(tmp_path / "d")
    ident = IndexedDataset(prefix).identity()
    assert ident["idx_size"] == os.path.getsize(prefix + ".idx") and ident["num_tokens"] == 6
    assert ident == IndexedDataset(prefix).identity()  # stable
    w = IndexedDatasetWriter(prefix, np.uint16)
    w.add_document([9, 9, 9])
    assert IndexedDataset(prefix).get(0).tolist() == [5, 6, 7]  # old files intact until finalize
    w.finalize()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.bin", "d.idx"]
    new = IndexedDataset(prefix).identity()
    assert new["idx_sha256"] != ident["idx_sha256"]
    # Same .idx bytes but a rewritten .bin still changes the identity (size or mtime).
    _write(tmp_path / "d", [[1, 2, 3]])
    assert IndexedDataset(prefix).identity() != new


def test_writer_rejects_out_of_range_tokens(tmp_path):
    with pytest.raises(ValueError, match=r"\[0, 70000\].*best_dtype"):
        with IndexedDatasetWriter(tmp_path / "x", np.uint16) as w:
            w.add_document(np.array([0, 70000]))
    assert list(tmp_path.iterdir()) == []


def test_best_dtype_and_codes():
    assert best_dtype(50277) == np.uint16 and best_dtype(65499) == np.uint16
    assert best_dtype(65500) == np.int32 and best_dtype(200000) == np.int32
    assert [dtype_code(d) for d in (np.uint8, np.int32, np.int64, np.uint16)] == [1, 4, 5, 8]
    for bad in (np.uint32, np.float32):
        with pytest.raises(ValueError, match="not a token dtype"):
            dtype_code(bad)
    with pytest.raises(ValueError, match="vocab_size=0"):
        best_dtype(0)


# ---- malformed files: each error names the file and what to do ----

def _corrupt(tmp_path, idx=None, bin_=None):
    prefix = _write(tmp_path / "d")
    if idx is not None:
        open(prefix + ".idx", "wb").write(idx)
    if bin_ is not None:
        open(prefix + ".bin", "wb").write(bin_)
    return prefix


def test_missing_files(tmp_path):
    prefix = _write(tmp_path / "d")
    os.remove(prefix + ".bin")
    with pytest.raises(FileNotFoundError, match=r"d\.bin: token file not found"):
        IndexedDataset(prefix)
    os.remove(prefix + ".idx")
    with pytest.raises(FileNotFoundError, match=r"d\.idx: index file not found"):
        IndexedDataset(prefix)


@pytest.mark.parametrize(
    "idx, message",
    [
        (b"MMIDIDX\x00", r"d\.idx: truncated index \(8 bytes"),
        (_hand_idx(8, [3, 2, 1], [0, 6, 10], [0, 1, 2, 3])[:-8], r"d\.idx: 94 bytes but its header \(3 sequences, 4 doc_idx entries\) needs 102"),
        (_hand_idx(8, [3], [0], [0, 1], magic=b"TNTIDX\x00\x00\x00"), r"d\.idx: bad magic .*re-run preprocessing"),
        (_hand_idx(8, [3], [0], [0, 1], version=2), r"d\.idx: index version 2"),
        (_hand_idx(9, [3], [0], [0, 1]), r"d\.idx: unknown dtype code 9"),
        (_hand_idx(8, [3, 2, 1], [0, 6, 10], [0, 2, 1, 3]), r"d\.idx: inconsistent doc_idx"),
        (_hand_idx(8, [3, 2, 1], [0, 6, 10], [0, 1, 2]), r"d\.idx: inconsistent doc_idx"),
        (_hand_idx(8, [3, 2, 1], [0, 6, 10], [1, 2, 3]), r"d\.idx: inconsistent doc_idx"),
        (_hand_idx(8, [3, 2, 1], [0, 6, 10], []), r"d\.idx: inconsistent doc_idx"),
        (_hand_idx(8, [3, 2, 2], [0, 6, 10], [0, 1, 2, 3]), r"d\.bin: 12 bytes but d\.idx points up to byte 14"),
    ],
    ids=["short-header", "truncated", "magic", "version", "dtype", "doc-idx-order", "doc-idx-short",
         "doc-idx-start", "doc-idx-empty", "bin-too-short"],
)
def test_malformed_index(tmp_path, idx, message):
    prefix = _corrupt(tmp_path, idx=idx)
    with pytest.raises(ValueError, match=message):
        IndexedDataset(prefix).validate()  # opening (O(1)) or the full check, whichever sees the defect


# The full check (what a builder and every --check run): each defect named with the file and the entry.
# bin holds 6 uint16 tokens (12 bytes) unless given.
@pytest.mark.parametrize(
    "idx, bin_, message",
    [
        (_hand_idx(8, [3, -1, 4], [0, 6, 4], [0, 1, 2, 3]), None, r"d\.idx: sequence 1 has a negative size \(-1"),
        (_hand_idx(8, [3, 2, 1], [0, 4, 10], [0, 1, 2, 3]), None, r"d\.idx: pointer of sequence 1 is 4 but the sizes"),
        (_hand_idx(8, [3, 2, 1], [0, 6, 12], [0, 1, 2, 3]), struct.pack("<7H", *range(7)),
         r"d\.idx: pointer of sequence 2 is 12 but the sizes before it say 10"),
        (_hand_idx(8, [3, 2, 1], [0, 6, 10], [0, 2, 1, 3]), None, r"d\.idx: inconsistent doc_idx \(entry 2 = 1"),
        (_hand_idx(8, [3, 2, 1], [0, 6, 10], [0, 1, 2, 3]), struct.pack("<12H", *range(12)),
         r"d\.bin: 24 bytes but d\.idx describes 12 \(uint16 tokens\); .*another dtype"),
        (_hand_idx(8, [3, 2, 1], [0, 6, 10], [0, 1, 2, 3]), struct.pack("<6i", *range(6)),
         r"d\.bin: 24 bytes but d\.idx describes 12"),  # int32 data labelled uint16
        (_hand_idx(6, [3, 2, 1], [0, 12, 20], [0, 1, 2, 3]), struct.pack("<6f", *range(6)),
         r"d\.idx: dtype code 6 is a float type \(float32\); token ids are integers"),
        (_hand_idx(7, [1], [0], [0, 1]), struct.pack("<d", 1.0), r"d\.idx: dtype code 7 is a float type"),
    ],
    ids=["negative-size", "pointer-not-running-sum", "pointer-past-sizes", "doc-idx-falls", "bin-longer",
         "int32-as-uint16", "float32", "float64"],
)
def test_validate_names_file_and_defect(tmp_path, idx, bin_, message):
    prefix = _corrupt(tmp_path, idx=idx, **({"bin_": bin_} if bin_ is not None else {}))
    with pytest.raises(ValueError, match=message):
        IndexedDataset(prefix).validate()


def test_validate_passes_written_data_and_max_token(tmp_path):
    prefix = _write(str(tmp_path / "ok"))
    ds = IndexedDataset(prefix).validate()
    assert ds.max_token() == 65535 and ds.num_tokens == 6


@pytest.mark.parametrize("block", [1, 2, 3, 1 << 20])
@pytest.mark.parametrize("idx, message", [
    (_hand_idx(8, [3, 2, 1], [0, 6, 10], [0, 2, 1, 3]), r"entry 2 = 1 is below entry 1 = 2"),
    (_hand_idx(8, [3, 2, 1], [0, 6, 10], [0, 1, 0, 3]), r"entry 2 = 0 is below entry 1 = 1"),
    (_hand_idx(8, [2, 1, 3], [0, 2, 6], [0, 1, 2, 3]), r"pointer of sequence 1 is 2 but the sizes before it say 4"),
    (_hand_idx(8, [4, 0, -1, 3], [0, 8, 8, 6], [0, 4]), r"sequence 2 has a negative size \(-1"),
])
def test_validate_in_blocks_finds_defects_across_block_ends(monkeypatch, tmp_path, block, idx, message):
    """The full pass reads the .idx in blocks (bounded memory on multi-GB indexes): a defect is found and named
    by its entry wherever the block ends fall, and the token count is the same for every block size."""
    import neox_cpt.data.indexed as indexed

    monkeypatch.setattr(indexed, "_BLOCK", block)
    with pytest.raises(ValueError, match=message):
        IndexedDataset(_corrupt(tmp_path, idx=idx)).validate()
    ok = IndexedDataset(_write(str(tmp_path / "ok"), docs=[[1] * (i % 4) for i in range(11)]))
    assert ok.num_tokens == sum(i % 4 for i in range(11)) == ok.validate().num_tokens


def test_bin_shorter_than_index_claims(tmp_path):
    prefix = _corrupt(tmp_path, bin_=struct.pack("<5H", 5, 6, 7, 8, 0))
    with pytest.raises(ValueError, match=r"d\.bin: 10 bytes but d\.idx points up to byte 12.*truncated"):
        IndexedDataset(prefix)


def test_validate_catches_bad_pointers(tmp_path):
    prefix = _corrupt(tmp_path, idx=_hand_idx(8, [3, 2, 1], [0, 4, 10], [0, 1, 2, 3]))
    ds = IndexedDataset(prefix)  # cheap open checks only the end
    with pytest.raises(ValueError, match="pointer of sequence 1 is 4 but the sizes before it say 6"):
        ds.validate()


@pytest.mark.slow  # imports torch + megatron-core (skipped where megatron-core is not installed)
@pytest.mark.filterwarnings("ignore")
def test_byte_compatible_with_megatron_core(tmp_path):
    mcore = pytest.importorskip("megatron.core.datasets.indexed_dataset")
    torch = pytest.importorskip("torch")
    docs = [[5, 6, 7], [8, 0], [65535], []]
    ours = _write(tmp_path / "ours", docs)
    theirs = str(tmp_path / "theirs")
    builder = mcore.IndexedDatasetBuilder(theirs + ".bin", dtype=np.uint16)
    for d in docs:
        builder.add_document(torch.tensor(d, dtype=torch.int64), [len(d)])
    builder.finalize(theirs + ".idx")
    for ext in (".bin", ".idx"):
        assert open(ours + ext, "rb").read() == open(theirs + ext, "rb").read()
    read = mcore.IndexedDataset(ours)
    assert [read[i].tolist() for i in range(len(docs))] == docs
    assert read.document_indices.tolist() == IndexedDataset(theirs).doc_idx.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("name", ["neox_cpt.data.indexed", "neox_cpt.data.check"])
def test_docstring_examples_run(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
