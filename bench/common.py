"""Helpers shared by the benchmark's child processes: own peak RSS, CPU time, page dropping, random reads."""
from __future__ import annotations

import argparse
import os
import resource
import time
from typing import Any, Callable, Dict, Iterable

import numpy as np


def peak_rss_bytes() -> int:
    """This process's own peak resident set (VmHWM).

    Not ``ru_maxrss``: across fork+exec a child inherits its parent's high-water mark there, so a child of
    a process that just wrote GBs of data reported the parent's peak, not its own.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def rss_file_bytes() -> int:
    """File pages this process has mapped in now (RssFile): what readahead pulled in for it."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssFile:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads): robust to other jobs sharing the cores."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def drop_pages(paths: Iterable[str]) -> int:
    """Evict the files' pages from the page cache (POSIX_FADV_DONTNEED; clean, unmapped pages); returns bytes."""
    total = 0
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd) if os.access(path, os.W_OK) else None
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            total += os.fstat(fd).st_size
        finally:
            os.close(fd)
    return total


def files_under(*roots: str) -> list:
    out = []
    for root in roots:
        if os.path.isfile(root):
            out.append(root)
        for d, _, fs in os.walk(root):
            out += [os.path.join(d, f) for f in fs]
    return out


def read_pass(get: Callable[[int], Any], idx: np.ndarray) -> Dict[str, float]:
    """Read the positions once: samples/s by wall clock and by this process's CPU time."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    for i in idx:
        get(int(i))
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    return {"per_s": len(idx) / wall, "cpu_us_per_read": cpu / len(idx) * 1e6, "wall_s": wall,
            "rss_file_after": rss_file_bytes()}


def random_positions(num_samples: int, count: int, seed: int = 0) -> np.ndarray:
    """The same seed gives both implementations the same positions to read."""
    return np.random.default_rng(seed).integers(0, num_samples, size=count)


def parse_plan_args(description: str) -> argparse.Namespace:
    """The plan both children take (run_megatron.py, run_neox_cpt.py), so they build and read the same thing."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--mode", choices=["build", "open", "reads"], required=True,
                    help="build: cold build; open: cache hit + dataset + first sample in this fresh process; "
                         "reads: drop the files' pages, then random reads (first pass cold, second warm)")
    ap.add_argument("--prefixes", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--num-samples", type=int, required=True)
    ap.add_argument("--seq-length", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--reads", type=int, default=20000)
    ap.add_argument("--read-seed", type=int, default=0)
    ap.add_argument("--no-advice", action="store_true", help="neox-cpt: read without MADV_RANDOM")
    ap.add_argument("--forget-sources", action="store_true",
                    help="neox-cpt open: as on first sight of the files (relocated data): identify them again")
    return ap.parse_args()
