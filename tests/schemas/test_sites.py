"""Injection-site grammar: every accepted spelling parses back to the same (side, muscle, units)."""

from hypothesis import given
from hypothesis import strategies as st

from schemas.codesets import FACIAL_MUSCLES
from schemas.sites import parse_sites

SIDES = {"R": ["R", "RT", "Right", "right"], "L": ["L", "LT", "Left"], "B": ["B", "Bil", "Bilat", "Bilateral"]}
ABBREV = {"orbicularis oculi": ["OO", "orbicularis oculi", "pretarsal orbicularis oculi"],
          "orbicularis oris": ["OOr", "orbicularis oris"], "zygomaticus major": ["ZM", "Zm"],
          "frontalis": ["FR", "frontalis"], "corrugator supercilii": ["CS"], "procerus": ["PR"],
          "risorius": ["RIS"], "depressor anguli oris": ["DAO"], "depressor labii inferioris": ["DLI"],
          "mentalis": ["MENT"], "platysma": ["PLAT"], "levator labii superioris": ["LLS"],
          "levator labii superioris alaeque nasi": ["LLSAN"], "levator anguli oris": ["LAO"],
          "nasalis": ["NAS"], "buccinator": ["BUC"]}
UNIT_FORMS = ["{u}u", "{u} U", "{u} units", "{u} IU"]


def test_examples():
    """It reads the spellings billing teams write."""
    (s,) = parse_sites("(RT) ZM - 2.5u x2")
    assert (s.side, s.muscle, s.units) == ("R", "zygomaticus major", 5.0)
    (s,) = parse_sites("B frontalis 5u each")
    assert (s.side, s.units, s.units_per_side()) == ("B", 10.0, {"R": 5.0, "L": 5.0})
    (s,) = parse_sites("Bilat OO 10u")
    assert s.units_per_side() == {"R": 5.0, "L": 5.0}
    (s,) = parse_sites("R OO 1.25 U x 8 sites")
    assert s.units == 10.0
    (s,) = parse_sites("Left temporalis 10u")
    assert s.facial is False
    (s,) = parse_sites("L cheek thing 5u")
    assert s.muscle is None and s.units == 5.0 and "not recognised" in s.reason
    (s,) = parse_sites("R OO")
    assert s.units is None and s.reason == "no units"
    assert len(parse_sites("R OO 5u\nL OO 5u, R ZM 2u; L ZM 2u")) == 4


@given(st.lists(st.tuples(st.sampled_from(sorted(SIDES)), st.sampled_from(sorted(ABBREV)),
                          st.integers(1, 400).map(lambda x: x / 4), st.integers(0, 5), st.data()),
                min_size=1, max_size=6))
def test_generated_entries_round_trip(entries):
    """It parses generated entries in every accepted spelling and order back to the same triple."""
    texts, expected = [], []
    for side, muscle, units, order, data in entries:
        s = data.draw(st.sampled_from(SIDES[side]))
        m = data.draw(st.sampled_from(ABBREV[muscle]))
        u = data.draw(st.sampled_from(UNIT_FORMS)).format(u=f"{units:g}")
        parts = [[s, m, u], [m, s, u], [u, s, m], [s + ":", m, "(" + u + ")"], [s, "-", m, "-", u],
                 [m, "(" + s + ")", u]][order]
        texts.append(" ".join(parts))
        expected.append((side, muscle, units))
    sep = ["; ", ", ", "\n"][len(entries) % 3]
    parsed = [(p.side, p.muscle, p.units) for p in parse_sites(sep.join(texts))]
    assert parsed == expected
    assert all(m in FACIAL_MUSCLES for _, m, _ in parsed)
