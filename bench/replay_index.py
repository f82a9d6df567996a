"""Replay-index benchmark: neox-cpt vs megatron-core 0.16.1, side by side in one run on the same data.

Every figure comes from a fresh child process (run_neox_cpt.py / run_megatron.py), the two
implementations alternating, repeated ``--repeats`` times so each figure has a spread:

- **build**: cold build of the plan's index (CPU time, wall time, the child's own peak RSS, index size);
- **open**: what each loader rank does at every launch -- cache hit, dataset, first sample (neox-cpt
  also "first sight": its fingerprint records deleted, as after copying data elsewhere: one hash per
  source);
- **reads**: the data and index files' pages dropped (``posix_fadvise(DONTNEED)``), then random reads:
  the first pass is cold, the second (same positions) warm; neox-cpt with and without MADV_RANDOM.

The load average is recorded before every child. Ratios are taken per repeat (both implementations
measured back to back) and reported as median [min-max]; CPU-time ratios lead (robust to other jobs on
the machine), wall-clock ones follow. The children import neox-cpt as installed (no ``PYTHONPATH`` to
this checkout) and the run stops if they did not use the compiled kernels.

    $ python bench/replay_index.py                          # the 146M-sample plan (~15 min, ~8 GB RAM)
    $ python bench/replay_index.py --big-idx                # + the same plan on a 10x larger .idx
    $ python bench/replay_index.py --scale 0.01 --data-scale 0.01 --repeats 2     # a quick check
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from synth import DATA_ROOT, ensure_data, ensure_sparse  # noqa: E402

PLAN_SAMPLES = 146_000_000
WEIGHTS = (0.95, 0.05)
CHILDREN = {"megatron": HERE / "run_megatron.py", "neox-cpt": HERE / "run_neox_cpt.py"}


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def child(impl: str, mode: str, plan: dict, *extra: str) -> dict:
    """One fresh child process; its JSON result plus the load average before and after."""
    args = ["--mode", mode, "--prefixes", ",".join(plan["prefixes"]), "--weights", ",".join(map(str, WEIGHTS)),
            "--num-samples", str(plan["num_samples"]), "--cache-dir", str(plan["cache"][impl]), *extra]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed package, never the checkout
    env.update(PYTHONWARNINGS="ignore", OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"))
    before = load_avg()
    proc = subprocess.run([sys.executable, str(CHILDREN[impl]), *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{impl} {mode} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    if impl == "neox-cpt" and r["kernels"] != "native":
        raise RuntimeError(f"neox-cpt ran on its {r['kernels']} kernels, not the compiled ones: build them "
                           f"(`pip install -e .`) before benchmarking")
    r.update(load_before=before, load_after=load_avg())
    return r


def measure(plan: dict, impls: List[str], repeats: int, reads: int, modes=("build", "open", "reads"),
            build_repeats: Optional[int] = None) -> dict:
    runs: Dict[str, List[dict]] = {}

    def record(name: str, r: dict) -> None:
        runs.setdefault(name, []).append(r)
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
                 if k not in ("phases", "realised_samples", "torch")}
        print(f"  {name}: {json.dumps(shown)}", flush=True)

    for rep in range(repeats):
        order = impls if rep % 2 == 0 else impls[::-1]
        if "build" in modes and rep < (repeats if build_repeats is None else build_repeats):
            for impl in order:
                record(f"{impl} build", child(impl, "build", plan))
        if "open" in modes:
            for impl in order:
                record(f"{impl} open", child(impl, "open", plan))
            if "neox-cpt" in impls:
                record("neox-cpt open, first sight", child("neox-cpt", "open", plan, "--forget-sources"))
        if "reads" in modes:
            variants = [(i, ()) for i in order] + ([("neox-cpt", ("--no-advice",))] if "neox-cpt" in impls else [])
            for impl, extra in (variants if rep % 2 == 0 else variants[::-1]):
                name = f"{impl} reads" + (" (no advice)" if extra else "")
                record(name, child(impl, "reads", plan, "--reads", str(reads), "--read-seed", str(rep), *extra))
    return runs


def spread(values: List[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def fmt(s: dict, f: str = "{:.3g}") -> str:
    return f"{f.format(s['median'])} [{f.format(s['min'])}–{f.format(s['max'])}]"


ROWS = [  # (label, run name, field, better: lower/higher, format)
    ("cold build, CPU (s)", "build", "build_cpu_s", "lower", "{:.2f}"),
    ("cold build, wall (s)", "build", "build_s", "lower", "{:.2f}"),
    ("peak RSS of the build (MiB)", "build", "peak_rss", "lower", "{:,.0f}"),
    ("index files (GB)", "build", "cache_bytes", "lower", "{:.2f}"),
    ("open: cache hit + dataset + first sample, CPU (ms)", "open", "open_cpu_s", "lower", "{:.1f}"),
    ("open: ... wall (ms)", "open", "open_s", "lower", "{:.1f}"),
    ("first-pass (cold) random reads, CPU (µs/read)", "reads", "cold.cpu_us_per_read", "lower", "{:.0f}"),
    ("first-pass (cold) random reads (samples/s)", "reads", "cold.per_s", "higher", "{:,.0f}"),
    ("warm random reads (samples/s)", "reads", "warm.per_s", "higher", "{:,.0f}"),
    ("file pages mapped after the cold pass (MiB)", "reads", "cold.rss_file_after", "lower", "{:,.0f}"),
]
SCALE = {"peak_rss": 2 ** -20, "cold.rss_file_after": 2 ** -20, "cache_bytes": 1e-9, "open_cpu_s": 1e3,
         "open_s": 1e3}


def field(r: dict, path: str) -> float:
    for part in path.split("."):
        r = r[part]
    return float(r) * SCALE.get(path, 1.0)


def _has(r: dict, path: str) -> bool:
    for part in path.split("."):
        if part not in r:
            return False
        r = r[part]
    return True


def table(runs: Dict[str, List[dict]], other: str = "megatron") -> List[str]:
    """Markdown rows: each implementation's median [min–max], and the paired ratio (> 1: neox-cpt better)."""
    lines = ["| figure | megatron-core 0.16.1 | neox-cpt | neox-cpt better by (per-repeat ratio) |",
             "|---|---|---|---|"]
    for label, run, path, better, f in ROWS:
        m, n = runs.get(f"{other} {run}", []), runs.get(f"neox-cpt {run}", [])
        nv = [field(r, path) for r in n if _has(r, path)]
        mv = [field(r, path) for r in m if _has(r, path)]
        if not nv:
            continue
        ratios = [(a / b if better == "lower" else b / a) for a, b in zip(mv, nv) if a and b]
        lines.append(f"| {label} | {fmt(spread(mv), f) if mv else '–'} | {fmt(spread(nv), f)} | "
                     f"{fmt(spread(ratios), '{:.2f}') + '×' if ratios else '–'} |")
    extra = [("neox-cpt open, first sight", "open_s", "open after the data moved (one hash per source), wall (ms)"),
             ("neox-cpt reads (no advice)", "cold.per_s", "cold reads without MADV_RANDOM (samples/s)"),
             ("neox-cpt reads (no advice)", "warm.per_s", "warm reads without MADV_RANDOM (samples/s)"),
             ("neox-cpt reads (no advice)", "cold.rss_file_after",
              "file pages after the cold pass without MADV_RANDOM (MiB)")]
    for run, path, label in extra:
        vals = [field(r, path) for r in runs.get(run, []) if _has(r, path)]
        if vals:
            lines.append(f"| {label} | | {fmt(spread(vals), '{:,.1f}')} | |")
    if runs.get("megatron reads"):
        tok = [r["warm_tokens_only"]["per_s"] for r in runs["megatron reads"]]
        lines.append(f"| megatron-core warm reads, tokens only (samples/s) | {fmt(spread(tok), '{:,.0f}')} | | |")
    loads = [r["load_before"] for rs in runs.values() for r in rs]
    lines.append(f"\nload average before each child: median {statistics.median(loads):.2f}, "
                 f"range {min(loads):.2f}–{max(loads):.2f} ({len(loads)} children)")
    return lines


def git_commit() -> str:
    """The tree's commit, with '+dirty' when the data code (neox_cpt/data, csrc) has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE.parent, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "neox_cpt/data", "csrc"], cwd=HERE.parent,
                               capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    return f"{os.cpu_count()} CPUs ({cpu}), {mem / 2**30:.1f} GiB RAM, {platform.system()} {platform.release()}"


def plan_of(prefixes: List[str], num_samples: int, tag: str) -> dict:
    return {"prefixes": prefixes, "num_samples": num_samples,
            "cache": {impl: DATA_ROOT / "cache" / f"{impl}-{tag}" for impl in CHILDREN}}


def relative(obj):
    """Results without this machine's paths (data and caches live under bench/.data/)."""
    text = json.dumps(obj, default=str).replace(str(HERE.parent) + "/", "")
    return json.loads(text)


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the plan's 146M samples")
    ap.add_argument("--data-scale", type=float, default=1.0, help="fraction of the synthetic data (dev runs)")
    ap.add_argument("--impl", choices=["both", "megatron", "neox-cpt"], default="both")
    ap.add_argument("--repeats", type=int, default=3, help="fresh-process repeats of every measurement")
    ap.add_argument("--reads", type=int, default=20000, help="random samples read per pass")
    ap.add_argument("--modes", default="build,open,reads",
                    help="what to measure on the plan (reads alone reuses the caches of an earlier run)")
    ap.add_argument("--big-idx", action="store_true",
                    help="also: build + open the plan with the new data's .idx 10x larger (sparse .bin)")
    ap.add_argument("--json-out", default=None, help="write every run to this JSON file")
    args = ap.parse_args(argv)

    impls = ["megatron", "neox-cpt"] if args.impl == "both" else [args.impl]
    print(f"machine: {machine()}\npython {platform.python_version()}, commit {git_commit()}, "
          f"command: {' '.join(sys.argv[1:])}", flush=True)
    data = ensure_data(args.data_scale)
    num_samples = max(1, round(PLAN_SAMPLES * args.scale))
    report: dict = {"machine": machine(), "argv": sys.argv[1:], "commit": git_commit(), "started": time.time()}
    plan = plan_of([data["new"], data["old"]], num_samples, f"plan-{args.scale:g}")
    print(f"\n## plan: {num_samples:,} samples, {args.repeats} repeats", flush=True)
    report["plan"] = runs = measure(plan, impls, args.repeats, args.reads, modes=tuple(args.modes.split(",")))
    print("\n" + "\n".join(table(runs)), flush=True)
    if args.big_idx:
        big = ensure_sparse("new10x", round(5_000_000 * 10 * args.data_scale), seed=0)
        plan10 = plan_of([big, data["old"]], num_samples, f"big-idx-{args.scale:g}")
        print(f"\n## the same plan, new data's .idx 10x larger ({Path(big).name}: sparse .bin)", flush=True)
        report["big_idx"] = runs10 = measure(plan10, impls, args.repeats, args.reads,
                                                  modes=tuple(m for m in args.modes.split(",") if m != "reads"),
                                                  build_repeats=1)
        print("\n" + "\n".join(table(runs10)), flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(relative(report), indent=1))


if __name__ == "__main__":
    main()
