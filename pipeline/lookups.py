"""Per-line facts from the reference tables (pipeline/reference.py), by vectorised joins: rule-free.

NCCI unit limits and procedure pairs, and code-set membership on the date of service. Each distinct code is
looked up once (factorised codes, ``isin`` / sorted-key search against the table), then spread over the lines;
pairs of lines are a merge of the lines on their (patient, date, rendering provider) group. A line whose date
no table covers gets no fact (the rule is *not checked* for it, and validate says so).
"""

import functools
import re
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import reference as R
from schemas import codesets as K
from schemas import columns as C
from schemas import ndc

# NCCI-associated modifiers (NCCI Policy Manual Ch. I, Sec. E): anatomic, global surgery, and the distinct-service ones.
ANATOMIC = ("E1", "E2", "E3", "E4", "FA", "F1", "F2", "F3", "F4", "F5", "F6", "F7", "F8", "F9", "TA", "T1", "T2", "T3",
            "T4", "T5", "T6", "T7", "T8", "T9", "LT", "RT", "LC", "LD", "RC", "LM", "RI")
DISTINCT = ("59", "XE", "XS", "XP", "XU")
OTHER_ASSOCIATED = ("24", "27", "57", "58", "78", "79", "91")
EM_ASSOCIATED = ("25", "57")  # on an E/M code, only these bypass an edit
TELEHEALTH_POS = ("02", "10")


def factorized(lines: pd.DataFrame, col: str, memo: dict | None = None) -> tuple[np.ndarray, pd.Index]:
    """``pd.factorize(lines[col])``, kept in ``memo`` (one dict per ``lines`` frame: derive's) so that each column
    is factorised once per derive; the results are shared, never modified."""
    if memo is None:
        return pd.factorize(lines[col])
    if col not in memo:
        memo[col] = pd.factorize(lines[col])
    return memo[col]


def code_matrix(cells: pd.DataFrame) -> tuple[np.ndarray, pd.Index, dict[str, int]]:
    """The columns' values as one integer matrix over their distinct values (factorised together; -1
    blank), rows x (filled columns + 1). A column with no value at all (most of dx_3..dx_12, say) is
    left out: it reads as the last matrix column, blank everywhere. Returns the codes, the distinct
    values and each column's matrix column."""
    n = len(cells)
    filled = [c for c in cells.columns if cells[c].notna().any()]
    codes = np.full((n, len(filled) + 1), -1, dtype=np.intp)
    uniques = pd.Index([], dtype=object)
    if filled:
        flat, uniques = pd.factorize(pd.concat([cells[c] for c in filled], ignore_index=True))
        codes[:, :len(filled)] = flat.reshape(len(filled), n).T
    return codes, uniques, {c: filled.index(c) if c in filled else len(filled) for c in cells.columns}


def matrix(lines: pd.DataFrame, cols: tuple[str, ...], memo: dict | None = None
           ) -> tuple[np.ndarray, pd.Index, dict[str, int]]:
    """``code_matrix`` of ``lines[cols]`` (the diagnosis or modifier columns), kept in ``memo`` like
    ``factorized``: derive's line features and the lookups share one factorisation."""
    key = ("matrix", tuple(cols))
    if memo is None:
        return code_matrix(lines[list(cols)])
    if key not in memo:
        memo[key] = code_matrix(lines[list(cols)])
    return memo[key]


def dates_of(lines: pd.DataFrame, memo: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The dates of service as codes (-1: no date) over the distinct dates (``datetime64[ns]``), kept in
    ``memo``: a file has a few hundred dates, and everything decided per date is decided once per date."""
    key = ("dates",)
    if memo is not None and key in memo:
        return memo[key]
    at, distinct = pd.factorize(pd.to_datetime(lines[C.SERVICE_DATE]).to_numpy(dtype="datetime64[ns]"))
    out = at, np.asarray(distinct, dtype="datetime64[ns]")
    if memo is not None:
        memo[key] = out
    return out


def _per_date(at: np.ndarray, distinct: np.ndarray, tables: list, nearest: bool = False) -> np.ndarray:
    """``R.table_per_date`` for the lines, decided on the distinct dates and spread over the lines."""
    per = R.table_per_date(pd.Series(distinct, dtype="datetime64[ns]"), tables, nearest=nearest)
    return np.append(per, np.int64(-1))[at]


def _bits(lines: pd.DataFrame, groups_of_mods: list[tuple[str, ...]], memo: dict | None = None) -> np.ndarray:
    """Per line, bit k set when one of its modifiers 1-4 is in ``groups_of_mods[k]``."""
    codes, uniques, _ = matrix(lines, C.MODIFIERS, memo)
    bit_of = np.zeros(len(uniques) + 1, dtype=np.int64)  # the last entry: blank (-1)
    for i, u in enumerate(uniques.tolist()):
        u = str(u).strip().upper()
        for k, group in enumerate(groups_of_mods):
            if u in group:
                bit_of[i] |= 1 << k
    return np.bitwise_or.reduce(bit_of[codes], axis=1) if codes.size else np.zeros(len(lines), dtype=np.int64)


def _ymd(at: np.ndarray, distinct: np.ndarray) -> np.ndarray:
    """Per line, its date as the integer YYYYMMDD (0: no date), computed once per distinct date."""
    d = pd.DatetimeIndex(distinct)
    per = np.asarray(d.year * 10000 + d.month * 100 + d.day, dtype=np.int64)
    return np.append(per, np.int64(0))[at]


def _is_em(at: np.ndarray, uniques: pd.Index) -> np.ndarray:
    """E/M codes 99202-99499, decided once per distinct code (``at``, ``uniques``: the factorised codes)."""
    em = np.array([str(u).isdigit() and "99202" <= str(u) <= "99499" for u in uniques.tolist()] + [False], dtype=bool)
    return em[at]


def edit_groups(lines: pd.DataFrame, present: set[str], who: np.ndarray | None = None,
                memo: dict | None = None, compact: bool = True) -> np.ndarray:
    """The NCCI edit unit of each line: same patient (else the claim), date of service and rendering NPI
    (when the file has the column). ``who``: the patient code of each line, when the caller has it. With
    ``compact`` False, one non-negative integer per unit that is not renumbered 0..k-1 (no factorisation:
    enough to sort or compare by)."""
    if who is None:
        patient, patients = pd.factorize(lines[C.PATIENT_ID])
        claim = pd.factorize(lines[C.CLAIM_ID])[0]
        who = np.where(patient >= 0, patient, len(patients) + claim)  # no patient id: the claim stands for it
    keys = [who, dates_of(lines, memo)[0]]
    if C.RENDERING_NPI in present:
        keys.append(factorized(lines, C.RENDERING_NPI, memo)[0])
    combined = np.zeros(len(lines), dtype=np.int64)
    for k in keys:  # one integer per combination (each code < lines, so the product fits in 64 bits)
        combined = combined * (int(k.max(initial=0)) + 2) + (k + 1)
    return pd.factorize(combined)[0] if compact else combined


def ncci_facts(lines: pd.DataFrame, ncci: np.ndarray, present: set[str], user_dir,
               who: np.ndarray | None = None, memo: dict | None = None) -> pd.DataFrame:
    """Per line: its MUE (``mue_limit``, ``mai``, the units it is judged on ``mue_units``) and the PTP pair that
    denies it (``ptp_col1`` the column-1 code, ``ptp_indicator`` 0/1, -1 none; ``ptp_bypass`` the modifier that
    bypasses an indicator-1 edit, "" none). ``ncci``: per line, whether the claim's payer applies NCCI."""
    n = len(lines)
    limit, mai, mue_units = np.full(n, np.nan), np.zeros(n, dtype=np.int8), np.full(n, np.nan)
    col1 = np.full(n, "", dtype=object)
    indicator = np.full(n, -1, dtype=np.int8)
    bypass = np.full(n, "", dtype=object)

    def frame() -> pd.DataFrame:
        return pd.DataFrame({"mue_limit": limit, "mai": mai, "mue_units": mue_units,
                             "ptp_col1": _texts(col1, lines.index), "ptp_indicator": indicator,
                             "ptp_bypass": _texts(bypass, lines.index)}, index=lines.index)

    if not n or not ncci.any():
        return frame()
    group = edit_groups(lines, present, who, memo, compact=False)  # sorted and combined below, never counted
    proc_codes, procs = factorized(lines, C.PROCEDURE_CODE, memo)
    procs_obj = pd.Index(procs.astype(object))
    units = pd.to_numeric(lines[C.UNITS], errors="coerce").fillna(0).to_numpy(float)
    date_at, distinct = dates_of(lines, memo)
    coded = ncci & (proc_codes >= 0)
    # MUE: per code, the limit of the table in force on the line's date; MAI 2/3 sum units per group and code.
    mue_tables = R.of_kind("mue", user_dir)
    which = _per_date(date_at, distinct, mue_tables, nearest=True)
    for k, table in enumerate(mue_tables):
        rows = np.flatnonzero((which == k) & coded)
        if not len(rows):
            continue
        t = table.load().set_index("code")
        at = t.index.get_indexer(procs_obj)
        known = at >= 0
        lim_u = np.where(known, t["mue"].to_numpy(float)[np.maximum(at, 0)], np.nan)
        mai_u = np.where(known, t["mai"].to_numpy()[np.maximum(at, 0)], 0).astype(np.int8)
        limit[rows] = lim_u[proc_codes[rows]]
        mai[rows] = mai_u[proc_codes[rows]]
    if int(group.max(initial=0)) < np.iinfo(np.int64).max // (len(procs) + 2):
        per_code = pd.factorize(group * (len(procs) + 1) + (proc_codes + 1))[0]
    else:  # too many units to combine with the codes in 64 bits: number the units first
        per_code = pd.factorize(pd.factorize(group)[0].astype(np.int64) * (len(procs) + 1) + (proc_codes + 1))[0]
    per_date = np.bincount(per_code, weights=units)[per_code]  # units of the code in the line's group
    mue_units = np.where(mai == 1, units, per_date)
    # PTP: candidate lines (codes in the table), paired within their group, looked up by sorted pair keys.
    ptp_tables = R.of_kind("ptp", user_dir)
    which = _per_date(date_at, distinct, ptp_tables, nearest=True)
    mods = em = ymd = None  # computed once, when some table has candidate pairs
    best = np.full(n, 9, dtype=np.int8)  # 0: indicator 0; 1: indicator 1 not bypassed; 2: bypassed
    for k, table in enumerate(ptp_tables):
        rows = np.flatnonzero((which == k) & coded)
        if not len(rows):
            continue
        vocab, keys, ptp_ind, ptp_eff, ptp_del = R.ptp_pairs(table)
        v = len(vocab)
        at = vocab.get_indexer(procs_obj)[proc_codes[rows]]
        rows, at = rows[at >= 0], at[at >= 0]
        first, second = _pairs_within(group[rows])
        if not len(first):
            continue
        key = (at[first].astype(np.int64) * v + at[second]).astype(keys.dtype)  # the table's key type: no copy of it
        hit = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
        found = keys[hit] == key
        p1, p2, hit = rows[first[found]], rows[second[found]], hit[found]
        if ymd is None:
            mods = _bits(lines, [ANATOMIC, DISTINCT, OTHER_ASSOCIATED, EM_ASSOCIATED], memo)
            em = _is_em(proc_codes, procs)
            ymd = _ymd(date_at, distinct)
        day = ymd[p2]
        live = (ptp_eff[hit] <= day) & (day < ptp_del[hit])
        p1, p2, hit = p1[live], p2[live], hit[live]
        ind = ptp_ind[hit]
        m2, m1 = mods[p2], mods[p1]
        anatomic_diff = ((m2 & 1) > 0) & ~((m1 & 1) > 0)  # an anatomic modifier on column 2 only
        em2 = em[p2]
        by_em = em2 & ((m2 & 8) > 0)
        by_other = ~em2 & (((m2 & 2) > 0) | ((m2 & 4) > 0) | anatomic_diff)
        passed = (ind == 1) & (by_em | by_other)
        rank = np.where(ind == 0, 0, np.where(passed, 2, 1)).astype(np.int8)
        order = np.lexsort((rank, p2))
        p1, p2, rank, ind, m2 = p1[order], p2[order], rank[order], ind[order], m2[order]
        first = np.ones(len(p2), dtype=bool)
        first[1:] = p2[1:] != p2[:-1]
        p1, p2, rank, ind, m2 = p1[first], p2[first], rank[first], ind[first], m2[first]
        better = rank < best[p2]
        p1, p2, rank, ind, m2 = p1[better], p2[better], rank[better], ind[better], m2[better]
        best[p2] = rank
        col1[p2] = np.asarray(procs_obj)[proc_codes[p1]]
        indicator[p2] = ind
        bypass[p2] = ""
        if (rank == 2).any():
            shown = _first_modifier(lines.iloc[p2[rank == 2]])
            bypass[p2[rank == 2]] = shown
    return frame()


def _texts(values: np.ndarray, index) -> pd.Series:
    """Per-line texts kept as plain objects (no string-type inference: rules read them back as numpy)."""
    return pd.Series(values, index=index, dtype=object)


def _pairs_within(group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered pair (i, j), i != j, of positions with the same group, in numpy (a self-join)."""
    order = np.argsort(group, kind="stable")
    g = group[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if len(g) else np.empty(0, dtype=np.int64)
    sizes = np.diff(np.r_[starts, len(g)])
    size_of, start_of = np.repeat(sizes, sizes), np.repeat(starts, sizes)
    a = np.repeat(np.arange(len(g)), size_of)
    within = np.arange(len(a)) - np.repeat(np.cumsum(size_of) - size_of, size_of)
    b = np.repeat(start_of, size_of) + within
    keep = a != b
    return order[a[keep]], order[b[keep]]


_ALL_ASSOCIATED = set(ANATOMIC) | set(DISTINCT) | set(OTHER_ASSOCIATED) | set(EM_ASSOCIATED)


def _first_modifier(rows: pd.DataFrame) -> np.ndarray:
    """The first NCCI-associated modifier of each row (a few rows: the bypassed edits)."""
    mods = rows[list(C.MODIFIERS)].astype(object).to_numpy()
    return np.array([next((str(m).upper() for m in row if str(m).upper() in _ALL_ASSOCIATED), "") for row in mods],
                    dtype=object)


def _uniques(lines: pd.DataFrame, col: str, memo: dict | None = None) -> tuple[np.ndarray, list[str]]:
    """Codes per line over the distinct values (-1 blank) and those values as stripped upper-case text: each
    text operation runs once per distinct value, not per line."""
    codes, uniques = factorized(lines, col, memo)
    return codes, [str(u).strip().upper() for u in uniques.tolist()]


def _spread(codes: np.ndarray, per_unique: np.ndarray, blank) -> np.ndarray:
    """``per_unique`` looked up per line (code -1 reads ``blank``)."""
    return np.append(per_unique, np.array([blank], dtype=per_unique.dtype))[codes]


def _joined(bad: np.ndarray, codes: np.ndarray, texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows with a ``True`` in ``bad`` (rows x columns) and, for those rows only, the texts of their flagged
    columns (``codes`` into ``texts``), ", "-joined in column order."""
    rows = np.flatnonzero(bad.any(axis=1))
    shown = np.full(len(rows), "", dtype=object)
    for j in range(bad.shape[1]):
        hit = bad[rows, j]
        if hit.any():
            t = texts[codes[rows[hit], j]]
            shown[hit] = np.where(shown[hit] == "", t, shown[hit] + ", " + t)
    return rows, shown


_DX_FORM = re.compile(r"[A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?")
_MOD_FORM = re.compile(r"[A-Z0-9]{2}")


def code_facts(lines: pd.DataFrame, user_dir, memo: dict | None = None) -> pd.DataFrame:
    """Per line, what the code tables in force on its date say: diagnosis codes not billable in the ICD-10-CM
    release (``dx_not_billable``: codes as written, ", "-joined; the release in ``dx_release``), a procedure code
    not active (``proc_inactive``: when it ended or starts), modifiers not in the valid list (``mod_invalid``), a
    place of service not in the CMS list (``pos_invalid``; ``pos_telehealth``). Malformed values are the structure
    rules' (STR-003, STR-005, STR-007), and G51.3 is the header rule's: they are left out here. A date between
    two ICD-10-CM releases (one not shipped) is judged from both: billable in both passes, billable in neither
    and in no release is not billable (``dx_release`` "FY2023 or FY2025"), any other code is not judged
    (``dx_not_judged``: CODE-001 is not checked on that claim).

    Each distinct value is judged once per table (the diagnosis and modifier columns as one matrix over their
    values, shared with derive's line features); the texts are built for the flagged lines only."""
    n = len(lines)
    date_at, distinct = dates_of(lines, memo)

    def covered(kind: str) -> tuple[list[R.Table], np.ndarray]:
        tables = R.of_kind(kind, user_dir)
        return tables, _per_date(date_at, distinct, tables)

    # Diagnoses: each distinct code of the dx columns judged once per release, then spread over the lines.
    dx_not, release = np.full(n, "", dtype=object), np.full(n, "", dtype=object)
    not_judged = np.zeros(n, dtype=bool)
    tables, which = covered("icd10cm")
    gaps = _gaps(date_at, distinct, tables, which)
    codes, uniques, _ = matrix(lines, C.DX, memo)
    if ((which >= 0).any() or gaps) and len(uniques):
        header = K.G51_3_HEADER.replace(".", "")
        texts = [str(u).strip().upper() for u in uniques.tolist()]
        keys = [t.replace(".", "") for t in texts]
        judged = np.array([bool(_DX_FORM.fullmatch(t)) and k != header for t, k in zip(texts, keys, strict=True)])
        shown_of = np.asarray(texts, dtype=object)
        for k, table in enumerate(tables):
            on = which == k
            if not on.any():
                continue
            valid = _code_set(table)
            bad_u = np.append(judged & ~np.array([key in valid for key in keys], dtype=bool), False)
            if not bad_u.any():
                continue
            rows, shown = _joined(bad_u[codes] & on[:, None], codes, shown_of)
            dx_not[rows] = shown
            release[rows] = table.version
        for on, earlier, later in gaps:  # dates between two releases: judged from both
            in_one, in_other = _code_set(earlier), _code_set(later)
            both = np.array([key in in_one for key in keys], dtype=bool)
            other = np.array([key in in_other for key in keys], dtype=bool)
            never = judged & ~both & ~other
            for i in np.flatnonzero(never).tolist():  # billable in neither: an error only if no release has it
                never[i] = not any(keys[i] in _code_set(t) for t in tables)
            if never.any():  # per-line work only for the few codes that need it
                rows, shown = _joined(np.append(never, False)[codes] & on[:, None], codes, shown_of)
                dx_not[rows] = np.where(dx_not[rows] == "", shown, dx_not[rows] + ", " + shown)
                release[rows] = f"{earlier.version} or {later.version}"
            if (undecided := judged & ~(both & other) & ~never).any():
                not_judged |= on & np.append(undecided, False)[codes].any(axis=1)
    # Procedure codes: known to the table in force and outside their active dates.
    inactive = np.full(n, "", dtype=object)
    tables, which = covered("procedures")
    codes, texts = _uniques(lines, C.PROCEDURE_CODE, memo)
    dates = np.append(distinct, np.datetime64("NaT", "ns"))[None, :]  # the last column: no date
    for k, table in enumerate(tables):
        rows = np.flatnonzero((which == k) & (codes >= 0))
        if not len(rows):
            continue
        t = _indexed(table)
        at = t.index.get_indexer(pd.Index(texts, dtype=object))  # per distinct code; then per (code, date)
        start = np.where(at >= 0, t["active_from"].to_numpy(dtype="datetime64[ns]")[np.maximum(at, 0)],
                         np.datetime64("NaT", "ns"))[:, None]
        end = np.where(at >= 0, t["active_to"].to_numpy(dtype="datetime64[ns]")[np.maximum(at, 0)],
                       np.datetime64("NaT", "ns"))[:, None]
        status = np.where(~np.isnat(end) & (dates > end), 2, np.where(~np.isnat(start) & (dates < start), 1, 0))
        per_row = status[codes[rows], date_at[rows]]  # 1: before its start, 2: after its end
        flagged = per_row > 0
        if flagged.any():
            rows, c = rows[flagged], codes[rows[flagged]]
            after = per_row[flagged] == 2
            text = np.where(after, "ended " + pd.Series(end[c, 0]).dt.strftime("%Y-%m-%d").fillna("").to_numpy(object),
                            "starts " + pd.Series(start[c, 0]).dt.strftime("%Y-%m-%d").fillna("").to_numpy(object))
            inactive[rows] = text
    # Modifiers 1-4: well formed (STR-007's) but not in the list in force on the date.
    mod_bad = np.full(n, "", dtype=object)
    tables, which = covered("modifiers")
    codes, uniques, _ = matrix(lines, C.MODIFIERS, memo)
    if len(uniques):
        texts = np.asarray([str(u).strip().upper() for u in uniques.tolist()], dtype=object)
        formed_u = np.append(np.array([bool(_MOD_FORM.fullmatch(t)) for t in texts], dtype=bool), False)
        for k, table in enumerate(tables):
            # Decided per (modifier, date) first: only the lines holding a modifier invalid on some date of the
            # table's lines are looked at line by line (most files have none or a handful).
            valid = _valid_matrix(table, texts, distinct)
            dates_here = np.zeros(len(distinct) + 1, dtype=bool)
            dates_here[date_at[which == k]] = True  # -1 (no date): the last column
            suspect = np.append(formed_u[:-1] & ~valid[:, dates_here].all(axis=1), False)
            if not suspect.any():
                continue
            rows = np.flatnonzero((which == k) & suspect[codes].any(axis=1))
            sub = codes[rows]
            bad = formed_u[sub] & ~valid[np.maximum(sub, 0), date_at[rows][:, None]]
            at, shown = _joined(bad, sub, texts)
            mod_bad[rows[at]] = shown
    # Place of service: in the CMS list on the date (a spreadsheet may have dropped the leading zero).
    pos_bad = np.zeros(n, dtype=bool)
    tables, which = covered("pos")
    codes, texts = _uniques(lines, C.PLACE_OF_SERVICE, memo)
    texts = ["0" + t if len(t) == 1 and t.isdigit() else t for t in texts]
    for k, table in enumerate(tables):
        rows = np.flatnonzero((which == k) & (codes >= 0))
        if len(rows):
            pos_bad[rows] = ~_valid_on(table, np.asarray(texts, dtype=object), codes[rows], date_at[rows], distinct)
    return pd.DataFrame({
        "dx_not_billable": _texts(dx_not, lines.index), "dx_release": _texts(release, lines.index),
        "proc_inactive": _texts(inactive, lines.index), "mod_invalid": _texts(mod_bad, lines.index),
        "pos_invalid": pos_bad,
        "pos_telehealth": _spread(codes, np.array([t in TELEHEALTH_POS for t in texts], dtype=bool), False),
        "dx_not_judged": not_judged,  # a code billable in one of the two releases around its date only
    }, index=lines.index)


def _gaps(date_at: np.ndarray, distinct: np.ndarray, tables: list[R.Table], which: np.ndarray) -> list:
    """(lines, earlier table, later table) for the dated lines no release covers but two releases bracket
    (``date_at``: each line's position in ``distinct``, -1 for none; decided per distinct date)."""
    if not tables or not ((which < 0) & (date_at >= 0)).any():
        return []
    before, after = R.bracket_per_date(pd.Series(np.asarray(distinct, dtype="datetime64[ns]")), tables)
    b, a = np.append(before, -1)[date_at], np.append(after, -1)[date_at]
    pair = np.where((which < 0) & (b >= 0), b * len(tables) + a, len(tables) ** 2)  # the last bin: no gap
    return [(pair == p, tables[p // len(tables)], tables[p % len(tables)])
            for p in np.flatnonzero(np.bincount(pair, minlength=len(tables) ** 2 + 1)[:-1]).tolist()]


@functools.lru_cache(maxsize=32)
def _code_set_of(path: str) -> frozenset:
    return frozenset(R._read(path)["code"].tolist())


def _code_set(table: R.Table) -> frozenset:
    return _code_set_of(str(Path(table.folder) / table.file))


@functools.lru_cache(maxsize=32)
def _indexed_of(path: str) -> pd.DataFrame:
    t = R._read(path).drop_duplicates("code", keep="last").set_index("code")
    for col in ("active_from", "active_to"):
        t[col] = pd.to_datetime(t[col])
    return t


def _indexed(table: R.Table) -> pd.DataFrame:
    return _indexed_of(str(Path(table.folder) / table.file))


def _valid_matrix(table: R.Table, texts: np.ndarray, distinct: np.ndarray) -> np.ndarray:
    """Per distinct value (``texts``) and distinct date (``distinct``, plus a last column: no date): the value is in
    ``table`` and active on that date."""
    t = _indexed(table)
    at = t.index.get_indexer(pd.Index(texts))
    known = at >= 0
    start = t["active_from"].to_numpy(dtype="datetime64[ns]")[np.maximum(at, 0)][:, None]
    end = t["active_to"].to_numpy(dtype="datetime64[ns]")[np.maximum(at, 0)][:, None]
    dates = np.append(distinct, np.datetime64("NaT", "ns"))[None, :]  # the last column: no date
    return known[:, None] & (np.isnat(start) | (dates >= start)) & (np.isnat(end) | (dates <= end))


def _valid_on(table: R.Table, texts: np.ndarray, codes: np.ndarray, date_at: np.ndarray,
              distinct: np.ndarray) -> np.ndarray:
    """Per row (``codes`` >= 0 into the distinct ``texts``; ``date_at`` into the ``distinct`` dates, -1 none): the
    value is in ``table`` and active on its date. Decided once per (value, date) pair, then looked up."""
    return _valid_matrix(table, texts, distinct)[codes, date_at]


def ndc_products(table: R.Table) -> pd.DataFrame:
    """An NDC table's products by labeler-product (brand, hcpcs, cosmetic_only): the shipped toxin CSV
    (schemas/ndc.py) or an imported ASP crosswalk (merged with the shipped products it does not list)."""
    if table.origin == "shipped" and table.file == ndc.TABLE:
        return ndc.toxin_ndc_table().products
    return _ndc_products_of(str(Path(table.folder) / table.file))


@functools.lru_cache(maxsize=8)
def _ndc_products_of(path: str) -> pd.DataFrame:
    return R._read(path).drop_duplicates("labeler_product", keep="first").set_index("labeler_product")


def ndc_facts(lines: pd.DataFrame, user_dir, memo: dict | None = None) -> pd.DataFrame:
    """Per line, the product its NDC is in the NDC table in force on its date (``ndc.FACTS``: the product's name,
    "" when not listed; the HCPCS code(s) it is billed on; cosmetic-only). A date no table covers takes the
    nearest table (a product listing: the Summary warns), an undated line the shipped table. Each distinct NDC
    is looked up once per table."""
    n = len(lines)
    brand, hcpcs = np.full(n, "", dtype=object), np.full(n, "", dtype=object)
    cosmetic = np.zeros(n, dtype=bool)

    def frame() -> pd.DataFrame:
        return pd.DataFrame({"ndc_brand": _texts(brand, lines.index), "ndc_hcpcs": _texts(hcpcs, lines.index),
                             "ndc_cosmetic": cosmetic}, index=lines.index)

    if not n or C.NDC not in lines or not lines[C.NDC].notna().any():
        return frame()
    tables = R.of_kind("ndc", user_dir)
    if not tables:
        return frame()
    date_at, distinct = dates_of(lines, memo)
    which = _per_date(date_at, distinct, tables, nearest=True)
    shipped = next((k for k, t in enumerate(tables) if t.origin == "shipped"), len(tables) - 1)
    which = np.where(which < 0, shipped, which)
    codes, uniques = factorized(lines, C.NDC, memo)
    keys = pd.Index([ndc.labeler_product(u) or "" for u in uniques.tolist()], dtype=object)
    for k, table in enumerate(tables):
        rows = np.flatnonzero((which == k) & (codes >= 0))
        if not len(rows):
            continue
        products = ndc_products(table)
        at = products.index.get_indexer(keys)
        known = at >= 0
        per = np.maximum(at, 0)
        b = np.where(known, products["brand"].astype(object).to_numpy(object)[per], "")
        h = np.where(known, products["hcpcs"].astype(object).fillna("").to_numpy(object)[per], "")
        c = known & products["cosmetic_only"].to_numpy(bool)[per]
        brand[rows], hcpcs[rows], cosmetic[rows] = b[codes[rows]], h[codes[rows]], c[codes[rows]]
    return frame()
