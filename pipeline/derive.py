"""Derive line features and one row of facts per claim from canonical lines (vectorised group-bys).

Pure: no I/O, and rule-free: the claim-level frame holds facts (codes present, dates, units, sites, the
payer profile's settings) that ``schemas.claims.ClaimFacts`` declares and the rules in ``schemas/rules/``
check. A rule that names its lines at fault registers that per-line logic in its own module; derive runs
every such registration the same way.
"""

import hashlib

import numpy as np
import pandas as pd

from pipeline import lookups
from pipeline.config import ScrubConfig
from pipeline.threads import beside, here
from schemas import codesets as K
from schemas import columns as C
from schemas.checks import ndc_is_valid
from schemas.rules import CLAIM_RULES
from schemas.sites import read_note
from schemas.text import pick as _pick


def patient_key(patient_id: str | None, salt: str) -> str | None:
    """Salted hash of a patient id: the ledger stores this, never the id."""
    if patient_id is None:
        return None
    return hashlib.sha256(f"{salt}\x1f{patient_id}".encode()).hexdigest()[:32]


_LETTER_INDEX = {chr(65 + i): i for i in range(12)}
PARALLEL_LINES = 50_000  # from this many lines, the reference-table lookups run on a helper thread


def _code_matrix(cells: pd.DataFrame) -> tuple[np.ndarray, pd.Index, dict[str, int]]:
    """The columns' values as one integer matrix over their distinct values (``lookups.code_matrix``)."""
    return lookups.code_matrix(cells)


def _carries(cells: pd.DataFrame, wanted: list[list[str]], factorized=None) -> np.ndarray:
    """Per row, bit k set when the row holds one of the codes of ``wanted[k]`` in any of the columns.
    The columns are factorised together once (``_code_matrix``, or ``factorized``: codes rows x columns,
    uniques), each distinct code gets its bits, and one pass ORs the bits of each row."""
    codes, uniques = _code_matrix(cells)[:2] if factorized is None else factorized
    bit_of = np.zeros(len(uniques) + 1, dtype=np.int64)  # the last entry: blank (code -1)
    position = {v: i for i, v in enumerate(uniques.tolist())}
    for k, group in enumerate(wanted):
        for code in group:
            if code in position:
                bit_of[position[code]] |= 1 << k
    return np.bitwise_or.reduce(bit_of[codes], axis=1) if codes.size else np.zeros(len(cells), dtype=np.int64)


def _first_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (a, b) pairs of two non-negative integer arrays, each at its first position, in order."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    _, first = np.unique(a * (int(b.max(initial=0)) + 1) + b, return_index=True)
    first.sort()
    return a[first], b[first]


def _join_codes(codes: np.ndarray, texts, n: int, fill: str = "") -> pd.Series:
    """Per group 0..n-1: the distinct non-empty texts (in order of appearance) joined with '; ';
    a null text reads as ``fill``. Works on integer codes of the texts; only groups with two or more
    distinct texts are joined in Python. A text column (``_pick``): no Python string per group."""
    tcodes, uniques = pd.factorize(texts if isinstance(texts, pd.Series) else pd.Series(texts, dtype=object))
    labels = np.array([str(u) for u in uniques] + [fill], dtype=object)
    tcodes = np.where(tcodes < 0, len(uniques), tcodes)
    keep = (labels != "")[tcodes]
    table = [*labels.tolist(), ""]  # the last entry: a group with no text
    out = np.full(n, len(table) - 1, dtype=np.int64)
    if keep.any():
        k, t = _first_pairs(np.asarray(codes)[keep], tcodes[keep])  # each (group, text) once, first seen
        single = np.bincount(k, minlength=n)[k] == 1
        out[k[single]] = t[single]
        if not single.all():
            multi = pd.DataFrame({"k": k[~single], "v": labels[t[~single]]})
            joined = multi.groupby("k", sort=False)["v"].agg("; ".join)
            out[joined.index.to_numpy()] = len(table) + np.arange(len(joined))
            table += joined.tolist()
    return _pick(out, table)


class Groups:
    """Lines grouped by claim id, as integer codes 0..n-1 in order of first appearance (the row order
    of the claim facts). Aggregates are numpy passes over the codes, not pandas group-bys on text keys."""

    def __init__(self, by: pd.Series):
        self.codes, self.ids = pd.factorize(by, sort=False)
        self.n = len(self.ids)
        self.labels = by.index.to_numpy()

    def _mask(self, mask) -> np.ndarray:
        """A line mask as a bool array (None: every line)."""
        if mask is None:
            return np.ones(len(self.codes), dtype=bool)
        return np.asarray(mask.fillna(False) if isinstance(mask, pd.Series) else mask, dtype=bool)

    def any(self, mask) -> np.ndarray:
        return np.bincount(self.codes[self._mask(mask)], minlength=self.n) > 0

    def sum(self, values, mask=None) -> np.ndarray:
        """Sum per claim; NaN counts as 0 and a claim with no line sums to 0 (pandas' sum)."""
        v = np.asarray(values, dtype=float)
        m = self._mask(mask)
        return np.bincount(self.codes[m], weights=np.nan_to_num(v[m]), minlength=self.n).astype(float)

    def max(self, values: np.ndarray, mask=None) -> np.ndarray:
        """Max of integers per claim (-1 where the claim has no line)."""
        out = np.full(self.n, -1, dtype=np.int64)
        m = self._mask(mask)
        np.maximum.at(out, self.codes[m], np.asarray(values, dtype=np.int64)[m])
        return out

    def first_pos(self, mask=None) -> np.ndarray:
        """Position of each claim's first line where ``mask`` holds (-1 where none)."""
        pos = np.flatnonzero(self._mask(mask))
        out = np.full(self.n, len(self.codes), dtype=np.int64)
        np.minimum.at(out, self.codes[pos], pos)
        out[out == len(self.codes)] = -1
        return out

    def first_label(self, mask=None) -> np.ndarray:
        """Index label of each claim's first line where ``mask`` holds (float, NaN where none)."""
        pos = self.first_pos(mask)
        out = np.full(self.n, np.nan)
        out[pos >= 0] = self.labels[pos[pos >= 0]]
        return out

    def first_value(self, values: pd.Series, mask=None) -> pd.Series:
        """Each claim's first non-null value (among the lines where ``mask`` holds)."""
        ok = values.notna().to_numpy() & self._mask(mask)
        return pd.Series(values.array.take(self.first_pos(ok), allow_fill=True))

    def date_range(self, dates: pd.Series, mask=None) -> tuple[pd.Series, pd.Series]:
        """Earliest and latest date per claim (NaT where none)."""
        ok = dates.notna().to_numpy() & self._mask(mask)
        v = dates.to_numpy(dtype="datetime64[ns]").view(np.int64)[ok]
        lo = np.full(self.n, np.iinfo(np.int64).max, dtype=np.int64)
        hi = np.full(self.n, np.iinfo(np.int64).min, dtype=np.int64)
        np.minimum.at(lo, self.codes[ok], v)
        np.maximum.at(hi, self.codes[ok], v)
        none = np.bincount(self.codes[ok], minlength=self.n) == 0
        lo[none] = hi[none] = np.iinfo(np.int64).min  # NaT
        return pd.Series(lo.view("datetime64[ns]")), pd.Series(hi.view("datetime64[ns]"))

    def nunique(self, values: pd.Series, mask=None) -> np.ndarray:
        """Distinct non-null values per claim."""
        vcodes, _ = pd.factorize(values)
        ok = (vcodes >= 0) & self._mask(mask)
        claims, _ = _first_pairs(self.codes[ok], vcodes[ok])
        return np.bincount(claims, minlength=self.n)

    def join(self, values: pd.Series, mask=None, fill: str = "") -> pd.Series:
        """Per claim: the distinct non-empty texts of the lines where ``mask`` holds, joined with '; '
        (nulls read as ``fill``)."""
        pos = np.flatnonzero(self._mask(mask))
        return _join_codes(self.codes[pos], values.iloc[pos], self.n, fill)

    def join_at(self, pos: np.ndarray, texts) -> pd.Series:
        """Like ``join`` for texts already taken at line positions ``pos``."""
        return _join_codes(self.codes[pos], texts, self.n)


class Columns(dict):
    """Columns under construction, by name, each a Series on ``index``; ``frame()`` makes the DataFrame once.

    Adding a column to a DataFrame rebuilds its column index (Arrow text in pandas 3): about 0.3 ms a column,
    and derive makes some 110 claim facts and 30 line features (40 ms a run at 100k lines). Assignment aligns a
    Series on the index and broadcasts a scalar, as a DataFrame's does; ``cols.name`` reads a column too.
    """

    def __init__(self, index: pd.Index):
        super().__init__()
        self.index = index

    def __setitem__(self, name: str, values) -> None:
        if not (isinstance(values, pd.Series) and values.index.equals(self.index)):
            values = pd.Series(values, index=self.index)  # a Series elsewhere indexed is aligned (reindexed)
        super().__setitem__(name, values)

    def __getattr__(self, name: str) -> pd.Series:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def frame(self) -> pd.DataFrame:
        """The DataFrame, a block per column: consolidating them (pandas' default for a dict) copies every
        column once more (30 ms at 500k lines) for no gain here. Copy-on-write keeps the shared buffers safe."""
        return pd.DataFrame(dict(self), index=self.index, copy=False)


def line_features(lines: pd.DataFrame, memo: dict | None = None) -> pd.DataFrame:
    """Per-line booleans used by the claim rules (codes, modifiers, pointers). ``memo``: factorised columns to
    share with the lookups (``lookups.factorized``)."""
    f = Columns(lines.index)
    f["claim"] = lines[C.CLAIM_ID]
    # Procedure codes: each flag decided once per distinct code, then looked up per line.
    proc_codes, procs = lookups.factorized(lines, C.PROCEDURE_CODE, memo)
    procs = [str(p) for p in procs.tolist()] + [""]  # code -1 (blank) reads as ""
    for name, test in (
        ("is_64612", lambda p: p == K.CHEMO_FACIAL), ("is_toxin", lambda p: p in K.TOXIN_CODES),
        ("is_other_chemo", lambda p: p in K.OTHER_CHEMO), ("is_chemo", lambda p: p in K.CHEMO_ALL),
        ("is_95873", lambda p: p == K.GUIDANCE_ESTIM), ("is_95874", lambda p: p == K.GUIDANCE_EMG),
        ("is_64617", lambda p: p == K.LARYNX_CHEMO), ("is_96372", lambda p: p == K.THERAPEUTIC_INJECTION),
        ("is_surgery", lambda p: p in K.FACIAL_NERVE_SURGERY), ("is_drug", lambda p: p.startswith("J")),
    ):
        f[name] = np.array([test(p) for p in procs], dtype=bool)[proc_codes]
    mods = ((K.JW, "jw"), (K.JZ, "jz"), ("50", "m50"), ("RT", "m_rt"), ("LT", "m_lt"))
    mod_matrix = lookups.matrix(lines, C.MODIFIERS, memo)[:2]  # factorised once, shared with the lookups
    bits = _carries(lines[list(C.MODIFIERS)], [[m] for m, _ in mods], mod_matrix)
    for k, (_, name) in enumerate(mods):
        f[name] = (bits >> k & 1).astype(bool)
    f["admin_toxin"] = f.is_toxin & ~f.jw
    distinct = _carries(lines[list(C.MODIFIERS)], [["59", "XE", "XS", "XP", "XU"]], mod_matrix)
    f["m96372_distinct"] = f.is_96372 & (distinct & 1).astype(bool)
    # Diagnosis codes as one integer matrix (lines x filled dx columns; -1 blank) over the file's codes.
    n = len(lines)
    dx_codes, dx_uniques, dx_column = lookups.matrix(lines, C.DX, memo)  # shared with the lookups
    f["dx_count"] = (dx_codes >= 0).sum(axis=1)
    code_of = {v: i for i, v in enumerate(dx_uniques.tolist())}
    conflicting = list(K.G51_3_CONFLICTING)
    dx_sets = {"g5133": [K.G51_33], "g513": [K.G51_3_HEADER], "g510": [K.BELLS_PALSY], "structural": K.STRUCTURAL_DX}
    bits = _carries(lines[list(C.DX)], [*dx_sets.values()] + [[c] for c in conflicting], (dx_codes, dx_uniques))
    for k, name in enumerate(dx_sets):
        f[name] = (bits >> k & 1).astype(bool)
    names = [", ".join(c for k, c in enumerate(conflicting) if b >> k & 1) for b in range(1 << len(conflicting))]
    f["conflict_dx"] = _pick(bits >> len(dx_sets), names, lines.index)  # which conflicting codes, one bit each
    # Pointers: letters A-L name dx_1..dx_12 of the same line.
    ptr = lines[C.DX_POINTER].fillna("").astype(str)
    pointed = np.full((n, 4), -1, dtype=np.int64)  # the dx code each of the first 4 letters names
    ptr_codes, ptr_uniques = pd.factorize(ptr)
    per_pointer = np.array([[ord(c) - 65 if "A" <= c <= "L" else -1 for c in (u + "....")[:4]]
                            for u in ptr_uniques.tolist()], dtype=np.int64).reshape(-1, 4)
    matrix_column = np.array([dx_column[c] for c in C.DX], dtype=np.int64)  # letter -> column of dx_codes
    for k in range(4):
        col = per_pointer[ptr_codes, k] if n else np.empty(0, dtype=np.int64)
        ok = col >= 0
        pointed[ok, k] = dx_codes[np.flatnonzero(ok), matrix_column[col[ok]]]
    has_ptr = ptr != ""
    f["has_pointer"] = has_ptr
    g513x = [code_of[c] for c in (*K.G51_3X, K.G51_3_HEADER) if c in code_of]
    is_g513x = np.zeros(len(dx_uniques) + 1, dtype=bool)  # per dx code; the last entry: none (-1)
    is_g513x[g513x] = True
    f["points_g513x"] = is_g513x[pointed].any(axis=1)
    g5133_or_none = np.zeros(len(dx_uniques) + 1, dtype=bool)
    g5133_or_none[-1] = True
    if K.G51_33 in code_of:
        g5133_or_none[code_of[K.G51_33]] = True
    f["points_only_g5133"] = g5133_or_none[pointed].all(axis=1) & (pointed != -1).any(axis=1)
    f["ndc_ok"] = ndc_is_valid(lines[C.NDC])
    return f.frame()


def _sites_by_text(texts) -> pd.DataFrame:
    """Facts of each distinct sites text, read once (exports repeat a handful of texts)."""
    rows = []
    for text in texts:
        note = read_note(str(text))
        sites = note.sites
        units = [x.units for x in sites if x.units is not None]
        rows.append({
            "text": text, "n_sites": len(sites), "site_units": sum(units) if units else np.nan,
            "r_units": sum(x.units or 0.0 for x in sites if x.side == "R"),
            "l_units": sum(x.units or 0.0 for x in sites if x.side == "L"),
            "no_units": "; ".join(dict.fromkeys(x.raw for x in sites if x.units is None)),
            "nonfacial": "; ".join(dict.fromkeys(x.muscle for x in sites if not x.facial)),
            "unread": "; ".join(note.unread),
            "R": any(x.side == "R" for x in sites), "L": any(x.side == "L" for x in sites),
            "U": any(x.side is None for x in sites),
        })
    return pd.DataFrame(rows, columns=["text", "n_sites", "site_units", "r_units", "l_units", "no_units",
                                       "nonfacial", "unread", "R", "L", "U"]).set_index("text")


def _sites_per_claim(lines: pd.DataFrame, g: Groups) -> pd.DataFrame:
    """Site facts per claim; the same sites text on several lines of a claim counts once."""
    mcodes, texts = pd.factorize(lines[C.MUSCLES])  # -1: blank
    real = np.array([str(t).strip() != "" for t in texts], dtype=bool)
    ok = (mcodes >= 0) & (real[np.maximum(mcodes, 0)] if len(texts) else False)
    cc, mc = _first_pairs(g.codes[ok], mcodes[ok])  # one (claim, text) pair each
    used = np.unique(mc)
    facts = _sites_by_text(texts.take(used))
    at = np.full(len(texts), -1, dtype=np.int64)
    at[used] = np.arange(len(used))
    joined = {col: facts[col].to_numpy()[at[mc]] for col in facts.columns}

    def total(col):
        return np.bincount(cc, weights=np.nan_to_num(joined[col].astype(float)), minlength=g.n).astype(float)

    out = pd.DataFrame(index=pd.RangeIndex(g.n))
    out["n_sites"] = total("n_sites").astype(np.int64)
    counted = np.bincount(cc, weights=~np.isnan(joined["site_units"].astype(float)), minlength=g.n)
    out["site_units"] = np.where(counted > 0, total("site_units"), np.nan)
    for col in ("r_units", "l_units"):
        out[col] = total(col)
    for col in ("no_units", "nonfacial", "unread"):
        out[col] = _join_codes(cc, joined[col], g.n)
    for col in ("R", "L", "U"):
        out[col] = np.bincount(cc[joined[col].astype(bool)], minlength=g.n) > 0
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
    memo: dict = {}  # columns of ``lines`` factorised once, shared by line_features and the lookups
    f = line_features(lines, memo)
    g = Groups(lines[C.CLAIM_ID])
    cf = Columns(pd.RangeIndex(g.n))  # the claim facts, made a DataFrame once at the end
    cf[C.CLAIM_ID] = pd.Series(g.ids.array)  # text (Arrow) as in the lines: pandera checks its type by dtype
    for col in (C.PATIENT_ID, C.PAYER, C.PLACE_OF_SERVICE):
        cf[col] = g.first_value(lines[col])
    cf["dos_min"], cf["dos_max"] = g.date_range(lines[C.SERVICE_DATE])
    cf["first_index"] = g.first_label().astype(np.int64)
    for col in f.columns:
        if f[col].dtype == bool:
            cf[col] = g.any(f[col])
    cf["in_scope"] = cf["g5133"]
    cf["file_has_pointers"] = bool(f["has_pointer"].any())

    for col, mask in (("idx_64612", f.is_64612), ("idx_toxin", f.is_toxin)):
        cf[col] = pd.Series(g.first_label(mask)).fillna(cf["first_index"]).astype("int64")

    # Profiles per claim (payer): one lookup per distinct payer name; claims without one take the default.
    which, names, profiles = config.profiles_of(cf[C.PAYER])
    cf["profile_name"] = _pick(which, [n or "" for n in names])
    cf["profile_style"] = _pick(which, [p.bilateral_style.value for p in profiles])
    for attr in ("repeat_interval_days", "side_min_units", "side_max_units", "session_cap_units"):
        cf[attr] = np.array([getattr(p, attr) for p in profiles], dtype=float)[which]
    for k, p in enumerate(profiles):  # dose caps from their effective dates (a few profiles have any)
        if p.dose_caps and (rows := which == k).any():
            for attr in ("side_max_units", "session_cap_units"):
                capped = cf[attr].to_numpy(copy=True)
                capped[rows] = p.cap_on(attr, cf["dos_min"][rows])
                cf[attr] = capped
    lcd = [np.datetime64(p.lcd_effective, "ns") if p.lcd_effective else np.datetime64("NaT", "ns") for p in profiles]
    cf["lcd_effective"] = pd.Series(np.array(lcd, dtype="datetime64[ns]")[which])
    cf["ncci_applies"] = np.array([p.ncci_applies for p in profiles], dtype=bool)[which]
    # Reference tables (NCCI edits, code sets on the date of service): per-line facts, by joins. For a large file
    # they run on a helper thread beside the claim facts below that read none of them (numpy and Arrow work, which
    # mostly releases the GIL), and join the line features before the claim rules that read them.
    patient = pd.factorize(cf[C.PATIENT_ID])[0]  # each claim's patient, as partition_lines keeps them together
    who = np.where(patient >= 0, patient, len(patient) + np.arange(g.n))[g.codes]  # no patient: the claim
    ncci = cf["ncci_applies"].to_numpy(bool)[g.codes]

    def reference_facts() -> pd.DataFrame:
        return pd.concat([lookups.ncci_facts(lines, ncci, present, config.reference_dir, who, memo),
                          lookups.code_facts(lines, config.reference_dir, memo)], axis=1)

    with beside(reference_facts, name="claimscrub-tables") if len(lines) >= PARALLEL_LINES else here(
            reference_facts) as reference:
        # Diagnosis.
        cf["conflict_dx"] = g.join(f["conflict_dx"], f["conflict_dx"].to_numpy() != "")

        # 64612 bilateral billing.
        units = lines[C.UNITS]
        pos = np.flatnonzero(f.is_64612.to_numpy())
        m50, m_rt, m_lt = (f[c].to_numpy()[pos] for c in ("m50", "m_rt", "m_lt"))  # numpy: f has many columns
        unmod, pu = ~(m50 | m_rt | m_lt), units.to_numpy()[pos]
        cf["n_unmod_multi"] = np.bincount(g.codes[pos][unmod & (pu >= 2)], minlength=g.n) > 0

        del m50, m_rt, m_lt, unmod  # line-sized temporaries: free them
        # Drug lines.
        src_codes, sources = pd.factorize(lines[C.DRUG_SOURCE])  # a handful of distinct texts
        supplied_src = pd.Series(sources, dtype=object).astype(str).str.lower().str.contains(
            "|".join(K.DRUG_NOT_BILLED_SOURCES), regex=True).to_numpy(bool)
        cf["drug_supplied"] = g.any((src_codes >= 0) & supplied_src[np.maximum(src_codes, 0)]
                                    if len(sources) else np.zeros(len(src_codes), dtype=bool))
        toxin = g.first_value(lines[C.PROCEDURE_CODE], f.admin_toxin)  # text; missing where no administered toxin
        has_toxin = toxin.notna()  # on the text column: cheap, unlike on the object column below
        cf["toxin_code"] = toxin.astype(object).where(has_toxin.to_numpy(bool), np.nan)
        cf["admin_units"] = g.sum(units, f.admin_toxin)
        cf["waste_units"] = g.sum(units, f.is_toxin & f.jw)
        tox_codes, tox_uniques = pd.factorize(toxin)  # a handful of codes: look values up per code
        tox_uniques = tox_uniques.tolist()

        def per_toxin(mapping: dict) -> np.ndarray:
            return np.array([mapping.get(u, np.nan) for u in tox_uniques] + [np.nan], dtype=float)[tox_codes]

        cf["billing_unit"] = per_toxin(K.TOXIN_BILLING_UNIT)

        cf["uses_jz"] = cf.jz & cf.is_toxin

        # Sites.
        sp = _sites_per_claim(lines, g)
        for col in ("n_sites", "site_units", "r_units", "l_units"):
            cf[col] = sp[col]
        cf["sites_without_units"] = sp["no_units"]
        cf["nonfacial_muscles"] = sp["nonfacial"]
        cf["sites_unread"] = sp["unread"]
        cf["site_on_right"], cf["site_on_left"], cf["site_without_side"] = sp["R"], sp["L"], sp["U"]

        cf["botox_divisor"] = per_toxin(K.BOTOX_EQUIVALENT_DIVISOR)  # toxin units per Botox-equivalent unit

        del sp

        # Documentation flags (a flag documented on any line counts for the claim).
        for col in C.FLAG_COLUMNS:
            cf[col] = g.any(lines[col]) | (col not in present)
        cf["surgery_codes"] = g.join(lines[C.PROCEDURE_CODE], f.is_surgery)

        # Setting, and the 64612 lines beside the administered toxin lines (dates, rendering NPIs).
        cf["prior_auth_given"] = g.any(lines[C.PRIOR_AUTH].notna())
        cf["admin_first_date"], cf["admin_last_date"] = g.date_range(lines[C.SERVICE_DATE], f.is_64612)
        cf["drug_first_date"], cf["drug_last_date"] = g.date_range(lines[C.SERVICE_DATE], f.admin_toxin)
        cf["admin_drug_npis"] = g.nunique(lines[C.RENDERING_NPI], f.is_64612 | f.admin_toxin)

        # History: repeat sessions within the batch and against the ledger.
        cf["previous_session"] = _previous_sessions(
            pd.DataFrame({c: cf[c] for c in ("in_scope", "is_64612", C.PATIENT_ID, "dos_min")}), salt, history, patient)
        # Claim rules that name their lines at fault (schemas/rules), but those that read the reference tables.
        _rule_line_facts([r for r in CLAIM_RULES if not r.line_reads_tables], lines, f, g, cf)
        f = pd.concat([f, reference()], axis=1)
    cf["over_mue_64612"] = g.any(f.is_64612 & (f["mue_units"] > f["mue_limit"]))
    cf["dx_not_judged"] = g.any(f["dx_not_judged"])  # CODE-001 not checked on the claim (a date between releases)

    # The claim rules whose lines at fault are read on the reference-table facts.
    _rule_line_facts([r for r in CLAIM_RULES if r.line_reads_tables], lines, f, g, cf)
    del f
    for col in ("conflict_dx", "surgery_codes"):
        if not isinstance(cf[col].dtype, pd.StringDtype) or cf[col].hasnans:
            cf[col] = cf[col].astype(object).fillna("").astype(str)
    return cf.frame()


def _rule_line_facts(rules: list, lines: pd.DataFrame, f: pd.DataFrame, g: Groups, cf: Columns) -> None:
    """The claim facts of rules that name their lines at fault (schemas/rules), into ``cf``: the lines' values
    or texts per claim, and the first such line's label."""
    for rule in rules:
        if rule.offending_lines is not None:
            at_fault = np.asarray(rule.offending_lines(lines, f, g, cf), dtype=bool)
            cf[rule.line_fact] = g.join(lines[rule.line_shows], at_fault, fill=rule.line_blank)
            cf[rule.line_fact + "_at"] = g.first_label(at_fault)
        if rule.line_texts is not None:
            pos, texts = rule.line_texts(lines, f, g, cf)
            texts = np.asarray(texts, dtype=object)
            shown = texts != ""  # the lines at fault: most rules' texts are mostly ""
            pos = np.asarray(pos)[shown]
            cf[rule.line_fact] = g.join_at(pos, texts[shown])
            at_fault = np.zeros(len(lines), dtype=bool)
            at_fault[pos] = True
            cf[rule.line_fact + "_at"] = g.first_label(at_fault)


def _previous_sessions(cf: pd.DataFrame, salt: str, history: pd.DataFrame | None,
                       patient: np.ndarray | None = None) -> pd.Series:
    """Per G51.33 64612 claim with a patient and a date: the patient's latest earlier session date, in this
    batch or in the ledger's history (NaT where none). ``patient``: the claims' patient ids already factorised
    (derive's), used when there is no history to compare with."""
    mask = cf.in_scope & cf.is_64612 & cf[C.PATIENT_ID].notna() & cf.dos_min.notna()
    out = pd.Series(pd.NaT, index=cf.index, dtype="datetime64[ns]")
    cur = cf.loc[mask, [C.PATIENT_ID, "dos_min"]]
    if cur.empty:
        return out
    has_history = history is not None and len(history) > 0
    if has_history:  # the ledger holds salted keys: hash this batch's ids to compare (one per patient)
        keys = {pid: patient_key(pid, salt) for pid in cur[C.PATIENT_ID].unique()}
        key_col = cur[C.PATIENT_ID].map(keys)
    else:
        key_col = cur[C.PATIENT_ID]
    dates = cur.dos_min.to_numpy(dtype="datetime64[ns]")
    if has_history:
        key_col = pd.concat([key_col, history["patient_key"]], ignore_index=True)
        dates = np.concatenate([dates, pd.to_datetime(history["service_date"]).to_numpy(dtype="datetime64[ns]")])
    if has_history or patient is None:
        keys = pd.factorize(key_col)[0]
    else:  # the batch alone: its patients' codes say the same (only equality counts)
        keys = patient[mask.to_numpy(bool)]
    prev = _previous_dates(keys, dates.view(np.int64))[:len(cur)]
    out[mask.to_numpy(bool)] = prev.view("datetime64[ns]")
    return out


def _previous_dates(keys: np.ndarray, dates: np.ndarray) -> np.ndarray:
    """Per (key, date): the key's latest distinct date before it (NaT's integer where none), in numpy."""
    nat = np.iinfo(np.int64).min
    order = np.lexsort((dates, keys))
    k, d = keys[order], dates[order]
    first = np.ones(len(k), dtype=bool)
    first[1:] = (k[1:] != k[:-1]) | (d[1:] != d[:-1])  # the first of each distinct (key, date)
    pair = np.cumsum(first) - 1
    uk, ud = k[first], d[first]
    before = np.full(len(uk), nat, dtype=np.int64)
    same = uk[1:] == uk[:-1]
    before[1:][same] = ud[:-1][same]
    out = np.empty(len(keys), dtype=np.int64)
    out[order] = before[pair]
    return out
