"""Helpers shared by the benchmark's child processes: peak RSS and the random-read measurement."""
from __future__ import annotations

import argparse
import resource
import time
from typing import Any, Callable, Dict

import numpy as np


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads): robust to other jobs sharing the cores."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def random_reads(get: Callable[[int], Any], num_samples: int, count: int, seed: int = 0) -> Dict[str, float]:
    """Read ``count`` random samples twice; the second (warm, pages cached) pass is the figure.

    The same seed gives both implementations the same positions to read.
    """
    idx = np.random.default_rng(seed).integers(0, num_samples, size=count)
    t0 = time.perf_counter()
    for i in idx:
        get(int(i))
    cold = count / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in idx:
        get(int(i))
    warm = count / (time.perf_counter() - t0)
    return {"first_pass_reads_per_s": cold, "warm_reads_per_s": warm, "reads": count}


def parse_plan_args(description: str) -> argparse.Namespace:
    """The plan both child builders take (run_megatron.py, run_neox_cpt.py), so they build the same thing."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--prefixes", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--num-samples", type=int, required=True)
    ap.add_argument("--seq-length", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--reads", type=int, default=20000)
    return ap.parse_args()
