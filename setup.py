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


ext_modules = []
if Pybind11Extension is not None:
    ext_modules.append(
        Pybind11Extension(
            "neox_cpt._native",
            sorted(glob.glob("csrc/*.cpp")),
            include_dirs=["csrc"],
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
        ],
        "bench": ["psutil", "megatron-core==0.16.1"],
    },
    entry_points={"console_scripts": ["neox-cpt=neox_cpt.cli:main"]},
    ext_modules=ext_modules,
    cmdclass={"build_ext": OptionalBuildExt},
    zip_safe=False,
)
