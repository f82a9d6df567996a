"""One benchmark run of megatron-core 0.16.1's BlendedMegatronDatasetBuilder (a child of replay_index.py).

Cold build of the blended GPT dataset for the plan (cache directory emptied first), a warm reopen from
its cache, then random reads; prints one JSON line with the figures. Needs ``pip install
megatron-core==0.16.1`` (and torch).

    $ python bench/run_megatron.py --prefixes NEW,OLD --weights 0.95,0.05 --num-samples 1460000 \\
          --cache-dir /tmp/mcore-cache
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import cpu_seconds, parse_plan_args, peak_rss_bytes, random_reads  # noqa: E402


class _Tok:
    """The tokenizer attributes GPTDataset reads (no tokenization happens: the data is pre-tokenized)."""

    vocab_size = 50_000
    eod = 0
    pad = 1
    unique_identifiers = {"class": "bench"}


class _PhaseLog(logging.Handler):
    """Collects megatron-core's own phase timings ("Build and save ..." then "time elapsed: X seconds")."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.current, self.phases = None, []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage().strip()
        m = re.search(r"time elapsed: ([0-9.]+) seconds", msg)
        if m and self.current:
            self.phases.append((self.current, float(m.group(1))))
        elif msg.startswith("Build and save") or msg.startswith("\tBuild and save") or msg.startswith("Load the"):
            self.current = msg


def main() -> None:
    args = parse_plan_args("megatron-core side of the replay-index benchmark")

    t0 = time.perf_counter()
    import torch
    import torch.distributed as dist
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    import_s = time.perf_counter() - t0
    # BlendedDataset asks torch.distributed for the rank when it writes its cache: a 1-process group.
    store = os.path.join(tempfile.mkdtemp(prefix="mcore-pg-"), "store")
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    handler = _PhaseLog()
    mlog = logging.getLogger("megatron.core.datasets")
    mlog.setLevel(logging.DEBUG)
    mlog.addHandler(handler)
    mlog.propagate = False

    shutil.rmtree(args.cache_dir, ignore_errors=True)
    config = GPTDatasetConfig(
        random_seed=args.seed, sequence_length=args.seq_length,
        blend=(args.prefixes.split(","), [float(w) for w in args.weights.split(",")]),
        split="100,0,0", path_to_cache=args.cache_dir, tokenizer=_Tok(),
        reset_position_ids=False, reset_attention_mask=False, eod_mask_loss=False,
    )
    rss_before = peak_rss_bytes()
    t_start = time.time()
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    train, _, _ = BlendedMegatronDatasetBuilder(GPTDataset, [args.num_samples, 0, 0], lambda: True, config).build()
    build_s = time.perf_counter() - t0
    build_cpu_s = cpu_seconds() - cpu0
    t_end = time.time()
    build_peak = peak_rss_bytes()
    assert len(train) == args.num_samples, (len(train), args.num_samples)
    realised = np.bincount(np.asarray(train.dataset_index), minlength=len(train.datasets)).tolist()
    cold_phases = [p for p in handler.phases if not p[0].startswith("Load the")]
    del train

    handler.phases = []
    t0 = time.perf_counter()
    train, _, _ = BlendedMegatronDatasetBuilder(GPTDataset, [args.num_samples, 0, 0], lambda: True, config).build()
    reopen_s = time.perf_counter() - t0

    reads = random_reads(lambda i: train[i]["tokens"], len(train), args.reads)
    # The same positions, tokens only (no torch tensors, masks or position ids): NeoX's sample format.
    d_index, d_sample = train.dataset_index, train.dataset_sample_index

    def tokens_only(i: int):
        return train.datasets[d_index[i]]._query_document_sample_shuffle_indices(int(d_sample[i]))[0]

    raw = random_reads(tokens_only, len(train), args.reads)
    reads["warm_token_reads_per_s"] = raw["warm_reads_per_s"]
    cache_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(args.cache_dir) for f in fs)
    dist.destroy_process_group()
    shutil.rmtree(os.path.dirname(store), ignore_errors=True)
    print(json.dumps({
        "impl": "megatron-core 0.16.1", "import_s": import_s, "build_s": build_s, "build_cpu_s": build_cpu_s, "build_window": [t_start, t_end],
        "rss_before_build": rss_before, "peak_rss": build_peak, "reopen_s": reopen_s, **reads,
        "cache_bytes": cache_bytes, "realised_samples": realised, "phases": cold_phases,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
