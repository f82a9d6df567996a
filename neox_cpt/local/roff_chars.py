"""Tables for :mod:`neox_cpt.local.roff`: groff special characters and predefined strings as UTF-8.

Only data lives here. ``SPECIAL_CHARS`` maps a glyph name (``\\(xx`` / ``\\[name]``) to its text;
names not listed render as nothing, ``u00E4``-style names are decoded by the converter itself.

    >>> SPECIAL_CHARS["bu"], SPECIAL_CHARS[":a"], DEFAULT_STRINGS["lq"]
    ('•', 'ä', '“')
"""
from __future__ import annotations

from typing import Dict

SPECIAL_CHARS: Dict[str, str] = {
    # punctuation and dashes
    "bu": "•", "em": "—", "en": "–", "hy": "-", "mi": "-", "pl": "+", "eq": "=", "sl": "/", "rs": "\\",
    "aq": "'", "dq": '"', "lq": "“", "rq": "”", "oq": "‘", "cq": "’", "Bq": "„", "bq": "‚",
    "Fo": "«", "Fc": "»", "fo": "‹", "fc": "›", "ga": "`", "aa": "´", "ha": "^", "ti": "~", "a~": "~",
    "a^": "^", "at": "@", "sh": "#", "Do": "$", "ba": "|", "or": "|", "br": "|", "bv": "|", "ul": "_",
    "ru": "_", "lB": "[", "rB": "]", "lC": "{", "rC": "}", "la": "⟨", "ra": "⟩", "sc": "§", "ps": "¶",
    "dg": "†", "dd": "‡", "de": "°", "fm": "′", "sd": "″", "%0": "‰", "ct": "¢", "Po": "£", "Ye": "¥",
    "Eu": "€", "eu": "€", "co": "©", "rg": "®", "tm": "™", "r!": "¡", "r?": "¿", "pc": "·", "md": "·",
    "ci": "○", "sq": "□", "OK": "✓", "3d": "∴", "tf": "∴", "lh": "☜", "rh": "☞",
    # arithmetic and arrows
    "mu": "×", "di": "÷", "+-": "±", "<=": "≤", ">=": "≥", "!=": "≠", "==": "≡", "~~": "≈", "~=": "≅",
    "->": "→", "<-": "←", "<>": "↔", "ua": "↑", "da": "↓", "rA": "⇒", "lA": "⇐", "hA": "⇔", "==>": "⇒",
    "if": "∞", "mo": "∈", "no": "¬", "AN": "∧", "OR": "∨", "sr": "√", "pt": "∝", "12": "½", "14": "¼",
    "34": "¾", "S1": "¹", "S2": "²", "S3": "³", "*m": "µ", "mc": "µ", "*a": "α", "*b": "β", "*p": "π",
    # letters (German first; the rest of Latin-1 for good measure)
    ":a": "ä", ":o": "ö", ":u": "ü", ":A": "Ä", ":O": "Ö", ":U": "Ü", "ss": "ß", ":e": "ë", ":i": "ï",
    ":y": "ÿ", ":E": "Ë", ":I": "Ï", "'a": "á", "'e": "é", "'i": "í", "'o": "ó", "'u": "ú", "'y": "ý",
    "'A": "Á", "'E": "É", "'I": "Í", "'O": "Ó", "'U": "Ú", "`a": "à", "`e": "è", "`i": "ì", "`o": "ò",
    "`u": "ù", "`A": "À", "`E": "È", "^a": "â", "^e": "ê", "^i": "î", "^o": "ô", "^u": "û", "^A": "Â",
    "~a": "ã", "~n": "ñ", "~o": "õ", "~N": "Ñ", ",c": "ç", ",C": "Ç", "oa": "å", "oA": "Å", "ae": "æ",
    "AE": "Æ", "oe": "œ", "OE": "Œ", "/o": "ø", "/O": "Ø", "-D": "Ð", "Sd": "ð", "TP": "Þ", "Tp": "þ",
    "ff": "ff", "fi": "fi", "fl": "fl", "Fi": "ffi", "Fl": "ffl",
}

# Strings groff's man/mdoc packages predefine (``\\*(lq`` …) and the ones pod2man's preamble
# would define for nroff output; a page's own ``.ds`` requests override them.
DEFAULT_STRINGS: Dict[str, str] = {
    "lq": "“", "rq": "”", "R": "®", "Tm": "™", "S": "", "HF": "", "Aq": "'", "C+": "C++",
    'L"': "“", 'R"': "”", "C`": "‘", "C'": "’", "PI": "π", "Ba": "|", "Ne": "≠", "Ge": "≥", "Le": "≤",
    "Gt": ">", "Lt": "<", "Pm": "±", "If": "∞", "Na": "NaN", "q": '"', "Am": "&",
}
