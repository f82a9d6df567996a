"""The ``neox-cpt`` command: one entry point, one module per subcommand.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
the module is imported only when its subcommand runs, so ``neox-cpt schedule`` never imports torch.

    $ neox-cpt schedule configs/schedules/405M_pretrain_cosine.yml --steps 0,50,100 --csv

A user error (a bad key, file or argument) or Ctrl-C ends in one line on stderr naming what is wrong (exit
2; Ctrl-C: 130, with what was kept and the command that resumes); ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import shlex
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
    "index-cache": ("neox_cpt.commands.index_cache", "list an index cache directory and prune unused indexes"),
    "prepare-data": ("neox_cpt.commands.prepare_data", "build the offline demo corpora and tokenizer"),
    "train": ("neox_cpt.commands.train", "run a multi-stage continual pre-training run locally"),
    "report": ("neox_cpt.commands.report", "write a Markdown report with plots for run directories"),
    "demo": ("neox_cpt.commands.demo", "the embedded default: prepare data, pre-train, continue, report"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neox-cpt", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error (also accepted after the command)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def describe_error(exc: BaseException) -> str:
    """One line for a user error: our own messages as they are (they name the key or file and the fix);
    an OS error as ``file: reason``; a missing package with the pip command.

    >>> describe_error(NotADirectoryError(20, "Not a directory", "out/x.bin"))
    "'out/x.bin': Not a directory"
    >>> describe_error(ModuleNotFoundError("No module named 'sentencepiece'", name="sentencepiece"))
    'this needs the Python package sentencepiece, which is not installed: pip install sentencepiece'
    """
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        where = f"{str(exc.filename)!r}" + (f" -> {str(exc.filename2)!r}" if exc.filename2 else "")
        return f"{where}: {exc.strerror}"
    if isinstance(exc, ModuleNotFoundError) and exc.name and str(exc) == f"No module named {exc.name!r}":
        package = exc.name.split(".")[0]
        return f"this needs the Python package {package}, which is not installed: pip install {package}"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


USER_ERRORS = (ValueError, OSError, ImportError, EOFError)
"""Errors that are the input's or the environment's fault: one line, exit 2. Anything else is a bug: one
line that says so, exit 1. ``--debug`` shows the traceback of either."""


def _interrupted(module: object, args: argparse.Namespace, command: str, rest: Sequence[str]) -> str:
    """What a Ctrl-C left behind and the command that resumes (the module's ``interrupted(args)`` when given)."""
    again = shlex.join(["neox-cpt", command, *[a for a in rest if a != "--fresh"]])
    custom = getattr(module, "interrupted", None)
    what = custom(args) if custom is not None and args is not None else (
        "nothing half-written is kept (outputs appear only when complete)")
    return f"interrupted; {what}; to resume run: {again}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Parse only the global part first; the subcommand's own parser handles the rest.
    known, rest = parser.parse_known_args(argv)
    debug = known.debug or "--debug" in rest
    rest = [a for a in rest if a != "--debug"]
    logging.basicConfig(
        level=logging.DEBUG if known.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if known.command is None:
        parser.print_help()
        return 2
    module_name, help_text = SUBCOMMANDS[known.command]
    module = args = None
    try:
        module = importlib.import_module(module_name)
        sub_parser = argparse.ArgumentParser(prog=f"neox-cpt {known.command}", description=help_text)
        module.add_arguments(sub_parser)
        args = sub_parser.parse_args(rest)
        return int(module.run(args) or 0)
    except BrokenPipeError:
        # `neox-cpt schedule ... | head`: the reader went away; that is not an error.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"\nneox-cpt {known.command}: {_interrupted(module, args, known.command, rest)}", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        # Validation errors already name the key/file and the fix: show them without a traceback.
        if debug:
            raise
        print(f"neox-cpt {known.command}: error: {describe_error(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug, not the user's input: say so in one line, details behind --debug
        if debug:
            raise
        print(f"neox-cpt {known.command}: internal error ({type(exc).__name__}: {describe_error(exc)}); this is a "
              "bug: rerun with --debug and report the traceback", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
