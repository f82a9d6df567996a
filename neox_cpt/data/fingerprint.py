"""What a source *is* (its content identity), computed once per file version and trusted by ``stat`` after.

A replay index depends only on the bytes of each source's ``.idx`` (document sizes), its token dtype and
the ``.bin`` size, never on where the files lie. ``data_identity(prefix, store)`` returns that content
identity: the first time a file version is seen it validates the dataset and hashes the ``.idx`` with
SHA-256 (hardware-accelerated on current x86/ARM CPUs, faster than BLAKE2 there), then records the
result beside the ``stat`` fingerprint of both files (size, mtime_ns, ctime_ns, inode) in ``store`` (a
directory, one small JSON file per source path). Later calls stat the files and, while the fingerprint
is unchanged, return the record without reading the data. Any replacement changes the fingerprint: a
rename (new inode, new ctime), an in-place rewrite or ``touch`` (new mtime and ctime; ctime cannot be set
back by ``touch -d`` or ``cp -p``). A file changed less than ``RACY_NS`` before it was hashed is not
recorded (a coarse timestamp could hide a second change within the same tick), so it is hashed again.

    >>> import tempfile, numpy as np
    >>> from neox_cpt.data.indexed import IndexedDatasetWriter
    >>> tmp = tempfile.mkdtemp()
    >>> with IndexedDatasetWriter(f"{tmp}/d", np.uint16) as w:
    ...     w.add_document([1, 2, 3])
    >>> ident = data_identity(f"{tmp}/d", f"{tmp}/store")
    >>> ident["num_tokens"], ident["dtype"], sorted(ident) == sorted(CONTENT_FIELDS)
    (3, 'uint16', True)
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

log = logging.getLogger(__name__)
PathLike = Union[str, "os.PathLike[str]"]

#: The content identity of a data source (what a cache key covers): everything the index bytes depend on.
CONTENT_FIELDS = ("dtype", "num_sequences", "num_tokens", "idx_size", "idx_sha256", "bin_size")
#: A file whose ctime/mtime is this recent when hashing starts is hashed again next time (not recorded).
RACY_NS = 2_000_000_000
STORE_FORMAT = 1


def prefix_paths(prefix: PathLike):
    """(prefix, .bin path, .idx path) of a dataset prefix, accepting a path given with its extension."""
    prefix = str(prefix)
    for ext in (".bin", ".idx"):
        if prefix.endswith(ext):
            prefix = prefix[: -len(ext)]
    return prefix, Path(prefix + ".bin"), Path(prefix + ".idx")


def stat_fingerprint(path: Path) -> List[int]:
    """(size, mtime_ns, ctime_ns, inode): changed by any rename over, rewrite or ``touch`` of the file."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _record_path(store: Path, kind: str, paths: Sequence[Path]) -> Path:
    name = hashlib.sha256("\0".join([kind] + [os.path.abspath(p) for p in paths]).encode()).hexdigest()[:32]
    return store / f"{name}.json"


def _read_record(record: Path) -> Optional[Dict[str, Any]]:
    try:
        with open(record) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_record(record: Path, obj: Dict[str, Any]) -> None:
    """Atomic (unique temp file + rename); a read-only store only costs a re-hash next time."""
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_name(f".{record.name}.{os.getpid()}.{os.urandom(4).hex()}")
        tmp.write_text(json.dumps(obj, sort_keys=True))
        os.replace(tmp, record)
    except OSError as exc:
        log.debug("cannot record the fingerprint of %s in %s (%s): it will be hashed again", obj["paths"],
                  record.parent, exc)


def cached(kind: str, paths: Sequence[Path], store: Optional[PathLike],
           compute: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
    """``compute()`` for these files, or its recorded result while their stat fingerprints are unchanged."""
    paths = [Path(p) for p in paths]
    before = [stat_fingerprint(p) for p in paths]
    record = _record_path(Path(store), kind, paths) if store is not None else None
    if record is not None:
        old = _read_record(record)
        if old and old.get("format") == STORE_FORMAT and old.get("stats") == before:
            return old["value"]
    started = time.time_ns()
    size = before[0][0]  # the file read (data: the .idx; the .bin is only stat-ed)
    # Worth a line only when it takes a while (~1 s per 1.5 GB): a first sight of Pile-sized data.
    log.log(logging.INFO if size > 1 << 30 else logging.DEBUG, "identifying %s (%.1f GB; new, or changed since "
            "it was last seen)", ", ".join(map(str, paths)), size / 1e9)
    value = compute()
    after = [stat_fingerprint(p) for p in paths]
    if after != before:
        raise RuntimeError(f"{', '.join(map(str, paths))}: changed while being read; wait until whatever writes "
                           f"it has finished, then retry")
    racy = any(started - max(s[1], s[2]) < RACY_NS for s in after)
    if record is not None and not racy:
        _write_record(record, {"format": STORE_FORMAT, "paths": [os.path.abspath(p) for p in paths],
                               "stats": after, "value": value})
    return value


def data_identity(prefix: PathLike, store: Optional[PathLike]) -> Dict[str, Any]:
    """Content identity (``CONTENT_FIELDS``) of a ``.bin/.idx`` dataset; validates it on first sight."""
    _, bin_path, idx_path = prefix_paths(prefix)

    def compute() -> Dict[str, Any]:
        from neox_cpt.data.indexed import IndexedDataset

        ds = IndexedDataset(prefix).validate()  # the full O(n) checks, once per file version
        return {"dtype": ds.dtype.name, "num_sequences": len(ds), "num_tokens": int(ds.num_tokens),
                "idx_size": idx_path.stat().st_size, "idx_sha256": sha256_file(idx_path),
                "bin_size": bin_path.stat().st_size}

    for path, what in ((idx_path, "index"), (bin_path, "token")):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: {what} file not found; give the dataset prefix without .bin/.idx "
                                    f"(both files must exist, e.g. as written by `neox-cpt preprocess`)")
    return cached("data", (idx_path, bin_path), store, compute)


def file_identity(path: PathLike, store: Optional[PathLike]) -> Dict[str, Any]:
    """Size and SHA-256 of one file (e.g. a stock NeoX index array), recorded like ``data_identity``."""
    path = Path(path)
    return cached("file", (path,), store, lambda: {"size": path.stat().st_size, "sha256": sha256_file(path)})


def content_of(identity: Dict[str, Any]) -> Dict[str, Any]:
    """The ``CONTENT_FIELDS`` of an identity (older descriptions also hold paths and mtimes)."""
    return {k: identity.get(k) for k in CONTENT_FIELDS}


def store_of(cache_dir: Optional[PathLike]) -> Optional[Path]:
    """Where a cache directory keeps its fingerprint records."""
    return None if cache_dir is None else Path(cache_dir) / ".sources"
