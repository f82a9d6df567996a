"""Replay index: exact small indices, prefix-exact shares, resume, determinism, cache keys, bad input."""
import json
import math
import os

import numpy as np
import pytest

from neox_cpt.data import reference as ref
from neox_cpt.data.cache import build_index, index_key
from neox_cpt.data.dataset import ReplayDataset, SourceDataset
from neox_cpt.data.spec import ReplayIndexSpec, SourceSpec, replay_spec_from_config
from replay_helpers import numbered_docs, random_sizes, write_docs


@pytest.fixture
def two_sources(tmp_path):
    new = write_docs(tmp_path / "new", numbered_docs(random_sizes(40, 1), base=0))
    old = write_docs(tmp_path / "old", numbered_docs(random_sizes(15, 2), base=10000))
    return new, old


def spec_of(new, old, **kw):
    args = dict(new=(SourceSpec(new),), replay=(SourceSpec(old),), replay_frac=0.25, num_samples=200,
                seq_length=8, seed=7)
    args.update(kw)
    return ReplayIndexSpec(**args)


def concatenation(index_dir, i, entry, num_positions):
    """Tokens of source i's walk, computed independently: stored permutation + epoch order."""
    from neox_cpt.data.indexed import IndexedDataset

    ds = IndexedDataset(entry["path"])
    perm = np.load(os.path.join(index_dir, f"source{i}_doc_perm.npy"))
    slots = ref.epoch_slots(len(ds), entry["key_docs"], np.arange(num_positions))
    return np.concatenate([ds.get(int(perm[s])) for s in slots]).astype(np.int64)


def test_samples_are_windows_of_the_shuffled_concatenation(two_sources, tmp_path):
    new, old = two_sources
    path = build_index(spec_of(new, old), tmp_path / "cache", progress=False)
    ds = ReplayDataset(path)
    desc = json.load(open(path / "description.json"))
    counts = json.load(open(path / "counts.json"))
    assert [c["samples"] for c in counts["sources"]] == [150, 50]  # 200 x (0.75, 0.25) exactly
    for i, entry in enumerate(desc["sources"]):
        n_i = counts["sources"][i]["samples"]
        epochs = counts["sources"][i]["epochs"]
        n_docs = entry["identity"]["data"]["num_sequences"]
        cat = concatenation(path, i, entry, n_docs * epochs)
        assert len(cat) >= n_i * 8 + 1  # explicit epochs cover every sample
        order = np.empty(n_i, np.int64)
        ref.permute_range(0, n_i, entry["key_samples"], order)
        src, draw = ds.blend_arrays()
        positions = np.flatnonzero(src == i)
        draws = draw[positions]
        assert draws.tolist() == list(range(n_i))  # draw k of a source is its k-th position
        for p, k in zip(positions, draws):
            j = order[k]
            assert ds[p]["text"].tolist() == cat[j * 8: j * 8 + 9].tolist()
        assert sorted(order.tolist()) == list(range(n_i))  # every sample of the source is read exactly once
    assert counts["sources"][0]["epochs"] == math.ceil((150 * 8 + 1) / desc["sources"][0]["identity"]["data"]["num_tokens"])


def test_worked_example_blend_positions(tmp_path):
    # 10 positions, replay 0.3: replay where floor(0.3 (p + 1)) > floor(0.3 p): p = 3, 6, 9.
    new = write_docs(tmp_path / "n", [[1] * 50])
    old = write_docs(tmp_path / "o", [[2] * 50])
    path = build_index(spec_of(new, old, replay_frac=0.3, num_samples=10, seq_length=2), tmp_path / "c", progress=False)
    ds = ReplayDataset(path)
    src, draw = ds.blend_arrays()
    assert src.tolist() == [0, 0, 0, 1, 0, 0, 1, 0, 0, 1]
    assert draw.tolist() == [0, 1, 2, 0, 3, 4, 1, 5, 6, 2]
    assert [ds.source_of(i) for i in range(10)] == src.tolist()
    assert ds[3]["text"].tolist() == [2, 2, 2]
    assert src.dtype == np.uint8 and draw.dtype == np.int32
    assert ds.blend_arrays(4, 7)[1].tolist() == [3, 4, 1]


def test_group_share_is_floor_or_ceil_in_every_window_and_sources_track_weights(tmp_path):
    news = [write_docs(tmp_path / f"n{i}", numbered_docs(random_sizes(10, i))) for i in range(3)]
    olds = [write_docs(tmp_path / f"o{i}", numbered_docs(random_sizes(10, 10 + i))) for i in range(2)]
    spec = ReplayIndexSpec(new=tuple(SourceSpec(p, w) for p, w in zip(news, (0.5, 0.3, 0.2))),
                           replay=tuple(SourceSpec(p, w) for p, w in zip(olds, (2.0, 1.0))),
                           replay_frac=0.13, num_samples=5000, seq_length=4, seed=3)
    path = build_index(spec, tmp_path / "c", progress=False)
    src = ReplayDataset(path).blend_arrays()[0]
    replay = (src >= 3).astype(np.int64)
    cum = np.concatenate([[0], np.cumsum(replay)])
    for length in (1, 7, 64, 100, 999):  # any window (a global batch, a data-parallel slice) of any length
        window = cum[length:] - cum[:-length]
        assert window.min() >= math.floor(0.13 * length) and window.max() <= math.ceil(0.13 * length)
    shares = [0.87 * 0.5, 0.87 * 0.3, 0.87 * 0.2, 0.13 * 2 / 3, 0.13 / 3]
    p = np.arange(1, len(src) + 1)
    for i, w in enumerate(shares):
        err = np.abs(np.cumsum(src == i) - w * p)
        assert err.max() < 2.0  # each source within 2 samples of its share at every prefix


def test_single_source_groups_are_within_one_sample_at_every_prefix(two_sources, tmp_path):
    new, old = two_sources
    path = build_index(spec_of(new, old, replay_frac=0.05, num_samples=3000), tmp_path / "c", progress=False)
    src = ReplayDataset(path).blend_arrays()[0]
    p = np.arange(1, len(src) + 1)
    assert np.abs(np.cumsum(src == 1) - 0.05 * p).max() < 1
    assert np.abs(np.cumsum(src == 0) - 0.95 * p).max() < 1


def test_resume_at_an_offset_gives_the_same_samples(two_sources, tmp_path):
    new, old = two_sources
    path = build_index(spec_of(new, old), tmp_path / "c", progress=False)
    full, resumed = ReplayDataset(path), ReplayDataset(path, start_sample=123)
    assert len(resumed) == 77
    for i in range(77):
        assert np.array_equal(resumed[i]["text"], full[123 + i]["text"])
        assert resumed.source_of(i) == full.source_of(123 + i)
    with pytest.raises(IndexError):
        resumed[77]
    with pytest.raises(ValueError, match="start_sample"):
        ReplayDataset(path, start_sample=201)


def test_rebuild_gives_identical_bytes_and_reuses_the_cache(two_sources, tmp_path):
    new, old = two_sources
    a = build_index(spec_of(new, old), tmp_path / "a", progress=False)
    b = build_index(spec_of(new, old), tmp_path / "b", progress=False)
    assert a.name == b.name
    for f in sorted(os.listdir(a)):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    mtime = (a / "blend_table_new.npy").stat().st_mtime_ns
    assert build_index(spec_of(new, old), tmp_path / "a", progress=False) == a
    assert (a / "blend_table_new.npy").stat().st_mtime_ns == mtime
    assert build_index(spec_of(new, old, seed=8), tmp_path / "a", progress=False) != a


def test_changed_data_file_invalidates_the_cache(two_sources, tmp_path):
    new, old = two_sources
    a = build_index(spec_of(new, old), tmp_path / "c", progress=False)
    write_docs(tmp_path / "old", numbered_docs(random_sizes(15, 99), base=10000))  # replaced .bin/.idx
    b = build_index(spec_of(new, old), tmp_path / "c", progress=False)
    assert a != b and a.exists() and b.exists()


def test_many_sources_use_uint16_ids(tmp_path):
    paths = [write_docs(tmp_path / f"s{i}", [[i % 60000] * 5]) for i in range(260)]
    spec = ReplayIndexSpec(new=tuple(SourceSpec(p) for p in paths), num_samples=520, seq_length=2)
    ds = ReplayDataset(build_index(spec, tmp_path / "c", progress=False))
    src = ds.blend_arrays()[0]
    assert src.dtype == np.uint16
    assert np.bincount(src, minlength=260).tolist() == [2] * 260
    assert ds[259]["text"].tolist() == [259] * 3


def test_token_weighting_and_source_dataset(tmp_path):
    a = write_docs(tmp_path / "a", [[1] * 300])
    b = write_docs(tmp_path / "b", [[2] * 100])
    spec = ReplayIndexSpec(new=(SourceSpec(a), SourceSpec(b)), num_samples=400, seq_length=4)
    counts = json.load(open(build_index(spec, tmp_path / "c", progress=False) / "counts.json"))
    assert [c["samples"] for c in counts["sources"]] == [300, 100]
    val = SourceDataset(a, seq_length=4, cache_dir=tmp_path / "c")
    assert len(val) == (300 - 1) // 4 and val[0]["text"].tolist() == [1] * 5


@pytest.mark.parametrize("change,match", [
    (dict(replay_frac=1.0), "cpt_replay_frac"), (dict(replay_frac=-0.1), "cpt_replay_frac"),
    (dict(replay_frac=float("nan")), "cpt_replay_frac"),
])
def test_bad_replay_fraction(two_sources, change, match):
    with pytest.raises(ValueError, match=match):
        spec_of(*two_sources, **change).validate()


@pytest.mark.parametrize("weights", [(-1.0, 1.0), (float("nan"), 1.0), (0.0, 0.0)])
def test_bad_weights_name_the_key(two_sources, weights):
    new, old = two_sources
    spec = ReplayIndexSpec(new=(SourceSpec(new, weights[0]), SourceSpec(old, weights[1], name="o2")), num_samples=5)
    with pytest.raises(ValueError, match="cpt_train_data_weights"):
        spec.validate()


def test_unwritable_cache_dir_names_it(two_sources, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="cpt_index_cache_dir"):
        build_index(spec_of(*two_sources), blocker / "cache", progress=False)


def test_missing_data_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere"):
        index_key(ReplayIndexSpec(new=(SourceSpec(str(tmp_path / "nothere")),), num_samples=3))


def test_config_keys_give_the_same_spec(two_sources):
    new, old = two_sources
    cfg = {"cpt-train-data-paths": [new], "cpt_replay_data_paths": [old], "cpt_replay_frac": 0.25,
           "train_iters": 25, "train_batch_size": 8, "seq_length": 8, "seed": 7}
    spec = replay_spec_from_config(cfg)
    assert spec.num_samples == 200
    assert index_key(spec)[0] == index_key(spec_of(new, old))[0]
    assert replay_spec_from_config(cfg, num_samples=10).num_samples == 10
    with pytest.raises(ValueError, match="cpt_replay_data_weights"):
        replay_spec_from_config(dict(cfg, cpt_replay_data_weights=[1, 2]))


def test_config_keys_set_to_none_count_as_unset(two_sources):
    new, old = two_sources
    from neox_cpt.data.spec import REPLAY_CONFIG_KEYS

    cfg = {k: None for k in REPLAY_CONFIG_KEYS}
    cfg.update({"cpt_train_data_paths": [new], "train_iters": 2, "train_batch_size": 3, "seq_length": None})
    spec = replay_spec_from_config(cfg)
    assert (spec.replay_frac, spec.replay, spec.seq_length, spec.num_samples) == (0.0, (), 2048, 6)


def test_a_published_directory_with_a_truncated_array_is_rebuilt(two_sources, tmp_path):
    new, old = two_sources
    path = build_index(spec_of(new, old), tmp_path / "c", progress=False)
    good = (path / "source0_sample_doc.npy").read_bytes()
    with open(path / "source0_sample_doc.npy", "r+b") as f:
        f.truncate(len(good) - 4)  # e.g. a power cut before the data reached the disk
    assert build_index(spec_of(new, old), tmp_path / "c", progress=False) == path
    assert (path / "source0_sample_doc.npy").read_bytes() == good


def test_the_worked_example_of_docs_replay_md(tmp_path):
    def docs(name, sizes, base):
        return write_docs(tmp_path / name, [[base + 10 * i + t for t in range(s)] for i, s in enumerate(sizes)])

    web, books, pile = docs("web", [3, 5, 2, 4], 100), docs("books", [6, 3], 200), docs("pile", [4, 4, 4], 500)
    spec = ReplayIndexSpec(new=(SourceSpec(web, 0.6), SourceSpec(books, 0.4)), replay=(SourceSpec(pile),),
                           replay_frac=0.3, num_samples=10, seq_length=3, seed=1)
    path = build_index(spec, tmp_path / "c", progress=False)
    ds = ReplayDataset(path)
    src, draw = ds.blend_arrays()
    assert src.tolist() == [0, 1, 0, 2, 1, 0, 2, 0, 1, 2]
    assert draw.tolist() == [0, 0, 1, 0, 1, 2, 1, 3, 2, 2]
    assert np.load(path / "source0_sample_doc.npy").tolist() == [0, 1, 2, 2]
    assert np.load(path / "source0_sample_offset.npy").tolist() == [0, 0, 1, 4]
    assert ds[0]["text"].tolist() == [114, 130, 131, 132]
    counts = json.load(open(path / "counts.json"))["sources"]
    assert [(c["samples"], c["epochs"]) for c in counts] == [(4, 1), (3, 2), (3, 1)]


def test_offsets_fit_uint16_up_to_65536_token_documents(tmp_path):
    big = write_docs(tmp_path / "big", [list(range(65536)), [7] * 10], dtype=np.int32)
    spec = ReplayIndexSpec(new=(SourceSpec(big),), num_samples=5, seq_length=13109, seed=2)
    path = build_index(spec, tmp_path / "c", progress=False)
    offsets = np.load(path / "source0_sample_offset.npy")
    assert offsets.dtype == np.uint16
    entry = json.load(open(path / "description.json"))["sources"][0]
    cat = concatenation(path, 0, entry, 2)
    ds = ReplayDataset(path)
    order = np.empty(5, np.int64)
    ref.permute_range(0, 5, entry["key_samples"], order)
    for k in range(5):
        assert ds[k]["text"].tolist() == cat[order[k] * 13109: order[k] * 13109 + 13110].tolist()


def test_sources_with_the_same_file_name_get_distinct_names(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = write_docs(tmp_path / "a" / "text_document", [[1] * 50])
    two = write_docs(tmp_path / "b" / "text_document", [[2] * 50])
    spec = ReplayIndexSpec(new=(SourceSpec(one),), replay=(SourceSpec(two),), replay_frac=0.5, num_samples=4,
                           seq_length=3)
    ds = ReplayDataset(build_index(spec, tmp_path / "c", progress=False))
    assert ds.source_names == ["text_document", "text_document#2"]
    assert [ds[i]["text"][0] for i in range(4)] == [1, 2, 1, 2]


def test_a_source_cycled_over_more_than_max_epochs_is_refused_before_building(tmp_path):
    """A source far too small for its share (a test file left in a production config) is refused naming the
    file, the epochs and cpt_max_epochs; nothing is published; raising the key allows it."""
    new = write_docs(tmp_path / "new", numbered_docs(random_sizes(40, 1), base=0))
    tiny = write_docs(tmp_path / "tiny", [[10000, 10001, 10002]])  # 3 tokens
    spec = spec_of(new, tiny, num_samples=2000)  # 500 replay samples x 9 tokens from 3 tokens: 1500 epochs
    with pytest.raises(ValueError, match=r"data source \S*tiny: this stage draws 500 samples \(4001 tokens\)"):
        build_index(spec, tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match=r"from its 3 tokens, 1334 epochs, above cpt_max_epochs = 1000"):
        build_index(spec, tmp_path / "c", progress=False)
    assert not (tmp_path / "c").exists()  # refused before the cache directory is created
    path = build_index(spec_of(new, tiny, num_samples=2000, max_epochs=2000), tmp_path / "c", progress=False)
    assert json.load(open(path / "counts.json"))["sources"][1]["epochs"] == 1334
    assert index_key(spec) == index_key(spec_of(new, tiny, num_samples=2000, max_epochs=2000))  # not in the key
    with pytest.raises(ValueError, match=r"cpt_max_epochs=0: must be a positive integer"):
        replay_spec_from_config({"cpt_train_data_paths": [new], "cpt_max_epochs": 0, "train_iters": 10,
                                 "train_batch_size": 4, "seq_length": 8})
