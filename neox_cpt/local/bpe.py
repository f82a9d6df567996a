"""Train the demo's byte-level BPE tokenizer, saved as a ``tokenizer.json`` that NeoX's HFTokenizer reads.

The same recipe as GPT-NeoX-20B's tokenizer, at a small vocabulary: byte-level pre-tokenization (every
byte sequence is encodable, no unknown token), BPE merges learned from the training text, and the two
special tokens NeoX's ``HFTokenizer`` looks up: ``<|endoftext|>`` (id 0, the end-of-document id the
preprocessing appends) and ``<|padding|>`` (id 1). Training is deterministic: BPE counts words (order
does not matter) and breaks ties between equally frequent pairs by their ids, which come from the fixed
byte alphabet and the merges so far; the tests compare the bytes of two trainings.

    >>> tok = train_bpe(["the cat sat on the mat"] * 50, vocab_size=300)
    >>> tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|padding|>"), tok.decode(tok.encode("the mat").ids)
    (0, 1, 'the mat')
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Optional

EOD_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|padding|>"
SPECIAL_TOKENS = (EOD_TOKEN, PAD_TOKEN)
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)  # the byte alphabet and the special tokens


def train_bpe(texts: Iterable[str], vocab_size: int = 8192, min_frequency: int = 2,
              num_texts: Optional[int] = None) -> Any:
    """A ``tokenizers.Tokenizer`` (byte-level BPE) trained on ``texts``; save it with ``.save(path)``.

    ``vocab_size`` counts everything: specials, the 256 bytes and the merges (fewer when the text runs
    out of pairs seen ``min_frequency`` times). ``num_texts`` only sizes the progress estimate.
    """
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(f"vocab_size={vocab_size}: must be >= {MIN_VOCAB_SIZE} (256 bytes + "
                         f"{len(SPECIAL_TOKENS)} special tokens); the demo uses 8192")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer, length=num_texts)
    return tok


def save_tokenizer(tok: Any, path: "os.PathLike[str] | str") -> None:
    """Write ``tokenizer.json`` atomically (temporary file, then rename)."""
    path = os.fspath(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    tok.save(tmp, pretty=False)
    os.replace(tmp, path)
