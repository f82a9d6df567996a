"""One measurement of neox-cpt's replay index in a fresh process (a child of replay_index.py).

``--mode build``: cold build (cache directory emptied first). ``--mode open``: what every loader rank
does at a launch -- spec from the config, cache hit, ``ReplayDataset``, first sample. ``--mode reads``:
drop the pages of the data and index files, then random reads (first pass cold, second warm), with
or without MADV_RANDOM. Prints one JSON line; records which kernels ran (refuses the NumPy fallback).

    $ python bench/run_neox_cpt.py --mode build --prefixes NEW,OLD --weights 0.95,0.05 \\
          --num-samples 1460000 --cache-dir /tmp/neox-cpt-cache
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (cpu_seconds, drop_pages, files_under, parse_plan_args, peak_rss_bytes,  # noqa: E402
                    random_positions, read_pass)


def plan_config(prefixes, weights, num_samples: int, seq_length: int, seed: int) -> dict:
    """The plan as a stage config: the first source is the new data, the rest are replayed."""
    return {
        "cpt_train_data_paths": prefixes[:1], "cpt_replay_data_paths": prefixes[1:],
        "cpt_replay_data_weights": weights[1:] if len(weights) > 2 else None,
        "cpt_replay_frac": round(1.0 - weights[0], 12), "seq_length": seq_length, "seed": seed,
        "train_iters": num_samples, "train_batch_size": 1,
    }


def main() -> None:
    args = parse_plan_args("neox-cpt side of the replay-index benchmark")
    t0 = time.perf_counter()
    from neox_cpt import native
    from neox_cpt.data import dataset, fingerprint
    from neox_cpt.data.cache import build_index
    from neox_cpt.data.spec import replay_spec_from_config
    import_s = time.perf_counter() - t0
    hashed = []
    real_hash = fingerprint.sha256_file
    fingerprint.sha256_file = lambda p: hashed.append(str(p)) or real_hash(p)

    prefixes = args.prefixes.split(",")
    cfg = plan_config(prefixes, [float(w) for w in args.weights.split(",")], args.num_samples, args.seq_length,
                      args.seed)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    out = {"impl": "neox-cpt", "mode": args.mode, "kernels": native.KERNELS, "import_s": import_s}
    if args.mode == "build":
        shutil.rmtree(args.cache_dir, ignore_errors=True)
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        spec = replay_spec_from_config(cfg, num_samples=args.num_samples)
        index_dir = build_index(spec, args.cache_dir, progress=False)
        out.update(build_s=time.perf_counter() - t0, build_cpu_s=cpu_seconds() - cpu0, peak_rss=peak_rss_bytes(),
                   cache_bytes=sum(os.path.getsize(f) for f in files_under(str(index_dir))))
    elif args.mode == "open":
        if args.forget_sources:
            shutil.rmtree(os.path.join(args.cache_dir, ".sources"), ignore_errors=True)
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        spec = replay_spec_from_config(cfg, num_samples=args.num_samples)
        ds = dataset.ReplayDataset(build_index(spec, args.cache_dir, progress=False))
        ds[0]
        out.update(open_s=time.perf_counter() - t0, open_cpu_s=cpu_seconds() - cpu0, hashes=len(hashed),
                   peak_rss=peak_rss_bytes())
    else:
        dataset.RANDOM_ACCESS_ADVICE = not args.no_advice
        spec = replay_spec_from_config(cfg, num_samples=args.num_samples)
        index_dir = build_index(spec, args.cache_dir, progress=False)
        files = files_under(str(index_dir)) + [p + ext for p in prefixes for ext in (".bin", ".idx")]
        dropped = drop_pages(files)
        ds = dataset.ReplayDataset(index_dir)
        idx = random_positions(len(ds), args.reads, args.read_seed)
        get = lambda i: ds[i]["text"]  # noqa: E731
        out.update(advice="MADV_RANDOM" if dataset.RANDOM_ACCESS_ADVICE else "none", dropped_bytes=dropped,
                   cold=read_pass(get, idx), warm=read_pass(get, idx), reads=args.reads)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
