"""``neox-cpt preflight``: every decision the NeoX plugin will take at launch, before any GPU is used.

Reads the stage's YAML file(s) as NeoX merges them and the checkpoint directories they name, and prints the
launch plan (``neox_cpt.neox.plan``, the one the patched NeoX applies): start or resume, which checkpoint
and global iteration, the stage start and end, the schedule position and the LR of the next update, the
data and its position, the replay index key and whether it is built, the seen-only consumed count and
where it came from, the stock keys that will be ignored, and every problem found (missing checkpoint or
data, a tokenizer whose vocabulary differs from the checkpoint's, a relaunch that changes the stage).
Imports neither NeoX nor torch. Exits 1 when it finds a problem. See docs/preflight.md.

    $ neox-cpt preflight configs/405M_d1_german.yml
    $ neox-cpt preflight model.yml stage.yml --gpus 64 --json
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any, Dict, List, Optional, Tuple

NEOX_SEED = 1234  # NeoX's default seed (neox_args.py), which the launch passes to the plugin when unset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("configs", nargs="+", metavar="CONFIG.yml", help="the stage's NeoX YAML file(s), merged")
    parser.add_argument("--gpus", type=int, help="GPUs of the job (global_num_gpus), to derive train_batch_size "
                        "from train_micro_batch_size_per_gpu when the YAML does not give it")
    parser.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    parser.add_argument("--neox-root", default=os.environ.get("NEOX_CPT_NEOX_ROOT"),
                        help="a GPT-NeoX checkout whose functions to check against the ones the plugin wraps (read "
                        "as source, not imported; default: $NEOX_CPT_NEOX_ROOT)")


def launch_config(paths: List[str], gpus: Optional[int] = None) -> Dict[str, Any]:
    """The flat config the plugin reads at launch: the YAMLs merged, with the values NeoX derives that the plan
    reads (the default seed, weight 1 for unweighted data paths, train_batch_size = micro batch x
    accumulation x GPUs / (model x pipe parallel size))."""
    from neox_cpt.schedules.loader import load_stage_config

    cfg = {k: v for k, v in load_stage_config(paths).items() if v is not None}
    cfg.setdefault("seed", NEOX_SEED)
    for split in ("train", "valid", "test"):  # NeoX gives unweighted paths weight 1 each (calculate_derived)
        paths = cfg.get(f"{split}_data_paths")
        if paths and cfg.get(f"{split}_data_weights") is None:
            cfg[f"{split}_data_weights"] = [1.0] * (1 if isinstance(paths, str) else len(paths))
    if cfg.get("train_batch_size") is None and cfg.get("train_micro_batch_size_per_gpu") is not None:
        gpus = gpus or cfg.get("global_num_gpus")
        if gpus is None:
            raise ValueError("train_batch_size is not in the YAML and NeoX derives it from the GPU count: pass "
                             "--gpus N (the job's global_num_gpus) or set train_batch_size")
        model = max(1, int(cfg.get("model_parallel_size", 1))) * max(1, int(cfg.get("pipe_parallel_size", 1)))
        if gpus % model:
            raise ValueError(f"--gpus {gpus} is not a multiple of model_parallel_size x pipe_parallel_size = {model}")
        cfg["train_batch_size"] = (int(cfg["train_micro_batch_size_per_gpu"]) * (gpus // model)
                                   * int(cfg.get("gradient_accumulation_steps", 1)))
    return cfg


def check(cfg: Dict[str, Any]) -> Tuple[Optional[Any], Dict[str, Any], List[str]]:
    """(plan or None, preflight-only facts, problems) for a launch config."""
    from neox_cpt.neox import graft
    from neox_cpt.neox.plan import resolve

    from neox_cpt.neox.runtime import active

    problems: List[str] = []
    facts: Dict[str, Any] = {}
    if not active(cfg):
        facts["inactive"] = "no cpt_* key: the plugin leaves this launch to stock NeoX"
        return None, facts, problems
    try:
        graft.validate(cfg)
        plan = resolve(cfg)
    except (ValueError, FileNotFoundError, PermissionError) as exc:
        return None, facts, [str(exc)]
    if plan.data == "replay":
        problems += _replay_index(plan, facts)
    elif plan.data == "parent":
        problems += _parent_index(plan)
    else:
        paths = cfg.get("train_data_paths") or cfg.get("data_path") or []
        problems += _missing_data([paths] if isinstance(paths, str) else list(paths), "train_data_paths/data_path")
    from neox_cpt.data.spec import valid_sources

    problems += _missing_data([prefix for _, prefix in valid_sources(cfg)], "cpt_valid_data_paths/valid_data_paths")
    if plan.checkpoint is not None:
        problems += _tokenizer(cfg, plan.checkpoint)
    return plan, facts, problems


def _replay_index(plan, facts: Dict[str, Any]) -> List[str]:
    from neox_cpt.data.cache import index_dir_name, index_key, is_complete
    from neox_cpt.neox import integration

    spec = plan.index_spec()
    try:
        key, _ = index_key(spec)  # opens every source: a missing or unreadable file is reported here
    except (ValueError, FileNotFoundError) as exc:
        return [str(exc)]
    path = os.path.join(integration.cache_dir(plan.cfg), index_dir_name(spec, key))
    facts["replay_index"] = {"key": key, "dir": path, "built": is_complete(path, key)}
    return []


def _parent_index(plan) -> List[str]:
    from neox_cpt.neox import integration

    try:
        left = len(integration.replay_dataset(plan.parent_index, start_sample=plan.data_start))
    except (ValueError, FileNotFoundError, OSError) as exc:
        return [f"cpt_continue_parent_data: the parent's index {plan.parent_index} cannot be opened: {exc}"]
    if left < plan.num_samples:
        return [f"cpt_continue_parent_data: the parent's index {plan.parent_index} holds {left} samples after position "
                f"{plan.data_start}, the branch needs {plan.num_samples}; branch off earlier or shorten cpt_stage_iters"]
    return []


def _missing_data(prefixes: List[str], key: str) -> List[str]:
    return [f"{key}: {p}.bin/.idx not found" for p in prefixes
            if not (os.path.isfile(f"{p}.bin") and os.path.isfile(f"{p}.idx"))]


def vocab_size(path: str) -> Optional[int]:
    """Entries of a Hugging Face ``tokenizer.json`` or a GPT-2 ``vocab.json`` (None: another kind)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and isinstance(data.get("model"), dict) and isinstance(data["model"].get("vocab"), dict):
        vocab = data["model"]["vocab"]
        return len(vocab) + sum(1 for t in data.get("added_tokens") or [] if t.get("content") not in vocab)
    return len(data) if isinstance(data, dict) else None


def _tokenizer(cfg: Dict[str, Any], ref) -> List[str]:
    """This config's tokenizer against the one NeoX archived with the checkpoint (``<tag>/configs/``)."""
    from neox_cpt.neox.stages import archived_value

    mine = cfg.get("vocab_file")
    if not mine:
        return []
    if not os.path.isfile(mine):
        return [f"vocab_file: {mine} not found"]
    theirs = archived_value(ref, "vocab_file")
    old, new = (vocab_size(theirs), vocab_size(mine)) if isinstance(theirs, str) else (None, None)
    if old is not None and new is not None and old != new:
        return [f"vocab_file: {mine} has {new} entries but the checkpoint {ref.load_dir}/{ref.tag} was trained "
                f"with {theirs} ({old} entries); use the checkpoint's tokenizer (the embedding rows must match)"]
    return []


def report(plan, facts: Dict[str, Any], problems: List[str]) -> str:
    """The human-readable plan."""
    lines = []
    if plan is not None:
        s = plan.summary()
        if plan.is_stage:
            verb = "resume" if plan.mode == "resume" else "start"
            lines.append(f"launch      : {verb} stage {plan.stage_name!r} from {s['checkpoint']} "
                         f"(global iteration {plan.iteration})")
            lines.append(f"stage       : start {plan.stage_start}, {plan.position}/{plan.stage_iters} iterations done, "
                         f"ends at global iteration {plan.end_iteration}")
            lines.append("optimizer   : " + ("loaded with the weights" if plan.load_optimizer else "fresh (reset)"))
        else:
            lines.append(f"launch      : no stage (NeoX's own resume) from {s['checkpoint'] or 'scratch'} "
                         f"(global iteration {plan.iteration}, train_iters {plan.end_iteration})")
        if s["next_lr"] is not None:
            lines.append(f"schedule    : position {plan.schedule_position}, LR of the next update {s['next_lr']:.6g} "
                         f"(fp {s['schedule_fingerprint']})")
        else:
            lines.append("schedule    : NeoX's own (no cpt_* schedule)")
        data = {"replay": "replay index", "parent": f"the parent's index {plan.parent_index}",
                "neox": "NeoX's own datasets"}[plan.data]
        lines.append(f"data        : {data}, stage samples {plan.data_start}..{plan.data_start + plan.num_samples}, "
                     f"next sample {plan.next_sample} ({plan.stage_iters} x {plan.train_batch_size})")
        index = facts.get("replay_index")
        if index:
            lines.append(f"replay index: {os.path.basename(index['dir'])} in {os.path.dirname(index['dir'])} "
                         f"({'built' if index['built'] else 'not built yet: rank 0 builds it at launch'})")
        if plan.consumed_samples is not None:
            lines.append(f"seen-only   : {list(plan.consumed_samples)} samples consumed, from {plan.consumed_from}")
        for key in plan.ignored_keys():
            lines.append(f"ignored     : {key}")
    if "neox_root" in facts:
        lines.append(f"GPT-NeoX    : {facts['neox_root']['path']}: the functions the plugin wraps have "
                     + ("the expected signatures" if facts["neox_root"]["compatible"] else "other signatures"))
    if "inactive" in facts:
        lines.append(f"launch      : {facts['inactive']}")
    lines += [f"PROBLEM     : {p}" for p in problems] or ["problems    : none"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = launch_config(args.configs, args.gpus)
    except (ValueError, FileNotFoundError) as exc:
        plan, facts, problems = None, {}, [str(exc)]
    else:
        plan, facts, problems = check(cfg)
    if args.neox_root:
        from neox_cpt.neox.compat import source_problem

        problem = source_problem(args.neox_root)
        facts["neox_root"] = {"path": args.neox_root, "compatible": problem is None}
        problems += [problem] if problem else []
    if args.json:
        if plan is not None:
            facts["ignored_keys"] = plan.ignored_keys()
        out = dict(plan.summary() if plan is not None else {}, preflight={**facts, "problems": problems})
        print(json.dumps(out, sort_keys=True))
    else:
        print(report(plan, facts, problems))
    return 1 if problems else 0
