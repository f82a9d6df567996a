"""Without the compiled kernels the package stops at import, unless NEOX_CPT_ALLOW_NO_NATIVE=1 is set."""
import os
import subprocess
import sys
import textwrap

BLOCK = textwrap.dedent("""
    import sys
    class Block:  # as if neox_cpt._native were not built (a source checkout on PYTHONPATH)
        def find_spec(self, name, path=None, target=None):
            if name == "neox_cpt._native":
                raise ImportError("No module named 'neox_cpt._native'")
    sys.meta_path.insert(0, Block())
    import neox_cpt.data.build, neox_cpt.native
    print(neox_cpt.native.KERNELS, neox_cpt.data.build.KERNELS.__name__)
""")


def run(allow):
    env = {k: v for k, v in os.environ.items() if k != "NEOX_CPT_ALLOW_NO_NATIVE"}
    if allow:
        env["NEOX_CPT_ALLOW_NO_NATIVE"] = "1"
    return subprocess.run([sys.executable, "-c", BLOCK], capture_output=True, text=True, env=env)


def test_missing_extension_stops_at_import_with_the_build_command():
    r = run(allow=False)
    assert r.returncode != 0
    assert "ImportError: neox_cpt._native cannot be imported" in r.stderr
    assert "pip install -e ." in r.stderr and "NEOX_CPT_ALLOW_NO_NATIVE=1" in r.stderr


def test_numpy_fallback_only_when_asked_and_said_so():
    r = run(allow=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["numpy", "neox_cpt.data.reference"]
    assert "using the NumPy reference kernels" in r.stderr


def test_the_built_extension_is_what_runs_here():
    from neox_cpt import native

    assert native.KERNELS == "native"
