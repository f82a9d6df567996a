"""Sources against the file system: content identity for the cache key, and checks that an index still fits.

``resolve_sources(spec, store)`` opens what a spec names and returns one ``Resolved`` per source (new
sources first, then replay) with its *content* identity (``neox_cpt.data.fingerprint``): the key of an
index never holds a path or a timestamp, so data copied elsewhere with its index finds that index again.
Where the sources lie now is kept apart (``locations``, ``paths.json`` in an index directory).

``check_sources(index_dir)`` is the other direction: is every source still the content the index was
built on? It follows indexes built on indexes (seen-only replay of an earlier stage) down to their data,
so a parent's data rewritten in place is caught in every stage built on it.

    >>> source_key(1234, 0, "docs") != source_key(1234, 1, "docs")
    True
    >>> description_key({"spec": {}, "sources": [{"path": "/a"}]}) == \\
    ...     description_key({"spec": {}, "sources": [{"path": "/b"}], "key": "x"})
    True
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from neox_cpt.data.fingerprint import content_of, data_identity, file_identity, store_of
from neox_cpt.data.spec import ReplayIndexSpec, SourceSpec

DESCRIPTION = "description.json"
LOCATIONS = "paths.json"
#: Per-source fields that say where a source lies, not what it is: never part of a key.
LOCATION_FIELDS = ("path", "data_path")
#: Top-level fields of description.json written after the key is taken.
UNKEYED_FIELDS = ("key", "arrays", "files")


def source_key(seed: int, index: int, purpose: str) -> int:
    """64-bit key of one order ("docs" or "samples") of source ``index`` under ``seed``."""
    digest = hashlib.sha256(f"neox-cpt/{seed}/{index}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def description_key(description: Dict[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, no whitespace) of a description, without locations."""
    body = {k: v for k, v in description.items() if k not in UNKEYED_FIELDS}
    if body.get("version", 3) >= 3:  # format 2 keyed the paths too
        body["sources"] = [{k: v for k, v in s.items() if k not in LOCATION_FIELDS} for s in body.get("sources", [])]
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Resolved:
    """One source after opening its files."""

    spec: SourceSpec
    group: str
    """"new" or "replay"."""
    num_tokens: int
    """Tokens for ``weighting: tokens`` (seen-only: consumed samples x seq_length)."""
    identity: Dict[str, Any]
    """What the cache key covers for this source (content only)."""
    available_samples: Optional[int] = None
    """Seen-only: samples the earlier run consumed; None for data sources (cycled over epochs)."""
    num_documents: int = 0


def load_description(index_dir: Path) -> Dict[str, Any]:
    path = Path(index_dir) / DESCRIPTION
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; {index_dir} is not a complete neox-cpt index directory "
                                f"(build it with `neox-cpt build-index CONFIG`)")
    with open(path) as f:
        return json.load(f)


def _neox_index_identity(reader, store: Optional[Path]) -> Dict[str, Any]:
    files = [file_identity(p, store) for p in reader.paths]
    return {"neox_index": files, "data": data_identity(reader.data.prefix, store)}


def resolve_sources(spec: ReplayIndexSpec, store: Optional[Path] = None) -> List[Resolved]:
    """Every source of ``spec`` with its content identity (``store``: where fingerprints are recorded)."""
    out: List[Resolved] = []
    for group, sources in (("new", spec.new), ("replay", spec.replay)):
        for s in sources:
            if s.kind == "data":
                ident = data_identity(s.path, store)
                if ident["num_tokens"] <= 0:
                    raise ValueError(f"{s.path}: the dataset holds no tokens; remove it from the config")
                out.append(Resolved(s, group, ident["num_tokens"], {"data": ident}, None, ident["num_sequences"]))
            elif s.kind == "neox_cpt_index":
                desc = load_description(Path(s.path))
                seq = desc["spec"]["seq_length"]
                if seq != spec.seq_length:
                    raise ValueError(f"{s.path}: the earlier stage used seq_length {seq} but this stage has "
                                     f"seq_length {spec.seq_length}; replay from an index with the same seq_length "
                                     f"or set seq_length: {seq}")
                total = desc["spec"]["num_samples"]
                if s.consumed_samples > total:
                    raise ValueError(f"cpt_replay_consumed_samples={s.consumed_samples} for {s.path}: that index has "
                                     f"only {total} samples; give the number the earlier stage actually consumed")
                raise_if_changed(Path(s.path), store)  # its key covers its sources only while they are unchanged
                out.append(Resolved(s, group, s.consumed_samples * seq, {"index_key": desc["key"]},
                                    s.consumed_samples))
            else:
                from neox_cpt.data.neox_index import NeoXIndexReader

                reader = NeoXIndexReader(s.path, s.data_path, spec.seq_length)
                if s.consumed_samples > reader.num_samples:
                    raise ValueError(f"cpt_replay_consumed_samples={s.consumed_samples} for {s.path}: its shuffle_idx "
                                     f"holds only {reader.num_samples} samples; give the number the earlier run "
                                     f"consumed from this dataset")
                out.append(Resolved(s, group, s.consumed_samples * spec.seq_length,
                                    _neox_index_identity(reader, store), s.consumed_samples))
    return out


def locations(index_dir: Path, description: Dict[str, Any]) -> List[Dict[str, str]]:
    """Where each source of an index lies now: ``paths.json`` (rewritten when the data moved), else as built."""
    try:
        with open(Path(index_dir) / LOCATIONS) as f:
            found = json.load(f)["sources"]
        if len(found) == len(description["sources"]):
            return found
    except (OSError, ValueError, KeyError):
        pass
    return [{k: s[k] for k in LOCATION_FIELDS if k in s} for s in description["sources"]]


def write_locations(index_dir: Path, where: List[Dict[str, str]]) -> None:
    """Record where the sources lie now (atomic; not part of the key, so a published index may change it)."""
    tmp = Path(index_dir) / f".{LOCATIONS}.{os.getpid()}.{os.urandom(4).hex()}"
    tmp.write_text(json.dumps({"sources": where}, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, Path(index_dir) / LOCATIONS)


def check_sources(index_dir: Path, store: Optional[Path] = None, depth: int = 0) -> List[str]:
    """Every source of an index (and of the indexes it replays from) that is no longer what it was built on.

    ``store``: fingerprint records (default: the cache directory holding ``index_dir``). Unchanged files
    cost a ``stat`` each; changed ones are hashed once.
    """
    index_dir = Path(index_dir)
    store = store_of(index_dir.parent) if store is None else store
    desc = load_description(index_dir)
    problems: List[str] = []
    for entry, where in zip(desc["sources"], locations(index_dir, desc)):
        path, ident = where["path"], entry["identity"]
        try:
            if entry["kind"] == "data":
                changed = _changed(content_of(ident["data"]), content_of(data_identity(path, store)))
            elif entry["kind"] == "neox_cpt_index":
                parent = load_description(Path(path)).get("key")
                want = ident.get("index_key", ident.get("key"))
                changed = [] if parent == want else [f"its key is {str(parent)[:16]}, built on {str(want)[:16]}"]
                if not changed and depth < 32:
                    problems += [f"{p} (replayed by {index_dir.name})" for p in check_sources(Path(path), None,
                                                                                            depth + 1)]
            else:
                from neox_cpt.data.neox_index import SUFFIXES, NeoXIndexReader

                reader = NeoXIndexReader(path, where.get("data_path"), desc["spec"]["seq_length"])
                now = _neox_index_identity(reader, store)
                changed = _changed(content_of(ident["data"]), content_of(now["data"]))
                changed += [suffix for suffix, a, b in zip(SUFFIXES, ident["neox_index"], now["neox_index"])
                            if a.get("size") != b["size"] or a.get("sha256", b["sha256"]) != b["sha256"]]
        except (OSError, ValueError, RuntimeError) as exc:
            problems.append(f"source {entry['name']}: cannot open {path}: {exc}")
            continue
        if changed:
            problems.append(f"source {entry['name']}: {path} is not the data index {index_dir.name} was built on "
                            f"({', '.join(changed)} differ)")
    return problems


def raise_if_changed(index_dir: Path, store: Optional[Path] = None) -> None:
    """``check_sources`` as an error that names each changed file and the fix."""
    problems = check_sources(index_dir, store)
    if problems:
        raise ValueError(f"{index_dir}: its sources changed since it was built, so its samples are not what "
                         "they were: " + "; ".join(problems) + ". Restore the original files at those paths "
                         "(or point paths.json in the index directory at a copy); for a new index on the new "
                         "data, build it from a config that names the data instead of this index")


def _changed(was: Dict[str, Any], now: Dict[str, Any]) -> List[str]:
    return [k for k in was if was[k] is not None and now.get(k) != was[k]]
