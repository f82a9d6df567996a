"""The local (single-machine, CPU or one GPU) side of neox-cpt: demo data, a small GPT-NeoX trainer, reports.

Submodules are imported explicitly; ``import neox_cpt.local`` itself imports nothing heavy.

- :mod:`neox_cpt.local.demo_data` — ``prepare_demo_data()``: the offline corpora (State of the Union,
  King James Bible, German man pages), a byte-level BPE tokenizer and NeoX ``.bin/.idx`` train/valid files
  with a ``manifest.json`` (see docs/data.md); :mod:`~neox_cpt.local.corpora` downloads and reads the
  sources, :mod:`~neox_cpt.local.roff` turns man pages into text, :mod:`~neox_cpt.local.bpe` trains the
  tokenizer.

    >>> from neox_cpt.local.demo_data import prepare_demo_data   # doctest: +SKIP
    >>> manifest = prepare_demo_data()                          # doctest: +SKIP
    >>> [(s.name, s.num_train_tokens) for s in manifest.sources]  # doctest: +SKIP
"""
