"""Injection-site parser for the free-text muscles grammar in RULES.md.

An entry is a side, a muscle and units in any order, separated from the next entry by ``;``,
``,`` or a new line: ``R OO 10u``, ``Left orbicularis oris: 2.5 IU``, ``B frontalis 5u each``,
``(RT) ZM - 2.5u x2``.
"""

import re
from dataclasses import dataclass
from functools import lru_cache

from schemas.codesets import FACIAL_MUSCLES, NON_FACIAL_MUSCLES

SIDE_WORDS = {
    "r": "R", "rt": "R", "right": "R",
    "l": "L", "lt": "L", "left": "L",
    "b": "B", "bil": "B", "bilat": "B", "bilateral": "B",
}

_ALIASES: dict[str, str] = {}
for _name, _spellings in {**FACIAL_MUSCLES, **NON_FACIAL_MUSCLES}.items():
    _ALIASES[_name] = _name
    for _s in _spellings:
        _ALIASES[_s] = _name
FACIAL = frozenset(FACIAL_MUSCLES)
# Longest first, so "levator labii superioris alaeque nasi" wins over "levator labii superioris".
_LONG_ALIASES = sorted((a for a in _ALIASES if len(a) > 5), key=len, reverse=True)
_ORBICULARIS_OCULI_PARTS = ("oculi", "pretarsal", "preseptal", "upper lid", "lower lid", "eyelid")

_SPLIT = re.compile(r"[;,\n\r]+")
_UNITS = re.compile(
    r"(?<![\w.])(\d+(?:\.\d+)?|\.\d+)\s*(?:iu|units?|u)\b"
    r"(?:\s*[x×*]\s*(\d+)(?:\s*sites?)?)?",
    re.IGNORECASE,
)
_EACH = re.compile(r"\b(?:each|per side|ea)\b", re.IGNORECASE)
_PUNCT = re.compile(r"[():\-\[\]/]+")
_SPACE = re.compile(r"\s+")
_FILLER = re.compile(r"\b(?:muscle|muscles|m|mm|the|inj|injected|at)\b\.?")


@dataclass(frozen=True)
class Site:
    """One parsed injection-site entry; units are the entry's total over its sides."""

    side: str | None  # "R", "L", "B" or None when not stated
    muscle: str | None  # canonical muscle name, None when not recognised
    units: float | None
    raw: str
    muscle_text: str = ""  # what was written for the muscle
    each: bool = False  # "B ... 5u each": units per side
    reason: str = ""  # why the entry could not be fully parsed

    @property
    def facial(self) -> bool | None:
        return None if self.muscle is None else self.muscle in FACIAL

    def units_per_side(self) -> dict[str, float]:
        """Units by side ("R", "L", "?"): a bilateral entry is split evenly unless it says each."""
        if self.units is None:
            return {}
        if self.side == "B":
            half = self.units / 2
            return {"R": half, "L": half}
        return {self.side or "?": self.units}


def canonical_muscle(text: str) -> str | None:
    """The canonical name of a muscle written as ``text``, or None."""
    t = _SPACE.sub(" ", _FILLER.sub(" ", text.lower().replace(".", " "))).strip()
    if not t:
        return None
    if t in _ALIASES:
        return _ALIASES[t]
    for alias in _LONG_ALIASES:
        if re.search(rf"\b{re.escape(alias)}\b", t):
            return _ALIASES[alias]
    if any(part in t for part in _ORBICULARIS_OCULI_PARTS):
        return "orbicularis oculi"
    return None


def parse_entry(raw: str) -> Site | None:
    """Parse one entry; None for an empty one."""
    text = raw.strip()
    if not text:
        return None
    units = None
    m = _UNITS.search(text)
    rest = text
    if m:
        units = float(m.group(1)) * (int(m.group(2)) if m.group(2) else 1)
        rest = text[: m.start()] + " " + text[m.end():]
    each = bool(_EACH.search(rest))
    rest = _EACH.sub(" ", rest)
    tokens = _SPACE.sub(" ", _PUNCT.sub(" ", rest)).strip().split(" ")
    side = None
    kept = []
    for tok in tokens:
        s = SIDE_WORDS.get(tok.lower().rstrip("."))
        if s and side is None:
            side = s
        elif tok:
            kept.append(tok)
    muscle_text = " ".join(kept).strip()
    muscle = canonical_muscle(muscle_text)
    if each and side == "B" and units is not None:
        units *= 2
    reasons = []
    if not muscle_text:
        reasons.append("no muscle named")
    elif muscle is None:
        reasons.append(f"muscle not recognised: {muscle_text!r}")
    if units is None:
        reasons.append("no units")
    return Site(side, muscle, units, text, muscle_text, each, "; ".join(reasons))


@lru_cache(maxsize=65536)
def parse_sites(text: str) -> tuple[Site, ...]:
    """Parse a whole muscles field into its entries (cached: exports repeat the same text)."""
    if not text:
        return ()
    return tuple(s for s in (parse_entry(part) for part in _SPLIT.split(text)) if s is not None)


def format_site(side: str | None, muscle: str, units: float | None) -> str:
    """Write one site back in the grammar (used for sites sheets)."""
    u = "" if units is None else f" {units:g}u"
    return f"{side + ' ' if side else ''}{muscle}{u}".strip()
