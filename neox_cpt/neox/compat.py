"""Is the imported ``megatron`` GPT-NeoX's, and does it have the functions we wrap, as we call them?

The hook watches module *names*; Megatron-LM (and forks) use the same ``megatron.*`` names. So before
patching, :func:`check` asks: is this GPT-NeoX (its ``megatron`` package has ``neox_arguments``)? And
does every function we wrap take the parameters we call it with (``inspect.signature``)? A module that is
not NeoX is left alone silently. A NeoX whose functions changed is left untouched too, and the problem is
kept on the module (:func:`problem`): a run without ``cpt_*`` keys trains as stock NeoX; a run with them stops at
start-up (the graft's validation) with one message naming the function, the expected signature and the
NeoX commit the plugin was tested with.

    >>> from types import SimpleNamespace
    >>> def load_checkpoint(neox_args, model, optimizer, lr_scheduler, inference=False): ...
    >>> message = signature_problem(SimpleNamespace(load_checkpoint=load_checkpoint), ["load_checkpoint"])
    >>> "calls load_checkpoint(neox_args, model, optimizer, lr_scheduler, inference=False, iteration=None)" in message
    True
"""
import inspect
import sys
from typing import Any, Dict, Iterable, Optional, Tuple

TESTED_NEOX_COMMIT = "ea7aefd"

# function -> its parameters at TESTED_NEOX_COMMIT (name, default or _REQUIRED): what our wrappers call.
_REQUIRED = inspect.Parameter.empty
EXPECTED: Dict[str, Tuple[Tuple[str, Any], ...]] = {
    "get_learning_rate_scheduler": (("optimizer", _REQUIRED), ("neox_args", _REQUIRED)),
    "load_checkpoint": (("neox_args", _REQUIRED), ("model", _REQUIRED), ("optimizer", _REQUIRED),
                        ("lr_scheduler", _REQUIRED), ("inference", False), ("iteration", None)),
    "save_checkpoint": (("neox_args", _REQUIRED), ("iteration", _REQUIRED), ("model", _REQUIRED),
                        ("optimizer", _REQUIRED), ("lr_scheduler", _REQUIRED)),
    "build_train_valid_test_data_loaders": (("neox_args", _REQUIRED),),
    "shift_and_wrap_data_loaders": (("neox_args", _REQUIRED), ("data_loaders", _REQUIRED), ("loop", True)),
    "evaluate_and_print_results": (("neox_args", _REQUIRED), ("prefix", _REQUIRED), ("forward_step_func", _REQUIRED),
                                   ("data_iterator", _REQUIRED), ("model", _REQUIRED), ("iteration", _REQUIRED),
                                   ("verbose", False), ("timers", None), ("chart_name", "validation"),
                                   ("reference_model", None)),
}
PATCHED = tuple(EXPECTED)
"""The ``megatron.training`` functions the plugin swaps, in the order of its activation line."""

MARK = "_neox_cpt_unpatched"
"""Attribute set on a NeoX ``megatron.training`` left unpatched: the message."""


def is_gpt_neox(module: Any) -> bool:
    """True for GPT-NeoX's ``megatron.training``: NeoX's ``megatron/__init__.py`` imports ``neox_arguments``
    first, Megatron-LM has no such module."""
    return module.__name__ == "megatron.training" and "megatron.neox_arguments" in sys.modules


def expected_signature(name: str) -> str:
    params = ", ".join(p if d is _REQUIRED else f"{p}={d!r}" for p, d in EXPECTED[name])
    return f"{name}({params})"


def signature_problem(module: Any, names: Iterable[str] = PATCHED) -> Optional[str]:
    """None if every function in ``names`` has its expected parameters; else one message naming the first
    that does not."""
    for name in names:
        fn = getattr(module, name, None)
        if fn is None:
            found = "missing"
        else:
            try:
                sig = inspect.signature(fn)
            except (TypeError, ValueError):
                sig = None
            got = None if sig is None else tuple((p.name, p.default) for p in sig.parameters.values())
            if got == EXPECTED[name]:
                continue
            found = f"{name}{sig}" if sig is not None else "not inspectable"
        return (f"neox-cpt: GPT-NeoX's megatron.training.{name} is {found}, but neox-cpt calls "
                f"{expected_signature(name)} (tested with GPT-NeoX {TESTED_NEOX_COMMIT}); NeoX was left unpatched. "
                f"Use GPT-NeoX {TESTED_NEOX_COMMIT}, a neox-cpt release that supports this NeoX, or remove the "
                "cpt_* keys (or set NEOX_CPT_DISABLE=1) to train with stock NeoX")
    return None


# where each wrapped function is defined in a NeoX checkout (training.py imports the others by name)
SOURCES = {"get_learning_rate_scheduler": "megatron/training.py", "evaluate_and_print_results": "megatron/training.py",
           "load_checkpoint": "megatron/checkpointing.py", "save_checkpoint": "megatron/checkpointing.py",
           "build_train_valid_test_data_loaders": "megatron/data/data_utils.py",
           "shift_and_wrap_data_loaders": "megatron/data/data_utils.py"}


def source_problem(neox_root: str) -> Optional[str]:
    """:func:`signature_problem` for a NeoX checkout read as source (``ast``, nothing imported): what the
    launch will find when it imports that NeoX."""
    import ast
    import os
    from types import SimpleNamespace

    module = SimpleNamespace()
    for name, rel in SOURCES.items():
        path = os.path.join(neox_root, rel)
        try:
            with open(path) as f:
                tree = ast.parse(f.read(), path)
        except (OSError, SyntaxError) as exc:
            return f"neox-cpt: cannot read {path} ({exc}); is {neox_root!r} a GPT-NeoX checkout?"
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == name:
                setattr(module, name, _stub(node))
    return signature_problem(module)


def _stub(node: Any) -> Any:
    """A function with the parameters (and literal defaults) of a parsed ``def``."""
    import ast

    args = node.args.posonlyargs + node.args.args
    defaults = [None] * (len(args) - len(node.args.defaults)) + list(node.args.defaults)
    params = []
    for arg, default in zip(args, defaults):
        try:
            value = _REQUIRED if default is None else ast.literal_eval(default)
        except ValueError:  # not a literal: never one of the expected defaults
            value = object()
        params.append(inspect.Parameter(arg.arg, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=value))
    if node.args.vararg or node.args.kwonlyargs or node.args.kwarg:
        params.append(inspect.Parameter("_other", inspect.Parameter.VAR_KEYWORD))  # never what we expect

    def stub(*_a: Any, **_k: Any) -> None:
        return None

    stub.__signature__ = inspect.Signature(params)
    return stub


def record(module: Any, message: str) -> None:
    """Leave ``module`` unpatched, with the reason (read by :func:`problem`)."""
    setattr(module, MARK, message)


def problem() -> Optional[str]:
    """Why NeoX's ``megatron.training`` was left unpatched in this process (None: patched or not imported)."""
    return getattr(sys.modules.get("megatron.training"), MARK, None)
