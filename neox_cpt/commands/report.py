"""``neox-cpt report RUN_DIR... [--out DIR]``: Markdown report with PNG plots for local run directories.

    $ neox-cpt report runs/compare/german/d0_only runs/compare/german/cpt_replay25 --out runs/compare/report
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories written by `neox-cpt train`")
    parser.add_argument("--out", default=None, help="output directory (default: report/ beside the first run)")
    parser.add_argument("--d0", default=None, help="the old (pre-training) validation source; inferred if omitted")
    parser.add_argument("--d1", default=None, help="the new validation source; inferred if omitted")
    parser.add_argument("--title", default="neox-cpt report", help="report title")


def run(args: argparse.Namespace) -> int:
    from neox_cpt.local.report import Roles, load_run
    from neox_cpt.local.report_render import write_report

    runs = [load_run(d) for d in args.run_dirs]
    if bool(args.d0) != bool(args.d1):
        raise ValueError("--d0 and --d1 go together: give both source names, or neither to infer them")
    roles = Roles(args.d0, args.d1) if args.d0 else None
    out = Path(args.out) if args.out else Path(args.run_dirs[0]).parent / "report"
    path = write_report(runs, out, roles=roles, title=args.title)
    print(f"report: {path}")
    return 0
