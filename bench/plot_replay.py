"""Plots of docs/replay-benchmark.md from the JSON of replay_index.py and pile_scale.py.

Left: opening a built index in a fresh process (every repeat a dot), at the 146M plan and with a 10x
larger ``.idx``. Middle: cold (pages dropped) and warm random reads. Right: the Pile-scale builds, CPU
time and peak RSS against samples.

    $ python bench/plot_replay.py bench/results/open-146M.json bench/results/reads-146M.json \\
          bench/results/pile-scale.json docs/img/replay-benchmark.png
"""
from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"megatron": "tab:gray", "neox-cpt": "tab:blue", "neox-cpt (no advice)": "tab:cyan"}


def main(plan_path: str, reads_path: str, pile_path: str, out_path: str) -> None:
    plan = json.load(open(plan_path))
    reads = json.load(open(reads_path))
    pile = json.load(open(pile_path))
    fig, (ax_o, ax_r, ax_b) = plt.subplots(1, 3, figsize=(13, 3.8))

    groups = [("146M plan", plan["plan"]), ("10x larger .idx", plan.get("big_idx", {}))]
    for g, (label, runs) in enumerate(groups):
        for k, impl in enumerate(("megatron", "neox-cpt")):
            vals = [r["open_s"] * 1e3 for r in runs.get(f"{impl} open", [])]
            ax_o.scatter([g * 3 + k] * len(vals), vals, color=COLORS[impl], label=impl if g == 0 else None)
    ax_o.set_xticks([0.5, 3.5], [label for label, _ in groups])
    ax_o.set_ylabel("ms (wall)")
    ax_o.set_ylim(bottom=0)
    ax_o.set_title("open: cache hit + dataset + first sample")
    ax_o.legend(fontsize=8)

    variants = [("megatron", "megatron reads"), ("neox-cpt", "neox-cpt reads"),
                ("neox-cpt (no advice)", "neox-cpt reads (no advice)")]
    for p, phase in enumerate(("cold", "warm")):
        for k, (name, run) in enumerate(variants):
            vals = [r[phase]["per_s"] for r in reads["plan"].get(run, [])]
            ax_r.scatter([p * 4 + k] * len(vals), vals, color=COLORS[name], label=name if p == 0 else None)
    ax_r.set_yscale("log")
    ax_r.set_xticks([1, 5], ["first pass (cold)", "second pass (warm)"])
    ax_r.set_ylabel("random reads, samples/s")
    ax_r.set_title("reads (pages dropped first)")
    ax_r.legend(fontsize=8)

    builds = [b for b in pile["builds"] if b["seq_length"] == 2048 and b["mode"] == "build"]
    xs = [b["num_samples"] / 1e6 for b in builds]
    ax_b.plot(xs, [b["build_cpu_s"] for b in builds], "o-", color="tab:blue", label="build CPU (s)")
    ax_b.plot(xs, [b["build_s"] for b in builds], "o--", color="tab:blue", alpha=0.5, label="build wall (s)")
    ax_b.set_xlabel("samples (millions), 30 sources, ~210M documents")
    ax_b.set_ylabel("seconds")
    ax_b.set_ylim(bottom=0)
    ax_b.set_xlim(left=0)
    ax_m = ax_b.twinx()
    ax_m.plot(xs, [b["peak_rss"] / 2**20 for b in builds], "s:", color="tab:red", label="peak RSS (MiB)")
    ax_m.set_ylabel("peak RSS (MiB)", color="tab:red")
    ax_m.axhline(512, color="tab:red", lw=0.8, alpha=0.4)
    ax_m.set_ylim(0, 800)
    ax_b.set_title("Pile-scale builds (sparse .bin)")
    lines = ax_b.get_legend_handles_labels()
    more = ax_m.get_legend_handles_labels()
    ax_b.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:5])
