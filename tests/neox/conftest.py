"""Fixtures: the NeoX stand-in (tests/neox/standin, imported through the real post-import hook)."""
import os
import sys

import pytest

STANDIN = os.path.join(os.path.dirname(__file__), "standin")


def _drop_megatron() -> None:
    for name in [m for m in sys.modules if m == "megatron" or m.startswith("megatron.")]:
        del sys.modules[name]


@pytest.fixture
def standin(monkeypatch):
    """Import the stand-in ``megatron`` with neox-cpt's hook installed; returns a namespace of modules."""
    from types import SimpleNamespace

    from neox_cpt.neox import hook

    monkeypatch.delenv(hook.DISABLE_ENV, raising=False)
    _drop_megatron()
    monkeypatch.syspath_prepend(STANDIN)
    hook.install()
    try:
        import megatron.neox_arguments.arguments as arguments
        import megatron.training as training

        yield SimpleNamespace(arguments=arguments, training=training, NeoXArgs=arguments.NeoXArgs)
    finally:
        hook.uninstall()
        _drop_megatron()


@pytest.fixture
def stock_standin(monkeypatch):
    """The stand-in without the plugin (NEOX_CPT_DISABLE=1)."""
    from types import SimpleNamespace

    from neox_cpt.neox import hook

    monkeypatch.setenv(hook.DISABLE_ENV, "1")
    hook.uninstall()
    _drop_megatron()
    monkeypatch.syspath_prepend(STANDIN)
    assert hook.install() is None
    try:
        import megatron.neox_arguments.arguments as arguments
        import megatron.training as training

        yield SimpleNamespace(arguments=arguments, training=training, NeoXArgs=arguments.NeoXArgs)
    finally:
        _drop_megatron()


@pytest.fixture(scope="session")
def gloo():
    """A gloo process group of size 1 (the replay loaders broadcast flags and use barriers)."""
    torch = pytest.importorskip("torch")
    import socket

    dist = torch.distributed
    if not dist.is_initialized():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield
