"""Site-note reader: the shorthand billing teams write reads back to the same (muscle, side, units)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.codesets import FACIAL_MUSCLES
from schemas.sites import read_note, reading_by_site

OO, ZM, FR = "orbicularis oculi", "zygomaticus major", "frontalis"


def _read(text):
    r = read_note(text)
    return reading_by_site(r), r.unread


@pytest.mark.parametrize(("text", "expected"), [
    ("(RT) ZM - 2.5u x2", {(ZM, "R"): 5.0}),
    ("B frontalis 5u each", {(FR, "R"): 5.0, (FR, "L"): 5.0}),
    ("Bilat OO 10u", {(OO, "R"): 5.0, (OO, "L"): 5.0}),
    ("R OO 1.25 U x 8 sites", {(OO, "R"): 10.0}),
    ("R/L frontalis 5u each", {(FR, "R"): 5.0, (FR, "L"): 5.0}),
    ("B/L OO 10u ea", {(OO, "R"): 10.0, (OO, "L"): 10.0}),
    ("frontalis 5u per side", {(FR, "R"): 5.0, (FR, "L"): 5.0}),
    ("Right side: OO 10u, ZM 5u\nLeft side: OO 10u, ZM 5u",
     {(OO, "R"): 10.0, (ZM, "R"): 5.0, (OO, "L"): 10.0, (ZM, "L"): 5.0}),
    ("R orbital OO 5u; L OO orbital 5u", {(OO, "R"): 5.0, (OO, "L"): 5.0}),
    ("R OO 10u (2.5u x4)", {(OO, "R"): 10.0}),
    ("R OO 2.5u x4 = 10u", {(OO, "R"): 10.0}),
    ("L orbicularis occuli 10u", {(OO, "L"): 10.0}),
    ("R zyg maj/min 2.5u each", {(ZM, "R"): 2.5, ("zygomaticus minor", "R"): 2.5}),
    ("B DAO 2.5u ea; L depressor anguli 2.5u",
     {("depressor anguli oris", "R"): 2.5, ("depressor anguli oris", "L"): 5.0}),
    ("B/L CS, FR 5u ea", {("corrugator supercilii", "R"): 5.0, ("corrugator supercilii", "L"): 5.0,
                          (FR, "R"): 5.0, (FR, "L"): 5.0}),
    ("R OO upper/lower lid 2.5u each", {(OO, "R"): 5.0}),
    ("R OO 10u; L OO 10u; Total 20u", {(OO, "R"): 10.0, (OO, "L"): 10.0}),
    ("Botox 100u/2mL NS; R OO 10u", {(OO, "R"): 10.0}),
    ("Left temporalis 10u", {("temporalis", "L"): 10.0}),
    ("R OO", {(OO, "R"): None}),
    ("R OO 2.5u x4. L OO 10u.", {(OO, "R"): 10.0, (OO, "L"): 10.0}),
    ("R Zm 5u; L Zm 5u", {(ZM, "R"): 5.0, (ZM, "L"): 5.0}),  # Zm alone: the grammar's major
    ("OO R 10u L 10u", {(OO, "R"): 10.0, (OO, "L"): 10.0}),
    ("Orbicularis oculi: R 10u, L 10u", {(OO, "R"): 10.0, (OO, "L"): 10.0}),
    ("RIGHT - OO 10U / ZM 5U", {(OO, "R"): 10.0, (ZM, "R"): 5.0}),
    ("Right OO 10u (4 sites)", {(OO, "R"): 10.0}),
    ("B/L CS 2.5u ea, procerus 5u", {("corrugator supercilii", "R"): 2.5, ("corrugator supercilii", "L"): 2.5,
                                     ("procerus", None): 5.0}),  # a midline muscle keeps no inherited side
])
def test_read_note_shorthand(text, expected):
    """It reads each shorthand form into units per muscle and side, with nothing left unread."""
    assert _read(text) == (expected, ())


@pytest.mark.parametrize(("text", "fragment"), [
    ("L cheek thing 5u", "L cheek thing 5u"),
    ("R OO 10u; zygomaticus 5u", "zygomaticus 5u"),  # major or minor: never guessed
    ("R OO, ZM 5u", "R OO, ZM 5u"),  # one dose for two muscles without "each"
    ("R OO 10u (2.5u x3)", "R OO 10u (2.5u x3)"),  # a breakdown that does not explain its total
    ("R OO 10u; L OO 10u; Total 25u", "Total 25u"),
    ("R OO 10", "R OO 10"),  # a number without units
    ("R ZM 5u; R Zm 2.5u", "R Zm 2.5u"),  # ZM and Zm in one note: Zm may mean minor
    ("R OO 4 sites 2.5u each", "R OO 4 sites 2.5u each"),  # each site, or each of something else?
    ("see chart", "see chart"),
])
def test_read_note_reports_what_it_cannot_read(text, fragment):
    """It names the fragment it could not read, and reads no site from it."""
    sites, unread = _read(text)
    assert any(u.startswith(fragment + " (") for u in unread), unread
    assert all(s.side != "?" for s in read_note(text).sites)


def test_read_note_never_guesses_between_two_muscles():
    """A misspelling as close to two table words is left unread."""
    assert read_note("R zygomaticus mijor 5u").unread  # one edit from "major" and from "minor"
    assert _read("R mentalsi 5u") == ({("mentalis", "R"): 5.0}, ())


SIDES = {"R": ["R", "RT", "Rt", "Right", "right", "(R)"], "L": ["L", "LT", "Lt", "Left", "(L)"]}
BOTH = ["B", "Bil", "Bilat", "Bilateral", "B/L", "R/L", "R&L", "both sides"]
ABBREV = {"orbicularis oculi": ["OO", "orbicularis oculi", "orbicularis occuli", "pretarsal OO", "OO orbital",
                                "OO (preseptal)", "orb oculi"],
          "orbicularis oris": ["OOr", "orbicularis oris"], "zygomaticus major": ["ZM", "zyg maj", "zygomaticus major"],
          "zygomaticus minor": ["zyg min", "zygomaticus minor"], "frontalis": ["FR", "frontalis", "frontails"],
          "corrugator supercilii": ["CS", "corrugator"], "procerus": ["PR", "procerus"],
          "risorius": ["RIS", "risorius"], "depressor anguli oris": ["DAO", "depressor anguli"],
          "depressor labii inferioris": ["DLI"], "mentalis": ["MENT", "mentalis"], "platysma": ["PLAT", "platysma"],
          "levator labii superioris": ["LLS"], "levator labii superioris alaeque nasi": ["LLSAN"],
          "levator anguli oris": ["LAO"], "nasalis": ["NAS", "nasalis"], "buccinator": ["BUC", "buccinator"]}
UNIT_FORMS = ["{u}u", "{u} U", "{u} units", "{u} IU", "{u}U", "{u} unit"]
EACH = ["each", "ea", "ea."]
PER_SIDE = ["per side", "each side", "/side", "ea side"]


def _dose(data, units: float) -> str:
    """``units`` written plainly, as a count of equal doses, or as a total with its breakdown."""
    u = data.draw(st.sampled_from(UNIT_FORMS))
    form = data.draw(st.integers(0, 2))
    for n in (4, 2):
        if form and units % n == 0 and units / n >= 0.25:
            each = u.format(u=f"{units / n:g}")
            return [None, f"{each} x{n}", f"{u.format(u=f'{units:g}')} ({each} x{n})"][form]
    return u.format(u=f"{units:g}")


@st.composite
def notes(draw):
    """A note written from a known reading, part by part, in the shorthand forms, and that reading."""
    muscles = sorted(ABBREV)
    paired = [m for m in muscles if m != "procerus"]  # a midline muscle takes no side from a list or heading
    expected: dict = {}
    clauses = []
    for _ in range(draw(st.integers(1, 5))):
        form = draw(st.integers(0, 4))
        units = draw(st.integers(1, 80)) / 4
        m = draw(st.sampled_from(muscles))
        name = draw(st.sampled_from(ABBREV[m]))
        if form == 0:  # one side: "R OO 10u", "OO (R) 10u", "10u R OO"
            side = draw(st.sampled_from("RL"))
            s = draw(st.sampled_from(SIDES[side]))
            order = draw(st.integers(0, 2))
            d = _dose(draw(st.data()), units)
            clauses.append([f"{s} {name} {d}", f"{name} {s} {d}", f"{s} - {name} - {d}"][order])
            expected[(m, side)] = expected.get((m, side), 0) + units
        elif form == 1:  # both sides, each: "B/L OO 5u ea"
            s = draw(st.sampled_from(BOTH))
            clauses.append(f"{s} {name} {_dose(draw(st.data()), units)} {draw(st.sampled_from(EACH))}")
            for side in "RL":
                expected[(m, side)] = expected.get((m, side), 0) + units
        elif form == 2:  # per side without a side word: "frontalis 5u per side"
            clauses.append(f"{name} {units:g}u {draw(st.sampled_from(PER_SIDE))}")
            for side in "RL":
                expected[(m, side)] = expected.get((m, side), 0) + units
        elif form == 3:  # a list with a shared side and "each": "R ZM, RIS, DAO 2.5u each"
            side = draw(st.sampled_from("RL"))
            listed = draw(st.lists(st.sampled_from(paired), min_size=2, max_size=4, unique=True))
            names = [draw(st.sampled_from([a for a in ABBREV[x] if " " not in a] or ABBREV[x])) for x in listed]
            sep = draw(st.sampled_from([", ", "/"]))
            clauses.append(f"{draw(st.sampled_from(SIDES[side]))} {sep.join(names)} {units:g}u "
                           f"{draw(st.sampled_from(EACH))}")
            for x in listed:
                expected[(x, side)] = expected.get((x, side), 0) + units
        else:  # a side heading over several entries
            side = draw(st.sampled_from("RL"))
            word = {"R": "Right", "L": "Left"}[side]
            heading = draw(st.sampled_from([f"{word} side:", f"{word}:", f"{word.upper()} SIDE:"]))
            listed = draw(st.lists(st.sampled_from(paired), min_size=1, max_size=3, unique=True))
            entries = []
            for x in listed:
                v = draw(st.integers(1, 40)) / 2
                entries.append(f"{draw(st.sampled_from(ABBREV[x]))} {_dose(draw(st.data()), v)}")
                expected[(x, side)] = expected.get((x, side), 0) + v
            clauses.append(heading + " " + ", ".join(entries) + "\n")
            continue
    sep = draw(st.sampled_from(["; ", "\n", " ; "]))
    text = ""
    for c in clauses:
        text += c if c.endswith("\n") else c + sep
    return text, expected


@given(notes())
def test_generated_notes_read_back(note):
    """It reads a note generated from a reading, in any mix of the shorthand forms, back to that reading."""
    text, expected = note
    sites, unread = _read(text)
    assert unread == ()
    assert sites.keys() == expected.keys()
    for key, units in expected.items():
        assert sites[key] == pytest.approx(units)
    assert all(m in FACIAL_MUSCLES for m, _ in sites)


@given(st.text(alphabet=st.sampled_from(list("RLBOZMuUx0123456789.,;:/()- \neachsidtotlr")), max_size=80))
def test_read_note_never_raises(text):
    """It reads any text without raising: what it cannot read is reported, every site has a known muscle."""
    reading = read_note(text)
    assert all(s.side in ("R", "L", None) and s.muscle for s in reading.sites)
    assert all(isinstance(u, str) and u for u in reading.unread)
