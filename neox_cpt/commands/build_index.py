"""``neox-cpt build-index``: build (or reuse) exactly the replay index a training run with this config uses.

The key is computed from the same ``replay_spec_from_config`` the NeoX integration and the local trainer
call, so prebuilding on a CPU node means the job finds the index and starts at once. Prints a progress
bar and the requested vs realised share per source.

    $ neox-cpt build-index configs/cpt_stage.yml --cache-dir /shared/neox_cpt_index
"""
from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("configs", nargs="+", metavar="CONFIG.yml", help="the stage's NeoX YAML file(s), merged")
    parser.add_argument("--cache-dir", help="index cache directory (default: cpt_index_cache_dir of the config)")
    parser.add_argument("--num-samples", type=int, help="override train_iters x train_batch_size")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--check", action="store_true",
                        help="check the config and every data file it names (full .idx/.bin validation); build nothing")


def interrupted(args: argparse.Namespace) -> str:
    """The Ctrl-C line's middle part (neox_cpt.cli): the index is published only when complete."""
    return "no index was published (the partial build's temporary directory is removed)"


def run(args: argparse.Namespace) -> int:
    from neox_cpt.data.cache import build_index
    from neox_cpt.data.dataset import SourceDataset
    from neox_cpt.data.inspect import share_table
    from neox_cpt.data.spec import (cache_dir_from_config, replay_spec_from_config, valid_num_samples_from_config,
                                    valid_sources)
    from neox_cpt.data.check import check_stage_data
    from neox_cpt.schedules.config import validate_schedule_config
    from neox_cpt.schedules.keys import SCHEDULE_KEYS
    from neox_cpt.schedules.loader import load_stage_config

    cfg = load_stage_config(args.configs)  # keys: typos, duplicates, types
    if any(key in SCHEDULE_KEYS for key in cfg):
        validate_schedule_config(cfg)  # the schedule the NeoX run would refuse, refused now
    checked = check_stage_data(cfg)  # every data file, before any work
    if args.check:
        if not cfg.get("cpt_continue_parent_data"):
            replay_spec_from_config(cfg, num_samples=args.num_samples)
        print(f"{', '.join(args.configs)}: OK ({len(checked)} dataset(s) checked); nothing built")
        return 0
    if cfg.get("cpt_continue_parent_data"):
        print("nothing to build: cpt_continue_parent_data trains on the parent stage's index from the branch point")
        return 0
    spec = replay_spec_from_config(cfg, num_samples=args.num_samples)
    cache_dir = args.cache_dir or cache_dir_from_config(cfg)
    try:
        path = build_index(spec, cache_dir, progress=not args.quiet)
    except OSError as exc:  # e.g. a full disk: the raw error may name no file; the build was discarded
        if exc.filename is not None:
            raise
        raise OSError(exc.errno, f"{exc.strerror or exc} while writing the index under it; nothing was published",
                      str(cache_dir)) from None
    print(f"index: {path}")
    print(share_table(json.loads((path / "counts.json").read_text())))
    num_valid = valid_num_samples_from_config(cfg)
    for _name, prefix in valid_sources(cfg) if num_valid else []:  # eval_iters: 0: NeoX evaluates nothing
        ds = SourceDataset(prefix, spec.seq_length, num_valid, spec.seed, cache_dir)
        print(f"validation index: {ds.index_dir} ({len(ds):,} samples of {prefix})")
    return 0
