"""Start-up hook of the processes the e2e suite launches (``deepy.py``, DeepSpeed's launcher, ``train.py``).

It sits in a directory that only the suite puts on ``PYTHONPATH``, so no other interpreter ever runs it; it is
the tests' file, never part of the installed package. It does five things, all at interpreter start:

1. load neox-cpt **from this repository** (``NEOX_CPT_E2E_REPO``, first on ``sys.path``) and install its NeoX
   hook, exactly what ``neox_cpt_hook.pth`` does in a user's environment. An ``import neox_cpt`` that resolves
   anywhere else stops the process, so the suite can only ever test the checkout it lives in;
2. answer the few ``torch.cuda`` calls GPT-NeoX makes (docs/neox.md, "End-to-end suite") for the CPU, with
   ``torch.cuda.is_available()`` True only to callers inside ``megatron.*`` (DeepSpeed, torch's DataLoader
   and neox-cpt keep seeing the truth);
3. record the training micro-batches NeoX's loop feeds the model, when ``NEOX_CPT_E2E_RECORD`` names a
   directory (the only way to see, per global batch, which samples were replay);
4. close the process group at exit (train.py leaves gloo's threads running, which sometimes aborts a finished run);
5. replace DeepSpeed's JIT-built ``FusedAdam`` by torch's ``AdamW`` (same update, no 2-minute C++ build) and
   skip the shared-memory all-reduce op it would JIT-build at ``init_distributed`` (unused by gloo).

Each launched process prints one line ``neox-cpt-e2e: startup pid=... neox_cpt=<file>`` so a test can check
which neox_cpt it ran.
"""
import os
import sys

_ACTIVE = os.environ.get("NEOX_CPT_E2E_REPO")


class _AfterImport:
    """A ``sys.meta_path`` finder that runs ``patch(module)`` right after the named modules execute."""

    def __init__(self, patches):
        self.patches = patches
        self.busy = set()

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.patches or fullname in self.busy:
            return None
        self.busy.add(fullname)
        try:
            for finder in sys.meta_path:
                spec = None if finder is self else getattr(finder, "find_spec", lambda *a: None)(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self.busy.discard(fullname)
        loader, patch = spec.loader, self.patches[fullname]

        class Loader:
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                loader.exec_module(module)
                patch(module)

            def __getattr__(self, name):  # get_source etc., for tracebacks
                return getattr(loader, name)

        spec.loader = Loader()
        return spec


def _cpu_cuda(torch):
    cuda = torch.cuda

    def is_available():  # NeoX asserts it (initialize.py); everybody else must keep seeing False
        caller = sys._getframe(1).f_globals.get("__name__", "")
        return caller == "megatron" or caller.startswith("megatron.")

    cuda.is_available = is_available
    cuda.device_count = lambda: int(os.environ.get("LOCAL_SIZE", "1"))  # model-parallel groups need it
    cuda.set_device = lambda *a, **k: None
    cuda.current_device = lambda: torch.device("cpu")
    cuda.synchronize = lambda *a, **k: None
    cuda.get_rng_state = lambda *a, **k: torch.get_rng_state()
    cuda.set_rng_state = lambda *a, **k: None
    for name in ("LongTensor", "FloatTensor", "ByteTensor", "IntTensor", "HalfTensor", "BoolTensor"):
        setattr(cuda, name, getattr(torch, name))
    torch.Tensor.cuda = lambda self, *a, **k: self


def _torch_adamw(adam_package):
    import torch

    class AdamW(torch.optim.AdamW):
        """DeepSpeed's FusedAdam signature (NeoX passes lr, betas, eps, weight_decay) over torch's AdamW."""

        def __init__(self, params, lr=1e-3, bias_correction=True, betas=(0.9, 0.999), eps=1e-8, adam_w_mode=True,
                     weight_decay=0.0, amsgrad=False, set_grad_none=True):
            super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)

    adam_package.FusedAdam = AdamW


def _no_shm_op(comm_torch):
    comm_torch.build_shm_op = lambda: None


def _record_batches(training):
    """Append every training micro-batch NeoX's loop feeds the model to ``$NEOX_CPT_E2E_RECORD/batches.*.jsonl``.

    One JSON line per micro-batch and rank: the global iteration completed before it (``neox_args.iteration``),
    the rank's data/model/pipe-parallel coordinates and the tokens (``seq_length + 1`` per sample), so a test
    can tell, per global batch, which samples came from which source (sources have disjoint token ranges).
    Evaluation batches are not recorded (``forward_step`` is called with ``is_train=True`` only in training).
    """
    import json

    out_dir = os.environ["NEOX_CPT_E2E_RECORD"]
    stock_forward, stock_get_batch, stock_get_batch_pipe = (training.forward_step, training.get_batch,
                                                            training.get_batch_pipe)
    state = {"train": False}

    def write(neox_args, text):
        import torch.distributed as dist
        from megatron import mpu

        record = {"iteration": int(getattr(neox_args, "iteration", 0) or 0), "rank": dist.get_rank(),
                  "dp": mpu.get_data_parallel_rank(), "tp": mpu.get_model_parallel_rank(),
                  "pp": mpu.get_pipe_parallel_rank(), "text": text.tolist()}
        path = os.path.join(out_dir, f"batches.rank{dist.get_rank()}.jsonl")
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def forward_step(*args, **kwargs):
        state["train"] = bool(kwargs.get("is_train", False))
        try:
            return stock_forward(*args, **kwargs)
        finally:
            state["train"] = False

    def get_batch(neox_args, data_iterator):
        result = stock_get_batch(neox_args=neox_args, data_iterator=data_iterator)
        if state["train"]:
            import torch

            tokens, labels = result[0], result[1]
            write(neox_args, torch.cat([tokens, labels[:, -1:]], dim=1))
        return result

    def get_batch_pipe(data, neox_args, curr_scheduler=None):
        write(neox_args, data["text"])  # pipeline runs evaluate nothing on stock DeepSpeed (docs/neox.md)
        return stock_get_batch_pipe(data, neox_args, curr_scheduler=curr_scheduler)

    training.forward_step, training.get_batch, training.get_batch_pipe = forward_step, get_batch, get_batch_pipe


def _close_process_group_at_exit():
    """train.py never destroys its gloo group; at interpreter exit its threads then sometimes abort the process
    ("terminate called without an active exception", rc -6) after training has finished. Close it first."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def _load_neox_cpt(repo):
    sys.path.insert(0, repo)
    import neox_cpt
    import neox_cpt.neox.hook as hook

    where = os.path.realpath(neox_cpt.__file__)
    if not where.startswith(os.path.realpath(repo) + os.sep):
        raise SystemExit(f"neox-cpt-e2e: imported neox_cpt from {where}, not from the checkout under test {repo}")
    hook.install()  # what neox_cpt_hook.pth does; idempotent if the checkout is also pip-installed
    print(f"neox-cpt-e2e: startup pid={os.getpid()} neox_cpt={where}", flush=True)


if _ACTIVE:
    _patches = {"torch": _cpu_cuda, "deepspeed.ops.adam": _torch_adamw, "deepspeed.comm.torch": _no_shm_op}
    if os.environ.get("NEOX_CPT_E2E_RECORD"):
        _patches["megatron.training"] = _record_batches
    sys.meta_path.insert(0, _AfterImport(_patches))
    import atexit

    atexit.register(_close_process_group_at_exit)
    _load_neox_cpt(_ACTIVE)
