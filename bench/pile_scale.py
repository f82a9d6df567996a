"""Pile-scale evidence without Pile-scale disk: 30 sources, ~210M documents, up to 1B samples.

Index building reads only the ``.idx`` files, so every source here has a real ``.idx`` (lognormal
document sizes, as synth.py) and a *sparse* ``.bin`` of the right size (~420 GB apparent, no blocks).
The plan: 6 new sources and 24 replayed ones (25 % replay), weighted by tokens in each group. Each
figure comes from a fresh child process, with the load average recorded:

- builds at 250M, 500M and 1B samples (seq_length 2048), and 1B samples at seq_length 8192: wall and
  CPU time, the child's own peak RSS (VmHWM), index size; each on a cold cache (the sources identified
  first), and the 1B one also with the sources already identified (their fingerprint records kept);
- opening the 1B-sample index as a loader rank does (cache hit + dataset + first sample): on first
  sight of the files (each ``.idx`` hashed once, ~4.2 GB) and then as every later launch (a ``stat``).

    $ python bench/pile_scale.py --json-out bench/results/pile-scale.json
    $ python bench/pile_scale.py --doc-scale 0.01 --samples 1e6,2e6      # a quick check
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import cpu_seconds, peak_rss_bytes  # noqa: E402
from synth import DATA_ROOT, ensure_sparse  # noqa: E402

NUM_SOURCES, NUM_NEW, TOTAL_DOCS, REPLAY_FRAC = 30, 6, 210_000_000, 0.25


def source_docs(doc_scale: float) -> List[int]:
    """Documents per source: a geometric spread (largest/smallest = 50), ~210M in all, like the Pile's mix."""
    raw = [50 ** (-i / (NUM_SOURCES - 1)) for i in range(NUM_SOURCES)]
    return [max(10, round(r / sum(raw) * TOTAL_DOCS * doc_scale)) for r in raw]


def ensure_sources(doc_scale: float) -> List[str]:
    return [ensure_sparse(f"pile{i:02d}-{doc_scale:g}", n, seed=100 + i, root=DATA_ROOT / "pile")
            for i, n in enumerate(source_docs(doc_scale))]


def child_main(mode: str, prefixes: List[str], num_samples: int, seq_length: int, cache: str) -> dict:
    """One build or open in this (fresh) process."""
    from neox_cpt import native
    from neox_cpt.data import fingerprint
    from neox_cpt.data.cache import build_index
    from neox_cpt.data.dataset import ReplayDataset
    from neox_cpt.data.spec import ReplayIndexSpec, SourceSpec

    hashed: List[str] = []
    real = fingerprint.sha256_file
    fingerprint.sha256_file = lambda p: hashed.append(p) or real(p)
    spec_of = lambda: ReplayIndexSpec(  # noqa: E731 - the spec is part of what is timed (it identifies the files)
        new=tuple(SourceSpec(p) for p in prefixes[:NUM_NEW]), replay=tuple(SourceSpec(p) for p in prefixes[NUM_NEW:]),
        replay_frac=REPLAY_FRAC, num_samples=num_samples, seq_length=seq_length, name="pile")
    out = {"mode": mode, "kernels": native.KERNELS, "num_samples": num_samples, "seq_length": seq_length}
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    if mode in ("build", "build-known"):
        # build: a cold cache (the sources are identified first); build-known: their records are kept
        for p in ([Path(cache)] if mode == "build" else Path(cache).glob("pile-*")):
            shutil.rmtree(p, ignore_errors=True)
        path = build_index(spec_of(), cache, progress=False)
        out.update(build_s=time.perf_counter() - t0, build_cpu_s=cpu_seconds() - cpu0,
                   index_bytes=sum(f.stat().st_size for f in path.iterdir()))
    else:
        if mode == "open-first-sight":
            shutil.rmtree(os.path.join(cache, ".sources"), ignore_errors=True)
        ds = ReplayDataset(build_index(spec_of(), cache, progress=False))
        ds[0]
        out.update(open_s=time.perf_counter() - t0, open_cpu_s=cpu_seconds() - cpu0)
    out.update(peak_rss=peak_rss_bytes(), hashes=len(hashed))
    return out


def child(mode: str, prefixes: List[str], num_samples: int, seq_length: int, cache: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.setdefault("OMP_NUM_THREADS", "1")
    load = round(os.getloadavg()[0], 2)
    proc = subprocess.run([sys.executable, __file__, "--child", mode, "--prefixes", ",".join(prefixes),
                           "--samples", str(num_samples), "--seq-length", str(seq_length), "--cache", str(cache)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{proc.stderr[-4000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    if r["kernels"] != "native":
        raise RuntimeError("neox-cpt ran on its NumPy kernels: build the extension (`pip install -e .`)")
    r["load_before"] = load
    print(f"  {json.dumps(r)}", flush=True)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--doc-scale", type=float, default=1.0, help="fraction of the ~210M documents")
    ap.add_argument("--samples", default="250e6,500e6,1e9", help="sample counts of the seq_length 2048 builds")
    ap.add_argument("--seq8192-samples", type=float, default=1e9, help="samples of the seq_length 8192 build")
    ap.add_argument("--opens", type=int, default=3, help="fresh-process opens of each kind")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--prefixes", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--seq-length", type=int, default=2048, help=argparse.SUPPRESS)
    ap.add_argument("--cache", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child_main(args.child, args.prefixes.split(","), int(float(args.samples)), args.seq_length,
                                    args.cache)))
        return
    t0 = time.perf_counter()
    prefixes = ensure_sources(args.doc_scale)
    docs = source_docs(args.doc_scale)
    idx_bytes = sum(os.path.getsize(p + ".idx") for p in prefixes)
    print(f"{len(prefixes)} sources, {sum(docs):,} documents, {idx_bytes / 1e9:.2f} GB of .idx "
          f"(ready in {time.perf_counter() - t0:.0f} s)", flush=True)
    cache = DATA_ROOT / "cache" / "pile"
    report = {"sources": len(prefixes), "documents": sum(docs), "idx_bytes": idx_bytes, "builds": [], "opens": {}}
    samples = [int(float(x)) for x in args.samples.split(",")]
    for n in samples[:-1]:
        report["builds"].append(child("build", prefixes, n, 2048, cache))
    report["builds"].append(child("build", prefixes, samples[-1], 2048, cache))
    report["builds"].append(child("build-known", prefixes, samples[-1], 2048, cache))  # kept for the opens
    for kind in ("open-first-sight", "open"):
        report["opens"][kind] = [child(kind, prefixes, samples[-1], 2048, cache) for _ in range(args.opens)]
    report["builds"].append(child("build", prefixes, int(args.seq8192_samples), 8192, cache))
    shutil.rmtree(cache, ignore_errors=True)

    print("\nbuild-known: the sources already identified, as at every build after the first on the same data")
    print("\n| plan | build wall (s) | build CPU (s) | peak RSS (MiB) | index (GB) | CPU µs/sample | load before |")
    print("|---|---|---|---|---|---|---|")
    for b in report["builds"]:
        print(f"| {b['num_samples'] / 1e6:,.0f}M samples, seq {b['seq_length']}, {b['mode']} | {b['build_s']:.1f} | "
              f"{b['build_cpu_s']:.1f} | {b['peak_rss'] / 2**20:,.0f} | {b['index_bytes'] / 1e9:.2f} | "
              f"{b['build_cpu_s'] / b['num_samples'] * 1e6:.3f} | {b['load_before']} |")
    for kind, rs in report["opens"].items():
        wall = [r["open_s"] for r in rs]
        cpu = [r["open_cpu_s"] for r in rs]
        print(f"{kind}: wall {statistics.median(wall) * 1e3:,.0f} ms "
              f"[{min(wall) * 1e3:,.0f}–{max(wall) * 1e3:,.0f}], "
              f"CPU {statistics.median(cpu) * 1e3:,.0f} ms [{min(cpu) * 1e3:,.0f}–{max(cpu) * 1e3:,.0f}], "
              f"hashes {[r['hashes'] for r in rs]}, load {[r['load_before'] for r in rs]}")
    if args.json_out:
        text = json.dumps(report, indent=1).replace(str(HERE.parent) + "/", "")
        Path(args.json_out).write_text(text)


if __name__ == "__main__":
    main()
