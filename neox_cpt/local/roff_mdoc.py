"""One ``mdoc`` macro line as text, for :mod:`neox_cpt.local.roff` (BSD-style pages: 27 of the German ones).

Callable macros are rendered (``Fl x`` -> ``-x``, ``Xr ls 1`` -> ``ls(1)``, ``Op``/``Dq``/``Pq`` enclose the
rest of the line, ``Ns`` glues) and font-only macros (``Ar``, ``Cm``, ``Pa``, ``Em`` …) vanish, leaving
their arguments.

    >>> mdoc_text(["Op", "Fl", "Fl", "help"], str, "")
    ('[--help]', '')
    >>> mdoc_text(["Nm", "file"], str, "")
    ('file', 'file')
"""
from __future__ import annotations

import re
from typing import Callable, List, Optional, Tuple

ENCLOSE = {"Op": ("[", "]"), "Dq": ("“", "”"), "Qq": ('"', '"'), "Sq": ("‘", "’"), "Ql": ("‘", "’"),
           "Pq": ("(", ")"), "Aq": ("<", ">"), "Bq": ("[", "]"), "Brq": ("{", "}")}
PAIRS = {"Oo": "[", "Oc": "]", "Do": "“", "Dc": "”", "Qo": '"', "Qc": '"', "So": "‘", "Sc": "’",
         "Po": "(", "Pc": ")", "Ao": "<", "Ac": ">", "Bo": "[", "Bc": "]", "Bro": "{", "Brc": "}"}
WORDS = {"Ux": "UNIX", "Bx": "BSD", "At": "AT&T UNIX", "Lx": "Linux", "Ox": "OpenBSD", "Fx": "FreeBSD"}
LAYOUT = frozenset({"Dd", "Dt", "Os", "Sm", "Rs", "Re", "Bk", "Ek", "Bf", "Ef"})
"""Macros that only set up the page or the layout: the whole line is dropped."""
PUNCT = frozenset({".", ",", ";", ":", ")", "]", "?", "!"})


def is_macro(token: Optional[str]) -> bool:
    """Whether ``token`` looks like an mdoc macro name (``Fl``, ``Brq``)."""
    return token is not None and re.fullmatch(r"[A-Z][a-z]{1,2}", token) is not None


def mdoc_text(tokens: List[str], expand: Callable[[str], str], name: str) -> Tuple[str, str]:
    """(text of the line, the page's ``Nm`` name): the first ``Nm word`` sets the name, a bare ``Nm`` prints it."""
    pieces: List[Tuple[str, bool]] = []  # (text, space before it)
    closers: List[str] = []
    no_space, i = False, 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if tok in ENCLOSE:
            pieces.append((ENCLOSE[tok][0], not no_space))
            closers.append(ENCLOSE[tok][1])
            no_space = True
        elif tok in PAIRS:
            opening = tok.endswith("o")
            pieces.append((PAIRS[tok], not no_space and opening))
            no_space = opening
        elif tok in ("Ns", "Pf"):
            no_space = True
            if tok == "Pf" and nxt is not None:
                pieces.append((expand(nxt), True))
                i += 1
        elif tok == "Fl" and nxt == "Fl":  # `Fl Fl x` is --x
            pieces.append(("-", not no_space))
            no_space = True
        elif tok == "Fl":
            flag = "-" + (expand(nxt) if nxt is not None and not is_macro(nxt) else "")
            i += 1 if len(flag) > 1 else 0
            pieces.append((flag, not no_space))
            no_space = False
        elif tok == "Xr" and nxt is not None:
            section = tokens[i + 2] if i + 2 < len(tokens) else ""
            pieces.append((f"{expand(nxt)}({section})", not no_space))
            i += 2
            no_space = False
        elif tok == "Nm":
            if nxt is not None and not is_macro(nxt) and nxt not in PUNCT:
                name = name or expand(nxt)  # the word itself follows as plain text
            else:
                pieces.append((name, not no_space))
                no_space = False
        elif tok in WORDS:
            pieces.append((WORDS[tok], not no_space))
        elif is_macro(tok):
            pass  # a callable macro that only changes the font (Ar, Cm, Pa, Em, ...)
        else:
            pieces.append((expand(tok), not no_space and tok not in PUNCT))
            no_space = tok in ("(", "[")
        i += 1
    tail: List[Tuple[str, bool]] = []  # trailing punctuation goes after the closing brackets
    while pieces and pieces[-1][0] in PUNCT and closers:
        tail.insert(0, pieces.pop())
    pieces += [(c, False) for c in reversed(closers)] + tail
    return "".join((" " if space and k else "") + text for k, (text, space) in enumerate(pieces)), name
