"""Plot build time and peak RSS against the number of samples from a ``replay_index.py --scaling`` JSON.

    $ python bench/plot_scaling.py bench/results/scaling.json bench/results/plan-146M.json \\
          docs/img/replay-benchmark-scaling.png
"""
from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402


def main(scaling_path: str, plan_path: str, out_path: str) -> None:
    points = {}  # impl -> {samples: result}
    for n, res in json.load(open(scaling_path))["scaling"].items():
        for impl, r in res.items():
            points.setdefault(impl, {})[int(n)] = r
    plan = json.load(open(plan_path))
    for impl, r in plan["plan"].items():
        points.setdefault(impl, {}).setdefault(int(r.get("num_samples", 146_000_000)), r)
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(9, 3.4))
    style = {"megatron": ("megatron-core 0.16.1", "tab:gray", "s"), "neox-cpt": ("neox-cpt", "tab:blue", "o")}
    for impl, pts in points.items():
        label, color, marker = style[impl]
        ns = sorted(pts)
        x = [n / 1e6 for n in ns]
        ax_t.plot(x, [pts[n]["build_s"] for n in ns], marker=marker, color=color, label=label)
        ax_m.plot(x, [pts[n]["peak_rss"] / 2**30 for n in ns], marker=marker, color=color, label=label)
    ax_t.axhline(8, color="tab:red", ls=":", lw=1, label="target 8 s (146M)")
    ax_m.axhline(0.5, color="tab:red", ls=":", lw=1, label="target 512 MiB")
    for ax, title in ((ax_t, "cold build, wall seconds"), (ax_m, "peak RSS, GiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("samples (millions, seq 2048 + 1)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax_m.set_yticks([0.1, 0.2, 0.5, 1, 2, 5, 10])
    ax_t.set_yticks([1, 2, 5, 10, 20, 50, 100, 200])
    ax_t.legend(fontsize=8)
    fig.suptitle("Replay index for 0.95 new / 0.05 old (shared 2-core VM; megatron-core stops where RAM would run out)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out_path, dpi=90)


if __name__ == "__main__":
    main(*sys.argv[1:4])
