"""The replay index's ``cpt_`` keys, each published once as a ``KeySpec`` (read by ``neox_cpt.data.spec``).

The NeoX graft (``neox_cpt.neox.keys``) and the key table of docs/replay.md are generated from ``DATA_KEYS``.

    >>> DATA_KEYS["cpt_replay_frac"].type, DATA_KEYS["cpt_replay_frac"].default
    (<class 'float'>, '0')
"""
from __future__ import annotations

from typing import Dict

from neox_cpt.schedules.keys import KeySpec, key_table

DATA_KEYS: Dict[str, KeySpec] = {
    "cpt_train_data_paths": KeySpec(list, "NeoX `train_data_paths`, then `data_path`",
                                    "new data of this stage: `.bin/.idx` prefixes"),
    "cpt_train_data_weights": KeySpec(list, "by tokens", "share of each new source inside the new group "
                                      "(normalised)"),
    "cpt_replay_frac": KeySpec(float, "0", "fraction *x* of every window of positions taken by the replay group, in "
                               "[0, 1); resolved to 1e-6 (paper: 0.05 weak shift, 0.25 strong shift); replay "
                               "replaces new tokens, the stage budget is unchanged"),
    "cpt_replay_data_paths": KeySpec(list, "none", "earlier data to replay, sampled afresh (`.bin/.idx` prefixes). "
                                     "With `cpt_replay_seen_only`: optional, the data prefix of each stock NeoX index "
                                     "(default: parsed from its file name)"),
    "cpt_replay_data_weights": KeySpec(list, "by tokens", "share of each replay source inside the replay group"),
    "cpt_replay_weighting": KeySpec(str, "`given`, which falls back to tokens when no weights are given",
                                    "`given` (use `cpt_replay_data_weights`) or `tokens` (by each source's tokens; "
                                    "seen-only: consumed samples × seq_length)"),
    "cpt_replay_seen_only": KeySpec(bool, "false", "replay only samples an earlier run actually consumed"),
    "cpt_replay_index_paths": KeySpec(list, "required when seen-only", "seen-only: each earlier stage's neox-cpt "
                                      "index directory, or a stock GPT-NeoX index prefix "
                                      "`{data}_{name}_indexmap_{N}ns_{seq}sl_{seed}s_packedpi[_ac]`"),
    "cpt_replay_consumed_samples": KeySpec(list, "required when seen-only (the NeoX plugin fills it from "
                                           "`cpt_init_checkpoint` for one index)",
                                           "seen-only: samples each earlier run consumed from that index (a neox-cpt "
                                           "stage: its data position; stock NeoX: iterations × global batch for a "
                                           "single dataset, or that dataset's own count in a blend)"),
    "cpt_replay_reshuffle": KeySpec(bool, "true", "seen-only: replay the consumed samples in a fresh order (false: "
                                    "in the order they were seen)"),
    "cpt_replay_allow_cycling": KeySpec(bool, "false", "seen-only: allow drawing more samples than were consumed "
                                        "(cycles reported)"),
    "cpt_max_epochs": KeySpec(int, "1000", "the most epochs a data source may be cycled over: a source too small "
                              "for its share (e.g. a test file in a production config) is refused before building"),
    "cpt_valid_data_paths": KeySpec(list, "NeoX `valid_data_paths`", "validation sources, each evaluated and "
                                    "logged separately; `build-index` prebuilds one `SourceDataset` index per source "
                                    "sized as NeoX sizes validation ((stage iters // eval_interval + 1) x eval_iters x "
                                    "batch, the stage's seed), so the run opens exactly those"),
    "cpt_index_cache_dir": KeySpec(str, "`neox_cpt_index/` next to the first new data prefix",
                                   "where indexes are built and found"),
    "cpt_data_parallel_size": KeySpec(int, "—", "only for tools without NeoX (build-index) when `train_batch_size` "
                                      "is absent: global batch = micro batch × accumulation × this"),
}
"""The data keys (``neox_cpt.data.spec.replay_spec_from_config`` reads them)."""


def data_key_table() -> str:
    """The key table of docs/replay.md."""
    return key_table(DATA_KEYS)
