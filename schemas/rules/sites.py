"""Injection-site rules for G51.33 claims (the ``muscles`` text, parsed by ``schemas.sites``)."""

import pandas as pd

from schemas import columns as C
from schemas.rules.core import Severity, claim_rule, examples, on, passes_unless
from schemas.text import choose, pick

E, W = Severity.ERROR, Severity.WARNING
_SITES = "R OO 2.5u x4; R ZM 5u; R OOr 5u; R FR 5u; L OO 2.5u x4; L ZM 5u; L OOr 5u; L FR 5u"
_FACIAL = "LCD L33458 (Palmetto GBA, Chemodenervation: muscles innervated by the facial nerve); AMA CPT 64612"
_DOCUMENTED = ("LCD L35170 (Noridian) and L33274 (First Coast), Documentation Requirements: the specific muscles "
               "injected, with units per site")


@claim_rule(
    "HFS-018", E, field=C.MUSCLES, needs=(C.MUSCLES,), reads=("in_scope", "is_64612", "n_sites",
                                                              "sites_without_units", "sites_unread"),
    anchor="idx_64612",
    title="64612 without documented sites or units",
    checks="A G51.33 claim billing 64612 documents its injection sites, each with units (not checked when the "
           "sites note could not be fully read: see the unread-note warning).",
    message="64612 is billed but the injection sites are incomplete: {value}.",
    fix="Document each muscle injected with its side and units.",
    source=_DOCUMENTED,
    examples=examples(fires=[on(0, muscles=None)], quiet=[], value="no injection sites documented"))
def sites_documented(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, df["is_64612"] & ~df["sites_unread"] & ((df["n_sites"] == 0) | df["sites_without_units"]))


@sites_documented.detail(columns=("n_sites", "sites_without_units"))
def _(rows: pd.DataFrame) -> pd.Series:
    """No sites at all, or the entries written without units."""
    entries = "entries without units: " + rows["sites_without_units"].astype(str)
    return entries.where(rows["n_sites"] > 0, "no injection sites documented")


@claim_rule(
    "HFS-019", E, field=C.MUSCLES, needs=(C.MUSCLES,), reads=("in_scope", "nonfacial_muscles"),
    value="nonfacial_muscles", anchor="idx_64612",
    title="Muscle not innervated by the facial nerve",
    checks="Every documented muscle is innervated by the facial nerve (CN VII): masseter, temporalis, "
           "pterygoids, levator palpebrae, extraocular, neck, laryngeal and limb muscles are billed with other codes.",
    message="{value} is not innervated by the facial nerve: 64612 does not cover it.",
    fix="Check the muscle recorded, or bill the code for that muscle group.",
    source=f"{_FACIAL}; AMA CPT 64615-64617, 64642-64647 (other muscle groups)",
    examples=examples(fires=[on(0, muscles=_SITES + "; R masseter 0u")],
                      quiet=[on(0, muscles=_SITES + "; L platysma 0u")], value="masseter"))
def muscles_facial(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, df["nonfacial_muscles"])


@claim_rule(
    "HFS-020", W, field=C.MUSCLES, needs=(C.MUSCLES,), reads=("in_scope", "sites_unread"),
    value="sites_unread", anchor="idx_64612",
    title="Injection-site note not fully read",
    checks="Every part of the injection-site note is read: its muscles (a full name, a usual abbreviation or a "
           "near spelling of one, never a guess between two muscles), sides and doses. A claim whose note is not "
           "fully read has its documented units, sides and dose reported as could not be checked, never as errors.",
    message="The injection-site note could not be fully read: {value}. The claim's documented units and sides "
            "could not be checked.",
    fix="Write each site as side, muscle (full name or a standard abbreviation) and units, e.g. 'R OO 10u'.",
    source=_DOCUMENTED,
    examples=examples(fires=[on(0, muscles=_SITES + "; L zygomaticus thing 0u")],
                      quiet=[on(0, muscles=_SITES + "; R pretarsal orbicularis oculi 0u")],
                      value="L zygomaticus thing 0u (not read: zygomaticus thing)"))
def note_read(df: pd.DataFrame) -> pd.Series:
    return passes_unless(df, df["sites_unread"])


@claim_rule(
    "HFS-021", E, field=C.MUSCLES, needs=(C.MUSCLES,),
    reads=("in_scope", "n_sites", "site_on_right", "site_on_left", "site_without_side", "sites_unread"),
    anchor="idx_64612",
    title="Bilateral claim injected on one side",
    checks="A G51.33 (bilateral) claim documents sites on both sides. An error when every site is on one side; "
           "a warning (same rule) when some sites state no side. Not checked when the sites note could not be "
           "fully read.",
    message="G51.33 is bilateral but the documented sites are {value}.",
    fix="Record the side of every site; check the diagnosis if only one side was treated.",
    source="ICD-10-CM Tabular List G51.33 (clonic hemifacial spasm, bilateral); ICD-10-CM Official Guidelines "
           f"Sec. I.B.13 (laterality); {_DOCUMENTED}",
    examples=examples(fires=[on(0, muscles="R OO 2.5u x4; R ZM 5u; R OOr 5u; R FR 5u; R CS 5u; R PR 5u; R PLAT 15u")],
                      quiet=[on(0, muscles="B OO 10u each; B ZM 15u each")], value="on the right side only"))
def sites_on_both_sides(df: pd.DataFrame) -> pd.Series:
    right, left, unsided = df["site_on_right"], df["site_on_left"], df["site_without_side"]
    one_side = right != left  # sites on exactly one side
    return passes_unless(df, ~df["sites_unread"] & (df["n_sites"] > 0) & (one_side | (~right & ~left & unsided)))


_SIDES = ("site_on_right", "site_on_left", "site_without_side")


@sites_on_both_sides.detail(columns=_SIDES)
def _(rows: pd.DataFrame) -> pd.Series:
    """Which side the sites are on, and whether some state no side."""
    right, left, unsided = (rows[c].to_numpy(bool) for c in _SIDES)
    some = " (some sites state no side)"
    return choose([(right & unsided, "on the right side only" + some), (right, "on the right side only"),
                   (left & unsided, "on the left side only" + some), (left, "on the left side only"),
                   (unsided, "all without a side")], len(rows), rows.index)


@sites_on_both_sides.severity(columns=_SIDES)
def _(rows: pd.DataFrame) -> pd.Series:
    """A warning, not an error, when some sites state no side (they may be on the other side)."""
    return pick(rows["site_without_side"].to_numpy(bool), ["error", "warning"], rows.index)
