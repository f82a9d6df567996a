"""Sources identified once per file version: constant-time opens, replaced files caught (transitively), relocation."""
import os
import shutil
import threading

import numpy as np
import pytest

from neox_cpt.cli import main
from neox_cpt.data import cache as cache_mod
from neox_cpt.data import fingerprint
from neox_cpt.data.cache import build_index, build_index_distributed
from neox_cpt.data.dataset import ReplayDataset
from neox_cpt.data.inspect import verify_index
from neox_cpt.data.spec import ReplayIndexSpec, SourceSpec
from replay_helpers import numbered_docs, random_sizes, write_docs


@pytest.fixture
def hashes(monkeypatch):
    """Paths hashed so far (every .idx hash goes through fingerprint.sha256_file); no racy window in tests."""
    seen = []
    real = fingerprint.sha256_file
    monkeypatch.setattr(fingerprint, "sha256_file", lambda p: seen.append(str(p)) or real(p))
    monkeypatch.setattr(fingerprint, "RACY_NS", 0)
    return seen


@pytest.fixture
def data(tmp_path):
    new = write_docs(tmp_path / "d" / "new", numbered_docs(random_sizes(60, 1)))
    old = write_docs(tmp_path / "d" / "old", numbered_docs(random_sizes(40, 2), base=50000))
    spec = ReplayIndexSpec(new=(SourceSpec(new),), replay=(SourceSpec(old),), replay_frac=0.25, num_samples=80,
                           seq_length=4, seed=3)
    return new, old, spec


def samples(path):
    ds = ReplayDataset(path)
    return [ds[i]["text"].tolist() for i in range(len(ds))]


def rewrite_same_size(prefix, sizes):
    """Rewrite a dataset in place with other document boundaries, same .idx size, its old mtime restored."""
    idx = prefix + ".idx"
    st = os.stat(idx)
    tokens = np.concatenate([np.asarray(d) for d in numbered_docs(random_sizes(len(sizes), 1))])
    flat = tokens.tolist()
    cut = np.cumsum([0] + list(sizes))
    write_docs(prefix, [flat[a:b] for a, b in zip(cut[:-1], cut[1:])])
    assert os.stat(idx).st_size == st.st_size
    os.utime(idx, ns=(st.st_atime_ns, st.st_mtime_ns))  # e.g. `cp -p` or `rsync -t` of another copy


def test_reopen_hashes_nothing_while_the_files_are_unchanged(data, tmp_path, hashes):
    new, old, spec = data
    path = build_index(spec, tmp_path / "c", progress=False)
    assert sorted(os.path.basename(h) for h in hashes) == ["new.idx", "old.idx"]  # once per file version
    hashes.clear()
    assert build_index(spec, tmp_path / "c", progress=False) == path
    ReplayDataset(path)[0]
    assert hashes == []


def test_distributed_launch_hashes_once_on_one_rank(data, tmp_path, hashes):
    new, old, spec = data
    barrier = threading.Barrier(4)
    results = {}

    def rank(r):
        results[r] = build_index_distributed(spec, tmp_path / "c", is_builder=(r == 0), barrier=barrier.wait)
        ReplayDataset(results[r])

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(4)]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    assert len(set(results.values())) == 1 and len(results) == 4
    assert len(hashes) == 2  # the builder's: one per source, none on the three other ranks


def test_touch_rehashes_and_reuses_the_same_index(data, tmp_path, hashes):
    new, old, spec = data
    path = build_index(spec, tmp_path / "c", progress=False)
    hashes.clear()
    os.utime(new + ".idx")  # touch: same bytes
    assert build_index(spec, tmp_path / "c", progress=False) == path
    assert [os.path.basename(h) for h in hashes] == ["new.idx"]


def test_same_size_replacement_with_its_old_mtime_never_reuses_the_index(data, tmp_path, hashes):
    new, old, spec = data
    before = build_index(spec, tmp_path / "c", progress=False)
    sizes = random_sizes(60, 1)
    rewrite_same_size(new, sizes[::-1] if sizes != sizes[::-1] else sizes[1:] + sizes[:1])
    after = build_index(spec, tmp_path / "c", progress=False)
    assert after != before
    with pytest.raises(ValueError, match=r"new.*is not the data"):
        ReplayDataset(before)  # opening the stale directory directly is refused too
    assert any("new" in p for p in verify_index(before))


def test_seen_only_stage_on_a_parent_whose_data_was_rewritten_is_refused(data, tmp_path, hashes, capsys):
    """The issue's reproduction: the parent's data rewritten at the same path (same tokens, other documents)."""
    new, old, spec = data
    parent = build_index(spec, tmp_path / "c", progress=False)
    extra = write_docs(tmp_path / "d" / "extra", [[9] * 500])
    child_spec = ReplayIndexSpec(new=(SourceSpec(extra),), replay=(SourceSpec(str(parent), kind="neox_cpt_index",
                                                                              consumed_samples=80),),
                                 replay_frac=0.5, num_samples=40, seq_length=4, seed=4, name="child")
    child = build_index(child_spec, tmp_path / "c", progress=False)
    assert verify_index(child) == []
    sizes = random_sizes(60, 1)
    rewrite_same_size(new, sizes[1:] + sizes[:1])
    with pytest.raises(ValueError, match=r"new.*is not the data"):
        build_index(child_spec, tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match=r"new.*is not the data"):
        ReplayDataset(child)
    with pytest.raises(ValueError, match=r"new.*is not the data"):
        ReplayDataset(parent)  # an anneal branch continuing the parent's index
    problems = verify_index(child)
    assert len(problems) == 1 and "replayed by " + child.name in problems[0], problems
    assert main(["inspect-index", str(child)]) == 1
    assert "verified: 1 problem(s)" in capsys.readouterr().out


def test_relocated_data_and_cache_are_found_without_a_rebuild(data, tmp_path, hashes, monkeypatch):
    new, old, spec = data
    path = build_index(spec, tmp_path / "c", progress=False)
    expected = samples(path)
    shutil.copytree(tmp_path / "d", tmp_path / "moved")  # new inodes and mtimes (no -p)
    shutil.copytree(tmp_path / "c", tmp_path / "c2")
    shutil.rmtree(tmp_path / "d")
    shutil.rmtree(tmp_path / "c")
    monkeypatch.setattr(cache_mod, "build_into", lambda *a, **k: pytest.fail("rebuilt a relocated index"))
    moved = spec.replace(new=(SourceSpec(str(tmp_path / "moved" / "new")),),
                         replay=(SourceSpec(str(tmp_path / "moved" / "old")),))
    hashes.clear()
    found = build_index(moved, tmp_path / "c2", progress=False)
    assert found.name == path.name and len(hashes) == 2  # one verification
    hashes.clear()
    assert samples(found) == expected and hashes == []  # read from the paths the config gives now
    assert verify_index(found) == []



def test_a_truncated_file_inside_an_index_is_named_on_open(data, tmp_path):
    new, old, spec = data
    path = build_index(spec, tmp_path / "c", progress=False)
    target = path / "source0_sample_doc.npy"
    os.truncate(target, target.stat().st_size - 8)
    with pytest.raises(ValueError, match=r"source0_sample_doc.npy: \d+ bytes, but description.json lists"):
        ReplayDataset(path)


def test_a_file_changed_just_before_it_was_hashed_is_hashed_again(data, tmp_path, monkeypatch):
    """Coarse timestamps could hide a second change within one tick: such a record is not kept."""
    new, old, spec = data
    seen = []
    real = fingerprint.sha256_file
    monkeypatch.setattr(fingerprint, "sha256_file", lambda p: seen.append(p) or real(p))
    os.utime(new + ".idx")  # changed now, i.e. less than RACY_NS (2 s) before the hash starts
    for _ in range(2):
        fingerprint.data_identity(new, tmp_path / "store")
    assert len(seen) == 2
    monkeypatch.setattr(fingerprint, "RACY_NS", 0)
    for _ in range(2):
        fingerprint.data_identity(new, tmp_path / "store")
    assert len(seen) == 3
