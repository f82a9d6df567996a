"""The two tokenizer kinds GPT-NeoX preprocesses with: a Hugging Face ``tokenizer.json`` or a SentencePiece model.

Both load behind one small interface (``encode_batch``, ``decode``, ``vocab_size``, ``eod_id``), so the
preprocessing code never branches on the kind. The optional libraries are imported only when a
tokenizer of that kind is loaded.

    >>> tok = load_tokenizer("data/tokenizer.json")        # doctest: +SKIP
    >>> tok.encode_batch(["hello world"]), tok.eod_id      # doctest: +SKIP
    ([[31373, 995]], 0)

End-of-document id, unless given explicitly: ``<|endoftext|>`` for both kinds (what NeoX's
``preprocess_data.py`` appends), else SentencePiece's ``eos_id``; a tokenizer with neither needs an
explicit ``eod_id``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence

EOD_TOKEN = "<|endoftext|>"


@dataclass(frozen=True)
class Tokenizer:
    """A loaded tokenizer; create it with :func:`load_tokenizer`."""

    path: str
    """The file it was loaded from."""
    kind: str
    """"hf" (``tokenizers.Tokenizer``) or "sentencepiece"."""
    impl: Any
    """The underlying library object."""
    vocab_size: int
    """Number of token ids (chooses the ``.bin`` dtype)."""
    eod_id: int
    """The id appended after every document."""

    def encode_batch(self, texts: Sequence[str]) -> List[List[int]]:
        """Token ids of each text (special tokens as the tokenizer's own defaults, like NeoX)."""
        if self.kind == "hf":
            return [enc.ids for enc in self.impl.encode_batch(list(texts))]
        return self.impl.encode(list(texts))

    def decode(self, ids: Sequence[int]) -> str:
        return self.impl.decode(list(int(i) for i in ids))


def _detect_kind(path: Path) -> str:
    if path.suffix == ".json":
        return "hf"
    if path.suffix in (".model", ".spm"):
        return "sentencepiece"
    with open(path, "rb") as f:
        head = f.read(64).lstrip()
    return "hf" if head.startswith(b"{") else "sentencepiece"


def load_tokenizer(path: "os.PathLike[str] | str", eod_id: Optional[int] = None) -> Tokenizer:
    """Load ``tokenizer.json`` (Hugging Face) or a SentencePiece ``.model``; see the module docstring."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"--tokenizer {path}: is a directory; give the tokenizer.json or .model file in it")
    if not path.is_file():
        raise FileNotFoundError(f"--tokenizer {path}: file not found; give a Hugging Face tokenizer.json or a "
                                f"SentencePiece .model file")
    kind = _detect_kind(path)
    if kind == "hf":
        try:
            from tokenizers import Tokenizer as HFTokenizer
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(f"--tokenizer {path}: reading a tokenizer.json needs the tokenizers package, "
                              "which is not installed: pip install tokenizers") from exc
        try:
            impl = HFTokenizer.from_file(str(path))
        except Exception as exc:
            raise ValueError(f"--tokenizer {path}: not a valid Hugging Face tokenizer.json ({exc})") from exc
        vocab_size = impl.get_vocab_size(with_added_tokens=True)
        found = impl.token_to_id(EOD_TOKEN)
    else:
        try:
            import sentencepiece as spm
        except ImportError as exc:  # pragma: no cover
            raise ImportError(f"--tokenizer {path}: reading a SentencePiece model needs the sentencepiece package, "
                              "which is not installed: pip install sentencepiece") from exc
        impl = spm.SentencePieceProcessor()
        try:
            impl.Load(str(path))
        except Exception as exc:
            raise ValueError(f"--tokenizer {path}: not a valid SentencePiece model ({exc})") from exc
        vocab_size = impl.GetPieceSize()
        found = impl.PieceToId(EOD_TOKEN)
        if found == impl.unk_id() and impl.IdToPiece(found) != EOD_TOKEN:
            found = impl.eos_id() if impl.eos_id() >= 0 else None
    if eod_id is None:
        if found is None:
            raise ValueError(f"--tokenizer {path}: has no {EOD_TOKEN} token (nor a SentencePiece eos); "
                             f"pass the end-of-document id explicitly with --eod-id N")
        eod_id = int(found)
    if not 0 <= eod_id < vocab_size:
        raise ValueError(f"--eod-id {eod_id}: outside the tokenizer's {vocab_size} ids; pick an id in [0, {vocab_size})")
    return Tokenizer(str(path), kind, impl, int(vocab_size), int(eod_id))
