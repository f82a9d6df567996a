"""Open and fully check every ``.bin/.idx`` dataset an entry point will read, before any work starts.

Each command (``build-index``, ``train``, their ``--check``) calls these once, up front: a path that does
not exist, a prefix written with its ``.bin``/``.idx`` suffix (which would key a second index for the same
data), a corrupt or mismatched pair (``IndexedDataset.validate``), an empty dataset, or token ids the
model's vocabulary cannot embed stop the run with a message naming the config key and the file.

    >>> import numpy as np, tempfile, os
    >>> from neox_cpt.data.indexed import IndexedDatasetWriter
    >>> prefix = os.path.join(tempfile.mkdtemp(), "d")
    >>> with IndexedDatasetWriter(prefix, np.uint16) as w:
    ...     w.add_document([5, 300])
    >>> check_dataset(prefix, "data.sources.d.train", vocab_size=1000).num_tokens
    2
    >>> check_dataset(prefix, "data.sources.d.train", vocab_size=256)
    Traceback (most recent call last):
    ...
    ValueError: data.sources.d.train: .../d.bin holds token id 300, but the model's vocabulary has 256 ids ...
"""
from __future__ import annotations

from typing import Any, List, Mapping, Optional, Tuple

from neox_cpt.data.indexed import IndexedDataset


def check_dataset(prefix: str, key: str, vocab_size: Optional[int] = None,
                  vocab_key: str = "model.vocab_size") -> IndexedDataset:
    """``IndexedDataset(prefix)``, fully validated and non-empty; with ``vocab_size``, every token id below it.

    Errors start with ``key`` (the config key that named the file) and name the file."""
    text = str(prefix)
    if text.endswith((".bin", ".idx")):
        raise ValueError(f"{key}: {text!r} ends in {text[-4:]}; give the dataset prefix without it "
                         f"({text[:-4]!r}): with the suffix the same data would get a second index")
    try:
        ds = IndexedDataset(text).validate()
    except (ValueError, OSError) as exc:
        raise type(exc)(f"{key}: {exc}") from None
    if len(ds) == 0 or ds.num_tokens == 0:
        raise ValueError(f"{key}: {ds.bin_path} holds no tokens ({len(ds)} documents); preprocess some text into "
                         "it or remove it from the config")
    if vocab_size is not None:
        top = ds.max_token()
        if top >= vocab_size:
            raise ValueError(f"{key}: {ds.bin_path} holds token id {top}, but the model's vocabulary has "
                             f"{vocab_size} ids ({vocab_key}); raise {vocab_key} to at least {top + 1} or use data "
                             "made with the model's tokenizer")
    return ds


def stage_data_paths(cfg: Mapping[str, Any]) -> List[Tuple[str, str]]:
    """(config key, prefix) of every ``.bin/.idx`` dataset a stage config reads: new, replay (sampled afresh)
    and validation data. Seen-only replay sources are indexes, not datasets, and are not listed."""
    from neox_cpt.data.spec import replay_spec_from_config, valid_sources

    if cfg.get("cpt_continue_parent_data"):
        paths: List[Tuple[str, str]] = []
    else:
        spec = replay_spec_from_config(cfg)
        new_key = next((k for k in ("cpt_train_data_paths", "train_data_paths", "data_path") if cfg.get(k)),
                       "cpt_train_data_paths")
        paths = [(f"{new_key}[{i}]", s.path) for i, s in enumerate(spec.new)]
        paths += [(f"cpt_replay_data_paths[{i}]", s.path) for i, s in enumerate(spec.replay) if s.kind == "data"]
    valid_key = "cpt_valid_data_paths" if cfg.get("cpt_valid_data_paths") else "valid_data_paths"
    paths += [(f"{valid_key}[{i}]", prefix) for i, (_name, prefix) in enumerate(valid_sources(cfg))]
    return paths


def check_stage_data(cfg: Mapping[str, Any]) -> List[IndexedDataset]:
    """Check every dataset of a stage config (``stage_data_paths``) with ``check_dataset``; returns them."""
    return [check_dataset(prefix, key) for key, prefix in stage_data_paths(cfg)]
