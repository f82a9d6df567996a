"""Access to the compiled kernels (``neox_cpt._native``), built from csrc/ by setup.py.

``NATIVE`` is the extension module, or None when the package was installed with
``NEOX_CPT_ALLOW_NO_NATIVE=1`` on a platform where the build failed; callers then use the NumPy
reference implementation of the same kernel. ``require_native()`` raises with the fix.
"""
from __future__ import annotations

try:
    from neox_cpt import _native as NATIVE  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - exercised only on platforms without a compiler
    NATIVE = None


def require_native():
    if NATIVE is None:
        raise ImportError(
            "neox_cpt._native is not built. Reinstall with a C++17 compiler available: "
            "`pip install -e .` (or set NEOX_CPT_ALLOW_NO_NATIVE=1 to use the NumPy fallback)."
        )
    return NATIVE
