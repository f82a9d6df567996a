"""``neox-cpt prepare-data``: build (or reuse) the offline demo corpora, the tokenizer and the .bin/.idx files.

    $ neox-cpt prepare-data                         # sotu, bible, german into $NEOX_CPT_CACHE or ~/.cache/neox-cpt
    $ neox-cpt prepare-data --sources sotu,bible --cache-dir /tmp/cache --json

Prints one progress line per step and, at the end, a table of documents and tokens per source and split
plus the path of ``manifest.json`` (what ``neox-cpt train`` reads). See docs/data.md.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", default=None,
                        help="cache directory (default: $NEOX_CPT_CACHE, else ~/.cache/neox-cpt)")
    parser.add_argument("--sources", default="sotu,bible,german",
                        help="comma-separated sources among sotu, bible, german (default: all three)")
    parser.add_argument("--vocab-size", type=int, default=8192, help="BPE vocabulary size (default 8192)")
    parser.add_argument("--json", action="store_true", help="print manifest.json instead of the table")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> int:
    from neox_cpt.local.corpora import SourceUnavailable
    from neox_cpt.local.demo_data import prepare_demo_data

    if args.quiet:  # also silence the per-file lines of the shared preprocessing code
        logging.getLogger("neox_cpt").setLevel(logging.WARNING)
    sources = tuple(s.strip() for s in args.sources.split(",") if s.strip())
    try:
        m = prepare_demo_data(args.cache_dir, sources=sources, vocab_size=args.vocab_size, progress=not args.quiet)
    except SourceUnavailable as exc:
        print(f"neox-cpt prepare-data: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(m.to_json(), indent=1))
        return 0
    print(f"{'source':<8} {'train docs':>10} {'train tokens':>13} {'valid docs':>10} {'valid tokens':>13}")
    for s in m.sources:
        print(f"{s.name:<8} {s.num_train_docs:>10,} {s.num_train_tokens:>13,} {s.num_valid_docs:>10,} "
              f"{s.num_valid_tokens:>13,}")
    for name, why in m.unavailable:
        print(f"{name:<8} unavailable: {why}")
    print(f"tokenizer: {m.tokenizer_path} ({m.vocab_size:,} ids, eod {m.eod_id})")
    print(f"manifest:  {m.data_dir}/manifest.json")
    return 0
