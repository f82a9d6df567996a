"""Content-addressed, crash-safe, relocatable cache of replay indexes.

An index lives in ``<cache_dir>/<name>-<sha256[:16]>/``, the hash taken over the canonical JSON
description of everything that changes its bytes: the spec and each source's *content* identity (dtype,
sizes and SHA-256 of its ``.idx``, ``.bin`` size; see ``neox_cpt.data.fingerprint``), never a path or a
timestamp. Data copied elsewhere with its index therefore finds the index again; where the sources lie
now is recorded in the index's ``paths.json``. Finding an index costs a ``stat`` per file: the ``.idx``
is hashed once per file version, its result recorded in ``<cache_dir>/.sources/``.

Publication is atomic and needs no lock (``neox_cpt.data.publish``): each builder writes into its own
temporary directory, writes ``description.json`` last, and renames the directory into place; a builder
that loses the race uses the winner's copy. A directory is trusted only if it has that name and a
``description.json`` whose key matches, listing files of the sizes found, so a crash at any moment leaves
nothing a later run accepts.

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

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from neox_cpt.data.build import Progress, build_into, describe, plan_draws
from neox_cpt.data.fingerprint import store_of
from neox_cpt.data.publish import fsync_path, make_temp_dir, publish, remove_stale
from neox_cpt.data.sources import (DESCRIPTION, LOCATION_FIELDS, description_key, locations, resolve_sources,
                                   write_locations)
from neox_cpt.data.spec import ReplayIndexSpec

log = logging.getLogger(__name__)
PathLike = Union[str, "os.PathLike[str]"]
__all__ = ["build_index", "build_index_distributed", "description_key", "find_index", "index_key", "is_complete"]


def index_key(spec: ReplayIndexSpec, cache_dir: Optional[PathLike] = None) -> Tuple[str, Dict[str, Any]]:
    """(full hex key, description) of a spec. Identifies every source it names: a ``stat`` per file when
    ``cache_dir`` has a record of that file version, else a hash of its ``.idx`` (recorded there)."""
    spec.validate()
    description = describe(spec, resolve_sources(spec, store_of(cache_dir)))
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


def _where(description: Dict[str, Any]) -> List[Dict[str, str]]:
    return [{k: s[k] for k in LOCATION_FIELDS if k in s} for s in description["sources"]]


def _adopt(final: Path, description: Dict[str, Any]) -> None:
    """Point a found index at the sources as this config names them (data copied or moved since the build)."""
    where = _where(description)
    if locations(final, json.loads((final / DESCRIPTION).read_text())) != where:
        log.info("replay index %s: its sources are now at %s", final.name, [w["path"] for w in where])
        try:
            write_locations(final, where)
        except OSError as exc:
            log.warning("cannot record the new source paths in %s (%s); readers will open the paths of the build",
                        final, exc)


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
    key, description = index_key(spec, cache_dir)
    path = Path(cache_dir) / index_dir_name(spec, key)
    if not is_complete(path, key):
        return None
    _adopt(path, description)
    return path


def build_index(spec: ReplayIndexSpec, cache_dir: PathLike, progress: Union[bool, Progress, None] = True,
                fsync: bool = False) -> Path:
    """Return the directory of ``spec``'s index, building and publishing it first if needed.

    ``progress``: True for a progress bar on stderr, or a callable ``(stage, done, total)``. ``fsync``:
    flush the arrays to disk before publishing (survives a power cut, costs disk-speed writes; without it a
    process crash is still safe and a power cut is detected by the file sizes in description.json).
    """
    cache_dir = Path(cache_dir)
    key, description = index_key(spec, cache_dir)
    final = cache_dir / index_dir_name(spec, key)
    if is_complete(final, key):
        log.info("replay index %s: reusing %s", spec.name, final)
        _adopt(final, description)
        return final
    plan_draws(spec, [dict(e) for e in description["sources"]])  # a refused plan creates nothing
    _prepare_cache_dir(cache_dir)
    remove_stale(cache_dir, final.name)
    tmp = make_temp_dir(cache_dir, final.name)
    try:
        t0 = time.monotonic()
        tick = _progress(progress) or (lambda stage, done, total: None)
        build_into(tmp, spec, dict(description, key=key), tick)
        if fsync:
            for f in sorted(tmp.iterdir()):
                with open(f, "rb+") as fh:
                    os.fsync(fh.fileno())
        fsync_path(tmp)
        tick("publish", 0, 1)
        published = publish(tmp, final, lambda p: is_complete(p, key))
        tick("publish", 1, 1)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("replay index %s: built %s in %.1f s", spec.name, final, time.monotonic() - t0)
    _adopt(published, description)
    return published


def build_index_distributed(spec: ReplayIndexSpec, cache_dir: PathLike, is_builder: bool,
                            barrier: Callable[[], None], progress: Union[bool, Progress, None] = False,
                            fsync: bool = False) -> Path:
    """One designated rank builds (or finds) the index; every rank then returns the same directory.

    Call it on every rank that takes part in ``barrier`` (e.g. ``torch.distributed.barrier`` over the
    ranks that load data). Non-builders open nothing until the builder has published; a missing
    directory after the barrier raises (the builder failed: see its log). Only the builder ever hashes a
    source: it records each file version in ``cache_dir`` (shared by every rank), so the others identify
    the sources by a ``stat`` each and derive the same key.
    """
    if is_builder:
        try:
            path = build_index(spec, cache_dir, progress, fsync)
        finally:
            barrier()  # never leave the other ranks waiting, even if the build failed
        return path
    barrier()
    key, _ = index_key(spec, cache_dir)  # a stat per file: the builder recorded every source it identified
    path = Path(cache_dir) / index_dir_name(spec, key)
    if not is_complete(path, key):
        raise FileNotFoundError(f"{path}: the replay index was not published by the building rank (check its log); "
                                f"or prebuild it with `neox-cpt build-index CONFIG` before the job")
    return path
