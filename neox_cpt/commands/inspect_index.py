"""``neox-cpt inspect-index DIR``: summarise a built replay index and verify it against its description.

Exit status 0 when every check passes, 1 otherwise (each problem printed on its own line).

    $ neox-cpt inspect-index /shared/neox_cpt_index/stage-0123456789abcdef
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("index_dir", metavar="DIR", help="a directory written by build-index / build_index()")
    parser.add_argument("--no-file-check", action="store_true",
                        help="skip checking that the sources (and those of the indexes it replays from) are "
                             "still what the index was built on")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from neox_cpt.data.inspect import summary, verify_index

    path = Path(args.index_dir)
    if not (path / "description.json").is_file():
        raise FileNotFoundError(f"{path / 'description.json'}: not found; DIR must be a complete index directory "
                                f"(`<cache_dir>/<name>-<hash>`)")
    print(summary(path))
    problems = verify_index(path, check_files=not args.no_file_check)
    for p in problems:
        print(f"PROBLEM: {p}")
    print("verified: OK" if not problems else f"verified: {len(problems)} problem(s)")
    return 0 if not problems else 1
