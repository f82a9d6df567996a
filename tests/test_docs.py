"""The docs are for people who have only the repository: README.md and docs/*.md name no absolute path of one
machine, no file that is not in the repository (links, repository paths in the text, ``NAME.md`` files) and
none of the labels our team gave its members' work."""
from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))

MACHINE_PATH = re.compile(r"(?<![\w.~$>-])(?:/(?:work|home|Users|root|mnt|scratch|srv|opt)/[\w.-]+|\.\./shared\b"
                          r"|\b[A-Z]:\\\\)")
"""An absolute path of some machine (``/home/alice/...``, ``/work/...``), or a path out of the checkout. Scratch
paths that exist everywhere (``/tmp/x``) and placeholders (``<neox-root>``, ``~/.cache``) are fine."""
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
REPO_PATH = re.compile(r"(?<![\w/.~<>$-])((?:neox_cpt|configs|tools|tests|docs|bench|csrc)/[\w./{},*<>-]*[\w*}>])")
"""A path into this repository as text (``configs/local/demo.yml``, ``docs/img/x.png``, ``tests/<dir>``)."""
MD_NAME = re.compile(r"(?<![\w/.-])([\w.-]+\.md)\b")
TEAM_LABEL = re.compile(r"\b(?:[A-CE-Z]\d|D[3-9])'s\b")
"""A label our team used for its members' work (``B2's harness``); D0, D1, D2 are the paper's dataset names."""
GENERATED = {"report.md", "results.md", "schedules.md"}
"""Files the tools write (``neox-cpt report``, ``demo --compare``, ``demo --schedules-only``), not in the repository."""


def _lines(doc: Path) -> Iterator[Tuple[int, str]]:
    yield from enumerate(doc.read_text(encoding="utf-8").splitlines(), 1)


def _expand(path: str) -> List[str]:
    """``a/{b,c}.md`` -> [``a/b.md``, ``a/c.md``]; ``<shift>`` placeholders become ``*``."""
    path = re.sub(r"<[^>/]*>", "*", path)
    brace = re.search(r"\{([^{}]*)\}", path)
    if not brace:
        return [path]
    return [p for alt in brace.group(1).split(",") for p in _expand(path[:brace.start()] + alt + path[brace.end():])]


def _exists(path: str, base: Path) -> bool:
    return any(glob.glob(str(b / p)) for p in _expand(path) for b in (base, ROOT))


def problems(doc: Path) -> List[str]:
    """Every machine path and missing file reference in ``doc``, as ``file:line: what``."""
    names = {p.name for p in ROOT.rglob("*.md") if ".venv" not in p.parts and "node_modules" not in p.parts}
    where = doc.relative_to(ROOT)
    found = []
    for number, line in _lines(doc):
        found += [f"{where}:{number}: absolute path of one machine: {m.group(0)}" for m in MACHINE_PATH.finditer(line)]
        found += [f"{where}:{number}: a label only our team knows: {m.group(0)}" for m in TEAM_LABEL.finditer(line)]
        for m in LINK.finditer(line):
            target = m.group(1).split("#")[0]
            if target and not re.match(r"[a-z]+:", target) and not _exists(target, doc.parent):
                found.append(f"{where}:{number}: link to a file that is not in the repository: {target}")
        for m in REPO_PATH.finditer(line):
            if not _exists(m.group(1), ROOT):
                found.append(f"{where}:{number}: names a file that is not in the repository: {m.group(1)}")
        for m in MD_NAME.finditer(line):
            if m.group(1) not in names and m.group(1) not in GENERATED:
                found.append(f"{where}:{number}: names a file that is not in the repository: {m.group(1)}")
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_name_only_what_the_repository_has(doc):
    assert problems(doc) == []


def test_the_checks_catch_what_they_should():
    doc = ROOT / "docs" / "_test_doc_check.md"
    doc.write_text("see /work/shared/ANCHORS.md and INTERFACES.md, [x](nope.md), `configs/local/none.yml`, B2's\n"
                   "fine: [demo](demo.md), `configs/local/demo.yml`, `runs/demo/report/report.md`, /tmp/rep, "
                   "`<neox-root>/tools/datasets/preprocess_data.py`, docs/img/results_{german,bible}_tradeoff.png, "
                   "`tests/<dir>`, [web](https://example.org/a.md), the D0's and D1's loss\n")
    try:
        found = problems(doc)
    finally:
        doc.unlink()
    assert [f.split(": ", 1)[1] for f in found] == [
        "absolute path of one machine: /work/shared",
        "a label only our team knows: B2's",
        "link to a file that is not in the repository: nope.md",
        "names a file that is not in the repository: configs/local/none.yml",
        "names a file that is not in the repository: INTERFACES.md",
        "names a file that is not in the repository: nope.md",
    ]
