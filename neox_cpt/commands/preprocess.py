"""``neox-cpt preprocess``: tokenize JSONL / text files into a NeoX ``{P}_text_document.bin/.idx`` dataset.

    $ neox-cpt preprocess --input data/a.jsonl,data/b.jsonl.gz --tokenizer 20B_tokenizer.json \\
          --output-prefix data/mydata --workers 4
    $ neox-cpt preprocess --input notes.txt --tokenizer spm.model --output-prefix data/notes --eod-id 2

``.jsonl``/``.json`` files hold one JSON object per line (text under ``--json-key``, default ``text``);
any other file is one document. The result is what GPT-NeoX's ``tools/datasets/preprocess_data.py``
writes, so ``data_path: data/mydata_text_document`` works in a NeoX config.
"""
from __future__ import annotations

import argparse

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, action="append",
                        help="input file(s), comma separated or repeated: .jsonl[.gz] (one JSON object per line) "
                             "or any other file as one document")
    parser.add_argument("--tokenizer", required=True, help="Hugging Face tokenizer.json or SentencePiece .model")
    parser.add_argument("--output-prefix", required=True, help="writes {prefix}_{json_key}_document.bin/.idx")
    parser.add_argument("--workers", type=int, default=1, help="tokenizer processes (output identical for any count)")
    parser.add_argument("--json-key", default="text", help="JSON field holding the text (default: text)")
    parser.add_argument("--append-eod", dest="append_eod", action="store_true", default=True,
                        help="append the end-of-document id after every document (default)")
    parser.add_argument("--no-append-eod", dest="append_eod", action="store_false", help="do not append it")
    parser.add_argument("--eod-id", type=int, default=None,
                        help="end-of-document id (default: <|endoftext|>, else the SentencePiece eos)")
    parser.add_argument("--dtype", choices=["auto", "uint16", "int32"], default="auto",
                        help="token dtype in .bin (auto: uint16 below 65,500 ids, like NeoX)")
    parser.add_argument("--chunk-docs", type=int, default=256, help="documents per worker task")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def interrupted(args: argparse.Namespace) -> str:
    """The Ctrl-C line's middle part (neox_cpt.cli): the dataset appears only when complete."""
    return f"nothing was written to {args.output_prefix}_{args.json_key}_document.bin/.idx (temporary files removed)"


def run(args: argparse.Namespace) -> int:
    from neox_cpt.data.preprocess import preprocess_documents, read_documents

    paths = [p for item in args.input for p in item.split(",") if p]
    if not paths:
        raise ValueError("--input: no files given; pass --input FILE[,FILE...]")
    ds = preprocess_documents(
        read_documents(paths, args.json_key), args.tokenizer, args.output_prefix, workers=args.workers,
        append_eod=args.append_eod, eod_id=args.eod_id, json_key=args.json_key, chunk_docs=args.chunk_docs,
        dtype=None if args.dtype == "auto" else np.dtype(args.dtype), progress=args.progress,
    )
    print(f"{ds.prefix}.bin/.idx: {len(ds):,} documents, {ds.num_tokens:,} tokens, {ds.dtype.name}")
    return 0
