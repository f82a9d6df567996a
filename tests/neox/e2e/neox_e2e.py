"""Launch stock GPT-NeoX (``python deepy.py train.py CFG.yml``) on the CPU and read what it wrote.

Used by the end-to-end suite (tests/neox/e2e). Where NeoX is: ``$NEOX_CPT_NEOX_ROOT``, else ``../gpt-neox`` next
to this repository's checkout; its Python: ``$NEOX_CPT_NEOX_PYTHON``, else ``<neox-root>/.venv/bin/python``.
Every launched process gets ``cpu_startup/`` (the tests' start-up hook) and this repository first on
``PYTHONPATH``, so it runs neox-cpt from this checkout (the hook checks it) whatever the NeoX venv holds.

    >>> neox = find_neox()                                          # doctest: +SKIP
    >>> run = launch(neox, tiny_config(...), workdir / "d0")       # doctest: +SKIP
    >>> merged_scalars(run.dir / "tb")["train/learning_rate"]       # doctest: +SKIP
"""
import dataclasses
import glob
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[3]
STARTUP = Path(__file__).resolve().parent / "cpu_startup"
ROOT_ENV, PYTHON_ENV = "NEOX_CPT_NEOX_ROOT", "NEOX_CPT_NEOX_PYTHON"
TIMINGS: Optional[Path] = None  # set by conftest: one line per launch (test, run, seconds, rc) for docs/neox.md

# Disjoint token ranges per source (CharLevelTokenizer: a token is a byte; 0 is the end-of-document token).
ALPHABETS = {"old": "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "new": "abcdefghijklmnopqrstuvwxyz", "digits": "0123456789",
             "punct": "!#$%&()*+,-./:;<=>?@[]^_{|}~"}


def source_of_token(token: int) -> Optional[str]:
    """Which source a token id belongs to (None for the end-of-document token 0)."""
    if token == 0:
        return None
    for name, letters in ALPHABETS.items():
        if chr(token) in letters:
            return name
    raise ValueError(f"token {token} belongs to no source")


def source_of_sample(sample) -> str:
    """The one source of a sample (every non-EOD token must agree: samples never mix sources)."""
    sources = {source_of_token(int(t)) for t in sample} - {None}
    if len(sources) != 1:
        raise AssertionError(f"sample mixes sources {sorted(sources)}")
    return sources.pop()


# Layouts of scenario c. pipe_parallel_size 0 is NeoX without DeepSpeed's pipeline engine; pp1 is the engine with
# one stage (NeoX's default and the shipped configs') and DP 2. A D0 checkpoint is shared where NeoX/DeepSpeed can
# load it (same TP/PP, ZeRO 0's optimizer state is not sharded, so DP 2 loads the 1-process D0); `d0` names the D0
# each layout starts from.
LAYOUTS: Dict[str, dict] = {
    "1proc": {"d0": "1proc", "cfg": {}},
    "dp2": {"d0": "1proc", "cfg": {"num_gpus": 2, "train_micro_batch_size_per_gpu": 4}},
    "tp2": {"d0": "tp2", "cfg": {"num_gpus": 2, "model_parallel_size": 2}},
    "pp1": {"d0": "pp1", "cfg": {"num_gpus": 2, "pipe_parallel_size": 1, "train_micro_batch_size_per_gpu": 4}},
    "pp2": {"d0": "pp2", "cfg": {"num_gpus": 2, "pipe_parallel_size": 2}},
    "zero1": {"d0": "zero1", "cfg": {"num_gpus": 2, "train_micro_batch_size_per_gpu": 4,
                                      "zero_optimization": {"stage": 1}}},
}
PIPELINE_NO_EVAL = "NeoX's pipeline engine evaluates with DeeperSpeed's eval_batch; stock DeepSpeed's crashes"

D0_ITERS, D1_ITERS = 10, 12


def is_pipeline(layout: str) -> bool:
    return LAYOUTS[layout]["cfg"].get("pipe_parallel_size", 0) > 0


@dataclasses.dataclass(frozen=True)
class Neox:
    root: Path
    python: Path


def find_neox() -> "Neox | str":
    """The NeoX checkout and its Python, or the one-line reason the suite skips."""
    root = Path(os.environ.get(ROOT_ENV) or REPO.parent / "gpt-neox")
    python = Path(os.environ.get(PYTHON_ENV) or root / ".venv" / "bin" / "python")
    if not (root / "deepy.py").is_file() or not (root / "megatron" / "training.py").is_file():
        return (f"no GPT-NeoX checkout at {root} (set {ROOT_ENV}, or clone it to ../gpt-neox; "
                "docs/neox.md 'End-to-end suite' says how)")
    if not os.access(python, os.X_OK):
        return f"no Python for GPT-NeoX at {python} (set {PYTHON_ENV}; docs/neox.md 'End-to-end suite')"
    return Neox(root, python)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_env(neox: Neox, record_dir: Optional[Path] = None) -> Dict[str, str]:
    env = dict(os.environ)
    for key in ("NEOX_CPT_DISABLE", "NEOX_CPT_E2E_RECORD", "VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(key, None)
    env.update(PYTHONPATH=os.pathsep.join([str(STARTUP), str(REPO), str(neox.root)]), NEOX_CPT_E2E_REPO=str(REPO),
               DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    if record_dir is not None:
        env["NEOX_CPT_E2E_RECORD"] = str(record_dir)
    return env


# --- data -------------------------------------------------------------------------------------------------
def write_sources(neox: Neox, data_dir: Path, names=("old", "new", "digits", "punct"), num_docs: int = 120) -> Dict[str, str]:
    """One jsonl per source (random letters of its alphabet), tokenized by NeoX's preprocess_data.py."""
    import random

    data_dir.mkdir(parents=True, exist_ok=True)
    calls = []
    for i, name in enumerate(names):
        rng = random.Random(i)
        with open(data_dir / f"{name}.jsonl", "w") as f:
            for _ in range(num_docs):
                f.write(json.dumps({"text": "".join(rng.choice(ALPHABETS[name]) for _ in range(rng.randint(20, 160)))})
                        + "\n")
        calls.append(["--input", str(data_dir / f"{name}.jsonl"), "--output-prefix", str(data_dir / name),
                      "--tokenizer-type", "CharLevelTokenizer", "--append-eod", "--workers", "1"])
    # NeoX's own tool, all sources in one interpreter (its main() takes an argument list)
    code = ("import sys; sys.path.insert(0, 'tools/datasets'); from preprocess_data import main\n"
            f"for argv in {calls!r}: main(argv)")
    proc = subprocess.run([str(neox.python), "-c", code], cwd=neox.root, env=launch_env(neox), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"preprocess_data.py failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return {name: str(data_dir / f"{name}_text_document") for name in names}


# --- configs ----------------------------------------------------------------------------------------------
def tiny_config(run_dir: Path, **overrides) -> dict:
    """A 2-layer, d=64, seq-64 fp32 model on gloo, as NeoX's CPU recipe needs (docs/neox.md)."""
    cfg = {
        "pipe_parallel_size": 0, "model_parallel_size": 1, "num_gpus": 1,
        "num_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "seq_length": 64,
        "max_position_embeddings": 64, "pos_emb": "rotary", "no_weight_tying": True, "norm": "layernorm",
        "attention_config": [[["global"], 2]], "precision": "fp32",
        "optimizer": {"type": "Adam", "params": {"lr": 0.001, "betas": [0.9, 0.95], "eps": 1.0e-8}},
        "train_micro_batch_size_per_gpu": 8, "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": 0}, "hidden_dropout": 0.0, "attention_dropout": 0.0,
        "data_impl": "mmap", "num_workers": 0, "tokenizer_type": "CharLevelTokenizer",
        "save": str(run_dir / "ckpt"), "checkpoint_factor": 4, "eval_interval": 4, "eval_iters": 2,
        "log_interval": 1, "steps_per_print": 1000, "tensorboard_dir": str(run_dir / "tb"),
        "log_dir": str(run_dir / "logs"), "distributed_backend": "gloo", "seed": 1234,
    }
    cfg.update(overrides)
    cfg.setdefault("global_num_gpus", cfg["num_gpus"])
    data_parallel = cfg["global_num_gpus"] // (cfg["model_parallel_size"] * max(cfg["pipe_parallel_size"], 1))
    cfg.setdefault("train_batch_size", cfg["train_micro_batch_size_per_gpu"] * cfg["gradient_accumulation_steps"]
                   * data_parallel)  # given, as the shipped configs do (scenario g drops it)
    return cfg


@dataclasses.dataclass
class Launch:
    dir: Path
    config: Path
    returncode: int
    log: str
    seconds: float
    killed_at: Optional[int] = None
    preflight: Optional["Preflight"] = None

    def lines(self, prefix: str) -> List[str]:
        return [line.strip() for line in self.log.splitlines() if line.strip().startswith(prefix)]

    def plan(self) -> Optional[dict]:
        """The launch plan the plugin logged on rank 0 (``neox-cpt plan: {json}``), if any."""
        plans = [line[len("neox-cpt plan:"):] for line in self.lines("neox-cpt plan:")]
        return json.loads(plans[-1]) if plans else None

    def iterations(self) -> List[int]:
        return [int(m.group(1)) for m in re.finditer(r"iteration\s+(\d+)/\s*\d+ \|", self.log)]


def cli(*args: str) -> subprocess.CompletedProcess:
    """``neox-cpt ARGS`` of this checkout (first on PYTHONPATH: an installed neox-cpt cannot answer instead)."""
    import sys

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "neox_cpt.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=120)


@dataclasses.dataclass
class Preflight:
    returncode: int
    plan: Optional[dict]
    output: str


def preflight(config: Path, num_gpus: int) -> Preflight:
    """``neox-cpt preflight CONFIG --json --gpus N`` (this checkout's CLI, no NeoX), run before a launch."""
    proc = cli("preflight", str(config), "--json", "--gpus", str(num_gpus))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return Preflight(proc.returncode, json.loads(lines[-1]) if lines else None, proc.stdout + proc.stderr)


ITERATION_LINE = re.compile(r"iteration\s+(\d+)/\s*\d+ \|")


def launch(neox: Neox, cfg: dict, run_dir: Path, name: str = "run", kill_after_iteration: Optional[int] = None,
           timeout: float = 300, config_name: Optional[str] = None) -> Launch:
    """``python deepy.py train.py <run_dir>/<config_name>.yml`` from the NeoX root (a fresh master port unless
    ``cfg`` sets one; ``config_name`` defaults to ``name``: a relaunch passes the first launch's name).

    ``kill_after_iteration``: SIGKILL the whole process group (deepy, launcher, workers) as soon as NeoX logs
    that iteration, as a crash would. Training micro-batches are recorded under ``run_dir/batches-<name>``.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    record = run_dir / f"batches-{name}"
    record.mkdir(exist_ok=True)
    cfg = dict(cfg)
    cfg.setdefault("master_port", free_port())
    path = run_dir / f"{config_name or name}.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    checked = preflight(path, cfg["global_num_gpus"]) if any(k.startswith("cpt_") for k in cfg) else None
    started = time.monotonic()
    proc = subprocess.Popen([str(neox.python), "deepy.py", "train.py", str(path)], cwd=neox.root,
                            env=launch_env(neox, record), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    out, killed = [], None
    try:
        for line in proc.stdout:
            out.append(line)
            m = ITERATION_LINE.search(line)
            if kill_after_iteration is not None and m and int(m.group(1)) >= kill_after_iteration and killed is None:
                killed = int(m.group(1))
                os.killpg(proc.pid, signal.SIGKILL)
            if time.monotonic() - started > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                raise AssertionError(f"{path} ran past {timeout} s:\n{''.join(out)[-4000:]}")
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = "".join(out)
    (run_dir / f"{name}.log").write_text(text)
    if TIMINGS is not None:
        test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
        with open(TIMINGS, "a") as f:
            f.write(f"{test}\t{run_dir.name}/{name}\t{time.monotonic() - started:.1f}\t{proc.returncode}\n")
    return Launch(run_dir, path, proc.returncode, text, time.monotonic() - started, killed, checked)


def check_ok(run: Launch) -> Launch:
    """The launch finished with 0 and ran neox_cpt from this checkout in every process."""
    assert run.returncode == 0, f"{run.config} failed (rc {run.returncode}):\n{run.log[-6000:]}"
    return check_checkout(run)


def check_checkout(run: Launch) -> Launch:
    starts = run.lines("neox-cpt-e2e: startup")
    assert starts, f"the start-up hook did not run:\n{run.log[-3000:]}"
    for line in starts:
        where = line.split("neox_cpt=", 1)[1]
        assert where.startswith(str(REPO) + os.sep), f"a launched process imported neox_cpt from {where}, not {REPO}"
    return run


# --- NeoX's outputs ---------------------------------------------------------------------------------------
def tensorboard_scalars(tb_dir: Path) -> List[Dict[str, Dict[int, float]]]:
    """Per event file (oldest first, one per launch): {tag: {step: value}} of NeoX's TensorBoard scalars."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    files = sorted(glob.glob(str(tb_dir / "**" / "events.out.tfevents.*"), recursive=True),
                   key=lambda f: (int(f.split("tfevents.")[1].split(".")[0]), os.path.getmtime(f)))
    out = []
    for f in files:
        scalars: Dict[str, Dict[int, float]] = {}
        for event in EventFileLoader(f).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "scalars" or value.HasField("simple_value"):
                    number = value.tensor.float_val[0] if value.HasField("tensor") else value.simple_value
                    scalars.setdefault(value.tag, {})[int(event.step)] = float(number)
        out.append(scalars)
    return out


def merged_scalars(tb_dir: Path) -> Dict[str, Dict[int, float]]:
    """What a reader of the run sees: later launches overwrite the steps they redo."""
    merged: Dict[str, Dict[int, float]] = {}
    for scalars in tensorboard_scalars(tb_dir):
        for tag, values in scalars.items():
            merged.setdefault(tag, {}).update(values)
    return merged


def recorded_batches(run_dir: Path, name: str = "run") -> Dict[int, List[np.ndarray]]:
    """{global update (1-based): [micro-batch arrays in the order the loop used them]} of data-parallel ranks
    with model/pipe rank 0, micro-batches of one update ordered by (micro index, dp rank) like NeoX's loader."""
    per_update: Dict[int, Dict[int, List[np.ndarray]]] = {}
    for path in sorted((run_dir / f"batches-{name}").glob("batches.rank*.jsonl")):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if r["tp"] != 0 or r["pp"] != 0:
                continue
            per_update.setdefault(r["iteration"] + 1, {}).setdefault(r["dp"], []).append(np.array(r["text"]))
    out = {}
    for update, by_dp in per_update.items():
        num_micro = {len(v) for v in by_dp.values()}
        assert len(num_micro) == 1, f"update {update}: ranks saw different numbers of micro-batches"
        out[update] = [by_dp[dp][m] for m in range(num_micro.pop()) for dp in sorted(by_dp)]
    return out


def schedule_lrs(config: Path, steps: str) -> Dict[int, float]:
    """``neox-cpt schedule CONFIG --steps ... --csv``: the LR of each global step, as the CLI prints it."""
    proc = cli("schedule", str(config), "--steps", steps, "--csv")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split(",") for line in proc.stdout.strip().splitlines()[1:]]
    return {int(step): float(lr) for step, lr in rows}


def sidecar(run_dir: Path, iteration: int) -> dict:
    return json.loads((run_dir / "ckpt" / f"global_step{iteration}" / "neox_cpt_stage.json").read_text())


def assert_preflight_predicted(run: Launch) -> dict:
    """``neox-cpt preflight`` run before the launch predicted exactly the plan the launch logged."""
    assert run.preflight is not None, f"{run.config}: no preflight ran"
    assert run.preflight.returncode == 0 and run.preflight.plan, run.preflight.output
    logged = run.plan()
    assert logged is not None, f"{run.config}: the launch logged no plan:\n{run.log[-3000:]}"
    predicted = {k: v for k, v in run.preflight.plan.items() if k != "preflight"}
    assert predicted == logged
    assert run.preflight.plan["preflight"]["problems"] == []
    return run.preflight.plan
