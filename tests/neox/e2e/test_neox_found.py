"""Whether the end-to-end suite can run: a GPT-NeoX checkout and a Python for it (neox_e2e.find_neox).

Without one this is the suite's only test, and its skip is the one line that says how to get NeoX. With one,
NeoX's Python must load this checkout's C++ extension (built in place by ``make setup-test`` for this
checkout's Python): the launched NeoX processes import neox_cpt from here, not from an install.
"""
import os
import subprocess

import neox_e2e as e2e


def test_neox_python_loads_this_checkouts_extension(neox):
    env = dict(os.environ, PYTHONPATH=str(e2e.REPO))
    env.pop("PYTHONHOME", None)
    code = "import neox_cpt, neox_cpt._native as n; print(neox_cpt.__file__); print(n.__file__)"
    proc = subprocess.run([str(neox.python), "-c", code], capture_output=True, text=True, env=env, cwd=e2e.REPO,
                          timeout=120)
    assert proc.returncode == 0, (f"{neox.python} cannot import this checkout's neox_cpt._native (run `make "
                                  f"setup-test`; NeoX's Python must be the same version as .venv's):\n{proc.stderr}")
    for line in proc.stdout.split():
        assert os.path.realpath(line).startswith(str(e2e.REPO) + os.sep), line
