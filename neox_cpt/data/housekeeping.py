"""What an index cache directory holds, which of it the given configs use, and pruning the rest.

Every ``touch``, copy or rewrite of a source that changes its content leaves the previous index behind
(0.9 GB each at a 146M-sample plan). ``survey(cache_dir, keep)`` lists each entry with its size and
state; ``prune(entries)`` removes the ones marked for removal:

- an index whose key is in ``keep`` (the keys of the configs still in use), or that such an index
  replays from, is **kept**;
- with ``keep`` given, every other complete index is **unused** and removed;
- without ``keep``, only indexes whose sources are missing or changed (**stale**: they can never be
  opened again as they are) are removed;
- temporary directories of builds whose owner is provably gone, or silent for
  ``neox_cpt.data.publish.STALE_AFTER_S``, are **debris** and removed; those of running builds never;
- fingerprint records of files that no longer exist (``orphan_records``) are removed too.

An index is removed by renaming it aside first, so a reader never sees half a directory.

    >>> import tempfile
    >>> survey(tempfile.mkdtemp())
    []
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Set

from neox_cpt.data.publish import PREFIX, is_stale, temp_dirs
from neox_cpt.data.sources import DESCRIPTION, check_sources, locations

log = logging.getLogger(__name__)


@dataclass
class Entry:
    """One directory of an index cache."""

    path: Path
    size_bytes: int
    state: str
    """kept, unused, stale, current (sources unchanged, no configs given), debris, building, or incomplete."""
    reason: str = ""

    @property
    def removable(self) -> bool:
        return self.state in ("unused", "stale", "debris", "incomplete")


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _parents(index_dir: Path) -> List[Path]:
    """Index directories an index replays from (seen-only sources), transitively."""
    try:
        desc = json.loads((index_dir / DESCRIPTION).read_text())
    except (OSError, ValueError):
        return []
    out: List[Path] = []
    for entry, where in zip(desc["sources"], locations(index_dir, desc)):
        if entry["kind"] == "neox_cpt_index":
            parent = Path(where["path"])
            out += [parent] + _parents(parent)
    return out


def survey(cache_dir: os.PathLike, keep: Optional[Iterable[str]] = None) -> List[Entry]:
    """Every index and temporary directory in ``cache_dir``; ``keep``: full keys of the configs in use."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    keep_set: Optional[Set[str]] = None if keep is None else set(keep)
    entries: List[Entry] = []
    indexes = sorted(p for p in cache_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    kept_dirs: Set[Path] = set()
    for p in indexes:
        try:
            key = json.loads((p / DESCRIPTION).read_text())["key"]
        except (OSError, ValueError, KeyError):
            continue
        if keep_set is not None and key in keep_set:
            kept_dirs.add(p.resolve())
            kept_dirs.update(q.resolve() for q in _parents(p))
    for p in indexes:
        if not (p / DESCRIPTION).is_file():
            entries.append(Entry(p, _size(p), "incomplete", "no description.json"))
        elif p.resolve() in kept_dirs:
            entries.append(Entry(p, _size(p), "kept", "used by the given configs"))
        else:
            problems = check_sources(p)
            if problems:
                entries.append(Entry(p, _size(p), "stale", problems[0]))
            elif keep_set is not None:
                entries.append(Entry(p, _size(p), "unused", "no given config uses it"))
            else:
                entries.append(Entry(p, _size(p), "current", "sources unchanged (--keep CONFIGs: prune unused)"))
    for t in temp_dirs(cache_dir):
        stale = is_stale(t)
        entries.append(Entry(t, _size(t), "debris" if stale else "building",
                             "owner gone or silent too long" if stale else "a build is running"))
    return entries


def orphan_records(cache_dir: os.PathLike) -> List[Path]:
    """Fingerprint records (``.sources/``) of files that no longer exist at the path they were seen at."""
    out = []
    for record in sorted((Path(cache_dir) / ".sources").glob("*.json")):
        try:
            paths = json.loads(record.read_text())["paths"]
        except (OSError, ValueError, KeyError):
            paths = []
        if not paths or not all(os.path.exists(p) for p in paths):
            out.append(record)
    return out


def prune(entries: Iterable[Entry]) -> int:
    """Remove every removable entry (renamed aside first); returns the bytes freed."""
    freed = 0
    for e in entries:
        if not e.removable:
            continue
        aside = e.path
        if not e.path.name.startswith(PREFIX):
            aside = e.path.with_name(f"{PREFIX}{e.path.name}-pruned-{os.getpid()}")
            try:
                os.rename(e.path, aside)
            except OSError as exc:
                log.warning("cannot remove %s: %s", e.path, exc)
                continue
        shutil.rmtree(aside, ignore_errors=True)
        freed += e.size_bytes
    return freed
