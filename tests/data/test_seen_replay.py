"""Seen-only replay: from a stock GPT-NeoX index (written here by hand) and from an earlier neox-cpt stage."""
import numpy as np
import pytest

from neox_cpt.data.cache import build_index
from neox_cpt.data.dataset import ReplayDataset
from neox_cpt.data.spec import ReplayIndexSpec, SourceSpec, replay_spec_from_config
from replay_helpers import numbered_docs, write_docs

# Four documents of 3, 5, 2, 4 tokens (document i holds 100 i + t). A NeoX run with seq_length 3 shuffled
# them to doc_idx = [2, 0, 3, 1], so its token stream is
#   200 201 | 0 1 2 | 300 301 302 303 | 100 101 102 103 104
# and sample s is tokens [3 s, 3 s + 4). NeoX's sample_idx holds (doc_idx position, offset) of each
# sample start, the end of sample s being the start of s + 1 (inclusive):
SAMPLE_IDX = [[0, 0], [1, 1], [2, 1], [3, 0], [3, 3]]
SAMPLES = [[200, 201, 0, 1], [1, 2, 300, 301], [301, 302, 303, 100], [100, 101, 102, 103]]
SHUFFLE_IDX = [2, 0, 3, 1]  # the run trained on samples 2, 0, 3, 1 in this order


@pytest.fixture
def neox_run(tmp_path):
    old = write_docs(tmp_path / "old_text_document", numbered_docs([3, 5, 2, 4]))
    prefix = f"{old}_train_indexmap_4ns_3sl_1234s_packedpi_ac"
    np.save(prefix + "_doc_idx.npy", np.array([2, 0, 3, 1], np.int32))
    np.save(prefix + "_sample_idx.npy", np.array(SAMPLE_IDX, np.int32))
    np.save(prefix + "_shuffle_idx.npy", np.array(SHUFFLE_IDX, np.uint32))
    new = write_docs(tmp_path / "new", [[7] * 100])
    return new, prefix


def replay_tokens(path):
    ds = ReplayDataset(path)
    return [ds[i]["text"].tolist() for i in range(len(ds)) if ds.source_of(i) == 1]


def seen_spec(new, index, consumed, num_samples, reshuffle=False, **kw):
    return ReplayIndexSpec(new=(SourceSpec(new),), replay=(SourceSpec(index, None, kw.pop("kind", "neox_index"),
                                                                      consumed, reshuffle),),
                           replay_frac=0.5, num_samples=num_samples, seq_length=kw.pop("seq_length", 3), **kw)


def test_our_reading_of_the_handwritten_neox_index(neox_run):
    from neox_cpt.data.neox_index import NeoXIndexReader

    reader = NeoXIndexReader(neox_run[1])
    assert [reader.read(k).tolist() for k in range(4)] == [SAMPLES[s] for s in SHUFFLE_IDX]


def test_seen_only_replay_in_original_order(neox_run, tmp_path):
    new, prefix = neox_run
    path = build_index(seen_spec(new, prefix, consumed=3, num_samples=6), tmp_path / "c", progress=False)
    assert replay_tokens(path) == [SAMPLES[2], SAMPLES[0], SAMPLES[3]]  # never sample 1: not consumed


def test_seen_only_replay_reshuffled_draws_only_consumed_samples(neox_run, tmp_path):
    new, prefix = neox_run
    path = build_index(seen_spec(new, prefix, consumed=3, num_samples=6, reshuffle=True), tmp_path / "c",
                       progress=False)
    assert sorted(replay_tokens(path)) == sorted([SAMPLES[2], SAMPLES[0], SAMPLES[3]])



def test_a_rewritten_stock_neox_index_file_is_refused_on_open(neox_run, tmp_path):
    new, prefix = neox_run
    path = build_index(seen_spec(new, prefix, consumed=3, num_samples=6), tmp_path / "c", progress=False)
    np.save(prefix + "_shuffle_idx.npy", np.array([0, 2, 3, 1], np.uint32))  # same size, another order
    with pytest.raises(ValueError, match="_shuffle_idx.npy differ"):
        ReplayDataset(path)
    assert build_index(seen_spec(new, prefix, consumed=3, num_samples=6), tmp_path / "c", progress=False) != path

def test_over_requesting_a_seen_only_source_fails_unless_cycling_is_allowed(neox_run, tmp_path):
    new, prefix = neox_run
    with pytest.raises(ValueError, match="cpt_replay_allow_cycling"):
        build_index(seen_spec(new, prefix, consumed=3, num_samples=8), tmp_path / "c", progress=False)
    assert not (tmp_path / "c").exists()  # refused before the cache directory is created
    path = build_index(seen_spec(new, prefix, consumed=3, num_samples=8, allow_cycling=True), tmp_path / "c",
                       progress=False)
    assert replay_tokens(path) == [SAMPLES[2], SAMPLES[0], SAMPLES[3], SAMPLES[2]]
    import json
    assert json.load(open(path / "counts.json"))["sources"][1]["cycles"] == 2


def test_seq_length_mismatch_with_the_neox_index_names_both(neox_run):
    new, prefix = neox_run
    from neox_cpt.data.cache import index_key

    with pytest.raises(ValueError, match="seq_length 3.*seq_length 4"):
        index_key(seen_spec(new, prefix, consumed=3, num_samples=6, seq_length=4))
    with pytest.raises(ValueError, match="holds only 4"):
        index_key(seen_spec(new, prefix, consumed=5, num_samples=6))


def test_seen_only_replay_of_an_earlier_neox_cpt_stage(tmp_path):
    a = write_docs(tmp_path / "a", numbered_docs([7, 3, 9, 4, 6, 8]))
    b = write_docs(tmp_path / "b", [[9] * 200])
    stage1 = build_index(ReplayIndexSpec(new=(SourceSpec(a),), num_samples=20, seq_length=5, name="s1"),
                         tmp_path / "c", progress=False)
    first = ReplayDataset(stage1)
    cfg = {"cpt_train_data_paths": [b], "cpt_replay_seen_only": True, "cpt_replay_index_paths": [str(stage1)],
           "cpt_replay_consumed_samples": [12], "cpt_replay_reshuffle": False, "cpt_replay_frac": 0.2,
           "train_iters": 10, "train_batch_size": 6, "seq_length": 5, "cpt_stage_name": "s2"}
    stage2 = build_index(replay_spec_from_config(cfg), tmp_path / "c", progress=False)
    assert replay_tokens(stage2) == [first[k]["text"].tolist() for k in range(12)]
    shuffled = build_index(replay_spec_from_config(dict(cfg, cpt_replay_reshuffle=True)), tmp_path / "c",
                           progress=False)
    got = replay_tokens(shuffled)
    assert sorted(got) == sorted(first[k]["text"].tolist() for k in range(12)) and got != replay_tokens(stage2)
    with pytest.raises(ValueError, match="seq_length 5"):
        build_index(replay_spec_from_config(dict(cfg, seq_length=4)), tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match="only 20 samples"):
        build_index(replay_spec_from_config(dict(cfg, cpt_replay_consumed_samples=[21])), tmp_path / "c",
                    progress=False)


def neox_style_index(sizes, num_epochs, seq, seed):
    """Our own restatement of NeoX's packed index semantics (not its code): documents tiled over epochs and
    shuffled together; sample s = tokens [s seq, s seq + seq + 1) of that stream, stored as the
    (doc_idx position, offset) of its first token; the next sample starts on its last token."""
    rng = np.random.default_rng(seed)
    doc_idx = rng.permutation(np.tile(np.arange(len(sizes)), num_epochs)).astype(np.int32)
    starts = np.concatenate([[0], np.cumsum(np.asarray(sizes)[doc_idx])])
    num_samples = (int(starts[-1]) - 1) // seq
    sample_idx = []
    for s in range(num_samples + 1):
        t = s * seq
        pos = int(np.searchsorted(starts, t, side="right") - 1)  # the document holding token t
        sample_idx.append([pos, t - starts[pos]])
    return doc_idx, np.array(sample_idx, np.int64), rng.permutation(num_samples).astype(np.uint32)


def test_reader_on_a_generated_multi_epoch_neox_index(tmp_path):
    from neox_cpt.data.neox_index import NeoXIndexReader

    sizes = [5, 1, 9, 3, 7, 2]
    data = write_docs(tmp_path / "d_text_document", numbered_docs(sizes))
    doc_idx, sample_idx, shuffle_idx = neox_style_index(sizes, 3, 4, 0)
    prefix = f"{data}_train_indexmap_{len(shuffle_idx)}ns_4sl_0s_packedpi_ac"
    for suffix, arr in (("doc", doc_idx), ("sample", sample_idx), ("shuffle", shuffle_idx)):
        np.save(f"{prefix}_{suffix}_idx.npy", arr)
    stream = np.concatenate([numbered_docs(sizes)[d] for d in doc_idx])
    reader = NeoXIndexReader(prefix)
    assert reader.num_samples == len(shuffle_idx) == (3 * sum(sizes) - 1) // 4
    for k, s in enumerate(shuffle_idx.tolist()):
        assert reader.read(k).tolist() == stream[4 * s: 4 * s + 5].tolist()
