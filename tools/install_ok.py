"""Exit 0 when this checkout is already installed, with EXTRA, in the running interpreter; else 1.

``make demo`` / ``make test`` run it first and call ``pip install -e .[EXTRA]`` only when it fails, so a
second ``make`` does not rebuild the C++ kernels (~40 s). It checks, without importing torch:
- ``neox_cpt`` resolves to this checkout and its compiled ``neox_cpt._native`` is newer than every
  build input (setup.py, pyproject.toml, csrc/*);
- the import hook ``neox_cpt_hook.pth`` is installed;
- every distribution the installed ``neox-cpt`` requires for EXTRA is installed.

    python tools/install_ok.py train && echo "nothing to install"
"""
from __future__ import annotations

import importlib.metadata as md
import importlib.util
import re
import site
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# tools/neox_cpt.py (the command's script) would shadow the package: look past this directory
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def problems(extra: str) -> list:
    out = []
    spec = importlib.util.find_spec("neox_cpt")
    if spec is None or spec.origin is None or Path(spec.origin).resolve().parent != ROOT / "neox_cpt":
        return [f"neox_cpt is not installed from {ROOT}"]
    native = importlib.util.find_spec("neox_cpt._native")
    if native is None or native.origin is None:
        return ["neox_cpt._native is not built"]
    inputs = [ROOT / "setup.py", ROOT / "pyproject.toml", *sorted((ROOT / "csrc").glob("*"))]
    newest = max(p.stat().st_mtime for p in inputs if p.exists())
    if Path(native.origin).stat().st_mtime < newest:
        out.append("neox_cpt._native is older than its build inputs")
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    if not any((Path(d) / "neox_cpt_hook.pth").is_file() for d in dirs):
        out.append("neox_cpt_hook.pth is not installed")
    try:
        requires = md.requires("neox-cpt") or []
    except md.PackageNotFoundError:
        return out + ["no neox-cpt distribution metadata"]
    for req in requires:
        name, _, marker = req.partition(";")
        if marker and not re.search(rf"extra\s*==\s*['\"]{re.escape(extra)}['\"]", marker):
            continue
        dist = re.split(r"[<>=!~\[ ]", name.strip(), maxsplit=1)[0]
        try:
            md.version(dist)
        except md.PackageNotFoundError:
            out.append(f"{dist} is missing")
    return out


def main(argv: list) -> int:
    if len(argv) != 2:
        print("usage: python tools/install_ok.py EXTRA", file=sys.stderr)
        return 2
    found = problems(argv[1])
    for p in found:
        print(f"install needed: {p}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
