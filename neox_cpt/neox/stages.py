"""What the checkpoint directories say: stage start vs. resume, a parent's data position, its consumed samples.

Stdlib only (PyYAML, a core dependency, for the YAML files NeoX archives beside a checkpoint).

A stage YAML names the checkpoint it starts from (``cpt_init_checkpoint``) and where it saves (``save``).
Every checkpoint the stage writes gets a sidecar ``<save>/global_stepN/neox_cpt_stage.json`` (written
*before* DeepSpeed writes ``latest``), so relaunching the same YAML and command resumes when
``<save>/latest`` names a checkpoint whose sidecar carries this ``cpt_stage_name``, and starts the stage
from ``cpt_init_checkpoint`` otherwise. NeoX's tag convention is ``global_step{iteration}``
(checkpointing.py:154) and ``latest`` holds the newest tag (DeepSpeed).

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "d0" / "global_step100").mkdir(parents=True); _ = (d / "d0" / "latest").write_text("global_step100")
    >>> resolve_checkpoint(str(d / "d0"), "cpt_init_checkpoint")
    CheckpointRef(load_dir='...d0', tag='global_step100', iteration=100)
    >>> decide(str(d / "d1"), "d1", str(d / "d0")).mode
    'start'
"""
import json
import os
import re
from typing import Any, Dict, Mapping, NamedTuple, Optional, Tuple, Union

SIDECAR = "neox_cpt_stage.json"
_TAG = re.compile(r"^global_step(\d+)$")


class CheckpointRef(NamedTuple):
    load_dir: str
    """The directory NeoX's ``load`` must point at (holds ``latest`` and the tag directories)."""
    tag: str
    """``global_stepN``."""
    iteration: int
    """N, the global iteration stored in the checkpoint (the stage's start iteration on a first launch)."""

    def __repr__(self) -> str:  # short, for doctests and logs
        return f"CheckpointRef(load_dir='...{os.path.basename(self.load_dir)}', tag={self.tag!r}, " \
               f"iteration={self.iteration})"


class Decision(NamedTuple):
    mode: str
    """'start' (first launch: load cpt_init_checkpoint) or 'resume' (load this stage's own checkpoint)."""
    checkpoint: Optional[CheckpointRef]
    sidecar: Optional[Dict[str, Any]]


def latest_tag(load_dir: str) -> Optional[str]:
    path = os.path.join(load_dir, "latest")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return f.read().strip() or None


def _iteration_of(tag: str, key: str, path: str) -> int:
    match = _TAG.match(tag)
    if not match:
        raise ValueError(f"{key}: {path!r} names checkpoint tag {tag!r}, not NeoX's global_stepN; point it at a "
                         "NeoX save directory or one of its global_stepN directories")
    return int(match.group(1))


def resolve_checkpoint(path: str, key: str = "cpt_init_checkpoint") -> CheckpointRef:
    """A NeoX save directory (uses its ``latest``) or a ``.../global_stepN`` directory -> where/what to load."""
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{key}: {path!r} does not exist; point it at the previous stage's save directory "
                                "(or one of its global_stepN directories)")
    tag = latest_tag(path)
    if tag is not None:
        if not os.path.isdir(os.path.join(path, tag)):
            raise FileNotFoundError(f"{key}: {path}/latest names {tag!r}, which is missing; fix `latest` or point "
                                    f"{key} at an existing global_stepN directory")
        return CheckpointRef(path, tag, _iteration_of(tag, key, path))
    base = os.path.basename(path.rstrip("/"))
    if _TAG.match(base):
        return CheckpointRef(os.path.dirname(path), base, _iteration_of(base, key, path))
    raise FileNotFoundError(f"{key}: {path!r} has no `latest` file and is not a global_stepN directory; point it "
                            "at a NeoX save directory with a finished checkpoint")


def read_sidecar(load_dir: str, tag: str) -> Optional[Dict[str, Any]]:
    path = os.path.join(load_dir, tag, SIDECAR)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def decide(save_dir: str, stage_name: str, init_checkpoint: str) -> Decision:
    """Resume iff ``<save>/latest`` is a checkpoint of stage ``stage_name``; else start from the init checkpoint."""
    save_dir = os.path.abspath(os.path.expanduser(save_dir))
    tag = latest_tag(save_dir)
    if tag is not None:
        sidecar = read_sidecar(save_dir, tag)
        if sidecar is not None and sidecar.get("stage_name") == stage_name:
            return Decision("resume", CheckpointRef(save_dir, tag, _iteration_of(tag, "save", save_dir)), sidecar)
    return Decision("start", resolve_checkpoint(init_checkpoint), None)


def write_sidecar(save_dir: str, iteration: int, record: Dict[str, Any]) -> str:
    """Write ``<save>/global_step{iteration}/neox_cpt_stage.json`` atomically; returns its path."""
    directory = os.path.join(save_dir, f"global_step{iteration}")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, SIDECAR)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(dict(record, iteration=iteration), f, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return path


def parent_data(init_checkpoint: Union[str, CheckpointRef]) -> Tuple[str, int]:
    """(replay index directory, index position) of the stage that wrote ``init_checkpoint`` (a path, resolved
    through its ``latest``, or a resolved reference), from its sidecar."""
    ref = init_checkpoint if isinstance(init_checkpoint, CheckpointRef) else resolve_checkpoint(init_checkpoint)
    sidecar = read_sidecar(ref.load_dir, ref.tag) or {}
    if not sidecar.get("replay_index"):
        raise ValueError(f"cpt_continue_parent_data: {ref.load_dir}/{ref.tag} has no {SIDECAR} naming a replay index; "
                         "the parent must be a neox-cpt stage trained on a replay index (cpt_ data keys). Otherwise "
                         "remove cpt_continue_parent_data and give the branch its own data keys")
    # index_position = data start of that stage in its index + samples it consumed (older sidecars: start 0)
    return str(sidecar["replay_index"]), int(sidecar.get("index_position", sidecar["samples_consumed"]))


def seen_consumed(cfg: Mapping[str, Any], ref: CheckpointRef) -> Tuple[Tuple[int, ...], str]:
    """How many samples the run that wrote ``ref`` consumed from the one seen-only index, and the source.

    A neox-cpt stage knows it exactly (its sidecar's ``index_position``: a branch's or a resumed stage's
    position in its index); a stock NeoX checkpoint only has its iteration: iteration x that run's
    ``train_batch_size`` (from the YAML NeoX archived beside the checkpoint, else this run's)."""
    paths = list(cfg.get("cpt_replay_index_paths") or [])
    if len(paths) != 1:
        raise ValueError(f"cpt_replay_consumed_samples: unset with {len(paths)} cpt_replay_index_paths; the plugin "
                         "can only infer it for one index (the run that wrote cpt_init_checkpoint): list one "
                         "count per index")
    where = f"{ref.load_dir}/{ref.tag}"
    side = read_sidecar(ref.load_dir, ref.tag)
    if side is not None:
        index = side.get("replay_index")
        if index:
            if os.path.realpath(str(paths[0])) != os.path.realpath(index):
                raise ValueError(f"cpt_replay_index_paths: {paths[0]!r}, but cpt_init_checkpoint {where} was written "
                                 f"by neox-cpt stage {side.get('stage_name')!r}, which trained on the replay index "
                                 f"{index}; set cpt_replay_index_paths: [{index}] (or give "
                                 "cpt_replay_consumed_samples for another index)")
            count = int(side.get("index_position", side["samples_consumed"]))
            return (count,), f"index_position of {where}/{SIDECAR} (stage {side.get('stage_name')!r})"
        return (int(side["samples_consumed"]),), \
            f"samples_consumed of {where}/{SIDECAR} (stage {side.get('stage_name')!r} on NeoX's datasets)"
    batch, origin = archived_batch(ref), "as archived with that checkpoint"
    if batch is None:
        batch, origin = int(cfg["train_batch_size"]), "this run's (set cpt_replay_consumed_samples if it differed)"
    return (ref.iteration * batch,), f"iteration {ref.iteration} x train_batch_size {batch} of {where} ({origin})"


def archived_value(ref: CheckpointRef, key: str) -> Any:
    """``key`` (or its dashed spelling) in the YAML files NeoX archives in ``<tag>/configs/``: the first file
    that sets it, in name order (None if none does or the directory is absent)."""
    directory = os.path.join(ref.load_dir, ref.tag, "configs")
    if not os.path.isdir(directory):
        return None
    import yaml

    for name in sorted(os.listdir(directory)):
        try:
            with open(os.path.join(directory, name)) as f:
                data = yaml.safe_load(f)
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict):
            value = data.get(key, data.get(key.replace("_", "-")))
            if value is not None:
                return value
    return None


def archived_batch(ref: CheckpointRef) -> Optional[int]:
    """``train_batch_size`` as NeoX archived it with the checkpoint (None if absent or not an int)."""
    value = archived_value(ref, "train_batch_size")
    return value if isinstance(value, int) and not isinstance(value, bool) else None
