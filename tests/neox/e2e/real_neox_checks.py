"""Checks against a real GPT-NeoX checkout, one per subprocess (run by test_real_neox.py).

    python tests/neox/e2e/real_neox_checks.py {configs|scheduler|data} WORKDIR   # repo, NeoX root on PYTHONPATH

Each prints one JSON line (``RESULT {...}``) with the measured values; the pytest side asserts on them.
The NeoX code runs unmodified: the plugin arrives through ``neox_cpt.install()`` (the .pth does the same
at interpreter start), on a gloo process group of size 1 with ``torch.cuda.LongTensor`` shimmed (NEOX.md).
"""
import glob
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def setup_distributed():
    import torch

    torch.cuda.LongTensor = torch.LongTensor  # NeoX broadcasts its data flags as cuda tensors
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ["NEOX_CPT_TEST_PORT"],
                      RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo", rank=0, world_size=1)
    from megatron import mpu

    if mpu.is_unitialized():
        mpu.initialize_model_parallel(1)


def tiny_args(workdir, **extra):
    from megatron.neox_arguments import NeoXArgs

    cfg = {"global_num_gpus": 1, "num_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "seq_length": 32,
           "max_position_embeddings": 32, "train_batch_size": 8, "train_micro_batch_size_per_gpu": 8,
           "gradient_accumulation_steps": 1, "optimizer": {"type": "Adam", "params": {"lr": 1e-3}},
           "no_save_rng": True, "no_load_rng": True, "eval_interval": 10, "eval_iters": 2, "num_workers": 0,
           "checkpoint_factor": 1000, "log_dir": os.path.join(workdir, "logs")}
    cfg.update(extra)
    return NeoXArgs.from_dict(cfg)


def check_configs(workdir):
    from megatron.neox_arguments import NeoXArgs

    from neox_cpt.neox import integration
    from neox_cpt.neox.patches import config_of

    out = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "configs", "*.yml"))):
        import yaml

        raw = yaml.safe_load(open(path))
        gpus = raw.get("model_parallel_size", 1) * raw.get("pipe_parallel_size", 1)
        args = NeoXArgs.from_ymls([path], overwrite_values={"global_num_gpus": gpus})
        sent = args.get_parent_class_value_dict(*args.__class__.__bases__, only_non_defaults=True)
        again = NeoXArgs.from_dict(dict(sent, global_num_gpus=gpus))  # what a worker rebuilds (arguments.py:460)
        cpt = {k: v for k, v in sent.items() if k.startswith("cpt_")}
        same_index = None
        if integration.uses_replay(raw) and not raw.get("cpt_replay_seen_only"):
            # the spec `neox-cpt build-index CONFIG` builds from the YAML == the one the loaders ask for
            cfg = config_of(args)
            loader_spec = integration.replay_spec(cfg, integration.stage_iters(cfg) * args.train_batch_size)
            same_index = integration.replay_spec({k.replace("-", "_"): v for k, v in raw.items()}, None) == loader_spec
        out[os.path.basename(path)] = {"same_index_spec_as_build_index": same_index,
            "cpt": cpt, "cpt_in_deepspeed_config": [k for k in args.deepspeed_config if k.startswith("cpt_")],
            "worker_equal": all(getattr(again, k) == v for k, v in cpt.items()),
            "grad_acc": args.gradient_accumulation_steps, "train_batch_size": args.train_batch_size}
    bad = {}
    replay = {"cpt_train_data_paths": ["new"], "cpt_replay_data_paths": ["old"]}
    for key, value in (("cpt_replay_frac", 1.5), ("cpt_lr_schedule", "cosin"), ("cpt_stage_iters", "10")):
        try:
            tiny_args(workdir, **{key: value}, train_iters=10, **(replay if key == "cpt_replay_frac" else {}))
        except Exception as exc:  # noqa: BLE001 - we report the message
            bad[key] = f"{type(exc).__name__}: {exc}"
    return {"configs": out, "errors": bad}


def _engine(model_seed, scheduler_factory):
    import deepspeed
    import deepspeed.comm.torch
    import torch

    # DeepSpeed would JIT-build its shared-memory all-reduce op here (0.5-2 min); gloo never uses it
    deepspeed.comm.torch.build_shm_op = lambda: None

    torch.manual_seed(model_seed)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.5)
    scheduler = scheduler_factory(optimizer)
    engine, ds_opt, _, ds_sched = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler,
        config={"train_batch_size": 8, "train_micro_batch_size_per_gpu": 8, "steps_per_print": 10**6})
    assert ds_sched is scheduler
    return engine, ds_opt, scheduler


def _train(engine, ds_opt, steps, lrs):
    import torch

    for _ in range(steps):
        lrs.append(ds_opt.param_groups[0]["lr"])  # the LR this update uses
        engine.backward(engine(torch.randn(8, 4)).pow(2).mean())
        engine.step()  # DeepSpeed calls lr_scheduler.step() after the update


def _setup_and_load(training, args, seed):
    """What setup_model_and_optimizer does around the scheduler (training.py:1172-1260)."""
    engine, ds_opt, sched = _engine(seed, lambda o: training.get_learning_rate_scheduler(o, args))
    args.iteration = training.load_checkpoint(neox_args=args, model=engine, optimizer=engine.optimizer,
                                              lr_scheduler=sched, iteration=None) if args.load else 0
    sched.optimizer = engine.optimizer
    return engine, ds_opt, sched


def check_scheduler(workdir):
    setup_distributed()
    import megatron.training as training

    d0, d1 = os.path.join(workdir, "d0"), os.path.join(workdir, "d1")
    # stage 0: stock NeoX scheduler (no plugin keys), 6 updates, checkpoint global_step6
    a0 = tiny_args(workdir, train_iters=6, save=d0, lr_decay_style="cosine", min_lr=1e-4, warmup=0.5)
    e0, o0, s0 = _setup_and_load(training, a0, 0)
    lrs0 = []
    _train(e0, o0, 6, lrs0)
    training.save_checkpoint(neox_args=a0, iteration=6, model=e0, optimizer=e0.optimizer, lr_scheduler=s0)
    stage = dict(train_iters=10, save=d1, cpt_stage_name="d1", cpt_init_checkpoint=d0, cpt_stage_iters=10,
                 cpt_lr_schedule="cosine", cpt_lr_max=1e-3, cpt_lr_min=1e-4, cpt_warmup_iters=2)
    # stage 1, first launch: loads d0 (weights + optimizer + stock scheduler state), 4 updates, save, "crash"
    a1 = tiny_args(workdir, **stage)
    e1, o1, s1 = _setup_and_load(training, a1, 1)
    first = {"iteration": a1.iteration, "train_iters": a1.train_iters, "stage_start": s1.stage_start,
             "loaded_from_keys": sorted(s1.loaded_from or {}), "lr_after_load": o1.param_groups[0]["lr"]}
    lrs1 = []
    _train(e1, o1, 4, lrs1)
    training.save_checkpoint(neox_args=a1, iteration=10, model=e1, optimizer=e1.optimizer, lr_scheduler=s1)
    # relaunch with the same config: resumes from d1 at global step 10
    a2 = tiny_args(workdir, **stage)
    e2, o2, s2 = _setup_and_load(training, a2, 2)
    resumed = {"iteration": a2.iteration, "stage_start": s2.stage_start, "position": s2.position,
               "lr_after_load": o2.param_groups[0]["lr"], "train_iters": a2.train_iters}
    lrs2 = []
    _train(e2, o2, 6, lrs2)
    sidecar = json.load(open(os.path.join(d1, "global_step10", "neox_cpt_stage.json")))
    return {"type_stage0": type(s0).__name__, "type_stage1": type(s1).__name__, "lrs_stage0": lrs0,
            "first": first, "lrs_stage1": lrs1, "resumed": resumed, "lrs_resumed": lrs2, "sidecar": sidecar,
            "schedule": [s1.schedule.lr_at(k) for k in range(0, 12)]}


def _write_source(prefix, low, high, num_docs, seed):
    from neox_cpt.data.indexed import IndexedDatasetWriter

    rng = np.random.default_rng(seed)
    with IndexedDatasetWriter(prefix, np.uint16) as w:
        for _ in range(num_docs):
            w.add_document(rng.integers(low, high, size=int(rng.integers(20, 200))))


def check_data(workdir):
    setup_distributed()
    import megatron.training as training

    data = os.path.join(workdir, "data")
    os.makedirs(data, exist_ok=True)
    for name, low, high in (("new", 1000, 2000), ("old", 0, 1000)):
        _write_source(os.path.join(data, f"{name}_text_document"), low, high, 400, hash(name) % 1000)
        _write_source(os.path.join(data, f"{name}_val_text_document"), low, high, 50, 7 + hash(name) % 1000)
    ckpt = os.path.join(workdir, "d0")
    os.makedirs(os.path.join(ckpt, "global_step500"), exist_ok=True)
    open(os.path.join(ckpt, "latest"), "w").write("global_step500")
    keys = dict(train_iters=50, save=os.path.join(workdir, "d1"), cpt_stage_name="d1", cpt_init_checkpoint=ckpt,
                cpt_stage_iters=50, cpt_train_data_paths=[os.path.join(data, "new_text_document")],
                cpt_replay_data_paths=[os.path.join(data, "old_text_document")], cpt_replay_frac=0.25,
                cpt_valid_data_paths=[os.path.join(data, "old_val_text_document"),
                                      os.path.join(data, "new_val_text_document")],
                cpt_index_cache_dir=os.path.join(workdir, "index"))
    args = tiny_args(workdir, **keys)
    loaders = training.build_train_valid_test_data_loaders(neox_args=args)
    train = loaders["train"]
    flags = [args.do_train, args.do_valid, args.do_test]
    replay_share = []
    all_batches = []
    for batch in train:
        text = batch["text"].numpy()
        all_batches.append(text)
        replay_share.append(float((text.max(axis=1) < 1000).mean()))
    # resume mid-stage: global iteration 520 of a stage that started at 500 -> stage position 20
    args.iteration, args._cpt_stage_start = 520, 500
    train_it, valid_it, _ = training.shift_and_wrap_data_loaders(neox_args=args, data_loaders=loaders)
    resumed = next(train_it)["text"].numpy()
    valid = {name: next(it)["text"].numpy() for name, it in valid_it.iterators.items()}
    # per-source validation through NeoX's own evaluate(): a stand-in forward step whose "loss" is the mean
    # token id / 1000 of the batch it was given, so each source's printed loss identifies its data
    import contextlib
    import io

    import torch

    def forward_step(model, data_iterator, neox_args, timers, reference_model=None):
        tokens = next(data_iterator)["text"].float()
        return tokens.mean() / 1000.0, {}

    model = torch.nn.Linear(1, 1)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        training.evaluate_and_print_results(neox_args=args, prefix="iteration 520", forward_step_func=forward_step,
                                            data_iterator=valid_it, model=model, iteration=520)
    eval_lines = [line.strip() for line in printed.getvalue().splitlines() if "results at" in line]
    return {"flags": flags, "len_train_batches": len(train), "dataset_len": len(train.dataset),
            "loader_type": type(train).__module__ + "." + type(train).__name__,
            "sampler_type": type(train.batch_sampler).__module__ + "." + type(train.batch_sampler).__name__,
            "replay_share_per_batch": replay_share, "replay_share": float(np.mean(replay_share)),
            "resumed_equals_batch_20": bool(np.array_equal(resumed, all_batches[20])),
            "first_batch_is_sample_0": bool(np.array_equal(all_batches[0][0], train.dataset[0]["text"])),
            "valid_sources": {k: [int(v.min()), int(v.max())] for k, v in valid.items()},
            "index_dir": args._cpt_index_dir, "eval_lines": eval_lines, "seq_plus_one": int(resumed.shape[1])}


if __name__ == "__main__":
    name, workdir = sys.argv[1], sys.argv[2]
    import neox_cpt

    neox_cpt.install()
    result = {"configs": check_configs, "scheduler": check_scheduler, "data": check_data}[name](workdir)
    result["neox_cpt_file"] = os.path.realpath(neox_cpt.__file__)
    print("RESULT " + json.dumps(result, default=str))
