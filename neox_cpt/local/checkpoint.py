"""Atomic local checkpoints: model, optimiser, RNG states and the three clocks.

Layout (``RUN_DIR/checkpoints``)::

    step_<global_step>/model.pt       model state_dict
    step_<global_step>/optimizer.pt   AdamW state_dict
    step_<global_step>/rng.pt         python, numpy, torch (and CUDA) RNG states
    step_<global_step>/state.json     the clocks: global_step; stage_index/stage_name + stage_step (the
                                      schedule position, with the scheduler's fingerprint); data_position
                                      (samples consumed from this stage's index); tokens (lineage);
                                      plus metrics_bytes (metrics.jsonl length to truncate to) and wall_s
    latest                            "step_<global_step>", written last

A checkpoint is written into ``.tmp-step_<g>``, every file fsynced, renamed into place (the directory
fsynced), and only then is ``latest`` replaced atomically, so a run killed at any point, or a power cut,
finds either the old or the new checkpoint, never half of one.

    >>> import tempfile, torch
    >>> root = tempfile.mkdtemp()
    >>> m = torch.nn.Linear(2, 2); opt = torch.optim.AdamW(m.parameters())
    >>> _ = save_checkpoint(root, {"global_step": 3, "stage_index": 0}, m, opt)
    >>> path, state = latest_checkpoint(root)
    >>> path.name, state["global_step"]
    ('step_3', 3)
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from neox_cpt.data.publish import fsync_path

PathLike = Union[str, "os.PathLike[str]"]
LATEST = "latest"
STATE = "state.json"



def write_text_atomic(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file, fsync and rename (then fsync the directory)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


def rng_state() -> Dict[str, Any]:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(root: PathLike, state: Mapping[str, Any], model: Any, optimizer: Any) -> Path:
    """Write ``step_<state['global_step']>`` atomically and point ``latest`` at it."""
    import torch

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{int(state['global_step'])}"
    tmp = root / f".tmp-{name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    torch.save(model.state_dict(), tmp / "model.pt")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(rng_state(), tmp / "rng.pt")
    write_text_atomic(tmp / STATE, json.dumps(dict(state), indent=1, sort_keys=True))
    for part in ("model.pt", "optimizer.pt", "rng.pt"):  # on disk before `latest` can name them (power cut)
        fsync_path(tmp / part)
    final = root / name
    if final.exists():  # left by a run killed after the rename but before `latest` moved: stale
        shutil.rmtree(final)
    os.rename(tmp, final)
    fsync_path(root)  # the rename is durable before `latest` moves to it
    write_text_atomic(root / LATEST, name + "\n")
    return final


def read_state(path: PathLike) -> Dict[str, Any]:
    path = Path(path) / STATE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {path.parent} is not a neox-cpt local checkpoint")
    return json.loads(path.read_text())


def latest_checkpoint(root: PathLike) -> Optional[Tuple[Path, Dict[str, Any]]]:
    """(path, state) of the checkpoint ``latest`` names, or None when there is none yet."""
    pointer = Path(root) / LATEST
    if not pointer.is_file():
        return None
    path = Path(root) / pointer.read_text().strip()
    return path, read_state(path)


def load_checkpoint(path: PathLike, model: Any, optimizer: Any = None, restore_rng: bool = False,
                    map_location: Any = "cpu") -> Dict[str, Any]:
    """Load the model (and optimiser, RNG) of a checkpoint directory in place; returns its state."""
    import torch

    path = Path(path)
    state = read_state(path)
    model.load_state_dict(torch.load(path / "model.pt", map_location=map_location, weights_only=True))
    if optimizer is not None:
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=map_location, weights_only=True))
    if restore_rng:
        set_rng_state(torch.load(path / "rng.pt", weights_only=False))
    return state


def stage_end_checkpoint(root: PathLike, stage_name: str) -> Optional[Path]:
    """The checkpoint saved at the end of stage ``stage_name`` (None if that stage has not finished)."""
    for path in _step_dirs(root)[::-1]:
        state = read_state(path)
        if state.get("stage_complete") and state.get("stage_name") == stage_name:
            return path
    return None


def _step_dirs(root: PathLike) -> List[Path]:
    """Complete ``step_<g>`` directories (with state.json), oldest first."""
    found = [p for p in Path(root).glob("step_*") if p.name[5:].isdigit() and (p / STATE).is_file()]
    return sorted(found, key=lambda p: int(p.name[5:]))


def resolve_init_checkpoint(path: PathLike) -> Path:
    """A checkpoint dir, or a run dir (its final checkpoint; the run must have finished)."""
    path = Path(path)
    if (path / STATE).is_file():
        return path
    for root in (path / "checkpoints", path):
        found = latest_checkpoint(root) if (root / LATEST).is_file() else None
        if found is not None:
            ckpt, state = found
            if not state.get("run_complete"):
                raise ValueError(f"init_from = {str(path)!r}: that run has not finished (its latest checkpoint is "
                                 f"{ckpt.name}); finish it first (`neox-cpt train` on its config) or give a "
                                 "checkpoint directory explicitly")
            return ckpt
    raise FileNotFoundError(f"init_from = {str(path)!r}: no checkpoint there (expected a run directory with "
                            "checkpoints/latest or a checkpoint directory with state.json)")


def prune_checkpoints(root: PathLike, keep: int) -> List[Path]:
    """Delete periodic checkpoints beyond the newest ``keep``; stage-end ones and ``latest`` stay."""
    root = Path(root)
    for stale in root.glob(".tmp-step_*"):
        shutil.rmtree(stale, ignore_errors=True)
    found = latest_checkpoint(root)
    latest = found[0].name if found else None
    periodic = [p for p in _step_dirs(root) if p.name != latest and not read_state(p).get("stage_complete")]
    doomed = periodic[: max(0, len(periodic) - max(0, keep - 1))] if latest else []
    for p in doomed:
        shutil.rmtree(p)
    return doomed
