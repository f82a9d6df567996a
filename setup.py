"""Build script: the package plus its C++17/pybind11 kernels from csrc/.

Every ``csrc/*.cpp`` is compiled into one extension module, ``neox_cpt._native``, at install time
(``pip install .`` or ``pip install -e .``); nothing is ever compiled at run time. If the compiler is
missing the build fails loudly unless ``NEOX_CPT_ALLOW_NO_NATIVE=1`` is set, in which case the package
installs without the extension and the NumPy reference implementations run instead.
"""
from __future__ import annotations

import glob
import os

from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

try:
    from pybind11.setup_helpers import Pybind11Extension
except ImportError:  # only when building outside the isolated build env without pybind11
    Pybind11Extension = None


class OptionalBuildExt(build_ext):
    """Fail the build on compiler errors unless the user opted into the NumPy fallback."""

    def run(self) -> None:
        try:
            super().run()
        except Exception:
            if os.environ.get("NEOX_CPT_ALLOW_NO_NATIVE") != "1":
                raise
            print("neox-cpt: native build failed; installing with the NumPy fallback")


HOOK_PTH = "neox_cpt_hook.pth"


class BuildPyWithHook(build_py):
    """Also place ``neox_cpt_hook.pth`` at the root of the install (site-packages).

    Python runs its one import line at every interpreter start; that installs a stdlib-only post-import
    hook that patches GPT-NeoX's modules only if a process imports them (docs/neox.md). Works for
    ``pip install .`` and ``pip install -e .``; ``NEOX_CPT_DISABLE=1`` turns the plugin off.
    """

    def run(self) -> None:
        super().run()
        self.mkpath(self.build_lib)
        self.copy_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), HOOK_PTH),
                       os.path.join(self.build_lib, HOOK_PTH))

    def get_outputs(self, include_bytecode=True):
        return list(super().get_outputs(include_bytecode)) + [os.path.join(self.build_lib, HOOK_PTH)]


class _StrategyWithHook:
    """Wraps setuptools' editable-install strategy so the editable wheel carries the hook .pth too."""

    def __init__(self, strategy, pth_text: str) -> None:
        self._strategy = strategy
        self._pth_text = pth_text

    def __call__(self, wheel, files, mapping):
        self._strategy(wheel, files, mapping)
        wheel.writestr(HOOK_PTH, self._pth_text)

    def __enter__(self):
        self._strategy.__enter__()
        return self

    def __exit__(self, *exc):
        return self._strategy.__exit__(*exc)


cmdclass = {"build_ext": OptionalBuildExt, "build_py": BuildPyWithHook}
try:  # setuptools >= 64 (PEP 660 editable installs); _select_strategy is its hook for what goes in the wheel
    from setuptools.command.editable_wheel import editable_wheel

    class EditableWheelWithHook(editable_wheel):
        def _select_strategy(self, *args, **kwargs):
            strategy = super()._select_strategy(*args, **kwargs)
            with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), HOOK_PTH)) as f:
                return _StrategyWithHook(strategy, f.read())

    if hasattr(editable_wheel, "_select_strategy"):
        cmdclass["editable_wheel"] = EditableWheelWithHook
except ImportError:
    pass

ext_modules = []
if Pybind11Extension is not None:
    ext_modules.append(
        Pybind11Extension(
            "neox_cpt._native",
            sorted(glob.glob("csrc/*.cpp")),
            include_dirs=["csrc"],
            depends=sorted(glob.glob("csrc/*.h")),  # a header change rebuilds the extension
            cxx_std=17,
            extra_compile_args=["-O3"],
        )
    )

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "neox_cpt", "version.py")) as f:
    version = f.read().split('"')[1]

setup(
    name="neox-cpt",
    version=version,
    description="Continual pre-training for GPT-NeoX: LR re-warming/re-decaying, replay, infinite schedules",
    packages=find_packages(include=["neox_cpt", "neox_cpt.*"]),
    python_requires=">=3.9",
    # Core: never torch/transformers/deepspeed -- NeoX environments pin their own.
    install_requires=["numpy>=1.22", "pyyaml>=5.4"],
    extras_require={
        # Lower bounds only, so an environment that already has these keeps its versions.
        "train": ["torch>=2.1", "transformers>=4.38", "tokenizers>=0.15", "matplotlib>=3.5", "tqdm"],
        "plot": ["matplotlib>=3.5"],
        "preprocess": ["tokenizers>=0.15", "sentencepiece>=0.1.99", "tqdm"],
        "test": [
            "pytest>=7",
            "torch>=2.1",
            "transformers>=4.38",
            "tokenizers>=0.15",
            "sentencepiece>=0.1.99",
            "matplotlib>=3.5",
            "tqdm",
            "deepspeed>=0.14",
            "tensorboard>=2.10",
        ],
        "bench": ["megatron-core==0.16.1"],
    },
    entry_points={"console_scripts": ["neox-cpt=neox_cpt.cli:main"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
