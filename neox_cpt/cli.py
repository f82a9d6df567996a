"""The ``neox-cpt`` command: one entry point, one module per subcommand.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
the module is imported only when its subcommand runs, so ``neox-cpt schedule`` never imports torch.

    $ neox-cpt schedule configs/schedules/405M_pretrain_cosine.yml --steps 0,50,100 --csv
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional, Sequence

# name -> (module, one-line help). Modules are imported lazily.
SUBCOMMANDS = {
    "schedule": ("neox_cpt.commands.schedule", "print or plot the LR schedule of one or more stage configs"),
    "preprocess": ("neox_cpt.commands.preprocess", "tokenize text/JSONL into NeoX .bin/.idx files"),
    "preflight": ("neox_cpt.commands.preflight", "print every decision the NeoX plugin takes at launch, and the "
                  "problems, without NeoX or a GPU"),
    "build-index": ("neox_cpt.commands.build_index", "build (or reuse) the replay blend index of a config"),
    "inspect-index": ("neox_cpt.commands.inspect_index", "summarise and verify a built index directory"),
    "prepare-data": ("neox_cpt.commands.prepare_data", "build the offline demo corpora and tokenizer"),
    "train": ("neox_cpt.commands.train", "run a multi-stage continual pre-training run locally"),
    "report": ("neox_cpt.commands.report", "write a Markdown report with plots for run directories"),
    "demo": ("neox_cpt.commands.demo", "the embedded default: prepare data, pre-train, continue, report"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neox-cpt", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Parse only the global part first; the subcommand's own parser handles the rest.
    known, rest = parser.parse_known_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if known.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if known.command is None:
        parser.print_help()
        return 2
    module_name, help_text = SUBCOMMANDS[known.command]
    module = importlib.import_module(module_name)
    sub_parser = argparse.ArgumentParser(prog=f"neox-cpt {known.command}", description=help_text)
    module.add_arguments(sub_parser)
    args = sub_parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except BrokenPipeError:
        # `neox-cpt schedule ... | head`: the reader went away; that is not an error.
        sys.stderr.close()
        return 0
    except (ValueError, FileNotFoundError, PermissionError) as exc:
        # Validation errors already name the key/file and the fix: show them without a traceback.
        if known.verbose:
            raise
        print(f"neox-cpt {known.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
