"""The plugin's only doorway to the schedules core (owner A) and the replay index (owner B).

Everything the NeoX adapter needs from the pure core goes through these few functions, so the plugin
has one implementation of each idea (the schedule math, the index) and one place to follow an API change.

    >>> cfg = {"cpt_lr_schedule": "cosine", "cpt_lr_max": 3e-4, "cpt_stage_iters": 1000}
    >>> stage_iters(cfg), schedule_for(cfg).lr_at(1000)
    (1000, 3e-05)
    >>> uses_schedule(cfg), uses_replay(cfg), uses_stage(cfg)
    (True, False, False)
"""
import logging
from typing import Any, Mapping

logger = logging.getLogger(__name__)

# Keys that switch the training data to the replay index (the other data keys only tune it).
REPLAY_TRIGGERS = ("cpt_train_data_paths", "cpt_replay_data_paths", "cpt_replay_index_paths", "cpt_replay_frac",
                   "cpt_replay_seen_only")


def uses_stage(cfg: Mapping[str, Any]) -> bool:
    return cfg.get("cpt_init_checkpoint") is not None


def continues_parent_data(cfg: Mapping[str, Any]) -> bool:
    """An anneal branch training on its parent stage's index from the branch point (cpt_continue_parent_data)."""
    return bool(cfg.get("cpt_continue_parent_data")) and uses_stage(cfg)


def uses_schedule(cfg: Mapping[str, Any]) -> bool:
    """The plugin's scheduler replaces AnnealingLR in a stage or when any schedule key is set."""
    from neox_cpt.schedules.config import SCHEDULE_KEYS

    return uses_stage(cfg) or any(cfg.get(k) is not None for k in SCHEDULE_KEYS)


def uses_replay(cfg: Mapping[str, Any]) -> bool:
    """The replay blend replaces NeoX's datasets when any data key of the replay index is set."""
    return any(cfg.get(k) not in (None, False) for k in REPLAY_TRIGGERS)


def schedule_for(cfg: Mapping[str, Any]):
    from neox_cpt.schedules.config import schedule_from_config

    return schedule_from_config(cfg)


def stage_iters(cfg: Mapping[str, Any]) -> int:
    """The stage length in iterations (cpt_stage_iters/_tokens, train_iters): the schedule's and the index's."""
    from neox_cpt.schedules.stage import stage_num_steps

    return stage_num_steps(cfg)


def validate(cfg: Mapping[str, Any]) -> None:
    """Each owner's validation function on the whole mapping (they ignore keys they do not own).

    NeoX derives ``train_batch_size`` (micro batch x accumulation x data-parallel size) only after our keys
    are validated; until then a size that needs it is checked with a batch of 1, and the graft validates
    again once NeoX has derived it."""
    from neox_cpt.schedules.stage import global_batch_size

    if global_batch_size(cfg) is None:
        cfg = dict(cfg, train_batch_size=1)
    if uses_schedule(cfg):
        from neox_cpt.schedules.config import validate_schedule_config

        validate_schedule_config(cfg)
    if cfg.get("cpt_continue_parent_data"):
        given = [k for k in REPLAY_TRIGGERS if cfg.get(k) not in (None, False)]
        if not uses_stage(cfg) or given:
            raise ValueError(f"cpt_continue_parent_data: true {'with ' + ', '.join(given) if given else 'without cpt_init_checkpoint'}"
                             "; a branch continues the data of the stage that wrote cpt_init_checkpoint: set "
                             "cpt_init_checkpoint and remove the branch's own data keys (validation keys may stay)")
    if uses_replay(cfg):
        if seen_only_needs_consumed(cfg):  # the plugin fills it from cpt_init_checkpoint at launch
            cfg = dict(cfg, cpt_replay_consumed_samples=[1] * len(cfg.get("cpt_replay_index_paths") or [1]))
        # The size needs the global batch, which NeoX derives only later (micro batch x accumulation x
        # data-parallel size); the launch plan sizes the index once it is known.
        replay_spec(cfg, num_samples=1)


def seen_only_needs_consumed(cfg: Mapping[str, Any]) -> bool:
    return bool(cfg.get("cpt_replay_seen_only")) and not cfg.get("cpt_replay_consumed_samples") \
        and uses_stage(cfg)


def replay_spec(cfg: Mapping[str, Any], num_samples):
    from neox_cpt.data.spec import replay_spec_from_config

    return replay_spec_from_config(cfg, num_samples=num_samples)


def cache_dir(cfg: Mapping[str, Any]) -> str:
    from neox_cpt.data.spec import cache_dir_from_config

    return cache_dir_from_config(cfg)


def build_replay_index(spec, cache_dir, is_builder: bool, barrier):
    from neox_cpt.data.cache import build_index_distributed

    return build_index_distributed(spec, cache_dir, is_builder=is_builder, barrier=barrier)


def replay_dataset(index_dir, start_sample: int = 0):
    from neox_cpt.data.dataset import ReplayDataset

    return ReplayDataset(index_dir, start_sample=start_sample)


def source_dataset(prefix: str, seq_length: int, num_samples: int, seed: int, cache_dir):
    from neox_cpt.data.dataset import SourceDataset

    return SourceDataset(prefix, seq_length, num_samples, seed, cache_dir)
