"""Content-addressed, crash-safe cache of replay indexes.

An index lives in ``<cache_dir>/<name>-<sha256[:16]>/``, the hash taken over the canonical JSON
description of everything that changes its bytes (spec values and each file's identity: path, size,
mtime, a hash of the ``.idx``). Publication is atomic: the builder writes into
``<cache_dir>/.tmp-<name>-<hash>-<pid>``, fsyncs, writes ``description.json`` last, and renames the
directory into place. A directory is trusted only if it has that name and a ``description.json`` whose
key matches, so a crash at any moment leaves nothing a later run accepts; leftover temporary directories
are removed by the next builder of the same key. Concurrent builders of one key serialise on an
``fcntl`` lock (and the rename would refuse a second copy anyway).

    >>> import tempfile, numpy as np
    >>> from neox_cpt.data.indexed import IndexedDatasetWriter
    >>> from neox_cpt.data.spec import ReplayIndexSpec, SourceSpec
    >>> tmp = tempfile.mkdtemp()
    >>> for name, token in (("new", 1), ("old", 2)):
    ...     with IndexedDatasetWriter(f"{tmp}/{name}", np.uint16) as w:
    ...         w.add_document([token] * 100)
    >>> spec = ReplayIndexSpec(new=(SourceSpec(f"{tmp}/new"),), replay=(SourceSpec(f"{tmp}/old"),),
    ...                        replay_frac=0.25, num_samples=8, seq_length=4)
    >>> path = build_index(spec, f"{tmp}/cache", progress=False)
    >>> path.name.startswith("stage-"), build_index(spec, f"{tmp}/cache", progress=False) == path
    (True, True)
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

from neox_cpt.data.build import Progress, build_into, describe
from neox_cpt.data.sources import DESCRIPTION, resolve_sources
from neox_cpt.data.spec import ReplayIndexSpec

log = logging.getLogger(__name__)
PathLike = Union[str, "os.PathLike[str]"]


def description_key(description: Dict[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, no whitespace) of a description."""
    canonical = json.dumps(description, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def index_key(spec: ReplayIndexSpec) -> Tuple[str, Dict[str, Any]]:
    """(full hex key, description) of a spec; opens the files it names (their identity is in the key)."""
    spec.validate()
    description = describe(spec, resolve_sources(spec))
    return description_key(description), description


def index_dir_name(spec: ReplayIndexSpec, key: str) -> str:
    return f"{spec.name}-{key[:16]}"


def is_complete(path: Path, key: Optional[str] = None) -> bool:
    """A published index: ``description.json`` readable, of this key (if given), every file it lists present
    with the size it lists (so even a power cut before the data reached the disk is caught)."""
    try:
        with open(Path(path) / DESCRIPTION) as f:
            desc = json.load(f)
        if key is not None and desc.get("key") != key:
            return False
        return all((Path(path) / name).stat().st_size == size for name, size in desc["files"].items())
    except (OSError, ValueError, KeyError, AttributeError):
        return False


def _prepare_cache_dir(cache_dir: Path) -> None:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        probe = cache_dir / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PermissionError(f"cpt_index_cache_dir={str(cache_dir)!r} is not a writable directory ({exc.strerror}); "
                              f"set cpt_index_cache_dir (or --cache-dir) to a directory this user can write") from None


def _progress(progress: Union[bool, Progress, None]) -> Optional[Progress]:
    if callable(progress):
        return progress
    if not progress:
        return None
    last = {"t": 0.0, "stage": None}

    def bar(stage: str, done: int, total: int) -> None:
        if stage == "publish":
            return
        now = time.monotonic()
        if stage == last["stage"] and done < total and now - last["t"] < 0.2:
            return
        last.update(t=now, stage=stage)
        frac = done / total if total else 1.0
        filled = int(30 * frac)
        sys.stderr.write(f"\r{stage:<28.28} [{'#' * filled}{'.' * (30 - filled)}] {frac:6.1%} {done:,}/{total:,}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return bar


def find_index(spec: ReplayIndexSpec, cache_dir: PathLike) -> Optional[Path]:
    """The published directory of this spec in ``cache_dir``, or None."""
    key, _ = index_key(spec)
    path = Path(cache_dir) / index_dir_name(spec, key)
    return path if is_complete(path, key) else None


def build_index(spec: ReplayIndexSpec, cache_dir: PathLike, progress: Union[bool, Progress, None] = True,
                fsync: bool = False) -> Path:
    """Return the directory of ``spec``'s index, building and publishing it first if needed.

    ``progress``: True for a progress bar on stderr, or a callable ``(stage, done, total)``. ``fsync``:
    flush the arrays to disk before publishing (survives a power cut, costs disk-speed writes; without it a
    process crash is still safe and a power cut is detected by the file sizes in description.json).
    """
    cache_dir = Path(cache_dir)
    key, description = index_key(spec)
    final = cache_dir / index_dir_name(spec, key)
    if is_complete(final, key):
        log.info("replay index %s: reusing %s", spec.name, final)
        return final
    _prepare_cache_dir(cache_dir)
    lock_path = cache_dir / f".{index_dir_name(spec, key)}.lock"
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            log.info("replay index %s: another process is building %s; waiting", spec.name, final.name)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if is_complete(final, key):  # built by the process we waited for
                return final
            _remove_stale(cache_dir, final)
            tmp = cache_dir / f".tmp-{final.name}-{os.getpid()}"
            tmp.mkdir()
            try:
                description = dict(description, key=key)
                t0 = time.monotonic()
                tick = _progress(progress) or (lambda stage, done, total: None)
                build_into(tmp, spec, description, tick)
                if fsync:
                    for f in sorted(tmp.iterdir()):
                        with open(f, "rb+") as fh:
                            os.fsync(fh.fileno())
                _fsync_dir(tmp)
                tick("publish", 0, 1)
                _publish(tmp, final)
                tick("publish", 1, 1)
                log.info("replay index %s: built %s in %.1f s", spec.name, final, time.monotonic() - t0)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return final


def _remove_stale(cache_dir: Path, final: Path) -> None:
    """Under the lock nobody else builds this key: any temp dir or incomplete final dir is debris."""
    for p in cache_dir.glob(f".tmp-{final.name}-*"):
        log.info("removing leftover of an interrupted build: %s", p)
        shutil.rmtree(p, ignore_errors=True)
    if final.exists():
        log.warning("removing incomplete index directory %s (no valid description.json)", final)
        shutil.rmtree(final, ignore_errors=True)


def _publish(tmp: Path, final: Path) -> None:
    try:
        os.rename(tmp, final)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and is_complete(final):
            shutil.rmtree(tmp, ignore_errors=True)  # lost a race (e.g. no working flock): keep the winner's copy
            return
        raise
    _fsync_dir(final.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def build_index_distributed(spec: ReplayIndexSpec, cache_dir: PathLike, is_builder: bool,
                            barrier: Callable[[], None], progress: Union[bool, Progress, None] = False,
                            fsync: bool = False) -> Path:
    """One designated rank builds (or finds) the index; every rank then returns the same directory.

    Call it on every rank that takes part in ``barrier`` (e.g. ``torch.distributed.barrier`` over the
    ranks that load data). Non-builders open nothing until the builder has published; a missing
    directory after the barrier raises (the builder failed: see its log).
    """
    if is_builder:
        try:
            path = build_index(spec, cache_dir, progress, fsync)
        finally:
            barrier()  # never leave the other ranks waiting, even if the build failed
        return path
    barrier()
    key, _ = index_key(spec)
    path = Path(cache_dir) / index_dir_name(spec, key)
    if not is_complete(path, key):
        raise FileNotFoundError(f"{path}: the replay index was not published by the building rank (check its log); "
                                f"or prebuild it with `neox-cpt build-index CONFIG` before the job")
    return path
