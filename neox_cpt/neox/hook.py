"""Post-import hook that patches GPT-NeoX when (and only when) NeoX imports its own modules.

Stdlib only, because it runs at every interpreter start through ``neox_cpt_hook.pth``. A finder placed at
the front of ``sys.meta_path`` lets the normal machinery find the watched modules, then wraps their
loader so that, right after the module's code has executed, a patch function runs on the module object
(e.g. graft the plugin keys into ``NeoXArgs``; swap ``megatron.training.get_learning_rate_scheduler``).
Processes that never import ``megatron`` only pay for one dictionary lookup per import.

    >>> import sys, types
    >>> from neox_cpt.neox import hook
    >>> seen = []
    >>> _ = sys.modules.pop("colorsys", None)
    >>> finder = hook.install(patches={"colorsys": lambda m: seen.append(m.__name__)}, force=True)
    >>> import colorsys
    >>> seen
    ['colorsys']
    >>> hook.uninstall()

``NEOX_CPT_DISABLE=1`` makes :func:`install` a no-op (documented in docs/neox.md).
"""
# Only os and sys (already loaded at start-up): this module is imported by every interpreter of the
# environment through the .pth, so it must cost next to nothing.
import os
import sys

DISABLE_ENV = "NEOX_CPT_DISABLE"

# module name -> "module:function" called with the freshly executed module (imported lazily).
PATCHED_MODULES = {
    "megatron.neox_arguments.arguments": "neox_cpt.neox.graft:apply",
    "megatron.training": "neox_cpt.neox.patches:apply",
}


def disabled() -> bool:
    """True when the user turned the plugin off with ``NEOX_CPT_DISABLE=1`` (or true/yes)."""
    return os.environ.get(DISABLE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _resolve(target):
    if callable(target):
        return target
    import importlib

    module_name, _, func_name = target.partition(":")
    return getattr(importlib.import_module(module_name), func_name)


class _PatchingLoader:  # the importlib.abc.Loader protocol, without importing importlib.abc
    """Delegates to the real loader, then runs the patch on the executed module."""

    def __init__(self, loader, patch) -> None:
        self._loader = loader
        self._patch = patch

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        _resolve(self._patch)(module)

    def __getattr__(self, name):  # get_source, get_filename, is_package, ... for inspect/linecache
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._loader, name)


class PostImportFinder:  # the importlib.abc.MetaPathFinder protocol
    """Finds nothing itself; wraps the loader of the watched modules found by the other finders."""

    def __init__(self, patches) -> None:
        self.patches = dict(patches)
        self._busy = set()  # names being looked up through the other finders (no recursion into ourselves)

    def find_spec(self, fullname, path, target=None):
        patch = self.patches.get(fullname)
        if patch is None or fullname in self._busy:
            return None
        self._busy.add(fullname)
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self._busy.discard(fullname)
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _PatchingLoader(spec.loader, patch)
        return spec


_finder = None


def install(patches=None, force: bool = False):
    """Register the post-import hook (idempotent); patch modules that are already imported right away.

    ``patches`` maps module names to patch callables or ``"module:function"`` strings (default:
    :data:`PATCHED_MODULES`). Returns the finder, or None when ``NEOX_CPT_DISABLE=1`` (unless ``force``).
    """
    global _finder
    if disabled() and not force:
        return None
    if _finder is not None:
        uninstall()
    _finder = PostImportFinder(PATCHED_MODULES if patches is None else patches)
    sys.meta_path.insert(0, _finder)
    for name, patch in _finder.patches.items():
        module = sys.modules.get(name)
        if module is not None:
            _resolve(patch)(module)
    return _finder


def uninstall() -> None:
    """Remove the hook (already patched modules stay patched; tests re-import them to reset)."""
    global _finder
    if _finder is not None and _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    _finder = None


def install_at_startup() -> None:
    """Entry point of ``neox_cpt_hook.pth``: never raises, so a broken plugin cannot break Python."""
    try:
        install()
    except Exception as exc:  # pragma: no cover - defensive; reported, never fatal at startup
        sys.stderr.write(f"neox-cpt: NeoX hook not installed ({exc!r}); set {DISABLE_ENV}=1 to silence\n")
