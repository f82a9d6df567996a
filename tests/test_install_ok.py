"""tools/install_ok.py: what makes `make demo` / `make test` skip pip, and what makes them run it."""
import importlib.metadata as md
import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("install_ok", ROOT / "tools" / "install_ok.py")
install_ok = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install_ok)


def _installed_here():
    found = importlib.util.find_spec("neox_cpt")
    return found is not None and Path(found.origin).resolve().parent == ROOT / "neox_cpt"


needs_install = pytest.mark.skipif(not _installed_here(), reason="neox_cpt is not installed from this checkout")


@needs_install
def test_requirements_of_the_asked_extra_only(monkeypatch):
    monkeypatch.setattr(md, "requires", lambda dist: ['numpy>=1.22', 'torch>=2.1; extra == "train"',
                                                      'nosuchdist-xyz>=1; extra == "test"'])
    monkeypatch.setattr(md, "version", lambda dist: (_ for _ in ()).throw(md.PackageNotFoundError(dist))
                        if dist == "nosuchdist-xyz" else "1.0")
    stale = [p for p in install_ok.problems("train") if "older" in p or "hook" in p]
    assert install_ok.problems("train") == stale           # train: only torch and numpy, both "installed"
    assert install_ok.problems("test") == stale + ["nosuchdist-xyz is missing"]


@needs_install
def test_a_build_input_newer_than_the_kernels_asks_for_a_rebuild(monkeypatch):
    native = Path(importlib.util.find_spec("neox_cpt._native").origin)
    newest = max(p.stat().st_mtime for p in (ROOT / "csrc").glob("*"))
    real_stat = Path.stat

    def stat(self, *a, **k):
        st = real_stat(self, *a, **k)
        if self == native:  # pretend the kernels were built before the newest input
            return os.stat_result((*st[:8], newest - 10, newest - 10))
        return st

    monkeypatch.setattr(Path, "stat", stat)
    assert "neox_cpt._native is older than its build inputs" in install_ok.problems("train")
