"""Replay-index benchmark: neox-cpt vs megatron-core 0.16.1, side by side on the same synthetic data.

Builds the synthetic datasets of /work/shared/ANCHORS.md once (cached in bench/.data/), then runs each
implementation in its own child process: cold index build (time, peak RSS), warm reopen, random reads;
then the blend step alone for 2 and 10 sources. Prints both figures and the ratios.

    $ python bench/replay_index.py                  # the full plan: 146M samples (minutes, ~8 GB RAM)
    $ python bench/replay_index.py --scale 0.05     # 5% of the samples, same data
    $ python bench/replay_index.py --scaling 10e6,50e6,146e6,500e6 --impl neox-cpt

Peak RSS is the child's own high-water mark (VmHWM) at the end of the build, including the interpreter
and imports (torch + megatron-core ~ 0.35 GB; numpy + neox-cpt ~ 0.03 GB); "anon" is the peak of
anonymous memory sampled every 10 ms (memory-mapped file pages excluded).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from synth import DATA_ROOT, ensure_data  # noqa: E402

PLAN_SAMPLES = 146_000_000
WEIGHTS = (0.95, 0.05)
CHILDREN = {"megatron": HERE / "run_megatron.py", "neox-cpt": HERE / "run_neox_cpt.py"}


def _proc_status(pid: int) -> Optional[Dict[str, int]]:
    try:
        with open(f"/proc/{pid}/status") as f:
            out = {}
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                    out[key] = int(rest.split()[0]) * 1024
            return out
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None


def run_child(script: Path, args: List[str]) -> dict:
    """Run one child; sample its memory every 10 ms; return its JSON result plus the memory samples."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", PYTHONPATH=str(HERE.parent))
    proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    samples = []

    def poll():
        while proc.poll() is None:
            st = _proc_status(proc.pid)
            if st:
                samples.append((time.time(), st))
            time.sleep(0.01)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    out, err = proc.communicate()
    poller.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} failed ({proc.returncode}):\n{err[-4000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    t0, t1 = result["build_window"]
    window = [s for t, s in samples if t0 - 0.02 <= t <= t1 + 0.02]
    result["peak_anon"] = max((s.get("RssAnon", 0) for s in window), default=0)
    result["peak_file"] = max((s.get("RssFile", 0) for s in window), default=0)
    return result


def phase_summary(r: dict) -> str:
    """megatron-core: its own logged phase timings; neox-cpt: time between the builder's progress reports."""
    if "phases" in r:
        return ", ".join(f"{name.strip()} {sec:.1f}s" for name, sec in r["phases"])
    parts, prev = [], 0.0
    for stage, (_first, last) in sorted(r.get("stages", {}).items(), key=lambda kv: kv[1][1]):
        parts.append(f"{stage} {last - prev:.2f}s")
        prev = last
    return ", ".join(parts) + f", after publish {r['build_s'] - prev:.2f}s"


def gb(x: float) -> str:
    return f"{x / 1e9:.2f} GB" if x >= 1e8 else f"{x / 1e6:.0f} MB"


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


def run_plan(prefixes: dict, num_samples: int, impls: List[str], reads: int, tag: str,
             keep_cache: bool = False) -> Dict[str, dict]:
    results = {}
    for impl in impls:
        cache = DATA_ROOT / "cache" / f"{impl}-{tag}"
        args = ["--prefixes", f"{prefixes['new']},{prefixes['old']}", "--weights", ",".join(map(str, WEIGHTS)),
                "--num-samples", str(num_samples), "--cache-dir", str(cache), "--reads", str(reads)]
        load = os.getloadavg()[0]
        print(f"[{impl}] {num_samples:,} samples (load average before: {load:.2f}) ...", flush=True)
        try:
            results[impl] = r = run_child(CHILDREN[impl], args)
        except RuntimeError as exc:  # keep the other implementation's figures
            print(f"[{impl}] FAILED: {exc}", flush=True)
            continue
        finally:
            if not keep_cache:  # index files of a 146M plan: 4.5 GB (megatron-core), 0.9 GB (neox-cpt)
                shutil.rmtree(cache, ignore_errors=True)
        r["load_before"], r["load_after"] = load, os.getloadavg()[0]
        print(f"[{impl}] build {r['build_s']:.2f}s (CPU {r['build_cpu_s']:.2f}s) | peak RSS {gb(r['peak_rss'])} (anon {gb(r['peak_anon'])}) | "
              f"reopen {r['reopen_s'] * 1e3:.0f} ms | warm reads {r['warm_reads_per_s']:,.0f}/s | "
              f"index files {gb(r['cache_bytes'])}", flush=True)
        print(f"[{impl}] where the time goes: {phase_summary(r)}", flush=True)
    return results


def print_comparison(res: Dict[str, dict]) -> None:
    """Both figures and the ratio, oriented so that > 1x means neox-cpt is better."""
    if not {"megatron", "neox-cpt"} <= set(res):
        return
    m, n = res["megatron"], res["neox-cpt"]
    rows = [("cold build, wall (s)", m["build_s"], n["build_s"], "{:.2f}", False),
            ("cold build, CPU user+sys (s)", m["build_cpu_s"], n["build_cpu_s"], "{:.2f}", False),
            ("peak RSS (GB)", m["peak_rss"] / 1e9, n["peak_rss"] / 1e9, "{:.3f}", False),
            ("peak anonymous RSS (GB)", m["peak_anon"] / 1e9, n["peak_anon"] / 1e9, "{:.3f}", False),
            ("reopen from cache (ms)", m["reopen_s"] * 1e3, n["reopen_s"] * 1e3, "{:.0f}", False),
            ("warm random reads (samples/s)", m["warm_reads_per_s"], n["warm_reads_per_s"], "{:,.0f}", True),
            ("warm reads, tokens only (samples/s)", m.get("warm_token_reads_per_s", float("nan")),
             n["warm_reads_per_s"], "{:,.0f}", True),
            ("first-pass random reads (samples/s)", m["first_pass_reads_per_s"], n["first_pass_reads_per_s"],
             "{:,.0f}", True),
            ("index files (GB)", m["cache_bytes"] / 1e9, n["cache_bytes"] / 1e9, "{:.2f}", False)]
    print("\n| | megatron-core 0.16.1 | neox-cpt | neox-cpt better by |\n|---|---|---|---|")
    for name, a, b, fmt, higher_is_better in rows:
        ratio = (b / a if a else float("inf")) if higher_is_better else (a / b if b else float("inf"))
        print(f"| {name} | {fmt.format(a)} | {fmt.format(b)} | {ratio:.2f}x |")


def print_targets(res: Dict[str, dict], blend: Optional[dict], scale: float) -> None:
    """The issue's targets (stated for the full plan, scale 1)."""
    n = res.get("neox-cpt")
    if n is None:
        return
    lines = [f"cold build {n['build_s']:.2f}s <= 8 s: {n['build_s'] <= 8}",
             f"peak RSS {n['peak_rss'] / 2**20:.0f} MiB <= 512 MiB: {n['peak_rss'] <= 512 * 2**20}"]
    if "megatron" in res:
        m = res["megatron"]
        lines.append(f"warm reads {n['warm_reads_per_s']:,.0f}/s >= megatron-core {m['warm_reads_per_s']:,.0f}/s: "
                     f"{n['warm_reads_per_s'] >= m['warm_reads_per_s']}")
    if blend and "neox-cpt 2 sources" in blend:
        two, ten = blend["neox-cpt 2 sources"], blend["neox-cpt 10 sources"]
        lines.append(f"10-source blend {ten:.2f}s <= 2 x 2-source {two:.2f}s: {ten <= 2 * two}")
    print(f"\ntargets (scale {scale:g}; stated for scale 1):\n  " + "\n  ".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the plan's 146M samples")
    ap.add_argument("--data-scale", type=float, default=1.0, help="fraction of the synthetic data (dev runs)")
    ap.add_argument("--impl", choices=["both", "megatron", "neox-cpt"], default="both")
    ap.add_argument("--reads", type=int, default=20000, help="random samples read (twice) per implementation")
    ap.add_argument("--no-blend", dest="blend", action="store_false", help="skip the blend-alone timing")
    ap.add_argument("--scaling", default=None, help="comma-separated sample counts for a build-time sweep")
    ap.add_argument("--megatron-max-samples", type=float, default=200e6,
                    help="in --scaling, skip megatron-core above this many samples (its RAM grows ~50 B/sample)")
    ap.add_argument("--keep-cache", action="store_true", help="keep the built index files in bench/.data/cache")
    ap.add_argument("--json-out", default=None, help="also write all results to this JSON file")
    args = ap.parse_args()

    impls = ["megatron", "neox-cpt"] if args.impl == "both" else [args.impl]
    print(f"machine: {machine()}\npython {platform.python_version()}, command: {' '.join(sys.argv)}", flush=True)
    prefixes = ensure_data(args.data_scale)
    report: dict = {"machine": machine(), "argv": sys.argv, "data": prefixes, "neox_cpt_commit": git_commit()}
    print(f"neox-cpt commit: {report['neox_cpt_commit']}", flush=True)
    if args.scaling:
        report["scaling"] = {}
        for n in [int(float(x)) for x in args.scaling.split(",")]:
            # megatron-core holds ~50 bytes per sample in RAM: past ~200M samples it cannot fit in 24 GB.
            fits = [i for i in impls if i != "megatron" or n <= args.megatron_max_samples]
            report["scaling"][n] = run_plan(prefixes, n, fits, reads=1000, tag="scaling")
        print("\n| samples | " + " | ".join(f"{i} build (s) | {i} peak RSS | {i} index files" for i in impls) + " |")
        print("|---|" + "---|---|---|" * len(impls))
        for n, res in report["scaling"].items():
            cells = [f"{res[i]['build_s']:.2f} | {gb(res[i]['peak_rss'])} | {gb(res[i]['cache_bytes'])}" if i in res
                     else "not run | (RAM) | " for i in impls]
            print(f"| {n:,} | " + " | ".join(cells) + " |")
    else:
        num_samples = max(1, round(PLAN_SAMPLES * args.scale))
        report["plan"] = run_plan(prefixes, num_samples, impls, args.reads, tag=f"plan-{args.scale:g}",
                                  keep_cache=args.keep_cache)
        print_comparison(report["plan"])
        if args.blend:
            blend_args = ["--num-samples", str(num_samples), "--impl", args.impl, "--new", prefixes["new"],
                          "--old", prefixes["old"]]
            env = dict(os.environ, PYTHONWARNINGS="ignore", PYTHONPATH=str(HERE.parent))
            proc = subprocess.run([sys.executable, str(HERE / "run_blend.py"), *blend_args], env=env,
                                  capture_output=True, text=True)
            if proc.returncode == 0:
                report["blend"] = json.loads(proc.stdout.strip().splitlines()[-1])
                print("\nblend alone (s, best of 3): " + ", ".join(
                    f"{k} {v:.2f}" for k, v in report["blend"].items() if not k.endswith("runs")))
            else:
                print(f"\nblend alone: FAILED\n{proc.stderr[-3000:]}")
        print_targets(report["plan"], report.get("blend"), args.scale)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
