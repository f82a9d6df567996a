"""Roff (``man`` and ``mdoc`` manual pages) to plain UTF-8 text, for the German demo corpus.

Not a typesetter: it renders what a reader of ``man`` sees as prose and drops the rest. Filled text
becomes one line per paragraph (paragraphs separated by a blank line), headings and list tags get a
line of their own, ``.nf``/``.EX`` blocks keep their lines, ``tbl`` rows become one line with cells
separated by a space. Comments, macro definitions, font/size/motion escapes and conditionals that only
apply to typesetters (``.if t``) are removed; ``.if n`` branches, ``.ds`` strings and the groff special
characters (``\\(bu``, ``\\[u00E4]``, ``\\(:a`` …) are honoured. Pure Python, so the corpus is the same
on every machine whether or not groff is installed.

    >>> print(roff_to_text('.TH X 1\\n.SH BEZEICHNUNG\\nx \\\\- tut \\\\fBetwas\\\\fP\\n.PP\\nZweiter\\nAbsatz.'))
    BEZEICHNUNG
    x - tut etwas
    <BLANKLINE>
    Zweiter Absatz.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Dict, Iterator, List, Optional, Set, Tuple

from neox_cpt.local.roff_chars import DEFAULT_STRINGS, SPECIAL_CHARS
from neox_cpt.local.roff_mdoc import LAYOUT as MDOC_LAYOUT
from neox_cpt.local.roff_mdoc import mdoc_text
from neox_cpt.local.roff_tbl import table_rows

GLUE = "\x00"  # what ``\c`` expands to: the next input line continues this word
_NAME = r"(?:\[[^\]]*\]|\(..|.)"  # \X argument: [long name], (xx or one character
_ESCAPE = re.compile(
    r"\\(?:(?P<font>[fF]" + _NAME + r")"
    r"|(?P<size>s(?:[+-]?\d|[+-]?\(\d\d|\([+-]?\d\d|\[[^\]]*\]|[+-]?'[^']*'))"
    r"|\((?P<c2>..)|\[(?P<cn>[^\]]*)\]|C'(?P<cq>[^']*)'"
    r"|\*(?:\((?P<s2>..)|\[(?P<sn>[^\]]*)\]|(?P<s1>.))"
    r"|(?P<reg>[ngVY$][+-]?" + _NAME + r")"
    r"|(?P<delim>[hvwlLDXZbxHSRANBo])(?P<q>.)(?:(?!(?P=q)).)*(?P=q)"
    r"|(?P<col>[mMk]" + _NAME + r")"
    r"|(?P<one>.))", re.S)
_SIMPLE = {"-": "-", "e": "\\", "E": "\\", "\\": "\\", ".": ".", "'": "'", "`": "`", " ": " ", "~": " ",
           "0": " ", "t": "\t", "c": GLUE}
_DROPPED = set("|^&)%:/,!{}adurpz\n")
_PARA = {"PP", "P", "LP", "HP", "sp", "Sp", "Pp", "Lp", "YS"}
_BREAK = {"br", "RS", "RE", "in", "Bl", "El", "ne"}
_NOFILL, _FILL = {"nf", "EX", "Vb"}, {"fi", "EE", "Ve"}
_SKIP_BLOCK = {"EQ": "EN", "PS": "PE", "GS": "GE"}


def roff_to_text(source: str) -> str:
    """Plain text of one roff document (see the module docstring for what is kept)."""
    return _Converter().convert(source)


def _strip_comment(line: str) -> Tuple[str, bool]:
    r"""Remove a ``\"`` or ``\#`` comment; the flag says ``\#`` also swallowed the newline."""
    i = line.find("\\")
    while i != -1 and i + 1 < len(line):
        if line[i + 1] == '"':
            return line[:i].rstrip(" \t"), False
        if line[i + 1] == "#":
            return line[:i], True
        i = line.find("\\", i + 2)
    return line, False


def _logical_lines(source: str) -> Iterator[str]:
    """Input lines without comments, with ``\\``-newline continuations joined."""
    pending = ""
    for raw in source.replace("\r\n", "\n").split("\n"):
        line, joined = _strip_comment(raw)
        trailing = len(line) - len(line.rstrip("\\"))
        if not joined and trailing % 2 == 1:
            line, joined = line[:-1], True
            if line.endswith("\\{"):  # `\{\`: the block's body starts on the next line, as its own line
                joined = False
        if joined:
            pending += line
            continue
        yield pending + line
        pending = ""
    if pending:
        yield pending


def split_args(text: str) -> List[str]:
    """Macro arguments: blank-separated, ``"quoted strings"`` with ``""`` for a literal quote."""
    args, i, n = [], 0, len(text)
    while i < n:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            break
        buf: List[str] = []
        if text[i] == '"':
            i += 1
            while i < n and not (text[i] == '"' and text[i + 1: i + 2] != '"'):
                buf.append(text[i])
                i += 2 if text[i] == '"' else 1
            i += 1
        else:
            while i < n and text[i] not in " \t":
                buf.append(text[i: i + 2] if text[i] == "\\" else text[i])
                i += 2 if text[i] == "\\" else 1
        args.append("".join(buf))
    return args


def _brace_delta(line: str) -> int:
    return line.count("\\{") - line.count("\\}")


def _eval_numeric(expr: str) -> float:
    """Value of a roff numeric condition, registers read as groff's ``.g``=1 and 0 otherwise."""
    expr = re.sub(r"\\n[+-]?(?:\(\.g|\[\.g\])", "1", expr)
    expr = re.sub(r"\\n[+-]?" + _NAME, "0", expr)
    expr = re.sub(r"\\w'[^']*'", "0", expr)
    expr = re.sub(r"(?<=\d)[icpPmnvuf]", "", expr)
    if not re.fullmatch(r"[0-9.+\-*/%<>=&:() ]+", expr):
        return 0.0
    expr = re.sub(r"(?<![<>=!])=(?!=)", "==", expr).replace("&", " and ").replace(":", " or ")
    try:
        return float(eval(expr, {"__builtins__": {}}, {}))  # noqa: S307 - digits and operators only
    except Exception:
        return 0.0


class _Converter:
    def __init__(self) -> None:
        self.strings: Dict[str, str] = dict(DEFAULT_STRINGS)
        self.macros: Set[str] = set()
        self.lines: List[str] = []   # finished output lines; "" is a paragraph gap
        self.words: List[str] = []   # the output line being filled
        self.fill = True
        self.glue = False            # the previous text ended in \c
        self.break_after_next = False  # .TP/.SH without args: the next text line stands alone
        self.ie_results: List[bool] = []
        self.link: Optional[Tuple[int, int, str]] = None  # (len(lines), len(words), url) at .UR/.MT
        self.mdoc_name = ""
        self.heading_end = -1        # len(lines) right after a heading: no paragraph gap there
        self.src: Iterator[str] = iter(())

    # ---- output
    def _break(self) -> None:
        if self.words:
            self.lines.append(" ".join(self.words) if self.fill else "".join(self.words))
            self.words = []

    def _para(self) -> None:
        self._break()
        if self.lines and self.lines[-1] != "" and len(self.lines) != self.heading_end:
            self.lines.append("")

    def _add_text(self, text: str) -> None:
        glue_next = text.endswith(GLUE)
        text = text.replace(GLUE, "")
        if self.fill:
            words = text.split()
            if self.glue and self.words and words and not text[:1].isspace():
                self.words[-1] += words.pop(0)
            self.words.extend(words)
        else:
            self.words.append(text.rstrip())
            if not glue_next:
                self._break()
        self.glue = glue_next
        if self.break_after_next and not glue_next:
            self._break()
            self.break_after_next = False

    # ---- escapes
    def expand(self, text: str, depth: int = 0) -> str:
        """Text with every escape sequence replaced by its rendering."""
        return _ESCAPE.sub(lambda m: self._escape(m, depth), text)

    def _escape(self, m: "re.Match[str]", depth: int) -> str:
        one = m.group("one")
        if one is not None:
            return "" if one in _DROPPED else _SIMPLE.get(one, one)
        glyph = m.group("c2") or m.group("cn") or m.group("cq")
        if glyph is not None:
            return _glyph(glyph)
        name = m.group("s2") or m.group("sn") or m.group("s1")
        if name is not None:
            value = self.strings.get(name.split(" ")[0], "")
            return self.expand(value, depth + 1) if depth < 8 else ""
        return ""  # fonts, sizes, registers, motions, colours, marks

    # ---- input
    def convert(self, source: str) -> str:
        self.src = _logical_lines(source)
        for line in self.src:
            self._line(line)
        self._break()
        text = "\n".join(line.rstrip() for line in self.lines)
        text = re.sub(r"\n{3,}", "\n\n", text).strip("\n")
        return unicodedata.normalize("NFC", text)

    def _line(self, line: str) -> None:
        if line[:1] in (".", "'"):
            self._control(line[1:].lstrip(" \t"))
        elif not line.strip():
            if self.fill:
                self._para()
            else:
                self._break()
                self.lines.append("")
        else:
            if self.fill and line[:1] in " \t":
                self._break()
            self._add_text(self.expand(line))

    def _skip_until(self, end: str) -> None:
        for line in self.src:
            if line.strip() == end or re.fullmatch(r"[.']\s*" + re.escape(end[1:]) + r"\s*", line):
                return

    def _branch(self, ok: bool, body: str) -> None:
        body = body.lstrip(" \t")
        if body.startswith("\\{"):
            body = body[2:]
            if not ok:
                depth = 1 + _brace_delta(body)
                while depth > 0:
                    nxt = next(self.src, None)
                    if nxt is None:
                        return
                    depth += _brace_delta(nxt)
                return
        if ok and body.strip():
            self._line(body)

    def _condition(self, text: str) -> Tuple[bool, str]:
        s, negate = text.lstrip(" \t"), False
        while s.startswith("!"):
            s, negate = s[1:], not negate
        if s[:1] in ("n", "t", "e", "o", "v") and s[1:2] in ("", " ", "\t", "\\"):
            value, rest = s[0] in ("n", "o"), s[1:]
        elif s[:1] in ("d", "r", "c", "m", "F", "S") and s[1:2] in (" ", "\t"):
            parts = s[1:].split(None, 1) + [""]
            value = s[0] == "d" and (parts[0] in self.strings or parts[0] in self.macros)
            rest = parts[1]
        elif s[:1] in ("'", '"', "|", "/"):
            q = s[0]
            m = re.match(re.escape(q) + r"([^" + q + r"]*)" + re.escape(q) + r"([^" + q + r"]*)" + re.escape(q), s)
            if not m:
                return False, ""
            value, rest = self.expand(m.group(1)) == self.expand(m.group(2)), s[m.end():]
        else:
            parts = s.split(None, 1) + [""]
            value, rest = _eval_numeric(parts[0]) > 0, parts[1]
        return value != negate, rest

    def _control(self, rest: str) -> None:
        m = re.match(r"([^\s\\]+)\s*", rest)
        if not m:
            return  # `.`, `.\}` and friends
        name, args = m.group(1), rest[m.end():]
        if name in ("if", "ie"):
            ok, body = self._condition(args)
            if name == "ie":
                self.ie_results.append(ok)
            self._branch(ok, body)
        elif name == "el":
            self._branch(not self.ie_results.pop() if self.ie_results else False, args)
        elif name in ("de", "de1", "dei", "am", "am1", "ami", "ig"):
            parts = args.split()
            if name != "ig" and parts:
                self.macros.add(parts[0])
            end = parts[1] if name != "ig" and len(parts) > 1 else (parts[0] if name == "ig" and parts else ".")
            self._skip_until("." + end)
        elif name in ("ds", "ds1", "as", "as1"):
            parts = args.split(None, 1) + [""]
            value = parts[1][1:] if parts[1].startswith('"') else parts[1]
            self.strings[parts[0]] = (self.strings.get(parts[0], "") if name.startswith("as") else "") + value
        elif name in _SKIP_BLOCK:
            self._skip_until("." + _SKIP_BLOCK[name])
        elif name == "TS":
            self._table()
        else:
            self._macro(name, split_args(args))

    def _macro(self, name: str, args: List[str]) -> None:
        text = [self.expand(a) for a in args]
        if name in ("SH", "SS", "Sh", "Ss"):
            self._para()
            if text:
                self._add_text(" ".join(text))
                self._break()
                self.heading_end = len(self.lines)
            else:
                self.break_after_next = True
        elif name in _PARA:
            self._para()
        elif name in _BREAK:
            self._break()
        elif name in ("TP", "TQ"):
            self._para() if name == "TP" else self._break()
            self.break_after_next = True
        elif name == "IP":
            self._para()
            if text and text[0].strip():
                self._add_text(text[0])
        elif name in _NOFILL or name in _FILL or name in ("Bd", "Ed"):
            self._break()
            self.fill = name in _FILL or name == "Ed" or (name == "Bd" and not {"-literal", "-unfilled"} & set(args))
        elif name in ("B", "I", "SM", "SB"):
            if text:
                self._add_text(" ".join(text))
        elif name in ("BR", "BI", "IB", "IR", "RB", "RI"):
            self._add_text("".join(text))
        elif name in ("UR", "MT"):
            self.link = (len(self.lines), len(self.words), text[0] if text else "")
        elif name in ("UE", "ME"):
            if self.link and self.link[:2] == (len(self.lines), len(self.words)) and self.link[2]:
                self._add_text(self.link[2])
            self.link = None
            if text and self.words:
                self.words[-1] += text[0]
        elif name == "URL" and text:
            self._add_text((text[1] if len(text) > 1 else text[0]) + (text[2] if len(text) > 2 else ""))
        elif name == "SY" and text:
            self._break()
            self._add_text(text[0])
        elif name == "OP" and text:
            self._add_text("[" + " ".join(text) + "]")
        elif name == "It":
            self._break()
            if args:
                self._add_text(self._mdoc(args))
                self._break()
        elif name in ("D1", "Dl"):
            self._break()
            self._add_text(self._mdoc(args))
            self._break()
        elif name == "Nd":
            self._add_text("– " + self._mdoc(args))
        elif re.fullmatch(r"[A-Z][a-z]{1,2}", name) and name not in MDOC_LAYOUT:
            self._add_text(self._mdoc([name] + args))
        # everything else (.TH, .PD, .IX, .nh, .ad, .ft, .nr, .ll, ...) changes only the layout

    def _mdoc(self, tokens: List[str]) -> str:
        text, self.mdoc_name = mdoc_text(tokens, self.expand, self.mdoc_name)
        return text

    def _table(self) -> None:
        self._break()
        self.lines.extend(table_rows(self.src, lambda cell: self.expand(cell).replace(GLUE, "")))
        self._para()


def _glyph(name: str) -> str:
    if name in SPECIAL_CHARS:
        return SPECIAL_CHARS[name]
    if re.fullmatch(r"u[0-9A-Fa-f]{4,6}(?:_[0-9A-Fa-f]{4,6})*", name):
        return "".join(chr(int(h, 16)) for h in name[1:].split("_"))
    if re.fullmatch(r"char\d+", name):
        return chr(int(name[4:]))
    return ""
