"""The post-import hook: patches NeoX modules when imported, nothing else; NEOX_CPT_DISABLE turns it off."""
import os
import subprocess
import sys

import pytest

from neox_cpt.neox import hook, patches

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_hook_patches_training_and_grafts_arguments(standin):
    for name in patches.PATCHED:
        fn = getattr(standin.training, name)
        assert fn.__code__.co_filename.endswith(("patches.py", "data.py")), name
        assert fn.__wrapped__.__module__.startswith("megatron."), name  # the stock function, kept underneath
    assert standin.training._neox_cpt_patched is True
    assert standin.NeoXArgs.__bases__[-1].__name__ == "NeoXArgsCpt"
    import megatron

    assert megatron.NeoXArgs is standin.NeoXArgs  # the package re-export sees the grafted class


def test_disable_env_leaves_neox_stock(stock_standin):
    assert not hasattr(stock_standin.training, "_neox_cpt_patched")
    assert not hasattr(stock_standin.training.get_learning_rate_scheduler, "__wrapped__")
    assert "cpt_stage_name" not in stock_standin.NeoXArgs.__dataclass_fields__


def test_install_patches_already_imported_module(standin):
    import megatron.training as training

    hook.install()  # second install: idempotent, no double wrapping
    assert not hasattr(training.get_learning_rate_scheduler.__wrapped__, "__wrapped__")


def _run(code: str, env_extra=None) -> str:
    env = dict(os.environ, **(env_extra or {}))
    env.pop(hook.DISABLE_ENV, None) if not env_extra else None
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_pth_line_installs_hook_without_importing_anything_heavy():
    line = open(os.path.join(ROOT, "neox_cpt_hook.pth")).read().strip()
    assert line.startswith("import ") and "\n" not in line
    code = (f"exec({line!r}); import sys; "
            "print(type(sys.meta_path[0]).__name__, "
            "sorted(m for m in ('torch', 'megatron', 'numpy', 'neox_cpt.neox.patches') if m in sys.modules))")
    assert _run(code) == "PostImportFinder []"


def test_pth_line_respects_disable_env():
    line = open(os.path.join(ROOT, "neox_cpt_hook.pth")).read().strip()
    code = f"exec({line!r}); import sys; print(any(type(f).__name__ == 'PostImportFinder' for f in sys.meta_path))"
    assert _run(code, {hook.DISABLE_ENV: "1"}) == "False"


def test_neox_cpt_install_entry_point():
    code = ("import sys, neox_cpt; f = neox_cpt.install(); "
            "print(sys.meta_path[0] is f, sorted(f.patches))")
    assert _run(code) == "True ['megatron.neox_arguments.arguments', 'megatron.training']"


def _drop_megatron():
    for name in [m for m in sys.modules if m == "megatron" or m.startswith("megatron.")]:
        del sys.modules[name]


def test_megatron_lm_is_left_alone(tmp_path, monkeypatch):
    """Megatron-LM uses the same module names; its megatron.training has none of NeoX's functions."""
    pkg = tmp_path / "megatron"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "training.py").write_text("def pretrain(train_valid_test_dataset_provider, model_provider):\n    return 1\n")
    monkeypatch.delenv(hook.DISABLE_ENV, raising=False)
    _drop_megatron()
    monkeypatch.syspath_prepend(str(tmp_path))
    hook.install()
    try:
        import megatron.training as training  # raised AttributeError before: every NeoX name was looked up

        assert training.pretrain(None, None) == 1 and not hasattr(training, "_neox_cpt_patched")
    finally:
        hook.uninstall()
        _drop_megatron()


def test_neox_with_another_signature_is_left_untouched_and_stops_cpt_runs(tmp_path, monkeypatch):
    import shutil

    shutil.copytree(os.path.join(os.path.dirname(__file__), "standin", "megatron"), tmp_path / "megatron")
    path = tmp_path / "megatron" / "checkpointing.py"  # a NeoX whose load_checkpoint lost `iteration`
    path.write_text(path.read_text().replace("inference=False, iteration=None):", "inference=False):\n    iteration = None"))
    monkeypatch.delenv(hook.DISABLE_ENV, raising=False)
    _drop_megatron()
    monkeypatch.syspath_prepend(str(tmp_path))
    hook.install()
    try:
        import megatron.training as training
        from megatron.neox_arguments.arguments import NeoXArgs

        assert not hasattr(training, "_neox_cpt_patched")
        assert not any(hasattr(getattr(training, name), "__wrapped__") for name in patches.PATCHED)
        stock = NeoXArgs.from_dict({"train_batch_size": 4, "train_iters": 10})  # no cpt_* key: stock NeoX runs
        assert stock.train_iters == 10
        message = ("neox-cpt: GPT-NeoX's megatron.training.load_checkpoint is load_checkpoint(neox_args, model, "
                   "optimizer, lr_scheduler, inference=False), but neox-cpt calls load_checkpoint(neox_args, model, "
                   "optimizer, lr_scheduler, inference=False, iteration=None) (tested with GPT-NeoX ea7aefd)")
        with pytest.raises(RuntimeError) as err:
            NeoXArgs.from_dict({"train_batch_size": 4, "train_iters": 10, "cpt_lr_max": 1e-3})
        assert str(err.value).startswith(message)
    finally:
        hook.uninstall()
        _drop_megatron()
