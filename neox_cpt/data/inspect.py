"""Summarise a built replay index and verify it against its description (``neox-cpt inspect-index``).

    $ neox-cpt inspect-index cache/stage-0123456789abcdef
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from neox_cpt.data.sources import check_sources, description_key


def share_table(counts: Dict[str, Any]) -> str:
    """Requested vs realised share per source, as an aligned text table."""
    rows = [("source", "group", "kind", "requested", "realised", "samples", "tokens", "repeats")]
    for c in counts["sources"]:
        repeats = f"{c['epochs']} epochs" if "epochs" in c else (f"{c['cycles']} cycles" if "cycles" in c else "-")
        rows.append((c["name"], c["group"], c["kind"], f"{c['share_requested']:.6f}", f"{c['share_realised']:.6f}",
                     f"{c['samples']:,}", f"{c['tokens']:,}", repeats))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) if i < 3 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verify_index(index_dir: Path, check_files: bool = True) -> List[str]:
    """Every inconsistency found (empty list: the index matches its description and, with ``check_files``,
    its sources -- transitively, through the indexes it replays from -- are what it was built on)."""
    index_dir = Path(index_dir)
    problems: List[str] = []
    desc = json.loads((index_dir / "description.json").read_text())
    counts = json.loads((index_dir / "counts.json").read_text())
    key = desc.get("key", "")
    for name, size in desc.get("files", {}).items():
        actual = (index_dir / name).stat().st_size if (index_dir / name).exists() else None
        if actual != size:
            problems.append(f"{name}: {actual} bytes, description.json says {size}")
    if description_key(desc) != key:
        problems.append("description.json does not hash to its key (edited by hand?)")
    if not index_dir.name.endswith("-" + key[:16]):
        problems.append(f"directory name {index_dir.name!r} does not end in the key prefix {key[:16]!r}")
    n = desc["spec"]["num_samples"]
    from neox_cpt.data.build import blend_tables, draws_per_source, source_dtype
    from neox_cpt.data.spec import ReplayIndexSpec

    try:
        tables, weight_of = blend_tables(desc["sources"], source_dtype(len(desc["sources"])))
    except ValueError as exc:
        return problems + [f"the weights in description.json do not give a blend: {exc}"]
    for (table, count), group in zip(tables, ("new", "replay")):
        stored_t = np.load(index_dir / f"blend_table_{group}.npy")
        stored_c = np.load(index_dir / f"blend_count_{group}.npy")
        if not (np.array_equal(stored_t, table) and np.array_equal(stored_c, count)):
            problems.append(f"blend_table_{group}.npy / blend_count_{group}.npy differ from the weights' sequence")
    if not np.array_equal(np.load(index_dir / "blend_weight.npy"), weight_of):
        problems.append("blend_weight.npy differs from the quantised weights of description.json")
    spec = ReplayIndexSpec(new=(), num_samples=n, replay_frac=desc["spec"]["replay_frac"])
    seen = draws_per_source(spec, tables, weight_of)
    ppm = desc["spec"]["replay_ppm"]
    for i, (e, c) in enumerate(zip(desc["sources"], counts["sources"])):
        if seen[i] != c["samples"]:
            problems.append(f"source {e['name']}: {seen[i]} draws in the blend, counts.json says {c['samples']}")
        if abs(c["samples"] - e["share_requested"] * n) >= 2 and not (ppm == 0 and e["group"] == "replay"):
            problems.append(f"source {e['name']}: {c['samples']} samples, requested share x N = "
                            f"{e['share_requested'] * n:.1f}")
        if e["kind"] == "data" and c["samples"]:
            for suffix in ("sample_doc", "sample_offset"):
                arr = np.load(index_dir / f"source{i}_{suffix}.npy", mmap_mode="r")
                if len(arr) != c["samples"]:
                    problems.append(f"source{i}_{suffix}.npy has {len(arr)} entries, expected {c['samples']}")
    replay = int(sum(c["samples"] for c in counts["sources"] if c["group"] == "replay"))
    if replay != (ppm * n) // 1_000_000:
        problems.append(f"replay group has {replay} samples, expected floor({ppm} x {n} / 1e6)")
    if check_files:  # every source, and every source of an index this one replays from
        problems += check_sources(index_dir)
    return problems


def summary(index_dir: Path) -> str:
    desc = json.loads((Path(index_dir) / "description.json").read_text())
    counts = json.loads((Path(index_dir) / "counts.json").read_text())
    spec = desc["spec"]
    size = sum(f.stat().st_size for f in Path(index_dir).iterdir())
    head = (f"{index_dir}\n  key {desc['key'][:16]}  samples {spec['num_samples']:,}  seq_length {spec['seq_length']}  "
            f"seed {spec['seed']}  replay_frac {spec['replay_frac']}  files {size / 2**20:,.1f} MiB\n")
    return head + share_table(counts)


def approx_equal(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
