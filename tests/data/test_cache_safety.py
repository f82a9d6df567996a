"""Crash safety (kill -9 at any point, then rerun: same bytes), concurrent builders, the distributed helper."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from neox_cpt.data.cache import build_index, build_index_distributed, is_complete
from neox_cpt.data.publish import publish
from neox_cpt.data.spec import ReplayIndexSpec, SourceSpec
from replay_helpers import numbered_docs, random_sizes, write_docs

BUILDER = textwrap.dedent("""
    import os, sys, time
    from neox_cpt.data import build
    from neox_cpt.data.cache import build_index
    from neox_cpt.data.spec import ReplayIndexSpec, SourceSpec
    build.CHUNK = 50  # many chunks, so there are many points to be killed at
    new, old, cache, stop_at, marker, delay = sys.argv[1:7]
    seen = []
    def tick(stage, done, total):
        seen.append(stage)
        time.sleep(float(delay))
        if f"{stage}#{seen.count(stage)}" == stop_at:
            open(marker, "w").close()
            time.sleep(600)  # wait for the kill
    spec = ReplayIndexSpec(new=(SourceSpec(new),), replay=(SourceSpec(old),), replay_frac=0.2, num_samples=400,
                           seq_length=4, seed=5)
    print(build_index(spec, cache, progress=tick))
""")


@pytest.fixture
def data(tmp_path):
    new = write_docs(tmp_path / "new", numbered_docs(random_sizes(300, 1)))
    old = write_docs(tmp_path / "old", numbered_docs(random_sizes(100, 2), base=50000))
    script = tmp_path / "builder.py"
    script.write_text(BUILDER)
    spec = ReplayIndexSpec(new=(SourceSpec(new),), replay=(SourceSpec(old),), replay_frac=0.2, num_samples=400,
                           seq_length=4, seed=5)
    return new, old, script, spec


def run_builder(script, new, old, cache, stop_at="never", marker="/dev/null", delay="0"):
    return subprocess.Popen([sys.executable, str(script), new, old, str(cache), stop_at, str(marker), delay],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def snapshot(path: Path):
    return {f.name: f.read_bytes() for f in sorted(path.iterdir())}


@pytest.mark.slow
@pytest.mark.parametrize("stop_at", ["blend#1", "new: documents#1", "new: samples#2", "old: samples#1", "publish#1"])
def test_kill_9_at_any_point_then_rerun_gives_the_same_bytes(data, tmp_path, stop_at):
    new, old, script, spec = data
    reference = build_index(spec, tmp_path / "ref", progress=False)
    cache, marker = tmp_path / "cache", tmp_path / "marker"
    proc = run_builder(script, new, old, cache, stop_at, marker)
    deadline = time.time() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not is_complete(cache / reference.name)  # the killed build published nothing
    assert list(cache.glob(".tmp-*"))  # ... and left its debris
    rebuilt = build_index(spec, cache, progress=False)
    assert rebuilt.name == reference.name
    assert snapshot(rebuilt) == snapshot(reference)
    left = list(cache.glob(".tmp-*"))
    assert not left, (left, proc.pid, os.getpid(), sorted(p.name for p in cache.iterdir()))  # the rerun cleaned up


def test_a_directory_without_description_is_not_trusted(data, tmp_path):
    new, old, script, spec = data
    good = build_index(spec, tmp_path / "c", progress=False)
    before = snapshot(good)
    (good / "description.json").unlink()  # e.g. a copy interrupted by hand
    again = build_index(spec, tmp_path / "c", progress=False)
    assert again == good and snapshot(again) == before


@pytest.mark.slow
def test_two_processes_building_the_same_key_at_once(data, tmp_path):
    new, old, script, spec = data
    reference = build_index(spec, tmp_path / "ref", progress=False)
    procs = [run_builder(script, new, old, tmp_path / "c", delay="0.01") for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    paths = {o[0].strip() for o in outs}
    assert paths == {str(tmp_path / "c" / reference.name)}
    assert snapshot(Path(paths.pop())) == snapshot(reference)
    # Only the index (and the fingerprint records of the sources): no temporary directory is left.
    assert sorted(p.name for p in (tmp_path / "c").iterdir() if p.is_dir()) in ([reference.name],
                                                                                [".sources", reference.name])


def test_rename_race_loser_discards_its_copy(data, tmp_path):
    new, old, script, spec = data
    final = build_index(spec, tmp_path / "c", progress=False)
    loser = tmp_path / "c" / ".tmp-loser"
    loser.mkdir()
    (loser / "x").write_text("mine")
    assert publish(loser, final, is_complete) == final
    assert not loser.exists() and is_complete(final)


def test_distributed_helper_one_builder_others_wait(data, tmp_path):
    new, old, script, spec = data
    barrier = threading.Barrier(3)
    results = {}

    def rank(r):
        results[r] = build_index_distributed(spec, tmp_path / "c", is_builder=(r == 0), barrier=barrier.wait)

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(3)]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    assert len(set(results.values())) == 1 and is_complete(results[0])


def test_distributed_helper_builder_failure_does_not_hang_the_others(data, tmp_path):
    new, old, script, spec = data
    bad = spec.replace(num_samples=400, replay=(SourceSpec(old, kind="neox_cpt_index", consumed_samples=1),))
    barrier = threading.Barrier(2, timeout=30)
    errors = {}

    def rank(r):
        try:
            build_index_distributed(spec if r else bad, tmp_path / "c", is_builder=(r == 0), barrier=barrier.wait)
        except Exception as exc:  # noqa: BLE001 - collected for the assertions
            errors[r] = exc

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    assert isinstance(errors[0], FileNotFoundError) and isinstance(errors[1], FileNotFoundError)
