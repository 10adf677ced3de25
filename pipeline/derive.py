"""Derive line features and one row of facts per claim from canonical lines (vectorised group-bys).

Pure: no I/O. The claim-level frame is what ``schemas.claims.ClaimFacts`` validates; its ``why_*``
columns hold the reviewer-facing detail of the multi-part rules (empty string = nothing wrong).
"""

import hashlib
import math

import numpy as np
import pandas as pd

from pipeline.config import ScrubConfig
from schemas import codesets as K
from schemas import columns as C
from schemas.checks import ndc_is_valid, vial_totals
from schemas.sites import parse_sites

_VIAL_LIMIT = {code: 40000 if code == "J0587" else 4000 for code in K.TOXIN_CODES}
VIAL_TOTALS = {code: vial_totals(v, _VIAL_LIMIT[code]) for code, v in K.TOXIN_VIALS.items()}


def patient_key(patient_id: str | None, salt: str) -> str | None:
    """Salted hash of a patient id: the ledger stores this, never the id."""
    if patient_id is None:
        return None
    return hashlib.sha256(f"{salt}\x1f{patient_id}".encode()).hexdigest()[:32]


_LETTER_INDEX = {chr(65 + i): i for i in range(12)}


def _has_mod(lines: pd.DataFrame, mod: str) -> pd.Series:
    return (lines[list(C.MODIFIERS)] == mod).any(axis=1)


def _join(values: pd.Series, by) -> pd.Series:
    """Per group: the distinct non-empty strings joined with '; '."""
    s = values[values.astype(bool)]
    if s.empty:
        return pd.Series(dtype=object)
    frame = pd.DataFrame({"k": by[s.index].to_numpy(), "v": s.astype(str).to_numpy()}).drop_duplicates()
    return frame.groupby("k", sort=False)["v"].agg("; ".join)


def join_flags(flags: dict[str, pd.Series], sep: str = ", ") -> pd.Series:
    """Row-wise: the labels whose flag is True, joined (vectorised string concatenation)."""
    out = None
    for label, flag in flags.items():
        part = pd.Series(np.where(flag.to_numpy(bool), label, ""), index=flag.index, dtype=object)
        if out is None:
            out = part
        else:
            both = (out != "") & (part != "")
            out = out + np.where(both, sep, "") + part
    return out if out is not None else pd.Series(dtype=object)


def join_texts(parts: list[pd.Series], sep: str = "; ") -> pd.Series:
    """Row-wise: the non-empty texts joined (vectorised)."""
    out = parts[0].astype(object).fillna("")
    for part in parts[1:]:
        part = part.astype(object).fillna("")
        both = (out != "") & (part != "")
        out = out + np.where(both, sep, "") + part
    return out


def line_features(lines: pd.DataFrame) -> pd.DataFrame:
    """Per-line booleans used by the claim rules (codes, modifiers, pointers)."""
    proc = lines[C.PROCEDURE_CODE].fillna("").astype(str)
    f = pd.DataFrame(index=lines.index)
    f["claim"] = lines[C.CLAIM_ID]
    f["is_64612"] = proc == K.CHEMO_FACIAL
    f["is_toxin"] = proc.isin(K.TOXIN_CODES)
    f["is_other_chemo"] = proc.isin(K.OTHER_CHEMO)
    f["is_chemo"] = proc.isin(K.CHEMO_ALL)
    f["is_95873"] = proc == K.GUIDANCE_ESTIM
    f["is_95874"] = proc == K.GUIDANCE_EMG
    f["is_64617"] = proc == K.LARYNX_CHEMO
    f["is_96372"] = proc == K.THERAPEUTIC_INJECTION
    f["is_surgery"] = proc.isin(K.FACIAL_NERVE_SURGERY)
    f["is_drug"] = proc.str.startswith("J")
    for mod, name in (("JW", "jw"), ("JZ", "jz"), ("50", "m50"), ("RT", "m_rt"), ("LT", "m_lt")):
        f[name] = _has_mod(lines, mod)
    f["admin_toxin"] = f.is_toxin & ~f.jw
    # Diagnosis codes as one integer matrix (lines x 12; -1 blank) over the file's distinct codes.
    n = len(lines)
    dx_codes, dx_uniques = pd.factorize(pd.concat([lines[c] for c in C.DX], ignore_index=True))
    dx_codes = dx_codes.reshape(len(C.DX), n).T
    code_of = {v: i for i, v in enumerate(dx_uniques.tolist())}

    def has_dx(*codes: str) -> pd.Series:
        wanted = [code_of[c] for c in codes if c in code_of]
        return pd.Series(np.isin(dx_codes, wanted).any(axis=1), index=lines.index)

    f["g5133"] = has_dx(K.G51_33)
    f["g513"] = has_dx(K.G51_3_HEADER)
    f["g510"] = has_dx(K.BELLS_PALSY)
    f["structural"] = has_dx(*K.STRUCTURAL_DX)
    f["conflict_dx"] = join_flags({code: has_dx(code) for code in K.G51_3_CONFLICTING})
    # Pointers: letters A-L name dx_1..dx_12 of the same line.
    ptr = lines[C.DX_POINTER].fillna("").astype(str)
    pointed = np.full((n, 4), -1, dtype=np.int64)  # the dx code each of the first 4 letters names
    ptr_codes, ptr_uniques = pd.factorize(ptr)
    per_pointer = np.array([[ord(c) - 65 if "A" <= c <= "L" else -1 for c in (u + "....")[:4]]
                            for u in ptr_uniques.tolist()], dtype=np.int64).reshape(-1, 4)
    for k in range(4):
        col = per_pointer[ptr_codes, k] if n else np.empty(0, dtype=np.int64)
        ok = col >= 0
        pointed[ok, k] = dx_codes[np.flatnonzero(ok), col[ok]]
    has_ptr = ptr != ""
    f["has_pointer"] = has_ptr
    g513x = [code_of[c] for c in (*K.G51_3X, K.G51_3_HEADER) if c in code_of]
    f["points_g513x"] = np.isin(pointed, g513x).any(axis=1)
    g5133 = code_of.get(K.G51_33, -2)
    f["points_only_g5133"] = ((pointed == -1) | (pointed == g5133)).all(axis=1) & (pointed != -1).any(axis=1)
    f["ndc_ok"] = ndc_is_valid(lines[C.NDC])
    return f


def _sites_by_text(texts) -> pd.DataFrame:
    """Facts of each distinct sites text, parsed once (exports repeat a handful of texts)."""
    rows = []
    for text in texts:
        sites = parse_sites(str(text))
        units = [x.units for x in sites if x.units is not None]
        sides = [x.units_per_side() for x in sites]
        rows.append({
            "text": text, "n_sites": len(sites), "site_units": sum(units) if units else np.nan,
            "r_units": sum(d.get("R", 0.0) for d in sides), "l_units": sum(d.get("L", 0.0) for d in sides),
            "no_units": "; ".join(dict.fromkeys(x.raw for x in sites if x.units is None)),
            "nonfacial": "; ".join(dict.fromkeys(x.muscle for x in sites if x.facial is False)),
            "unknown": "; ".join(dict.fromkeys(x.muscle_text for x in sites if x.muscle is None and x.muscle_text)),
            "R": any(x.side in ("R", "B") for x in sites), "L": any(x.side in ("L", "B") for x in sites),
            "U": any(x.side is None for x in sites),
        })
    return pd.DataFrame(rows, columns=["text", "n_sites", "site_units", "r_units", "l_units", "no_units",
                                       "nonfacial", "unknown", "R", "L", "U"]).set_index("text")


def _sites_per_claim(lines: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    """Site facts per claim; the same sites text on several lines of a claim counts once."""
    pairs = lines[[C.CLAIM_ID, C.MUSCLES]].dropna()
    pairs = pairs[pairs[C.MUSCLES].str.strip() != ""].drop_duplicates()
    facts = _sites_by_text(pd.unique(pairs[C.MUSCLES]))
    joined = facts.reindex(pairs[C.MUSCLES].to_numpy())
    joined.index = pairs[C.CLAIM_ID].to_numpy()
    g = joined.groupby(level=0, sort=False)
    out = pd.DataFrame(index=index)
    out["n_sites"] = g["n_sites"].sum().reindex(index).fillna(0).astype(int)
    out["site_units"] = g["site_units"].sum(min_count=1).reindex(index).astype(float)
    for col in ("r_units", "l_units"):
        out[col] = g[col].sum().reindex(index).astype(float).fillna(0.0)
    keys = pd.Series(joined.index, index=range(len(joined)))
    for col in ("no_units", "nonfacial", "unknown"):
        out[col] = _join(pd.Series(joined[col].to_numpy(), index=keys.index).astype(object).fillna(""),
                         keys).reindex(index).fillna("")
    for col in ("R", "L", "U"):
        out[col] = g[col].any().reindex(index).fillna(False).astype(bool)
    return out


def derive_claims(
    lines: pd.DataFrame,
    config: ScrubConfig,
    present: set[str] | None = None,
    history: pd.DataFrame | None = None,
    salt: str = "",
) -> pd.DataFrame:
    """One row per claim (claims with an id), with the facts every claim-level rule needs."""
    present = set(C.CANONICAL) if present is None else present
    if lines[C.CLAIM_ID].isna().any():  # a boolean selection copies every column: only when needed
        lines = lines[lines[C.CLAIM_ID].notna()]
    if lines.empty:
        return pd.DataFrame(columns=[C.CLAIM_ID, "in_scope"])
    f = line_features(lines)
    by = lines[C.CLAIM_ID]
    g = f.groupby(by, sort=False)
    anyf = g[[c for c in f.columns if f[c].dtype == bool]].any()
    cf = pd.DataFrame(index=anyf.index)
    cf.index.name = "claim"
    first = lines[[C.PATIENT_ID, C.PAYER, C.PLACE_OF_SERVICE]].groupby(by, sort=False).first()
    cf[C.CLAIM_ID] = cf.index.astype(object)
    cf[C.PATIENT_ID] = first[C.PATIENT_ID]
    cf[C.PAYER] = first[C.PAYER]
    cf[C.PLACE_OF_SERVICE] = first[C.PLACE_OF_SERVICE]
    dos = lines.groupby(by, sort=False)[C.SERVICE_DATE]
    cf["dos_min"] = dos.min()
    cf["dos_max"] = dos.max()
    cf["first_index"] = pd.Series(lines.index, index=lines.index).groupby(by, sort=False).first()
    for col in anyf.columns:
        cf[col] = anyf[col]
    cf["in_scope"] = cf["g5133"]
    cf["file_has_pointers"] = bool(f["has_pointer"].any())

    def anchor(mask: pd.Series) -> pd.Series:
        sub = lines.index[mask.to_numpy()]
        return pd.Series(sub, index=sub).groupby(by[sub], sort=False).first()

    cf["idx_64612"] = anchor(f.is_64612)
    cf["idx_toxin"] = anchor(f.is_toxin)
    for col in ("idx_64612", "idx_toxin"):
        cf[col] = cf[col].fillna(cf["first_index"]).astype("int64")

    # Profiles per claim (payer).
    payer = cf[C.PAYER].astype(object)
    profiles = {p: config.profile_for(p) for p in payer.dropna().unique()}

    def per_payer(get):  # one lookup per distinct payer; claims without a payer take the default profile
        return payer.map({p: get(prof) for p, prof in profiles.items()}).where(payer.notna(), get(config.default))

    cf["profile_style"] = per_payer(lambda p: p.bilateral_style.value)
    for attr in ("repeat_interval_days", "side_min_units", "side_max_units", "session_cap_units"):
        cf[attr] = per_payer(lambda p, a=attr: getattr(p, a)).astype(float)

    # Diagnosis.
    cf["conflict_dx"] = _join(f["conflict_dx"], by).reindex(cf.index).fillna("")

    # 64612 bilateral billing.
    units = lines[C.UNITS]
    p = f.assign(units=units, date=lines[C.SERVICE_DATE])[f.is_64612]
    unmod = p.loc[:, ["m50", "m_rt", "m_lt"]].sum(axis=1) == 0
    p = p.assign(unmod=unmod)
    why8 = pd.Series("", index=p.index)
    why8 = why8.mask(p.m50 & (p.units != 1), "64612-50 billed with " + p.units.pipe(_fmtv) + " units")
    why8 = why8.mask(p.m50 & (p.m_rt | p.m_lt), "modifier 50 together with RT/LT on one line")
    why8 = why8.mask(p.unmod & (p.units >= 2), "64612 without side modifier billed with 2+ units")
    why8 = why8.mask((p.m_rt | p.m_lt) & ~p.m50 & (p.units != 1), "64612-RT/LT billed with "
                     + p.units.pipe(_fmtv) + " units (1 per side)")
    key = [p.claim, p.date.fillna(pd.Timestamp(0))]
    per_date = p.groupby(key, sort=False)[["m50", "m_rt", "m_lt", "unmod"]].transform("sum")
    mixed = (per_date.m50 > 0) & ((per_date.m_rt > 0) | (per_date.m_lt > 0))
    why8 = why8.mask(mixed & (why8 == ""), "64612-50 plus a 64612-RT/LT line on the same date")
    twice = (per_date.m_rt > 1) | (per_date.m_lt > 1) | (per_date.m50 > 1) | (per_date.unmod > 1)
    why8 = why8.mask(twice & (why8 == ""), "two 64612 lines for the same side on the same date")
    cf["why_bilateral"] = _join(why8, p.claim).reindex(cf.index).fillna("")
    pg = p.groupby("claim", sort=False)
    cf["n_unmod_multi"] = (p.unmod & (p.units >= 2)).groupby(p.claim).any().reindex(cf.index).fillna(False)
    bilateral = cf.m50 | (cf.m_rt & cf.m_lt)
    cf["bilateral_billed"] = bilateral
    one_side = np.where(cf.m_rt & ~cf.m_lt, "RT only", np.where(cf.m_lt & ~cf.m_rt, "LT only", "no side modifier"))
    cf["one_side"] = pd.Series(one_side, index=cf.index).where(
        cf.is_64612 & ~bilateral & ~cf.n_unmod_multi.astype(bool), "")
    del pg
    style_why = np.where(
        (cf.profile_style == "50") & cf.m_rt & cf.m_lt & ~cf.m50, "one line 64612-50 x1",
        np.where((cf.profile_style == "RT_LT") & cf.m50, "two lines, 64612-RT and 64612-LT", ""))
    cf["why_style"] = style_why

    del p, why8, per_date, mixed, twice, unmod, key  # line-sized temporaries: free them as we go
    # Pointers and other chemodenervation.
    bad_ptr = (f.is_64612 | f.is_toxin) & ~f.points_g513x
    cf["why_pointer"] = _join(lines[C.PROCEDURE_CODE].where(bad_ptr, "").fillna(""), by).reindex(cf.index).fillna("")
    cf["idx_pointer"] = anchor(bad_ptr).reindex(cf.index)
    dx_count = lines[list(C.DX)].notna().sum(axis=1)
    only_g5133_claim = (dx_count.groupby(by).max() == 1) & cf.g5133
    other = f.is_other_chemo & (f.points_only_g5133 | (~f.has_pointer & by.map(only_g5133_claim).fillna(False)))
    cf["why_other_chemo"] = _join(lines[C.PROCEDURE_CODE].where(other, "").fillna(""), by).reindex(
        cf.index).fillna("")
    cf["idx_other_chemo"] = anchor(other).reindex(cf.index)

    del bad_ptr, dx_count, other
    # Drug lines.
    source = lines[C.DRUG_SOURCE].fillna("").astype(str).str.lower()
    supplied = source.str.contains("pharm|patient|specialty|white|brown", regex=True)
    cf["drug_supplied"] = supplied.groupby(by).any()
    tox = lines.loc[f.admin_toxin, [C.CLAIM_ID, C.PROCEDURE_CODE, C.UNITS]]
    cf["toxin_code"] = tox.groupby(tox[C.CLAIM_ID], sort=False)[C.PROCEDURE_CODE].first().reindex(
        cf.index).astype(object)
    cf["admin_units"] = tox.groupby(tox[C.CLAIM_ID])[C.UNITS].sum().reindex(cf.index).astype(float).fillna(0.0)
    jwl = lines.loc[f.is_toxin & f.jw, [C.CLAIM_ID, C.UNITS]]
    cf["waste_units"] = jwl.groupby(jwl[C.CLAIM_ID])[C.UNITS].sum().reindex(cf.index).astype(float).fillna(0.0)
    cf["billing_unit"] = cf.toxin_code.map(K.TOXIN_BILLING_UNIT).astype(float)
    bad_ndc = f.is_toxin & ~f.ndc_ok
    cf["why_ndc"] = _join(lines[C.NDC].astype(object).fillna("(blank)").where(bad_ndc, ""), by).reindex(cf.index).fillna("")

    del source, supplied, tox, jwl, bad_ndc
    # Waste modifiers.
    t = f.assign(code=lines[C.PROCEDURE_CODE], date=lines[C.SERVICE_DATE].fillna(pd.Timestamp(0)))[f.is_toxin | f.jw]
    tk = [t.claim, t.code, t.date]
    grp = t.groupby(tk, sort=False)
    has_jw = grp["jw"].transform("any").astype(bool) & t.is_toxin
    has_jz = grp["jz"].transform("any").astype(bool) & t.is_toxin
    has_admin = grp["admin_toxin"].transform("any").astype(bool)
    why14 = pd.Series("", index=t.index)
    dated = t.date >= pd.Timestamp(K.JZ_REQUIRED)
    why14 = why14.mask(t.admin_toxin & dated & ~t.jz & ~has_jw,
                       t.code + " needs JZ or a JW line for discarded units (dates from 2023-07-01)")
    why14 = why14.mask(t.jw & t.jz, "JW and JZ on one line")
    why14 = why14.mask(t.is_toxin & has_jw & has_jz & ~(t.jw & t.jz), "a JZ line and a JW line for " + t.code)
    why14 = why14.mask(t.is_toxin & t.jw & ~has_admin, "JW line for " + t.code + " with no administered line")
    why14 = why14.mask(t.jw & ~t.is_drug, "JW on a non-drug line (" + t.code.fillna("") + ")")
    cf["why_waste"] = _join(why14, t.claim).reindex(cf.index).fillna("")
    cf["uses_jz"] = cf.jz & cf.is_toxin

    del t, tk, grp, has_jw, has_jz, has_admin, why14, dated
    # Sites.
    sp = _sites_per_claim(lines, cf.index)
    for col in ("n_sites", "site_units", "r_units", "l_units"):
        cf[col] = sp[col]
    cf["sites_without_units"] = sp["no_units"]
    cf["why_sites_missing"] = cf["sites_without_units"].where(
        cf.n_sites > 0, "no injection sites documented").where(cf.is_64612, "")
    cf["why_sites_missing"] = ("entries without units: " + cf["why_sites_missing"]).where(
        (cf.n_sites > 0) & (cf["why_sites_missing"] != ""), cf["why_sites_missing"])
    cf["nonfacial_muscles"] = sp["nonfacial"]
    cf["unknown_muscles"] = sp["unknown"]
    sides = sp[["R", "L", "U"]]
    only_r = sides.R & ~sides.L
    only_l = sides.L & ~sides.R
    none_sided = ~sides.R & ~sides.L & sides.U
    side_text = np.where(only_r, "on the right side only", np.where(only_l, "on the left side only",
                         np.where(none_sided, "all without a side", "")))
    side_text = pd.Series(side_text, index=cf.index)
    side_text = side_text.where(~(sides.U & (only_r | only_l)), side_text + " (some sites state no side)")
    cf["why_sides"] = side_text.where(cf.n_sites > 0, "")
    cf["sides_severity"] = np.where(sides.U, "warning", "error")

    # Units: documented vs billed, vials, dose plausibility (texts built only for the claims they describe).
    bu = cf.billing_unit
    expected = np.ceil(np.round(cf.site_units / bu, 6))
    has_doc = cf.site_units.notna() & (cf.site_units > 0) & cf.toxin_code.notna()
    mismatch = has_doc & (expected != cf.admin_units)
    cf["why_units"] = _text_where(mismatch, lambda m: (
        "billed " + _fmtv(cf.admin_units[m]) + " units of " + cf.toxin_code[m].fillna("") + "; documented "
        + _fmtv(cf.site_units[m]) + " U = " + _fmtv(expected[m]) + " billing units"))
    total_toxin = (cf.admin_units + cf.waste_units) * bu
    vial_check = cf.toxin_code.notna() & ((cf.waste_units > 0) | cf.uses_jz)
    checked = vial_check.to_numpy(bool)
    bad = np.zeros(len(cf), dtype=bool)
    bad[checked] = [
        not (math.isnan(tt) or (float(tt).is_integer() and int(tt) in VIAL_TOTALS[c]) or tt > _VIAL_LIMIT[c])
        for c, tt in zip(cf.toxin_code[checked], total_toxin[checked], strict=True)]
    vial_bad = pd.Series(bad, index=cf.index)
    cf["why_vials"] = _text_where(vial_bad, lambda m: (
        _fmtv(cf.admin_units[m] * bu[m]) + " U given + " + _fmtv(cf.waste_units[m] * bu[m]) + " U discarded = "
        + _fmtv(total_toxin[m]) + " U; vials are "
        + cf.toxin_code[m].map(lambda c: "/".join(str(v) for v in K.TOXIN_VIALS.get(c, ()))) + " U"))
    div = cf.toxin_code.map(K.BOTOX_EQUIVALENT_DIVISOR).astype(float)
    r_eq, l_eq = cf.r_units / div, cf.l_units / div
    session = (cf.site_units.fillna(cf.admin_units * bu)) / div
    parts = []
    for side, eq in (("right", r_eq), ("left", l_eq)):
        low = (eq > 0) & (eq < cf.side_min_units)
        high = eq > cf.side_max_units
        parts.append(_text_where(low, lambda m, side=side, eq=eq: (
            side + " side " + _fmtv(eq[m]) + " U below " + _fmtv(cf.side_min_units[m]))))
        parts[-1] = parts[-1].where(~high, _text_where(high, lambda m, side=side, eq=eq: (
            side + " side " + _fmtv(eq[m]) + " U above " + _fmtv(cf.side_max_units[m]))))
    parts.append(_text_where(session > cf.session_cap_units, lambda m: (
        "session " + _fmtv(session[m]) + " U above cap " + _fmtv(cf.session_cap_units[m]))))
    dose = join_texts(parts)
    cf["why_dose"] = (dose + " (Botox-equivalent units)").where((dose != "") & cf.toxin_code.notna(), "")

    del sp, sides, only_r, only_l, none_sided, side_text
    # Guidance.
    gl = f.assign(date=lines[C.SERVICE_DATE].fillna(pd.Timestamp(0)), units=units)[
        f.is_95873 | f.is_95874 | f.is_chemo]
    gl = gl.assign(guide=gl.is_95873 | gl.is_95874)
    gk = [gl.claim, gl.date]
    chemo_same_day = gl.groupby(gk)["is_chemo"].transform("any").astype(bool)
    guide_units = gl.units.where(gl.guide, 0).groupby(gk).transform("sum")
    why22 = pd.Series("", index=gl.index)
    why22 = why22.mask(gl.guide & ~chemo_same_day, "guidance without a chemodenervation code on the same date")
    why22 = why22.mask(gl.guide & (guide_units > 1), "more than 1 unit of guidance on one date")
    cf["why_guidance"] = _join(why22, gl.claim).reindex(cf.index).fillna("")
    cf["why_guidance"] = cf.why_guidance.str.cat(
        pd.Series(np.where(cf.is_95874 & cf.is_64617, "95874 with 64617 (guidance included)", ""), index=cf.index),
        sep="; ").str.strip("; ")
    cf["why_guidance_warn"] = np.where(
        cf.is_95873 & cf.is_95874, "95873 and 95874 billed together",
        np.where((cf.is_95873 | cf.is_95874) & cf.is_64612, "guidance billed with 64612 for facial muscles", ""))

    del gl, gk, chemo_same_day, guide_units, why22
    # Documentation flags (a flag documented on any line counts for the claim).
    docs = lines.groupby(by, sort=False)[list(C.DOC_FLAGS)].any()
    for col in C.DOC_FLAGS:
        cf[col] = docs[col] | (col not in present)
    labels = {C.DOC_ONSET: "onset", C.DOC_DURATION: "duration", C.DOC_FREQUENCY: "frequency of spasms",
              C.DOC_NEURO_EXAM: "neurological examination", C.DOC_FACIAL_NERVE: "facial nerve function"}
    for name, cols in (("why_history", (C.DOC_ONSET, C.DOC_DURATION, C.DOC_FREQUENCY)),
                       ("why_exam", (C.DOC_NEURO_EXAM, C.DOC_FACIAL_NERVE))):
        cf[name] = join_flags({labels[c]: ~cf[c] for c in cols})
    cf["imaging_severity"] = np.where(cf.structural | cf.is_surgery, "error", "warning")
    cf["imaging_context"] = np.where(cf.structural, " and the claim carries a structural-cause diagnosis",
                                     np.where(cf.is_surgery, " and facial-nerve surgery is billed", ""))
    cf["surgery_codes"] = _join(lines[C.PROCEDURE_CODE].where(f.is_surgery, "").fillna(""), by).reindex(
        cf.index).fillna("")

    # Setting.
    pos = cf[C.PLACE_OF_SERVICE].fillna("")
    auth = lines[C.PRIOR_AUTH].notna().groupby(by, sort=False).any().reindex(cf.index, fill_value=False)
    opd_pa = (pos.isin(K.OPD_POS) & cf.is_64612 & cf.toxin_code.isin(K.TOXIN_OPD_PA)
              & (cf.dos_min >= pd.Timestamp(K.OPD_PA_EFFECTIVE)) & ~auth)
    cf["why_setting"] = np.where(
        pos.isin(K.FACILITY_POS) & cf.is_toxin,
        "POS " + pos + " (facility) with a toxin line: the drug usually belongs on the facility claim", "")
    cf["why_setting"] = pd.Series(cf["why_setting"], index=cf.index).str.cat(
        pd.Series(np.where(opd_pa, "POS " + pos + " hospital outpatient 64612 + toxin with no prior "
                           "authorization number (UTN)", ""), index=cf.index), sep="; ").str.strip("; ")
    # 64612 vs its toxin line: dates and rendering NPIs (vectorised min/max/nunique per claim).
    proc_l = lines.loc[f.is_64612, [C.CLAIM_ID, C.SERVICE_DATE]]
    drug_l = lines.loc[f.admin_toxin, [C.CLAIM_ID, C.SERVICE_DATE]]
    pd_ = proc_l.groupby(proc_l[C.CLAIM_ID])[C.SERVICE_DATE].agg(["min", "max"]).reindex(cf.index)
    dd_ = drug_l.groupby(drug_l[C.CLAIM_ID])[C.SERVICE_DATE].agg(["min", "max"]).reindex(cf.index)
    both = cf.is_64612 & cf.admin_toxin
    diff_dates = both & ((pd_["min"] != dd_["min"]) | (pd_["max"] != dd_["max"])) & pd_["min"].notna() & \
        dd_["min"].notna()
    pair = lines.loc[f.is_64612 | f.admin_toxin, [C.CLAIM_ID, C.RENDERING_NPI]]
    npi_n = pair.groupby(pair[C.CLAIM_ID])[C.RENDERING_NPI].nunique().reindex(cf.index).fillna(0)
    why32 = join_flags({"different dates of service": diff_dates,
                        "different rendering NPIs": both & (npi_n > 1)}, sep="; ")
    cf["why_pairing"] = why32

    del proc_l, drug_l, pd_, dd_, pair, npi_n, f
    # History: repeat sessions within the batch and against the ledger.
    cf["why_repeat"] = _repeat_sessions(cf, salt, history)
    for col in [c for c in cf.columns if c.startswith("why_")] + ["one_side", "conflict_dx", "surgery_codes"]:
        cf[col] = cf[col].astype(object).fillna("").astype(str)
    return cf.reset_index(drop=True)


def _text_where(mask: pd.Series, make) -> pd.Series:
    """Text where ``mask`` holds, "" elsewhere; ``make(mask)`` builds the texts of those rows only."""
    out = pd.Series("", index=mask.index, dtype=object)
    m = mask.fillna(False).to_numpy(bool)
    if m.any():
        out[m] = make(m).to_numpy(dtype=object)
    return out


def _fmtv(values: pd.Series) -> pd.Series:
    """Numbers as short text, vectorised: 10.0 -> "10", 2.5 -> "2.5", NaN -> "?"."""
    v = pd.to_numeric(values, errors="coerce").astype(float)
    whole = v.notna() & (v % 1 == 0) & (v.abs() < 1e15)
    text = v.astype(object).astype(str)
    text = text.where(~whole, v.where(whole, 0).astype(np.int64).astype(str))
    return text.where(v.notna(), "?").astype(object)


def _repeat_sessions(cf: pd.DataFrame, salt: str, history: pd.DataFrame | None) -> pd.Series:
    mask = cf.in_scope & cf.is_64612 & cf[C.PATIENT_ID].notna() & cf.dos_min.notna()
    cur = cf.loc[mask, [C.PATIENT_ID, "dos_min", "repeat_interval_days"]]
    if cur.empty:
        return pd.Series("", index=cf.index)
    has_history = history is not None and len(history) > 0
    if has_history:  # the ledger holds salted keys: hash this batch's ids to compare (one per patient)
        keys = {pid: patient_key(pid, salt) for pid in cur[C.PATIENT_ID].unique()}
        key_col = cur[C.PATIENT_ID].map(keys)
    else:
        key_col = cur[C.PATIENT_ID]
    sessions = pd.DataFrame({"key": key_col, "date": cur.dos_min})
    pool = sessions
    if has_history:
        pool = pd.concat([sessions, history.rename(columns={"patient_key": "key", "service_date": "date"})[
            ["key", "date"]]], ignore_index=True)
    pool = pool.drop_duplicates().sort_values(["key", "date"])
    pool["prev"] = pool.groupby("key")["date"].shift(1)
    prev = sessions.merge(pool, on=["key", "date"], how="left").set_axis(sessions.index)["prev"]
    days = (sessions.date - prev).dt.days
    hit = days.notna() & (days > 0) & (days < cur.repeat_interval_days)
    text = pd.Series("", index=cf.index)
    text.loc[hit[hit].index] = (days[hit].astype(int).astype(str) + " days after the session on "
                                + prev[hit].dt.strftime("%Y-%m-%d") + " (minimum "
                                + cur.repeat_interval_days[hit].astype(int).astype(str) + ")")
    return text
