"""Publishing without flock: own temporary directories, atomic rename, the loser yields, debris by owner/age."""
import errno
import fcntl
import os
import socket
import time

import pytest

from neox_cpt.data import publish as pub
from neox_cpt.data.cache import build_index, is_complete
from neox_cpt.data.spec import ReplayIndexSpec, SourceSpec
from replay_helpers import numbered_docs, random_sizes, write_docs


@pytest.fixture
def spec(tmp_path):
    new = write_docs(tmp_path / "new", numbered_docs(random_sizes(50, 1)))
    old = write_docs(tmp_path / "old", numbered_docs(random_sizes(30, 2), base=50000))
    return ReplayIndexSpec(new=(SourceSpec(new),), replay=(SourceSpec(old),), replay_frac=0.2, num_samples=60,
                           seq_length=4, seed=5)


def snapshot(path):
    return {f.name: f.read_bytes() for f in sorted(path.iterdir())}


def test_builds_where_flock_fails_with_enosys(spec, tmp_path, monkeypatch):
    def no_flock(*a, **k):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    path = build_index(spec, tmp_path / "c", progress=False)
    assert is_complete(path) and not list((tmp_path / "c").glob(".tmp-*"))


def test_two_builders_that_cannot_see_each_others_locks(spec, tmp_path, monkeypatch):
    """Builder B runs start to finish while A is mid-build (node-local locks: neither sees the other's).

    B must leave A's live temporary directory alone; A loses the rename, discards its copy, uses B's.
    """
    monkeypatch.setattr(fcntl, "flock", lambda *a, **k: None)
    reference = snapshot(build_index(spec, tmp_path / "ref", progress=False))
    cache, results = tmp_path / "c", {}

    def a_progress(stage, done, total):
        if stage == "blend" and "b" not in results:
            results["a_tmp"] = pub.temp_dirs(cache)
            results["b"] = build_index(spec, cache, progress=False)
            assert all(p.exists() for p in results["a_tmp"])  # B did not delete A's live directory

    a = build_index(spec, cache, progress=a_progress)
    assert a == results["b"] and snapshot(a) == reference
    assert len(results["a_tmp"]) == 1 and not pub.temp_dirs(cache)  # A discarded its copy


def fake_temp(parent, host, pid, start="0", age_s=0.0):
    d = parent / f"{pub.PREFIX}stage-0123+{host}+{pid}+{start}+abcd"
    d.mkdir(parents=True)
    (d / "x.npy").write_bytes(b"x")
    t = time.time() - age_s
    os.utime(d / "x.npy", (t, t))
    os.utime(d, (t, t))
    return d


def dead_pid():
    pid = os.getpid() + 100000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


def test_stale_temporary_directories_removed_only_when_owner_gone_or_old(tmp_path):
    host = socket.gethostname()
    live = fake_temp(tmp_path / "a", host, os.getpid(), pub._pid_start(os.getpid()) or "0")
    dead = fake_temp(tmp_path / "b", host, dead_pid())
    reused = fake_temp(tmp_path / "c", host, os.getpid(), "1")  # pid now belongs to a later process
    remote = fake_temp(tmp_path / "d", "another-host", 1)
    remote_old = fake_temp(tmp_path / "e", "another-host", 1, age_s=pub.STALE_AFTER_S + 60)
    assert [pub.is_stale(d) for d in (live, dead, reused, remote, remote_old)] == [False, True, True, False, True]
    assert pub.remove_stale(tmp_path / "b", "stage-0123") == 1 and not dead.exists()
    assert pub.remove_stale(tmp_path / "a", "stage-0123") == 0 and live.exists()


def test_publish_over_an_incomplete_directory_replaces_it(spec, tmp_path):
    final = build_index(spec, tmp_path / "c", progress=False)
    (final / "counts.json").write_text("{}")  # size no longer what description.json lists (e.g. a power cut)
    assert not is_complete(final)
    again = build_index(spec, tmp_path / "c", progress=False)
    assert again == final and is_complete(again)
