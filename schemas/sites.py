"""Injection-site note reader: the free-text muscles field as clinicians and billing teams write it.

A note is clauses (split on ``;`` and new lines) of parts (split on ``,``), never inside parentheses. A
part names sides, muscles and a dose in any order: ``R OO 10u``, ``Left orbicularis oris: 2.5 IU``,
``B/L CS 5u ea``, ``frontalis 5u per side``, ``OO orbital 2.5u x4``, ``R OO 10u (2.5u x4)`` (a breakdown
explains its stated total and is never counted twice). A heading (``Right side:``) gives its side to the
entries after it; a side gives its side to the rest of its clause; parts naming muscles without a dose
share the next part's dose when it says ``each`` (``R ZM, RIS, DAO 2.5u each``). Muscles and their parts
come from the table in ``schemas.codesets``, with a small spelling tolerance that never chooses between
two equally close words. What cannot be read is returned as an unread fragment with its reason, never
guessed: a claim whose note is not fully read cannot have its units and sides checked.
"""

import re
from dataclasses import dataclass
from functools import lru_cache

from schemas.codesets import (
    FACIAL_MUSCLES,
    MIDLINE_MUSCLES,
    MUSCLE_PARTS,
    NON_FACIAL_MUSCLES,
    SITE_QUALIFIERS,
    SOLE_PARTS,
)

FACIAL = frozenset(FACIAL_MUSCLES)
MIDLINE = frozenset(MIDLINE_MUSCLES)
ALIASES: dict[str, str] = {}
for _name, _spellings in {**FACIAL_MUSCLES, **NON_FACIAL_MUSCLES}.items():
    for _s in (_name, *_spellings):
        ALIASES[_s] = _name
_LONGEST = max(len(a.split()) for a in ALIASES)
_PARTS = frozenset(p for parts in MUSCLE_PARTS.values() for p in parts) | frozenset(SITE_QUALIFIERS)

# Sides. "_both_" stands for the two-side forms (B/L, R/L, R&L, both sides), replaced before tokenising.
_SIDE_OF = {"r": "R", "rt": "R", "right": "R", "l": "L", "lt": "L", "left": "L",
            "b": "B", "bil": "B", "bilat": "B", "bilateral": "B", "bl": "B", "_both_": "B"}
_SIDES = {"R": ("R",), "L": ("L",), "B": ("R", "L")}
SIDE_WORDS = {w: s for w, s in _SIDE_OF.items() if w.isalpha()}  # a sites sheet's side column (ingest)
_BOTH = re.compile(r"(?<![a-z])(?:b\s*/\s*l|r\s*/\s*l|l\s*/\s*r|r\s*(?:&|\+|and)\s*l|l\s*(?:&|\+|and)\s*r"
                   r"|both\s+sides?|bilaterally)(?![a-z])")
_HEADING = re.compile(r"^\s*\(?(right|left|rt|lt|r|l|bilateral|bilat|bil|b/l|b|r\s*(?:/|&|\+|and)\s*l)\)?\.?\s*"
                      r"(?:sides?|face|hemiface)?\s*:", re.IGNORECASE)
_CONNECTORS = frozenset({"/", "&", "+", ",", "and", "or"})
_FILLER = frozenset("""muscle muscles m mm the inj injected injection injections inject at into in to of site sites pt pts
    point points spot spots total tot dose given side sides sided face facial hemiface emg guided guidance under with
    w via split divided between evenly equally across over im sc subq botox btx bont bonta ona onabot
    onabotulinumtoxina xeomin dysport myobloc daxxify toxin per was were for on""".split())
_TOTAL_WORDS = frozenset({"total", "tot"})
_NOT_SITES = re.compile(r"\b(?:ml|cc|saline|ns|dilut\w*|reconstitut\w*|vials?|lot|exp|ndc|wasted?|discarded)\b")

# Doses: "10u", "2.5 IU", "1.25 U x 8 sites", "2.5u/site x4", "4 x 2.5u", "5u @ 2 pts".
_WHERE = r"(?:sites?|pts?|points?|spots?|injections?|inj)"
_AMOUNT = re.compile(
    r"(?<![\w.])(?:(\d+)\s*[x*]\s*)?(\d+(?:\.\d+)?|\.\d+)\s*(?:iu|units?|u)(?![a-z])"
    rf"(?:\s*/\s*{_WHERE}\b)?"
    rf"(?:\s*(?:[x*]\s*(\d+)(?!\d|\.\d)|(?:@\s*|(?:at|in|into|to|across|over)\s+)(\d+)\s*{_WHERE}\b)(?:\s*{_WHERE}\b)?)?")
_SITE_COUNT = re.compile(rf"(?<![\w.])\d+\s*{_WHERE}\b")
_PRODUCT = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?|\.\d+)\s*[x*]\s*(\d+)(?![\w.])")  # "(2.5 x 4)", no unit
_PER_SIDE = re.compile(r"(?:/\s*side\b|\b(?:each|per|ea|a)\.?\s+side\b)")
_EACH = re.compile(r"\b(?:each|ea|apiece)\b\.?")
_TOKEN_PUNCT = re.compile(r"[()\[\]{}:=~\"'`?!#<>]")
_CONNECT = re.compile(r"\s*([/&+,])\s*")
# A full stop ends an entry when a side starts the next one ("R OO 10u. L OO 10u"; "R. OO" and "zyg. maj" stay).
_SENTENCE = re.compile(r"\.\s+(?=(?:R|L|B|Rt|RT|Lt|LT|Right|RIGHT|right|Left|LEFT|left|Bilat\w*|B/L|R/L)\b)")
# A dose then a side ("OO R 10u L 10u") or a spaced "/", "&" or "+" before more than a place word ("OO 10u / ZM 5u")
# starts the next entry.
_NEXT_ENTRY = re.compile(r"(\d\s*(?:iu|units?|u)\b(?:\s*[x*]\s*\d+\b)?)(?:\s+(?=(?:r|l|rt|lt|right|left)\b\s)"
                         r"|\s+[/&+]\s+(?!(?:sides?|sites?|pts?|points?|inj\w*)\b))", re.IGNORECASE)
# "ZM" is zygomaticus major; a note writing both "ZM" and "Zm" may mean minor by "Zm": not guessed.
_ZM_UPPER, _ZM_MIXED, _ZM_ANY = re.compile(r"\bZM\b"), re.compile(r"\bZm\b"), re.compile(r"\bZ[Mm]\b")


@dataclass(frozen=True)
class Site:
    """One muscle on one side: ``units`` injected there (None: no dose written), ``raw`` the part it comes from."""

    side: str | None  # "R", "L" or None when not stated
    muscle: str  # canonical name (schemas.codesets)
    units: float | None
    raw: str

    @property
    def facial(self) -> bool:
        return self.muscle in FACIAL


@dataclass(frozen=True)
class Reading:
    """What a note says: its sites, and the fragments it could not read (each with the reason)."""

    sites: tuple[Site, ...]
    unread: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.unread


@dataclass
class _Amount:
    value: float
    counted: bool  # "2.5u x4": a per-site dose times a count
    aside: bool  # in parentheses, or after "=": a breakdown or a restatement


@dataclass
class _Part:
    raw: str
    sides: tuple[str, ...] | None = None
    heading: bool = False
    muscles: list | None = None  # [(muscle, groups)]: groups = sub-sites named ("upper / lower lid": 2)
    parts_only: int = 0  # part words without a muscle ("preseptal"), as sub-sites
    amount: float | None = None
    has_amount: bool = False
    each: bool = False
    per_side: bool = False
    total: bool = False
    problem: str = ""
    not_site: bool = False
    words: int = 0  # words read beyond sides, doses and filler


def _osa(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance (edits and adjacent swaps), stopping above ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2, prev = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if prev2 is not None and i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


_VOCABULARY = tuple(sorted({w for a in ALIASES for w in a.split() if len(w) >= 5} | {p for p in _PARTS if len(p) >= 5}))
_KNOWN = frozenset({w for a in ALIASES for w in a.split()}) | _PARTS | _FILLER | _CONNECTORS | frozenset(_SIDE_OF)


@lru_cache(maxsize=8192)
def _spelled(word: str) -> str:
    """The table word ``word`` misspells (1 edit up to 7 letters, 2 from 8), or ``word`` when none or a tie."""
    if word in _KNOWN or len(word) < 5 or not word.isalpha():
        return word
    limit = 1 if len(word) <= 7 else 2
    best, found = limit + 1, []
    for v in _VOCABULARY:
        d = _osa(word, v, limit)
        if d < best:
            best, found = d, [v]
        elif d == best and d <= limit:
            found.append(v)
    return found[0] if best <= limit and len(found) == 1 else word


def _depths(text: str) -> list[int]:
    """Parenthesis depth at each character."""
    depth, out = 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        out.append(depth)
        if ch in ")]":
            depth = max(0, depth - 1)
    return out


def _split_outside(text: str, seps: str) -> list[str]:
    """``text`` split on any of ``seps`` outside parentheses."""
    out, cur, depth = [], [], 0
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(0, depth - 1)
        if ch in seps and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def _dose(amounts: list[_Amount]) -> tuple[float | None, str]:
    """The dose of a part from its amounts: one amount, or a stated total and the breakdown that explains it."""
    if not amounts:
        return None, ""
    if len(amounts) == 1:
        return amounts[0].value, ""
    main = [a for a in amounts if not a.aside]
    aside = [a for a in amounts if a.aside]
    if len(main) == 1 and aside and abs(sum(a.value for a in aside) - main[0].value) < 1e-6:
        return main[0].value, ""
    if not main and not any(a.counted for a in aside):  # "OO (upper 2.5u, lower 2.5u)": sub-site doses
        return sum(a.value for a in aside), ""
    if len(amounts) == 2 and any(a.counted for a in amounts) and abs(amounts[0].value - amounts[1].value) < 1e-6:
        return amounts[0].value, ""
    shown = " and ".join(f"{a.value:g}u" for a in amounts)
    return None, f"doses that do not add up ({shown})" if aside else f"several doses in one entry ({shown})"


def _read_part(raw: str) -> _Part:
    """Sides, muscles (with their sub-sites), dose and flags of one part, or why it cannot be read."""
    part = _Part(raw.strip())
    low = part.raw.lower().replace("×", "x").replace("–", "-").replace("—", "-")
    heading = _HEADING.match(low)
    if heading:
        part.heading = True
        low = heading.group(1) + " " + low[heading.end():]
    depth = _depths(low)
    amounts = []
    for m in _AMOUNT.finditer(low):
        count = int(m.group(1) or m.group(3) or m.group(4) or 1)
        aside = depth[m.start()] > 0 or low[:m.start()].rstrip().endswith("=")
        amounts.append(_Amount(float(m.group(2)) * count, count > 1, aside))
    rest = _AMOUNT.sub(" ", low)
    if _SITE_COUNT.search(rest):  # "10u (4 sites)": the dose is over those sites; with "each" it is not clear
        part.problem = "a number of sites with 'each'" if _EACH.search(rest) else ""
        rest = _SITE_COUNT.sub(" ", rest)
    depth = _depths(rest)
    for m in _PRODUCT.finditer(rest):
        if depth[m.start()] == 0 and not rest[:m.start()].rstrip().endswith("="):
            part.problem = f"a dose without units ({m.group(0).strip()})"
        amounts.append(_Amount(float(m.group(1)) * int(m.group(2)), True, True))
    rest = _PRODUCT.sub(" ", rest)
    part.has_amount = bool(amounts)
    part.amount, why = _dose(amounts)
    part.problem = part.problem or why
    part.per_side = bool(_PER_SIDE.search(rest))
    rest = _PER_SIDE.sub(" ", rest)
    rest = _BOTH.sub(" _both_ ", rest)
    part.each = bool(_EACH.search(rest))
    rest = _EACH.sub(" ", rest)
    if _NOT_SITES.search(rest):
        part.not_site = True
    rest = _CONNECT.sub(r" \1 ", _TOKEN_PUNCT.sub(" ", rest)).replace("-", " ").replace(".", " ")
    if re.search(r"\d", rest) and not part.problem:
        part.problem = "a number without units"
    words = []
    for w in rest.split():
        side = _SIDE_OF.get(w)
        if side:
            if part.sides not in (None, _SIDES[side]):
                part.problem = part.problem or "two sides in one entry"
            part.sides = _SIDES[side]
        elif w in _TOTAL_WORDS:
            part.total = True
        elif w not in _FILLER:
            words.append(_spelled(w))
    part.words = len(words)
    _read_muscles(part, words)
    return part


def _read_muscles(part: _Part, words: list[str]) -> None:
    """The muscles named by ``words`` (longest table match first), their part words and sub-sites."""
    # "zyg maj/min": both zygomatici.
    for i in range(len(words) - 3):
        if words[i + 1] in ("maj", "major") and words[i + 2] in _CONNECTORS and words[i + 3] in ("min", "minor"):
            words = [*words[:i + 3], words[i], *words[i + 3:]]
            break
    items, left = [], []  # items: ("M", muscle) | ("P", word) | ("C", word)
    i = 0
    while i < len(words):
        for k in range(min(_LONGEST, len(words) - i), 0, -1):
            phrase = " ".join(words[i:i + k])
            if phrase in ALIASES:
                items.append(("M", ALIASES[phrase]))
                i += k
                break
        else:
            w = words[i]
            if w in _PARTS:
                items.append(("P", w))
            elif w in _CONNECTORS:
                items.append(("C", w))
            else:
                left.append(w)
            i += 1
    if left:
        part.problem = part.problem or ("not read: " + " ".join(left))
    muscles = [[m, 0] for kind, m in items if kind == "M"]  # muscle, connectors between its part words
    owner, last_part_owner, pending_connector = None, None, False
    seen_m = -1
    for kind, _ in items:
        if kind == "M":
            seen_m += 1
            owner = seen_m
            pending_connector = False
        elif kind == "C":
            pending_connector = True
        else:  # a part word: it belongs to the muscle before it, else the one after it
            target = owner if owner is not None else seen_m + 1
            if target < len(muscles) and pending_connector and last_part_owner == target:
                muscles[target][1] += 1
            last_part_owner, pending_connector = target, False
    sole = {SOLE_PARTS[w] for kind, w in items if kind == "P" and w in SOLE_PARTS}
    if not muscles:
        named = [w for kind, w in items if kind == "P"]
        part.parts_only = 1 + sum(1 for kind, _ in items if kind == "C") if named else 0
        if len(sole) == 1:
            muscles = [[sole.pop(), part.parts_only - 1]]
            part.parts_only = 0
    part.muscles = [(m, extra + 1) for m, extra in muscles]


def _sites_of(group: list[tuple[_Part, tuple[str, ...] | None]], unread: list[str]) -> list[Site]:
    """The sites of parts sharing one dose (the last part's): each muscle and side gets it with ``each``,
    a single muscle splits it over its sides otherwise."""
    dosed = group[-1][0]
    raw = ", ".join(p.raw for p, _ in group)
    each = any(p.each for p, _ in group)
    per_side = any(p.per_side for p, _ in group)
    items = [(m, n, None if m in MIDLINE and (p.sides is None or p.heading) else sides)
             for p, sides in group for m, n in p.muscles]
    if len({(m, sides) for m, _, sides in items}) == 1:  # "R orbicularis oculi, orbital part 5u": one site
        items = [(items[0][0], sum(n for _, n, _ in items), items[0][2])]
    total = dosed.amount
    if not (each or per_side) and any(sides == ("R", "L") and (p.sides is None or p.heading)
                                      and any(m not in MIDLINE for m, _ in p.muscles) for p, sides in group):
        unread.append(f"{raw} (both sides from a heading or an earlier entry: per side or in total?)")
        return []
    if per_side:
        if any(p.sides is not None and len(p.sides) == 1 for p, _ in group):  # a heading's side yields
            unread.append(f"{raw} (per side, but one side named)")
            return []
        items = [(m, n, ("R", "L")) for m, n, _ in items]
    if each or per_side:
        return [Site(side, m, total * n, raw) for m, n, sides in items for side in (sides or (None,))]
    if len({m for m, _, _ in items}) > 1 or len(items) > 1:
        unread.append(f"{raw} (one dose for several muscles, without 'each')")
        return []
    m, _, sides = items[0]
    sides = sides or (None,)
    return [Site(side, m, total / len(sides), raw) for side in sides]


def _next_entry(m: re.Match) -> str:
    """A comma after the dose when words come before it in its entry ("R OO 10u L OO 10u", not "10u R OO")."""
    before = m.string[:m.start()].rsplit(",", 1)[-1]
    return m.group(1) + ("," if re.search(r"[a-z]", before, re.IGNORECASE) else m.group(0)[len(m.group(1)):])


@lru_cache(maxsize=65536)
def read_note(text: str) -> Reading:
    """Read a whole muscles field (cached: exports repeat the same notes)."""
    if not text or not text.strip():
        return Reading(())
    sites: list[Site] = []
    unread: list[str] = []
    totals: list[tuple[_Part, tuple[str, ...] | None]] = []
    heading: tuple[str, ...] | None = None
    zm_clash = bool(_ZM_UPPER.search(text) and _ZM_MIXED.search(text))
    for clause in _split_outside(_SENTENCE.sub(";", text), ";\n\r"):
        clause = _NEXT_ENTRY.sub(_next_entry, clause)
        carry = heading
        pending: list[tuple[_Part, tuple[str, ...] | None]] = []
        previous: _Part | None = None
        for raw in _split_outside(clause, ","):
            if not raw.strip():
                continue
            p = _read_part(raw)
            if p.sides is not None:
                carry = p.sides
                if p.heading:
                    heading = p.sides
            sides = p.sides if p.sides is not None else carry
            if zm_clash and _ZM_ANY.search(p.raw):
                p.problem = "ZM and Zm in one note: zygomaticus major or minor?"
            if p.problem and not (p.not_site and not p.muscles):
                unread.append(f"{p.raw} ({p.problem})")
                pending = []
                previous = None
                continue
            if not p.muscles and previous is not None and len(previous.muscles) == 1 and (
                    p.parts_only or (p.sides is not None and p.has_amount and not p.words and not p.total)):
                # "OOr upper lip 2.5u, lower lip 2.5u"; "Orbicularis oculi: R 10u, L 10u"
                p.muscles = [(previous.muscles[0][0], max(p.parts_only, 1))]
            if not p.muscles:
                if p.not_site:
                    continue
                if p.has_amount and p.total and not pending:
                    totals.append((p, sides))
                elif p.has_amount and pending:
                    sites.extend(_sites_of([*pending, (p, sides)], unread))
                    pending = []
                elif p.has_amount:
                    unread.append(f"{p.raw} (no muscle named)")
                elif p.sides is None and not p.total and p.words:
                    unread.append(f"{p.raw} (no muscle named)")
                elif p.sides is not None and previous is None and not pending:
                    heading = p.sides  # a side on its own ("RIGHT SIDE") heads what follows
                continue
            previous = p
            if not p.has_amount:
                pending.append((p, sides))
                continue
            sites.extend(_sites_of([*pending, (p, sides)], unread))
            pending = []
        for p, sides in pending:  # muscles written without a dose
            sites.extend(Site(side, m, None, p.raw) for m, _ in p.muscles for side in (sides or (None,)))
    for p, _ in totals:
        _check_total(p, None if p.heading else p.sides, sites, unread)
    return Reading(tuple(sites), tuple(unread))


def _check_total(p: _Part, sides, sites: list[Site], unread: list[str]) -> None:
    """A stated total ("Total 50u", "total 25u per side") agrees with the sites read, or is reported."""
    if p.per_side or (sides is not None and len(sides) == 1):
        for side in sides if not p.per_side else ("R", "L"):
            got = sum(s.units or 0 for s in sites if s.side == side)
            if abs(got - p.amount) > 1e-6:
                unread.append(f"{p.raw} (total {p.amount:g}u, but the {side} sites add up to {got:g}u)")
                return
        return
    got = sum(s.units or 0 for s in sites)
    if abs(got - p.amount) > 1e-6:
        unread.append(f"{p.raw} (total {p.amount:g}u, but the sites add up to {got:g}u)")


def reading_by_site(reading: Reading) -> dict[tuple[str, str | None], float | None]:
    """Units per (muscle, side), summed over the note's entries (None when a site has no dose)."""
    out: dict[tuple[str, str | None], float | None] = {}
    for s in reading.sites:
        key = (s.muscle, s.side)
        if s.units is None or (key in out and out[key] is None):
            out[key] = None
        else:
            out[key] = out.get(key, 0.0) + s.units
    return out


def format_site(side: str | None, muscle: str, units: float | None) -> str:
    """Write one site back as a note part (a sites sheet's row becomes part of the muscles text)."""
    u = "" if units is None else f" {units:g}u"
    return f"{side + ' ' if side else ''}{muscle}{u}".strip()
