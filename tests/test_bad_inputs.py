"""The bad-input corpus: every entry point refuses every case before any work, in one line, naming the key or file.

Table-driven. Each case builds its inputs in its own directory (also the working directory), runs one entry
point and asserts: the exit code (2 for a user error, 130 for Ctrl-C), no traceback, one line on stderr
that contains the expected key or file name (and not a wrong one), and nothing written or deleted: the
directory is byte for byte what it was before the command ran. CLI commands run in-process through
``neox_cpt.cli.main`` (fast); a subprocess is used only where the end-to-end behaviour is the point
(real SIGINT to a process group, a write error from a file size limit). The NeoX graft is called through
the function NeoX's ``NeoXArgs.__post_init__`` calls (``neox_cpt.neox.graft.validate``).

Cases marked ``issue=True`` are the ones listed in issue 10; each failed on the code before its fix.
"""
from __future__ import annotations

import copy
import gzip
import os
import resource
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytest
import yaml

import neox_cpt
from neox_cpt.cli import main
from neox_cpt.data.indexed import IndexedDatasetWriter

sys.path.insert(0, str(Path(__file__).parent / "local"))  # the trainer's tiny synthetic sources
from test_trainer_helpers import base_config, make_sources  # noqa: E402

PACKAGE_ROOT = str(Path(neox_cpt.__file__).resolve().parents[1])  # the checkout the subprocesses must import


# ------------------------------------------------------------------------------------------ inputs
def write_data(prefix: Path, num_docs: int = 30, dtype=np.uint16, top: int = 250) -> str:
    rng = np.random.default_rng(len(str(prefix)))
    with IndexedDatasetWriter(str(prefix), dtype) as w:
        for _ in range(num_docs):
            w.add_document(rng.integers(1, top, int(rng.integers(5, 30))))
    return str(prefix)


def hand_idx(code: int, sizes: Sequence[int], pointers: Sequence[int], doc_idx: Sequence[int],
             magic: bytes = b"MMIDIDX\x00\x00") -> bytes:
    return (magic + struct.pack("<QBQQ", 1, code, len(sizes), len(doc_idx)) + struct.pack(f"<{len(sizes)}i", *sizes)
            + struct.pack(f"<{len(pointers)}q", *pointers) + struct.pack(f"<{len(doc_idx)}q", *doc_idx))


def raw_data(prefix: Path, idx: bytes, bin_: bytes) -> str:
    prefix.with_suffix(".idx").write_bytes(idx)  # prefix has no suffix of its own
    prefix.with_suffix(".bin").write_bytes(bin_)
    return str(prefix)


SIX = struct.pack("<6H", 5, 6, 7, 8, 9, 10)  # six uint16 tokens: sizes [3, 2, 1], pointers [0, 6, 10]
CORRUPT: Dict[str, Tuple[bytes, bytes, str]] = {  # name -> (.idx, .bin, what the message says)
    "negative-size": (hand_idx(8, [3, -1, 4], [0, 6, 4], [0, 1, 2, 3]), SIX, "negative size"),
    "pointer-not-running-sum": (hand_idx(8, [3, 2, 1], [0, 4, 10], [0, 1, 2, 3]), SIX, "pointer of sequence 1"),
    "pointer-past-bin-end": (hand_idx(8, [3, 2, 1], [0, 6, 30], [0, 1, 2, 3]), SIX, "points up to byte 32"),
    "float-tokens": (hand_idx(6, [3, 2, 1], [0, 12, 20], [0, 1, 2, 3]), struct.pack("<6f", *range(6)), "float"),
    "bin-of-another-dataset": (hand_idx(8, [3, 2, 1], [0, 6, 10], [0, 1, 2, 3]), SIX * 3, "36 bytes"),
    "int32-labelled-uint16": (hand_idx(8, [3, 2, 1], [0, 6, 10], [0, 1, 2, 3]), struct.pack("<6i", *range(6)),
                              "another dtype"),
    "doc-idx-falls": (hand_idx(8, [3, 2, 1], [0, 6, 10], [0, 2, 1, 3]), SIX, "doc_idx"),
    "truncated-idx": (hand_idx(8, [3, 2, 1], [0, 6, 10], [0, 1, 2, 3])[:-8], SIX, "truncated or corrupt"),
    "old-format-magic": (hand_idx(8, [3], [0], [0, 1], magic=b"TNTIDX\x00\x00\x00"), SIX[:6], "bad magic"),
    "bin-truncated": (hand_idx(8, [3, 2, 1], [0, 6, 10], [0, 1, 2, 3]), SIX[:10], "truncated"),
    "empty-dataset": (hand_idx(8, [], [], [0]), b"", "holds no tokens"),
}
ISSUE_CORRUPT = {"negative-size", "pointer-not-running-sum", "pointer-past-bin-end", "float-tokens",
                 "bin-of-another-dataset", "int32-labelled-uint16", "empty-dataset"}


def yml(d: Path, name: str, cfg) -> str:
    path = d / name
    path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


# ------------------------------------------------------------------------------------------ cases
@dataclass
class Case:
    id: str
    setup: Callable[[Path], List[str]]
    """Builds the inputs in the case directory; returns the argv of ``neox-cpt``."""
    expect: Sequence[str]
    """Substrings the error line must contain (the key or the file at fault)."""
    forbid: Sequence[str] = ()
    """Substrings it must not contain (the wrong thing the issue saw blamed)."""
    issue: bool = False
    """Listed in issue 10 (failed before its fix)."""
    rc: int = 2
    lines: int = 1
    """Lines on stderr; 2: argparse's own error (its usage, possibly wrapped, then the error line)."""


CASES: List[Case] = []


def case(id: str, setup, expect, forbid=(), issue=False, rc=2, lines=1) -> None:
    CASES.append(Case(id, setup, tuple(expect), tuple(forbid), issue, rc, lines))


# --- neox-cpt schedule: one stage YAML each ---------------------------------------------------------
GOOD = "cpt_lr_max: 3.0e-4\ncpt_stage_iters: 1000\n"
SCHEDULE_YAML: List[Tuple[str, str, Sequence[str], Sequence[str], bool]] = [
    # id, YAML, expect, forbid, issue
    ("stage-iter-typo", "cpt_lr_max: 3.0e-4\ntrain_iters: 500\ncpt_stage_iter: 1000\n",
     ["cpt_stage_iter ", "did you mean 'cpt_stage_iters'"], [], True),
    ("duplicate-key-one-file", GOOD + "cpt_lr_max: 1.0e-4\n", ["cpt_lr_max", "twice", "lines 1 and 3"], [], True),
    ("schedule-as-list", GOOD + "cpt_lr_schedule: [cosine]\n", ["cpt_lr_schedule"], [], True),
    ("schedule-as-mapping", GOOD + "cpt_lr_schedule: {cosine: 1}\n", ["cpt_lr_schedule"], [], True),
    ("optimizer-params-list", "cpt_stage_iters: 1000\noptimizer: {params: [1]}\n", ["optimizer.params"], [], True),
    ("optimizer-as-list", "cpt_stage_iters: 1000\noptimizer: [adam]\n", ["optimizer"], [], False),
    ("anneal-inside-warmup", "cpt_lr_schedule: infinite\ncpt_lr_max: 3.0e-4\ncpt_stage_iters: 1000\n"
     "cpt_warmup_frac: 0.1\ncpt_anneal_start_frac: 0.05\n", ["cpt_anneal_start_frac", "inside the warmup"],
     ["None", "cpt_cooldown_end_frac"], True),
    ("one-step-stage", "cpt_lr_max: 3.0e-4\ncpt_stage_iters: 1\n", ["cpt_warmup_frac (default 0.01)"], ["None"],
     True),
    ("seq-length-typo", GOOD + "seq_lenght: 4096\n", ["seq_lenght", "did you mean 'seq_length'"], [], True),
    ("train-batch-typo", GOOD + "train_batch_sise: 8\n", ["train_batch_sise", "'train_batch_size'"], [], False),
    ("warmup-key-typo", GOOD + "cpt_warmup_fraction: 0.01\n", ["cpt_warmup_fraction", "'cpt_warmup_frac'"], [],
     False),
    ("lr-max-as-text", "cpt_lr_max: 3e-4\ncpt_stage_iters: 1000\n", ["cpt_lr_max", "1.0e-4"], [], False),
    ("lr-max-negative", "cpt_lr_max: -3.0e-4\ncpt_stage_iters: 1000\n", ["cpt_lr_max"], [], False),
    ("lr-max-bool", "cpt_lr_max: true\ncpt_stage_iters: 1000\n", ["cpt_lr_max"], [], False),
    ("lr-max-nan", "cpt_lr_max: .nan\ncpt_stage_iters: 1000\n", ["cpt_lr_max"], [], False),
    ("lr-max-inf", "cpt_lr_max: .inf\ncpt_stage_iters: 1000\n", ["cpt_lr_max"], [], False),
    ("lr-min-above-max", GOOD + "cpt_lr_min: 1.0e-3\n", ["cpt_lr_min"], [], False),
    ("lr-min-negative", GOOD + "cpt_lr_min: -1.0e-5\n", ["cpt_lr_min"], [], False),
    ("recipe-typo", GOOD + "cpt_lr_schedule: cosin\n", ["cpt_lr_schedule", "did you mean 'cosine'"], [], False),
    ("warmup-frac-one", GOOD + "cpt_warmup_frac: 1.0\n", ["cpt_warmup_frac"], [], False),
    ("warmup-frac-negative", GOOD + "cpt_warmup_frac: -0.1\n", ["cpt_warmup_frac"], [], False),
    ("warmup-frac-and-iters", GOOD + "cpt_warmup_frac: 0.1\ncpt_warmup_iters: 10\n",
     ["cpt_warmup_frac", "cpt_warmup_iters"], [], False),
    ("warmup-iters-fractional", GOOD + "cpt_warmup_iters: 2.5\n", ["cpt_warmup_iters"], [], False),
    ("warmup-longer-than-stage", GOOD + "cpt_warmup_iters: 1000\n", ["cpt_warmup_iters = 1000"], [], False),
    ("stage-iters-zero", "cpt_lr_max: 3.0e-4\ncpt_stage_iters: 0\n", ["cpt_stage_iters"], [], False),
    ("stage-iters-negative", "cpt_lr_max: 3.0e-4\ncpt_stage_iters: -5\n", ["cpt_stage_iters"], [], False),
    ("stage-iters-as-text", "cpt_lr_max: 3.0e-4\ncpt_stage_iters: '1000'\n", ["cpt_stage_iters"], [], False),
    ("stage-iters-and-tokens", GOOD + "cpt_stage_tokens: 100000\n", ["cpt_stage_iters", "cpt_stage_tokens"], [],
     False),
    ("stage-tokens-without-batch", "cpt_lr_max: 3.0e-4\ncpt_stage_tokens: 100000\n", ["cpt_stage_tokens"], [],
     False),
    ("no-stage-length", "cpt_lr_max: 3.0e-4\n", ["cpt_stage_iters", "train_iters"], [], False),
    ("no-lr", "cpt_stage_iters: 1000\n", ["cpt_lr_max"], [], False),
    ("first-stage-flag-as-text", GOOD + "cpt_lr_schedule: infinite\ncpt_infinite_first_stage: 'yes'\n",
     ["cpt_infinite_first_stage"], [], False),
    ("cooldown-shape-unknown", GOOD + "cpt_lr_schedule: infinite\ncpt_cooldown_shape: square\n",
     ["cpt_cooldown_shape"], [], False),
    ("decay-shape-unknown", GOOD + "cpt_lr_schedule: wsd\ncpt_decay_shape: square\n", ["cpt_decay_shape"], [],
     False),
    ("decay-frac-above-one", GOOD + "cpt_lr_schedule: wsd\ncpt_decay_frac: 1.5\n", ["cpt_decay_frac"], [], False),
    ("alpha-zero", GOOD + "cpt_lr_schedule: infinite\ncpt_cooldown_shape: inv_sqrt\ncpt_inv_sqrt_alpha: 0\n",
     ["cpt_inv_sqrt_alpha"], [], False),
    ("lr-const-outside", GOOD + "cpt_lr_schedule: infinite\ncpt_lr_const: 1.0e-3\n", ["cpt_lr_const"], [], False),
    ("anneal-keys-disagree", GOOD + "cpt_lr_schedule: infinite\ncpt_anneal_start_frac: 0.8\ncpt_anneal_frac: 0.1\n",
     ["cpt_anneal_start_frac", "cpt_anneal_frac"], [], False),
    ("anneal-after-stage", GOOD + "cpt_lr_schedule: infinite\ncpt_anneal_start_iter: 1000\n",
     ["cpt_anneal_start_iter"], [], False),
    ("cooldown-inside-warmup", GOOD + "cpt_lr_schedule: infinite\ncpt_warmup_frac: 0.1\n"
     "cpt_cooldown_end_frac: 0.05\n", ["cpt_cooldown_end_frac = 0.05"], [], False),
    ("exp-decay-to-zero", GOOD + "cpt_lr_schedule: wsd\ncpt_decay_shape: exp\ncpt_lr_min: 0.0\n", ["cpt_lr_min"],
     [], False),
    ("stage-name-as-list", GOOD + "cpt_stage_name: [d1]\n", ["cpt_stage_name"], [], False),
    ("reset-optimizer-as-text", GOOD + "cpt_reset_optimizer: 'no'\n", ["cpt_reset_optimizer", "true or false"],
     [], False),
    ("weights-as-text", GOOD + "cpt_train_data_weights: heavy\n", ["cpt_train_data_weights"], [], False),
    ("not-yaml", "cpt_lr_max: [3.0e-4\n", ["stage.yml", "not valid YAML"], [], False),
    ("yaml-list-at-top", "- cpt_lr_max\n", ["stage.yml", "mapping"], [], False),
    ("dash-and-underscore-spelling", GOOD + "cpt-lr-max: 1.0e-4\n", ["cpt_lr_max", "twice"], [], False),
]
for _id, _text, _expect, _forbid, _issue in SCHEDULE_YAML:
    case(f"schedule/{_id}", lambda d, t=_text: ["schedule", yml(d, "stage.yml", t)], _expect, _forbid, _issue)


def _bytes_config(d: Path) -> List[str]:
    (d / "stage.yml").write_bytes(b"cpt_lr_max: 3.0e-4\ncpt_stage_name: d\xe9but\ncpt_stage_iters: 1000\n")
    return ["schedule", str(d / "stage.yml")]


def _dir_config(d: Path) -> List[str]:
    (d / "configs").mkdir()
    return ["schedule", str(d / "configs")]


case("schedule/config-not-utf8", _bytes_config, ["stage.yml", "UTF-8"], issue=True)
case("schedule/config-is-directory", _dir_config, ["configs", "is a directory"], ["does not exist"], issue=True)
case("schedule/config-missing", lambda d: ["schedule", str(d / "nope.yml")], ["nope.yml", "does not exist"])
case("schedule/steps-nan", lambda d: ["schedule", yml(d, "s.yml", GOOD), "--steps", "nan"], ["--steps", "nan"],
     ["before the plan"], issue=True)
case("schedule/steps-inf", lambda d: ["schedule", yml(d, "s.yml", GOOD), "--steps", "0,inf"], ["--steps", "inf"],
     ["before the plan"])
case("schedule/steps-negative", lambda d: ["schedule", yml(d, "s.yml", GOOD), "--steps", "-5"],
     ["--steps", "before the plan starts"])
case("schedule/steps-text", lambda d: ["schedule", yml(d, "s.yml", GOOD), "--steps", "abc"], ["--steps", "abc"])
case("schedule/steps-zero-stride", lambda d: ["schedule", yml(d, "s.yml", GOOD), "--steps", "0:10:0"],
     ["--steps", "0:10:0"])
case("schedule/key-in-two-files", lambda d: ["schedule", yml(d, "a.yml", GOOD) + "," + yml(d, "b.yml", GOOD)],
     ["cpt_lr_max", "a.yml", "b.yml"])
case("schedule/stage-starts-before-previous-ends",
     lambda d: ["schedule", yml(d, "a.yml", GOOD), yml(d, "b.yml", GOOD + "cpt_stage_start_iter: 500\n")],
     ["stage"])
case("schedule/argparse-no-config", lambda d: ["schedule"], ["CONFIG.yml"], lines=2)


# --- neox-cpt build-index ----------------------------------------------------------------------------
def stage_cfg(d: Path, **extra) -> dict:
    new = write_data(d / "data" / "new_text_document")
    old = write_data(d / "data" / "old_text_document")
    cfg = {"cpt_train_data_paths": [new], "cpt_replay_data_paths": [old], "cpt_replay_frac": 0.1,
           "cpt_index_cache_dir": str(d / "cache"), "train_iters": 5, "train_batch_size": 4, "seq_length": 8,
           "seed": 3, "cpt_valid_data_paths": [old]}
    cfg.update(extra)
    return {k: v for k, v in cfg.items() if v is not None}


def build(d: Path, *flags: str, **extra) -> List[str]:
    """A build-index stage on good new/old data (the old data also validates) plus ``extra`` keys."""
    return ["build-index", yml(d, "stage.yml", stage_cfg(d, **extra)), "--quiet", *flags]


case("build-index/replay-frac-typo", lambda d: build(d, cpt_replay_frac=None, cpt_replay_fraction=0.25),
     ["cpt_replay_fraction", "did you mean 'cpt_replay_frac'"], issue=True)
case("build-index/seq-length-typo", lambda d: build(d, seq_length=None, seq_lenght=8),
     ["seq_lenght", "'seq_length'"], issue=True)
case("build-index/replay-frac-rounds-to-all", lambda d: build(d, cpt_replay_frac=0.9999996),
     ["cpt_replay_frac", "0.9999996"], issue=True)
case("build-index/replay-frac-rounds-to-none", lambda d: build(d, cpt_replay_frac=4e-7), ["cpt_replay_frac"])
case("build-index/replay-frac-one", lambda d: build(d, cpt_replay_frac=1.0), ["cpt_replay_frac"])
case("build-index/replay-frac-as-text", lambda d: build(d, cpt_replay_frac="5%"), ["cpt_replay_frac"])
case("build-index/replay-without-sources", lambda d: build(d, cpt_replay_data_paths=None),
     ["cpt_replay_frac", "cpt_replay_data_paths"])
case("build-index/weights-count", lambda d: build(d, cpt_train_data_weights=[1, 2]), ["cpt_train_data_weights"])
case("build-index/weight-negative", lambda d: build(d, cpt_train_data_weights=[-1]), ["cpt_train_data_weights"])
case("build-index/weight-as-text", lambda d: build(d, cpt_replay_data_weights=["x"]), ["cpt_replay_data_weights"])
case("build-index/missing-prefix", lambda d: build(d, cpt_train_data_paths=[str(d / "nope_text_document")]),
     ["cpt_train_data_paths[0]", "nope_text_document"])
case("build-index/unknown-plugin-key", lambda d: build(d, cpt_replay_shuffle=True), ["cpt_replay_shuffle"])
case("build-index/schedule-refused-before-building", lambda d: build(d, cpt_lr_max=3.0e-4, cpt_warmup_iters=10),
     ["cpt_warmup_iters = 10"])
case("build-index/check-flag-broken-data",
     lambda d: build(d, "--check", cpt_train_data_paths=[raw_data(d / "bad", *CORRUPT["negative-size"][:2])]),
     ["cpt_train_data_paths[0]", "bad.idx", "negative size"])

case("build-index/source-cycled-millions-of-times",
     lambda d: build(d, cpt_replay_data_paths=[write_data(d / "data" / "tiny_text_document", num_docs=1)],
                     cpt_replay_frac=0.5, train_iters=20_000, cpt_valid_data_paths=None),
     ["tiny_text_document", "epochs, above cpt_max_epochs = 1000"], issue=True)


def _bin_suffix(d: Path) -> List[str]:
    argv = build(d)
    cfg = yaml.safe_load(Path(argv[1]).read_text())
    cfg["cpt_train_data_paths"] = [cfg["cpt_train_data_paths"][0] + ".bin"]
    return ["build-index", yml(d, "stage.yml", cfg), "--quiet"]


def _dup_key(d: Path) -> List[str]:
    argv = build(d)
    Path(argv[1]).write_text(Path(argv[1]).read_text() + "seed: 4\n")
    return argv


case("build-index/prefix-with-bin-suffix", _bin_suffix, ["cpt_train_data_paths[0]", "new_text_document.bin"],
     issue=True)
case("build-index/duplicate-key", _dup_key, ["seed", "twice"], issue=True)
for _name, (_idx, _bin, _what) in CORRUPT.items():
    case(f"build-index/{_name}",
         lambda d, i=_idx, b=_bin: build(d, cpt_train_data_paths=[raw_data(d / "bad", i, b)]),
         ["cpt_train_data_paths[0]", "bad.", _what], ["num_samples"], issue=_name in ISSUE_CORRUPT)
    case(f"build-index/valid-{_name}",
         lambda d, i=_idx, b=_bin: build(d, cpt_valid_data_paths=[raw_data(d / "val", i, b)]),
         ["cpt_valid_data_paths[0]", "val.", _what], ["num_samples=-1"], issue=_name == "empty-dataset")


# --- neox-cpt preprocess ------------------------------------------------------------------------------
TEXTS = ["The quick brown fox jumps over the lazy dog.", "Replay mixes old data into every batch."] * 5


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory) -> str:
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                             initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TEXTS, trainer)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return str(path)


CTX: Dict[str, object] = {}
"""Module fixtures the case setups use (set by test_bad_input): "tokenizer" (a path), "sources" (train helpers)."""


def pre(d: Path, inputs: Sequence[str], *flags: str, out: Optional[str] = None) -> List[str]:
    return ["preprocess", "--input", ",".join(inputs), "--tokenizer", str(CTX["tokenizer"]),
            "--output-prefix", out or str(d / "out" / "ds"), "--no-progress", *flags]


def jsonl(d: Path, lines: Sequence[str], name: str = "in.jsonl") -> str:
    (d / name).write_text("".join(line + "\n" for line in lines))
    return str(d / name)


def _gz_not_gzip(d: Path) -> List[str]:
    (d / "in.jsonl.gz").write_text('{"text": "plain text, not gzip"}\n')
    return pre(d, [str(d / "in.jsonl.gz")])


def _gz_truncated(d: Path) -> List[str]:
    blob = gzip.compress(("".join('{"text": "%s"}\n' % t for t in TEXTS * 20)).encode())
    (d / "in.jsonl.gz").write_bytes(blob[: len(blob) // 2])
    return pre(d, [str(d / "in.jsonl.gz")])


def _latin1(d: Path) -> List[str]:
    (d / "in.txt").write_bytes("caf\u00e9 cr\u00e8me".encode("latin-1"))
    return pre(d, [str(d / "in.txt")])


def _parent_is_file(d: Path) -> List[str]:
    (d / "taken").write_text("a file")
    return pre(d, [jsonl(d, ['{"text": "hi there"}'])], out=str(d / "taken" / "ds"))


def _spm_missing(d: Path) -> List[str]:
    (d / "spm.model").write_bytes(b"\x0a\x0bnot really")
    return ["preprocess", "--input", jsonl(d, ['{"text": "hi"}']), "--tokenizer", str(d / "spm.model"),
            "--output-prefix", str(d / "out" / "ds"), "--no-progress"]


def _tokenizer_dir(d: Path) -> List[str]:
    (d / "tok").mkdir()
    return ["preprocess", "--input", jsonl(d, ['{"text": "hi"}']), "--tokenizer", str(d / "tok"),
            "--output-prefix", str(d / "out" / "ds")]


def _bad_tokenizer(d: Path) -> List[str]:
    (d / "tokenizer.json").write_text("{not json")
    return ["preprocess", "--input", jsonl(d, ['{"text": "hi"}']), "--tokenizer", str(d / "tokenizer.json"),
            "--output-prefix", str(d / "out" / "ds")]


def _input_dir(d: Path) -> List[str]:
    (d / "corpus").mkdir()
    return pre(d, [str(d / "corpus")])


case("preprocess/empty-input", lambda d: pre(d, [jsonl(d, [])]), ["--input", "no document"], issue=True)
case("preprocess/only-empty-documents", lambda d: pre(d, [jsonl(d, ['{"text": ""}'] * 3)]),
     ["--input", "no document"], issue=True)
case("preprocess/not-gzip", _gz_not_gzip, ["in.jsonl.gz", "gzip"], issue=True)
case("preprocess/truncated-gzip", _gz_truncated, ["in.jsonl.gz", "gzip"], issue=True)
case("preprocess/output-parent-is-a-file", _parent_is_file, ["--output-prefix", "taken"], issue=True)
case("preprocess/sentencepiece-missing", _spm_missing, ["spm.model", "pip install sentencepiece"], issue=True)
case("preprocess/not-utf8", _latin1, ["in.txt", "UTF-8"], issue=True)
case("preprocess/input-is-directory", _input_dir, ["corpus", "is a directory"], ["not found"], issue=True)
case("preprocess/tokenizer-is-directory", _tokenizer_dir, ["tok", "is a directory"], ["not found"], issue=True)
case("preprocess/missing-input", lambda d: pre(d, [str(d / "nope.jsonl")]), ["nope.jsonl", "not found"])
case("preprocess/bad-json-line", lambda d: pre(d, [jsonl(d, ['{"text": "a"}', "{oops"])]), ["in.jsonl:2", "JSON"])
case("preprocess/missing-json-key", lambda d: pre(d, [jsonl(d, ['{"body": "a"}'])]), ["in.jsonl:1", "--json-key"])
case("preprocess/text-not-string", lambda d: pre(d, [jsonl(d, ['{"text": 5}'])]), ["in.jsonl:1", "'text'"])
case("preprocess/tokenizer-missing", lambda d: ["preprocess", "--input", jsonl(d, ['{"text": "a"}']), "--tokenizer",
                                                 str(d / "nope.json"), "--output-prefix", str(d / "o")],
     ["--tokenizer", "nope.json"])
case("preprocess/tokenizer-invalid", _bad_tokenizer, ["--tokenizer", "tokenizer.json"])
case("preprocess/eod-out-of-range", lambda d: pre(d, [jsonl(d, ['{"text": "a"}'])], "--eod-id", "100000"),
     ["--eod-id"])
case("preprocess/workers-zero", lambda d: pre(d, [jsonl(d, ['{"text": "a"}'])], "--workers", "0"), ["--workers"])
case("preprocess/workers-not-a-number", lambda d: pre(d, [jsonl(d, ['{"text": "a"}'])], "--workers", "two"),
     ["--workers"], lines=2)
case("preprocess/dtype-unknown", lambda d: pre(d, [jsonl(d, ['{"text": "a"}'])], "--dtype", "float32"),
     ["--dtype"], lines=2)


# --- neox-cpt train (and --check) ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Dict[str, Dict[str, str]]:
    return make_sources(tmp_path_factory.mktemp("sources"))


def run_cfg(d: Path, srcs, mutate=None, text_suffix: str = "") -> str:
    cfg = base_config(copy.deepcopy(srcs))  # the module's sources mapping stays as it is
    if mutate:
        mutate(cfg)
    return yml(d, "run.yml", yaml.safe_dump(cfg, sort_keys=False) + text_suffix)


def train(d: Path, srcs, mutate=None, *flags: str, suffix: str = "") -> List[str]:
    return ["train", run_cfg(d, srcs, mutate, suffix), "--run-dir", str(d / "run"), *flags]


def with_source(name: str, split: str, prefix: str):
    def mutate(cfg):
        cfg["data"]["sources"][name] = dict(cfg["data"]["sources"][name], **{split: prefix})
    return mutate


TRAIN: List[Tuple[str, Callable, Sequence[str], Sequence[str], bool, Sequence[str]]] = [
    # id, setup(d, sources) -> argv, expect, forbid, issue, extra flags note
    ("vocab-below-data-check", lambda d, s: train(d, s, lambda c: c["model"].update(vocab_size=200), "--check"),
     ["model.vocab_size", "new_train.bin", "token id 299"], [], True, ()),
    ("vocab-below-data", lambda d, s: train(d, s, lambda c: c["model"].update(vocab_size=200)),
     ["model.vocab_size", "token id"], ["IndexError"], True, ()),
    ("duplicate-key", lambda d, s: train(d, s, None, suffix="seed: 3\n"), ["seed", "twice"], [], True, ()),
    ("unknown-top-key", lambda d, s: train(d, s, lambda c: c.update(batch_sise=4)), ["batch_sise", "'batch_size'"],
     [], False, ()),
    ("stage-cpt-typo", lambda d, s: train(d, s, lambda c: c["stages"][0].update(cpt_warmup_fraction=0.1)),
     ["cpt_warmup_fraction", "'cpt_warmup_frac'"], [], False, ()),
    ("schedule-as-list", lambda d, s: train(d, s, lambda c: c["stages"][0].update(cpt_lr_schedule=["cosine"])),
     ["cpt_lr_schedule"], [], True, ()),
    ("replay-frac-one", lambda d, s: train(d, s, lambda c: c["stages"][1].update(replay_frac=1.0)),
     ["stages[1].replay_frac"], [], False, ()),
    ("steps-negative", lambda d, s: train(d, s, lambda c: c["stages"][0].update(steps=-1)), ["stages[0].steps"], [],
     False, ()),
    ("heads-not-dividing", lambda d, s: train(d, s, lambda c: c["model"].update(num_heads=3)), ["model.num_heads"],
     [], False, ()),
    ("missing-train-prefix", lambda d, s: train(d, s, with_source("new", "train", str(d / "gone"))),
     ["data.sources.new.train", "gone"], [], False, ()),
    ("bin-suffix-prefix", lambda d, s: train(d, s, with_source("new", "train", s["new"]["train"] + ".bin")),
     ["data.sources.new.train", ".bin"], [], True, ()),
]
for _name in ("negative-size", "pointer-not-running-sum", "float-tokens", "int32-labelled-uint16", "empty-dataset"):
    TRAIN.append((f"train-data-{_name}",
                  lambda d, s, n=_name: train(d, s, with_source("new", "train", raw_data(d / "bad", *CORRUPT[n][:2]))),
                  ["data.sources.new.train", "bad.", CORRUPT[_name][2]], [], _name in ISSUE_CORRUPT, ()))
    TRAIN.append((f"valid-data-{_name}-check",
                  lambda d, s, n=_name: train(d, s, with_source("old", "valid", raw_data(d / "val", *CORRUPT[n][:2])),
                                              "--check"),
                  ["data.sources.old.valid", "val.", CORRUPT[_name][2]], ["num_samples=-1"],
                  _name in ISSUE_CORRUPT, ()))


def _config_dir(d: Path, s) -> List[str]:
    (d / "cfgdir").mkdir()
    return ["train", str(d / "cfgdir"), "--check"]


def _config_latin1(d: Path, s) -> List[str]:
    path = Path(run_cfg(d, s))
    path.write_bytes(path.read_bytes() + "name: d\u00e9mo\n".encode("latin-1"))
    return ["train", str(path), "--check"]


def _changed_on_resume(d: Path, s) -> List[str]:
    """A run directory holding a checkpoint of a 10-step d0; the config now says 12."""
    from neox_cpt.local.config import load_run_config
    from neox_cpt.local.trainer import _normalised

    saved = load_run_config(base_config(s))
    run = d / "run"
    (run / "checkpoints" / "step_3").mkdir(parents=True)
    (run / "checkpoints" / "step_3" / "state.json").write_text('{"global_step": 3}')
    (run / "checkpoints" / "latest").write_text("step_3\n")
    (run / "run.yml").write_text(yaml.safe_dump(_normalised(saved), sort_keys=False))
    return train(d, s, lambda c: c["stages"][0].update(steps=12))


def _fresh_bad_config(d: Path, s) -> List[str]:
    """--fresh deletes a run's outputs: an invalid config must stop before that."""
    (d / "run").mkdir()
    (d / "run" / "metrics.jsonl").write_text('{"kind": "train"}\n')
    return train(d, s, lambda c: c["stages"][0].update(cpt_lr_max="3e-4"), "--fresh")


TRAIN += [
    ("config-is-directory", _config_dir, ["cfgdir", "is a directory"], ["not found"], True, ()),
    ("config-not-utf8", _config_latin1, ["run.yml", "UTF-8"], [], True, ()),
    ("changed-config-names-key", _changed_on_resume, ["stages[0].num_steps: 10 -> 12"], [], True, ()),
    ("fresh-with-bad-config", _fresh_bad_config, ["cpt_lr_max"], [], False, ()),
]
for _id, _setup, _expect, _forbid, _issue, _ in TRAIN:
    case(f"train/{_id}", lambda d, f=_setup: f(d, CTX["sources"]), _expect, _forbid, _issue)


# --- runner -------------------------------------------------------------------------------------------
def snapshot(root: Path) -> Dict[str, Tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (-1, 0)
            for p in root.rglob("*")}


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input(c: Case, tmp_path, monkeypatch, capsys, request):
    if c.id.startswith("preprocess/"):
        CTX["tokenizer"] = request.getfixturevalue("tokenizer_path")
    if c.id.startswith("train/"):
        CTX["sources"] = request.getfixturevalue("sources")
    monkeypatch.chdir(tmp_path)
    if c.id == "preprocess/sentencepiece-missing":
        monkeypatch.setitem(sys.modules, "sentencepiece", None)  # as if not installed
    argv = c.setup(tmp_path)
    before = snapshot(tmp_path)
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own errors (usage + one error line)
        rc = exc.code
    out, err = capsys.readouterr()
    assert rc == c.rc, err
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    if c.lines == 1:
        assert len(lines) == 1, err
    assert lines[-1].startswith(f"neox-cpt {argv[0]}: error: "), err
    for text in c.expect:
        assert text in lines[-1], f"{text!r} not in: {lines[-1]}"
    for text in c.forbid:
        assert text not in lines[-1], f"{text!r} in: {lines[-1]}"
    assert snapshot(tmp_path) == before, "the command wrote or deleted files"


def test_corpus_size_and_issue_items():
    assert len(CASES) + len(GRAFT) + len(OTHER) >= 100
    assert len({c.id for c in CASES}) == len(CASES)


# --- the NeoX graft: the function NeoXArgs.__post_init__ calls ----------------------------------------
NEOX = {"train_iters": 100, "train_batch_size": 8, "seq_length": 64, "optimizer": {"params": {"lr": 3.0e-4}}}
GRAFT: List[Tuple[str, dict, Sequence[str], bool]] = [
    ("schedule-as-list", {"cpt_lr_schedule": ["cosine"]}, ["cpt_lr_schedule"], True),
    ("schedule-as-mapping", {"cpt_lr_schedule": {"x": 1}}, ["cpt_lr_schedule"], True),
    ("optimizer-params-list", {"cpt_lr_schedule": "cosine", "optimizer": {"params": [1]}}, ["optimizer.params"],
     True),
    ("replay-frac-rounds-to-all", {"cpt_train_data_paths": ["a"], "cpt_replay_data_paths": ["b"],
                                   "cpt_replay_frac": 0.9999996}, ["cpt_replay_frac"], True),
    ("warmup-typo", {"cpt_lr_schedule": "cosine", "cpt_warmup_fraction": 0.01}, ["cpt_warmup_fraction"], False),
    ("lr-max-as-text", {"cpt_lr_max": "3e-4"}, ["cpt_lr_max"], False),
]


@pytest.mark.parametrize("cfg, expect", [(g[1], g[2]) for g in GRAFT], ids=[g[0] for g in GRAFT])
def test_neox_graft_refuses(cfg, expect):
    from neox_cpt.neox.graft import validate

    with pytest.raises(ValueError) as info:
        validate({**NEOX, **cfg})
    for text in expect:
        assert text in str(info.value)


# --- Ctrl-C, write errors, and the schedule change on resume ------------------------------------------
def main_interrupted(argv: List[str]) -> int:
    """``main(argv)`` for a simulated Ctrl-C; a KeyboardInterrupt escaping it fails this test, not the session."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped neox_cpt.cli.main (a traceback for the user)")


def _env() -> Dict[str, str]:
    return dict(os.environ, PYTHONPATH=PACKAGE_ROOT, OMP_NUM_THREADS="1")


def _files(root: Path) -> List[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_ctrl_c_in_preprocess_with_workers(tmp_path, tokenizer_path):
    """A real SIGINT to the process group: one line (no worker tracebacks), exit 130, no files, the command."""
    fifo = tmp_path / "in.jsonl"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "neox_cpt.cli", "preprocess", "--input", str(fifo), "--tokenizer",
                             tokenizer_path, "--output-prefix", str(out / "ds"), "--workers", "2", "--no-progress"],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=_env(), start_new_session=True,
                            text=True)
    deadline = time.monotonic() + 60
    while True:  # open the pipe's writing end once the command reads it (never block if it died first)
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
            time.sleep(0.05)
    os.set_blocking(fd, True)
    with os.fdopen(fd, "w") as writer:
        writer.write('{"text": "one document"}\n')
        writer.flush()
        while not list(out.glob("*.tmp")) and time.monotonic() < deadline:  # the writer is open: work started
            time.sleep(0.05)
        time.sleep(0.5)  # let the worker pool start
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("neox-cpt preprocess: interrupted; nothing was written"), err
    assert "to resume run: neox-cpt preprocess --input" in lines[0]
    assert _files(tmp_path) == [], "temporary files left behind"


def test_ctrl_c_in_build_index_publishes_nothing(tmp_path, monkeypatch, capsys):
    import neox_cpt.data.cache as cache

    def interrupted(out_dir, *args, **kwargs):
        (Path(out_dir) / "partial.npy").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(cache, "build_into", interrupted)
    monkeypatch.chdir(tmp_path)
    argv = build(tmp_path)
    before = _files(tmp_path)
    assert main_interrupted(argv) == 130
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("neox-cpt build-index: interrupted; no index was published"), err
    assert err.endswith(f"to resume run: neox-cpt build-index {argv[1]} --quiet")
    assert [f for f in _files(tmp_path) if not f.endswith(".lock")] == before


def test_ctrl_c_in_train_keeps_the_checkpoint_and_gives_the_resume_command(tmp_path, monkeypatch, capsys, sources):
    import neox_cpt.local.trainer as trainer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer._Run, "run_stage", interrupted)
    argv = train(tmp_path, sources, None, "--fresh")
    assert main_interrupted(argv) == 130
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith("neox-cpt train: interrupted; the last complete checkpoint is kept"), err
    assert err.endswith(f"to resume run: neox-cpt train {argv[1]} --run-dir {tmp_path / 'run'}")  # no --fresh


@pytest.mark.parametrize("command", ["preprocess", "build-index"])
def test_write_error_mid_build_is_one_line_and_leaves_nothing(tmp_path, tokenizer_path, command):
    """A file size limit makes a write fail half way (as a full disk would)."""
    if command == "preprocess":
        jsonl(tmp_path, ['{"text": "%s"}' % (" ".join(TEXTS) * 20)] * 50)
        CTX["tokenizer"] = tokenizer_path
        argv = pre(tmp_path, [str(tmp_path / "in.jsonl")])
        limit = 4096
    else:
        argv = build(tmp_path, train_iters=400)
        limit = 2048
    before = _files(tmp_path)

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([sys.executable, "-m", "neox_cpt.cli", *argv], capture_output=True, text=True,
                          env=_env(), preexec_fn=limited, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and " WARNING " not in line]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"neox-cpt {command}: error: '{tmp_path}"), lines[0]
    assert ("too large" if command == "preprocess" else "nothing was published") in lines[0], lines[0]
    assert [f for f in _files(tmp_path) if not f.endswith(".lock")] == before


def test_build_index_check_on_good_data_builds_nothing(tmp_path, capsys):
    argv = build(tmp_path, "--check")
    before = snapshot(tmp_path)
    assert main(argv) == 0
    assert "OK (3 dataset(s) checked); nothing built" in capsys.readouterr().out
    assert snapshot(tmp_path) == before


# --- valid input that was rejected or misread, and the API-level items -------------------------------
OTHER = ["infinite-lr-min-equals-max", "frac-rounds-half-up", "decay-shape-null", "plan-schedule-change"]


def test_infinite_with_equal_lr_min_and_max_written_with_17_digits(tmp_path, capsys):
    path = yml(tmp_path, "s.yml", "cpt_lr_schedule: infinite\ncpt_lr_max: 0.00030000000000000003\n"
               "cpt_lr_min: 0.00030000000000000003\ncpt_stage_iters: 1000\n")
    assert main(["schedule", path, "--csv"]) == 0, capsys.readouterr().err
    assert "stage0,constant,constant,600,1000,0.00030000000000000003,0.00030000000000000003" in capsys.readouterr().out


def test_frac_to_steps_rounds_the_written_fraction_half_up(tmp_path, capsys):
    path = yml(tmp_path, "s.yml", "cpt_lr_max: 3.0e-4\ncpt_stage_iters: 1500\ncpt_warmup_frac: 0.009\n")
    assert main(["schedule", path, "--csv"]) == 0
    assert "stage0,warmup,linear,0,14,0.0,0.0003" in capsys.readouterr().out  # 13.5 -> 14, not 13


def test_decay_shape_null_is_unset_as_in_neox(tmp_path, capsys):
    path = yml(tmp_path, "s.yml", "cpt_lr_schedule: wsd\ncpt_lr_max: 3.0e-4\ncpt_stage_iters: 100\n"
               "cpt_decay_shape: null\n")
    assert main(["schedule", path, "--csv"]) == 0, capsys.readouterr().err
    assert "stage0,decay,linear,80,100" in capsys.readouterr().out


def test_resume_of_a_changed_plan_names_stage_and_phase():
    torch = pytest.importorskip("torch")
    from neox_cpt.schedules import Plan, warmup_cosine
    from neox_cpt.schedules.torch_adapter import ScheduleLR

    def plan(lr):
        return Plan.from_schedules([warmup_cosine(100, 3e-4, warmup_steps=10), warmup_cosine(50, lr, warmup_steps=5)],
                                   names=["d0", "d1"])

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    state = ScheduleLR(opt, plan(3e-4), position=20).state_dict()
    with pytest.raises(ValueError, match=r"stage d1: phase 0 \(warmup\): lr_end 0\.0003 -> 0\.0002"):
        ScheduleLR(opt, plan(2e-4)).load_state_dict(state)
