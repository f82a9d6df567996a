"""Access to the compiled kernels (``neox_cpt._native``), built from csrc/ by setup.py.

``NATIVE`` is the extension module. When it cannot be imported (a source checkout on ``PYTHONPATH``
without a build, an extension built for another Python or NumPy), importing this module raises
ImportError with the command that builds it: the NumPy reference kernels are ~20x slower to build an
index and ~30x slower to read one, which nobody should get without asking. Set
``NEOX_CPT_ALLOW_NO_NATIVE=1`` to use them anyway: ``NATIVE`` is then None, a warning says so, and
callers use ``neox_cpt.data.reference``. ``KERNELS`` names what is in use ("native" or "numpy").

    >>> KERNELS in ("native", "numpy")
    True
"""
from __future__ import annotations

import logging
import os

ALLOW_ENV = "NEOX_CPT_ALLOW_NO_NATIVE"
BUILD_HINT = ("build it with `pip install -e .` in the repository (a C++17 compiler is needed), or reinstall "
              "neox-cpt in this environment; or set NEOX_CPT_ALLOW_NO_NATIVE=1 to run on the NumPy reference "
              "kernels (index builds ~20x and reads ~30x slower)")

try:
    from neox_cpt import _native as NATIVE  # type: ignore[attr-defined]
except ImportError as _exc:
    if os.environ.get(ALLOW_ENV) != "1":
        raise ImportError(f"neox_cpt._native cannot be imported ({_exc}) from {os.path.dirname(__file__)}; "
                          f"{BUILD_HINT}") from _exc
    logging.getLogger(__name__).warning("neox_cpt._native cannot be imported (%s); %s=1: using the NumPy "
                                        "reference kernels", _exc, ALLOW_ENV)
    NATIVE = None

KERNELS = "native" if NATIVE is not None else "numpy"


def require_native():
    """The extension module; raises ImportError with the fix when only the NumPy fallback is available."""
    if NATIVE is None:
        raise ImportError(f"neox_cpt._native is not built; {BUILD_HINT}")
    return NATIVE
