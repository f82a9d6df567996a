"""``neox-cpt index-cache DIR [--keep CONFIG.yml]... [--prune]``: list an index cache, prune what is unused.

Lists every index directory with its size and state (``neox_cpt.data.housekeeping``). With ``--keep``,
the indexes the given stage configs use (their replay index, validation indexes, and the indexes they
replay from) are kept and every other one is unused; without it only indexes whose sources changed or
vanished are stale. ``--prune`` removes unused, stale and debris entries (and the fingerprint records of
files that no longer exist); without it nothing is removed.

    $ neox-cpt index-cache /shared/neox_cpt_index --keep configs/stage2.yml --keep configs/stage3.yml --prune
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cache_dir", metavar="DIR", help="an index cache directory (cpt_index_cache_dir)")
    parser.add_argument("--keep", action="append", default=None, metavar="CONFIG.yml[,MORE.yml]",
                        help="a stage config still in use (several files of one stage: comma-separated, merged "
                             "as build-index merges them); repeat for each stage")
    parser.add_argument("--prune", action="store_true", help="remove unused, stale and debris entries")


def keys_of(config: str, cache_dir: str) -> list:
    """Full keys of every index a stage config opens (its replay index and its validation indexes)."""
    from neox_cpt.data.cache import index_key
    from neox_cpt.data.dataset import source_spec
    from neox_cpt.data.spec import replay_spec_from_config, valid_num_samples_from_config, valid_sources
    from neox_cpt.schedules.loader import load_stage_config

    cfg = load_stage_config(config.split(","))
    if cfg.get("cpt_continue_parent_data"):
        return []  # trains on its parent's index: keep the parent's config
    spec = replay_spec_from_config(cfg)
    keys = [index_key(spec, cache_dir)[0]]
    num_valid = valid_num_samples_from_config(cfg)
    for _name, prefix in valid_sources(cfg):
        keys.append(index_key(source_spec(prefix, spec.seq_length, num_valid, spec.seed, cache_dir), cache_dir)[0])
    return keys


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from neox_cpt.data.housekeeping import orphan_records, prune, survey

    if not Path(args.cache_dir).is_dir():
        raise FileNotFoundError(f"{args.cache_dir}: not a directory; give the index cache directory "
                                f"(cpt_index_cache_dir, default neox_cpt_index/ next to the first new data prefix)")
    keep = None if args.keep is None else [k for c in args.keep for k in keys_of(c, args.cache_dir)]
    entries = survey(args.cache_dir, keep)
    width = max([len(e.path.name) for e in entries] + [5])
    for e in entries:
        print(f"{e.path.name:<{width}}  {e.size_bytes / 2**20:>10,.1f} MiB  {e.state:<10}  {e.reason}")
    removable = [e for e in entries if e.removable]
    total = sum(e.size_bytes for e in removable) / 2**20
    orphans = orphan_records(args.cache_dir)
    if orphans:
        print(f".sources: {len(orphans)} fingerprint record(s) of files that no longer exist")
    if args.prune:
        for record in orphans:
            record.unlink(missing_ok=True)
        print(f"removed {len(removable)} entr{'y' if len(removable) == 1 else 'ies'}, "
              f"{prune(removable) / 2**20:,.1f} MiB, and {len(orphans)} record(s)")
    else:
        print(f"{len(removable)} removable ({total:,.1f} MiB); rerun with --prune to remove them")
    return 0
