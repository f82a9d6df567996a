"""Data side of neox-cpt: NeoX ``.bin/.idx`` files, tokenization, the replay index and its dataset.

Submodules are imported explicitly (nothing heavy happens on ``import neox_cpt.data``); none of them
imports torch or GPT-NeoX at module level.

    >>> from neox_cpt.data.indexed import IndexedDataset   # doctest: +SKIP
    >>> ds = IndexedDataset("data/enwik8_text_document")   # doctest: +SKIP
    >>> len(ds), ds.num_tokens, ds.get(0)[:8]              # doctest: +SKIP
"""
