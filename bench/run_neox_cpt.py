"""One benchmark run of neox-cpt's replay index builder (a child of replay_index.py).

Cold build of the replay index for the plan (cache directory emptied first), a warm reopen (cache hit),
then random reads through ``ReplayDataset``; prints one JSON line with the figures.

    $ python bench/run_neox_cpt.py --prefixes NEW,OLD --weights 0.95,0.05 --num-samples 1460000 \\
          --cache-dir /tmp/neox-cpt-cache
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import cpu_seconds, parse_plan_args, peak_rss_bytes, random_reads  # noqa: E402


def plan_config(prefixes, weights, num_samples: int, seq_length: int, seed: int) -> dict:
    """The plan as a stage config: the first source is the new data, the rest are replayed."""
    return {
        "cpt_train_data_paths": prefixes[:1], "cpt_replay_data_paths": prefixes[1:],
        "cpt_replay_frac": round(1.0 - weights[0], 12), "seq_length": seq_length, "seed": seed,
        "train_iters": num_samples, "train_batch_size": 1,
    }


def main() -> None:
    args = parse_plan_args("neox-cpt side of the replay-index benchmark")

    t0 = time.perf_counter()
    from neox_cpt.data.cache import build_index
    from neox_cpt.data.dataset import ReplayDataset
    from neox_cpt.data.spec import replay_spec_from_config
    import_s = time.perf_counter() - t0

    cfg = plan_config(args.prefixes.split(","), [float(w) for w in args.weights.split(",")],
                      args.num_samples, args.seq_length, args.seed)
    shutil.rmtree(args.cache_dir, ignore_errors=True)
    rss_before = peak_rss_bytes()
    t_start = time.time()
    cpu0 = cpu_seconds()
    t0 = t0_build = time.perf_counter()
    # The spec is part of the build: it opens the data files and hashes their identity.
    spec = replay_spec_from_config(cfg, num_samples=args.num_samples)
    spec_s = time.perf_counter() - t0
    stages = {}  # stage -> [first report, last report] (perf_counter), from the builder's progress callback

    def track(stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        stages.setdefault(stage, [now, now])[1] = now

    index_dir = build_index(spec, args.cache_dir, progress=track)
    build_s = time.perf_counter() - t0
    build_cpu_s = cpu_seconds() - cpu0
    t_end = time.time()
    build_peak = peak_rss_bytes()

    t0 = time.perf_counter()
    spec = replay_spec_from_config(cfg, num_samples=args.num_samples)
    assert build_index(spec, args.cache_dir, progress=False) == index_dir
    ds = ReplayDataset(index_dir)
    reopen_s = time.perf_counter() - t0
    assert len(ds) == args.num_samples, (len(ds), args.num_samples)

    counts = json.loads((index_dir / "counts.json").read_text())
    realised = [src["samples"] for src in counts["sources"]]
    reads = random_reads(lambda i: ds[i]["text"], len(ds), args.reads)
    cache_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(args.cache_dir) for f in fs)
    print(json.dumps({
        "impl": "neox-cpt", "import_s": import_s, "build_s": build_s, "build_cpu_s": build_cpu_s, "build_window": [t_start, t_end],
        "rss_before_build": rss_before, "peak_rss": build_peak, "reopen_s": reopen_s, **reads,
        "cache_bytes": cache_bytes, "realised": realised, "spec_s": spec_s,
        "stages": {k: [a - t0_build, b - t0_build] for k, (a, b) in stages.items()}, "index_dir": str(index_dir),
    }))


if __name__ == "__main__":
    main()
