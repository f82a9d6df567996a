"""One benchmark run of megatron-core 0.16.1's BlendedMegatronDatasetBuilder (a child of replay_index.py).

The same three modes as run_neox_cpt.py: ``build`` (cold, cache emptied first), ``open`` (cache hit +
first sample in this fresh process), ``reads`` (pages dropped, then random reads, cold then warm).
Prints one JSON line. Needs ``pip install -e '.[bench]'`` (megatron-core 0.16.1) and torch.

    $ python bench/run_megatron.py --mode build --prefixes NEW,OLD --weights 0.95,0.05 --num-samples 1460000 \\
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
from common import (cpu_seconds, drop_pages, files_under, parse_plan_args, peak_rss_bytes,  # noqa: E402
                    random_positions, read_pass)


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

    prefixes = args.prefixes.split(",")
    config = GPTDatasetConfig(
        random_seed=args.seed, sequence_length=args.seq_length,
        blend=(prefixes, [float(w) for w in args.weights.split(",")]),
        split="100,0,0", path_to_cache=args.cache_dir, tokenizer=_Tok(),
        reset_position_ids=False, reset_attention_mask=False, eod_mask_loss=False,
    )

    def build():
        return BlendedMegatronDatasetBuilder(GPTDataset, [args.num_samples, 0, 0], lambda: True, config).build()[0]

    out = {"impl": "megatron-core 0.16.1", "mode": args.mode, "import_s": import_s, "torch": torch.__version__}
    if args.mode == "build":
        shutil.rmtree(args.cache_dir, ignore_errors=True)
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        train = build()
        out.update(build_s=time.perf_counter() - t0, build_cpu_s=cpu_seconds() - cpu0, peak_rss=peak_rss_bytes(),
                   cache_bytes=sum(os.path.getsize(f) for f in files_under(args.cache_dir)),
                   phases=[p for p in handler.phases if not p[0].startswith("Load the")])
        assert len(train) == args.num_samples, (len(train), args.num_samples)
        out["realised_samples"] = np.bincount(np.asarray(train.dataset_index), minlength=len(train.datasets)).tolist()
    elif args.mode == "open":
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        train = build()
        train[0]
        out.update(open_s=time.perf_counter() - t0, open_cpu_s=cpu_seconds() - cpu0, peak_rss=peak_rss_bytes())
    else:
        train = build()
        files = files_under(args.cache_dir) + [p + ext for p in prefixes for ext in (".bin", ".idx")]
        dropped = drop_pages(files)
        idx = random_positions(len(train), args.reads, args.read_seed)
        out.update(dropped_bytes=dropped, cold=read_pass(lambda i: train[i]["tokens"], idx),
                   warm=read_pass(lambda i: train[i]["tokens"], idx), reads=args.reads)
        # The same positions, tokens only (no torch tensors, masks or position ids): NeoX's sample format.
        d_index, d_sample = train.dataset_index, train.dataset_sample_index
        out["warm_tokens_only"] = read_pass(
            lambda i: train.datasets[d_index[i]]._query_document_sample_shuffle_indices(int(d_sample[i]))[0], idx)
    dist.destroy_process_group()
    shutil.rmtree(os.path.dirname(store), ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
