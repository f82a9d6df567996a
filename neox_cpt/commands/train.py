"""``neox-cpt train CONFIG.yml [--run-dir DIR] [--fresh]``: run or resume a local multi-stage run.

    $ neox-cpt train configs/local/tiny.yml --run-dir runs/tiny
    $ neox-cpt train configs/local/tiny.yml --run-dir runs/tiny     # again: resumes, or reports it finished
    $ neox-cpt train configs/local/tiny.yml --check                 # validate and print the stage plan only
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="run config YAML (see configs/local/ and docs/local.md)")
    parser.add_argument("--run-dir", default=None,
                        help="run directory (default: the config's run_dir, else runs/<config name>)")
    parser.add_argument("--fresh", action="store_true",
                        help="delete the run directory's checkpoints and metrics and start over")
    parser.add_argument("--check", action="store_true",
                        help="validate the config and every dataset it reads, print the stages; no training")


def interrupted(args: argparse.Namespace) -> str:
    """The Ctrl-C line's middle part (neox_cpt.cli): checkpoints are atomic, the last complete one is kept."""
    return ("the last complete checkpoint is kept (a half-written one is discarded; metrics after it are cut "
            "at the resume)")


def run(args: argparse.Namespace) -> int:
    from neox_cpt.local.config import check_run_data, load_run_config, stage_mapping

    cfg = load_run_config(args.config)
    run_dir = Path(args.run_dir or cfg.run_dir or Path("runs") / Path(args.config).stem)
    if args.check:
        from neox_cpt.schedules import schedule_from_config

        num_checked = check_run_data(cfg)
        print(f"{args.config}: {len(cfg.stages)} stage(s), batch {cfg.batch_size} x seq {cfg.seq_length}, "
              f"vocab {cfg.vocab_size}, run dir {run_dir}; {num_checked} dataset(s) checked")
        for st in cfg.stages:
            sched = schedule_from_config(stage_mapping(cfg, st))
            shares = ", ".join(f"{k} {100 * v:.0f} %" for k, v in st.train_shares().items())
            print(f"  {st.name}: {st.num_steps} steps, {st.num_tokens:,} tokens ({shares}); from "
                  f"{st.init_from or 'scratch'}; optimizer {'reset' if st.reset_optimizer else 'kept'}; "
                  + ", ".join(f"{r['phase']} to {r['end_step']}" for r in sched.phase_table()))
        return 0
    from neox_cpt.local.trainer import train

    summary = train(cfg, run_dir, resume=not args.fresh, progress=lambda line: print(line, flush=True))
    final = " | ".join(f"{k} {v:.3f}" for k, v in summary["final"].items())
    print(f"done: {run_dir} | {summary['tokens_trained']:,} tokens | final validation loss {final}")
    return 0
