"""Publish a directory atomically without locks: own temporary directory, one rename, the loser yields.

Each builder writes into its own ``.tmp-<name>+<host>+<pid>+<pid start>+<random>`` directory, so no two
builders ever share one, then renames it to ``<name>``. The rename is atomic and refuses a non-empty
target: exactly one copy is published, and a builder that loses the race discards its copy and uses the
winner's (indexes are deterministic, so both copies hold the same bytes). Nothing relies on ``flock``,
which some cluster filesystems lack or keep per node.

A temporary directory is debris only when its owner is provably gone -- same host, and its pid is not
running or now belongs to a process started at another time -- or when nothing in it has been written
for ``STALE_AFTER_S`` (24 hours: a builder writes continuously, so only a crashed one on another host
stays silent that long).

    >>> import tempfile
    >>> from pathlib import Path
    >>> root = Path(tempfile.mkdtemp())
    >>> tmp = make_temp_dir(root, "stage-0123")
    >>> owner_gone(tmp), is_stale(tmp)
    (False, False)
    >>> publish(tmp, root / "stage-0123", lambda p: True).name
    'stage-0123'
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Callable, Optional, Union

log = logging.getLogger(__name__)

#: A temporary directory of another host (or of an unprovable owner) with nothing written for this long.
STALE_AFTER_S = 24 * 3600
PREFIX = ".tmp-"


def _pid_start(pid: int) -> Optional[str]:
    """Start time of a process (clock ticks since boot, /proc/<pid>/stat field 22); None if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _host() -> str:
    return socket.gethostname().replace("+", "_") or "unknown"


def make_temp_dir(parent: Path, name: str) -> Path:
    """A new, uniquely named temporary directory for ``name`` in ``parent``, its owner in its name."""
    pid = os.getpid()
    tmp = Path(parent) / f"{PREFIX}{name}+{_host()}+{pid}+{_pid_start(pid) or 0}+{os.urandom(4).hex()}"
    tmp.mkdir()
    return tmp


def temp_dirs(parent: Path, name: str = ""):
    """Temporary directories in ``parent`` (of ``name`` if given)."""
    pattern = f"{PREFIX}{name}+*" if name else f"{PREFIX}*"
    return sorted(p for p in Path(parent).glob(pattern) if p.is_dir())


def owner_gone(tmp: Path) -> bool:
    """True only when the owner is provably not running: same host, pid dead or reused."""
    try:
        _name, host, pid, start, _rand = tmp.name[len(PREFIX):].rsplit("+", 4)
        pid_i = int(pid)
    except ValueError:
        return False
    if host != _host():
        return False
    try:
        os.kill(pid_i, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    now = _pid_start(pid_i)
    return start != "0" and now is not None and now != start


def last_write(path: Path) -> float:
    """Newest mtime of a directory and the files in it."""
    times = [path.stat().st_mtime]
    for f in path.iterdir():
        try:
            times.append(f.stat().st_mtime)
        except OSError:
            pass
    return max(times)


def is_stale(tmp: Path, now: Optional[float] = None) -> bool:
    try:
        return owner_gone(tmp) or (now or time.time()) - last_write(tmp) > STALE_AFTER_S
    except OSError:
        return False  # vanished meanwhile: its owner published or removed it


def remove_stale(parent: Path, name: str = "") -> int:
    """Remove debris of interrupted builds (see ``is_stale``); returns how many were removed."""
    removed = 0
    for tmp in temp_dirs(parent, name):
        if is_stale(tmp):
            log.info("removing leftover of an interrupted build: %s", tmp)
            shutil.rmtree(tmp, ignore_errors=True)
            removed += 1
    return removed


def publish(tmp: Path, final: Path, is_complete: Callable[[Path], bool]) -> Path:
    """Rename ``tmp`` to ``final``; if another builder published first, discard ``tmp`` and keep theirs.

    A ``final`` that exists but is not complete (``is_complete``: e.g. a power cut after the rename) is
    moved aside and removed, then the rename is retried once.
    """
    for attempt in (0, 1):
        try:
            os.rename(tmp, final)
            fsync_path(final.parent)
            return final
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        if is_complete(final):
            log.info("%s was published by another builder meanwhile; using it", final)
            shutil.rmtree(tmp, ignore_errors=True)
            return final
        if attempt == 0:
            log.warning("removing incomplete index directory %s (no valid description.json)", final)
            aside = final.parent / f"{PREFIX}{final.name}-incomplete-{os.getpid()}-{os.urandom(4).hex()}"
            try:
                os.rename(final, aside)
            except FileNotFoundError:
                continue
            shutil.rmtree(aside, ignore_errors=True)
    raise OSError(errno.EEXIST, f"{final}: cannot publish over an incomplete directory; remove it and retry")


def fsync_path(path: Union[str, "os.PathLike[str]"]) -> None:
    """fsync a file, or a directory (which makes the names created or renamed in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
