"""The demo data's manifest: what :func:`neox_cpt.local.demo_data.prepare_demo_data` built, for the trainer.

``<data_dir>/manifest.json`` stores it with paths relative to ``data_dir`` (so a cache can move);
:meth:`Manifest.load` returns absolute paths. The fields are documented below and in docs/data.md.

    >>> m = Manifest.load("~/.cache/neox-cpt/data/9fb5849ee31a3593")     # doctest: +SKIP
    >>> m.source("german").valid_prefix, m.vocab_size, m.eod_id          # doctest: +SKIP
    ('/root/.cache/neox-cpt/data/9fb5849ee31a3593/german_valid_text_document', 8192, 0)
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Tuple, Union

DATA_VERSION = 1
"""Layout version of the data directory and manifest; bump when the split, tokenisation or layout changes."""


@dataclass(frozen=True)
class SourceData:
    """One source's train and validation datasets."""

    name: str
    """Source name, e.g. ``"german"``; prefixes of its files."""
    description: str
    """What the text is and where it comes from."""
    train_prefix: str
    """Absolute NeoX data prefix (no ``.bin``/``.idx``) of the training split."""
    valid_prefix: str
    """Absolute NeoX data prefix of the validation split."""
    num_train_docs: int
    """Documents in the training split (one sequence each)."""
    num_valid_docs: int
    """Documents in the validation split."""
    num_train_tokens: int
    """Tokens in the training split, one ``<|endoftext|>`` per document included."""
    num_valid_tokens: int
    """Tokens in the validation split, EOD included."""
    num_train_bytes: int
    """UTF-8 bytes of training text."""
    num_valid_bytes: int
    """UTF-8 bytes of validation text."""
    corpus_sha256: str
    """Hash of the source's documents (ids and texts) before the split."""


@dataclass(frozen=True)
class Manifest:
    """What :func:`prepare_demo_data` built; ``manifest.json`` holds it with paths relative to ``data_dir``."""

    data_dir: str
    """Absolute directory holding the tokenizer, the datasets and ``manifest.json``."""
    tokenizer_path: str
    """Absolute path of ``tokenizer.json`` (Hugging Face format; NeoX ``tokenizer_type: HFTokenizer``)."""
    tokenizer_sha256: str
    """Hash of ``tokenizer.json``."""
    vocab_size: int
    """Token ids in the tokenizer (the model's embedding rows)."""
    eod_id: int
    """Id of ``<|endoftext|>``, appended after every document."""
    pad_id: int
    """Id of ``<|padding|>``."""
    dtype: str
    """NumPy dtype name of the ``.bin`` tokens (``"uint16"``)."""
    sources: Tuple[SourceData, ...]
    """The prepared sources, in the order requested."""
    unavailable: Tuple[Tuple[str, str], ...] = ()
    """Optional sources that could not be fetched: ``(name, reason)``."""
    split: Tuple[Tuple[str, float], ...] = ()
    """The split settings: ``valid_frac``, ``min_valid_bytes``, ``max_valid_frac``."""
    key: str = ""
    """Content key: the name of ``data_dir``."""
    version: int = DATA_VERSION
    """Layout version (:data:`DATA_VERSION`)."""

    @property
    def source_names(self) -> Tuple[str, ...]:
        return tuple(s.name for s in self.sources)

    def source(self, name: str) -> SourceData:
        """The :class:`SourceData` of ``name`` (ValueError naming the available ones otherwise)."""
        for s in self.sources:
            if s.name == name:
                return s
        why = dict(self.unavailable).get(name)
        raise ValueError(f"source {name!r}: not in {self.data_dir}/manifest.json (has {list(self.source_names)})"
                         + (f"; it was unavailable: {why}" if why else "; add it to prepare_demo_data(sources=...)"))

    def to_json(self) -> Dict:
        """The ``manifest.json`` content: paths relative to ``data_dir`` so the cache can move."""
        d = asdict(self)
        root = Path(self.data_dir)
        d.pop("data_dir")
        d["tokenizer_path"] = os.path.relpath(self.tokenizer_path, root)
        for s in d["sources"]:
            s["train_prefix"] = os.path.relpath(s["train_prefix"], root)
            s["valid_prefix"] = os.path.relpath(s["valid_prefix"], root)
        d["unavailable"], d["split"] = dict(self.unavailable), dict(self.split)
        return d

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"]) -> "Manifest":
        """Read ``manifest.json`` (or the directory holding it); paths come back absolute."""
        path = Path(path).expanduser()
        path = path / "manifest.json" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no manifest; run `neox-cpt prepare-data` first")
        d = json.loads(path.read_text())
        if d.get("version") != DATA_VERSION:
            raise ValueError(f"{path}: manifest version {d.get('version')}, expected {DATA_VERSION}; "
                             f"re-run `neox-cpt prepare-data`")
        root = path.parent.resolve()
        sources = tuple(SourceData(**{**s, "train_prefix": str(root / s["train_prefix"]),
                                      "valid_prefix": str(root / s["valid_prefix"])}) for s in d["sources"])
        return cls(**{**d, "data_dir": str(root), "tokenizer_path": str(root / d["tokenizer_path"]),
                      "sources": sources, "unavailable": tuple(d["unavailable"].items()),
                      "split": tuple(d["split"].items())})
