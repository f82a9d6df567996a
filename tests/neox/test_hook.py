"""The post-import hook: patches NeoX modules when imported, nothing else; NEOX_CPT_DISABLE turns it off."""
import os
import subprocess
import sys

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
