"""Per-line facts from the reference tables (pipeline/reference.py), by vectorised joins: rule-free.

NCCI unit limits and procedure pairs, and code-set membership on the date of service. Each distinct code is
looked up once (factorised codes, ``isin`` / sorted-key search against the table), then spread over the lines;
pairs of lines are a merge of the lines on their (patient, date, rendering provider) group. A line whose date
no table covers gets no fact (the rule is *not checked* for it, and validate says so).
"""

import numpy as np
import pandas as pd

from pipeline import reference as R
from schemas import codesets as K
from schemas import columns as C

# NCCI-associated modifiers (NCCI Policy Manual Ch. I, Sec. E): anatomic, global surgery, and the distinct-service ones.
ANATOMIC = ("E1", "E2", "E3", "E4", "FA", "F1", "F2", "F3", "F4", "F5", "F6", "F7", "F8", "F9", "TA", "T1", "T2", "T3",
            "T4", "T5", "T6", "T7", "T8", "T9", "LT", "RT", "LC", "LD", "RC", "LM", "RI")
DISTINCT = ("59", "XE", "XS", "XP", "XU")
OTHER_ASSOCIATED = ("24", "27", "57", "58", "78", "79", "91")
EM_ASSOCIATED = ("25", "57")  # on an E/M code, only these bypass an edit
TELEHEALTH_POS = ("02", "10")


def _bits(lines: pd.DataFrame, groups_of_mods: list[tuple[str, ...]]) -> np.ndarray:
    """Per line, bit k set when one of its modifiers 1-4 is in ``groups_of_mods[k]``."""
    out = np.zeros(len(lines), dtype=np.int64)
    for col in C.MODIFIERS:
        codes, uniques = pd.factorize(lines[col])
        bit_of = np.zeros(len(uniques) + 1, dtype=np.int64)
        for i, u in enumerate(uniques.tolist()):
            u = str(u).strip().upper()
            for k, group in enumerate(groups_of_mods):
                if u in group:
                    bit_of[i] |= 1 << k
        out |= bit_of[codes]
    return out


def _ymd(dates: pd.Series) -> np.ndarray:
    d = pd.to_datetime(dates)
    return (d.dt.year * 10000 + d.dt.month * 100 + d.dt.day).fillna(0).to_numpy(dtype=np.int64)


def _is_em(codes: pd.Series) -> np.ndarray:
    text = codes.astype(object).where(codes.notna(), "").astype(str)
    return (text.str.fullmatch(r"99\d{3}") & (text >= "99202") & (text <= "99499")).to_numpy(bool)


def edit_groups(lines: pd.DataFrame, present: set[str]) -> np.ndarray:
    """The NCCI edit unit of each line: same patient (else the claim), date of service and rendering NPI
    (when the file has the column)."""
    who = lines[C.PATIENT_ID].astype(object).where(lines[C.PATIENT_ID].notna(), "claim:" + lines[C.CLAIM_ID].astype(
        object).astype(str))
    keys = [pd.factorize(who)[0], pd.factorize(lines[C.SERVICE_DATE])[0]]
    if C.RENDERING_NPI in present:
        keys.append(pd.factorize(lines[C.RENDERING_NPI])[0])
    return pd.DataFrame({f"k{i}": k for i, k in enumerate(keys)}).groupby(
        [f"k{i}" for i in range(len(keys))], sort=False).ngroup().to_numpy()


def ncci_facts(lines: pd.DataFrame, ncci: np.ndarray, present: set[str], user_dir) -> pd.DataFrame:
    """Per line: its MUE (``mue_limit``, ``mai``, the units it is judged on ``mue_units``) and the PTP pair that
    denies it (``ptp_col1`` the column-1 code, ``ptp_indicator`` 0/1, -1 none; ``ptp_bypass`` the modifier that
    bypasses an indicator-1 edit, "" none). ``ncci``: per line, whether the claim's payer applies NCCI."""
    n = len(lines)
    out = pd.DataFrame(index=lines.index)
    out["mue_limit"] = np.nan
    out["mai"] = np.int8(0)
    out["mue_units"] = np.nan
    out["ptp_col1"] = ""
    out["ptp_indicator"] = np.int8(-1)
    out["ptp_bypass"] = ""
    if not n or not ncci.any():
        return out
    group = edit_groups(lines, present)
    proc_codes, procs = pd.factorize(lines[C.PROCEDURE_CODE])
    units = pd.to_numeric(lines[C.UNITS], errors="coerce").fillna(0).to_numpy(float)
    dates = lines[C.SERVICE_DATE]
    # MUE: per code, the limit of the table in force on the line's date; MAI 2/3 sum units per group and code.
    mue_tables = R.of_kind("mue", user_dir)
    which = R.table_per_date(dates, mue_tables, nearest=True)
    limit, mai = np.full(n, np.nan), np.zeros(n, dtype=np.int8)
    for k, table in enumerate(mue_tables):
        rows = (which == k) & ncci & (proc_codes >= 0)
        if not rows.any():
            continue
        t = table.load().set_index("code")
        at = t.index.get_indexer(pd.Index(procs.astype(object)))
        known = at >= 0
        lim_u = np.where(known, t["mue"].to_numpy(float)[np.maximum(at, 0)], np.nan)
        mai_u = np.where(known, t["mai"].to_numpy()[np.maximum(at, 0)], 0).astype(np.int8)
        limit[rows] = lim_u[proc_codes[rows]]
        mai[rows] = mai_u[proc_codes[rows]]
    per_date = pd.Series(units).groupby([group, proc_codes]).transform("sum").to_numpy()
    out["mue_limit"] = limit
    out["mai"] = mai
    out["mue_units"] = np.where(mai == 1, units, per_date)
    # PTP: candidate lines (codes in the table), paired within their group, looked up by sorted pair keys.
    ptp_tables = R.of_kind("ptp", user_dir)
    which = R.table_per_date(dates, ptp_tables, nearest=True)
    mods = _bits(lines, [ANATOMIC, DISTINCT, OTHER_ASSOCIATED, EM_ASSOCIATED])
    em = _is_em(lines[C.PROCEDURE_CODE])
    ymd = _ymd(dates)
    col1 = np.full(n, "", dtype=object)
    indicator = np.full(n, -1, dtype=np.int8)
    bypass = np.full(n, "", dtype=object)
    best = np.full(n, 9, dtype=np.int8)  # 0: indicator 0; 1: indicator 1 not bypassed; 2: bypassed
    for k, table in enumerate(ptp_tables):
        rows = np.flatnonzero((which == k) & ncci & (proc_codes >= 0))
        if not len(rows):
            continue
        t = table.load()
        vocab = t["column1"].cat.categories
        v = len(vocab)
        keys = t["column1"].cat.codes.to_numpy(np.int64) * v + t["column2"].cat.codes.to_numpy(np.int64)
        if len(keys) > 1 and not (keys[1:] >= keys[:-1]).all():  # written sorted; an odd file is sorted here
            order = np.argsort(keys, kind="stable")
            keys, t = keys[order], t.iloc[order].reset_index(drop=True)
        at = vocab.get_indexer(pd.Index(procs.astype(object)))[proc_codes[rows]]
        rows, at = rows[at >= 0], at[at >= 0]
        cand = pd.DataFrame({"g": group[rows], "pos": rows, "v": at})
        pairs = cand.merge(cand, on="g", suffixes=("1", "2"))
        pairs = pairs[pairs["pos1"] != pairs["pos2"]]
        if pairs.empty:
            continue
        key = pairs["v1"].to_numpy(np.int64) * v + pairs["v2"].to_numpy(np.int64)
        hit = np.searchsorted(keys, key)
        hit = np.minimum(hit, len(keys) - 1)
        found = keys[hit] == key
        p1, p2, hit = pairs["pos1"].to_numpy()[found], pairs["pos2"].to_numpy()[found], hit[found]
        day = ymd[p2]
        live = (t["effective"].to_numpy()[hit] <= day) & (day < t["deleted"].to_numpy()[hit])
        p1, p2, hit = p1[live], p2[live], hit[live]
        ind = t["indicator"].to_numpy()[hit]
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
        col1[p2] = np.asarray(procs.astype(object))[proc_codes[p1]]
        indicator[p2] = ind
        bypass[p2] = ""
        if (rank == 2).any():
            shown = _first_modifier(lines.iloc[p2[rank == 2]])
            bypass[p2[rank == 2]] = shown
    out["ptp_col1"] = col1
    out["ptp_indicator"] = indicator
    out["ptp_bypass"] = bypass
    return out


_ALL_ASSOCIATED = set(ANATOMIC) | set(DISTINCT) | set(OTHER_ASSOCIATED) | set(EM_ASSOCIATED)


def _first_modifier(rows: pd.DataFrame) -> np.ndarray:
    """The first NCCI-associated modifier of each row (a few rows: the bypassed edits)."""
    mods = rows[list(C.MODIFIERS)].astype(object).to_numpy()
    return np.array([next((str(m).upper() for m in row if str(m).upper() in _ALL_ASSOCIATED), "") for row in mods],
                    dtype=object)


def _covered(dates: pd.Series, kind: str, user_dir) -> tuple[list[R.Table], np.ndarray]:
    tables = R.of_kind(kind, user_dir)
    return tables, R.table_per_date(dates, tables)


def _normal_dx(values: pd.Series) -> pd.Series:
    return values.astype(object).where(values.notna(), "").astype(str).str.strip().str.upper().str.replace(
        ".", "", regex=False)


def code_facts(lines: pd.DataFrame, user_dir) -> pd.DataFrame:
    """Per line, what the code tables in force on its date say: diagnosis codes not billable in the ICD-10-CM
    release (``dx_not_billable``: codes as written, ", "-joined; the release in ``dx_release``), a procedure code
    not active (``proc_inactive``: the table's last date or first date), modifiers not in the valid list
    (``mod_invalid``), a place of service not in the CMS list (``pos_invalid``). Malformed values are the
    structure rules' (STR-003, STR-005, STR-007), and G51.3 is the header rule's: they are left out here."""
    n = len(lines)
    out = pd.DataFrame(index=lines.index)
    dates = lines[C.SERVICE_DATE]
    # Diagnoses: the dx columns as one long frame of (line, code) for the filled cells.
    dx_not, release = np.full(n, "", dtype=object), np.full(n, "", dtype=object)
    tables, which = _covered(dates, "icd10cm", user_dir)
    if tables:
        cols = [c for c in C.DX if c in lines and lines[c].notna().any()]
        long = pd.concat([pd.DataFrame({"pos": np.arange(n), "raw": lines[c].to_numpy(dtype=object)}) for c in cols],
                         ignore_index=True) if cols else pd.DataFrame({"pos": [], "raw": []})
        long = long[long["raw"].notna()]
        long["code"] = _normal_dx(long["raw"]).to_numpy()
        wellformed = long["raw"].astype(str).str.strip().str.upper().str.fullmatch(
            r"[A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?").to_numpy(bool)
        long = long[wellformed & (long["code"] != K.G51_3_HEADER.replace(".", "")).to_numpy()]
        long["t"] = which[long["pos"].to_numpy(np.int64)]
        bad = np.zeros(len(long), dtype=bool)
        for k, table in enumerate(tables):
            mine = (long["t"] == k).to_numpy()
            if mine.any():
                bad[mine] = ~long.loc[mine, "code"].isin(table.load()["code"]).to_numpy()
        wrong = long[bad]
        if len(wrong):
            joined = wrong.groupby("pos", sort=False)["raw"].agg(lambda s: ", ".join(dict.fromkeys(map(str, s))))
            dx_not[joined.index.to_numpy(np.int64)] = joined.to_numpy()
            label = np.array([t.version for t in tables], dtype=object)
            release[joined.index.to_numpy(np.int64)] = label[which[joined.index.to_numpy(np.int64)]]
    out["dx_not_billable"], out["dx_release"] = dx_not, release
    # Procedure codes: known to the table in force and outside their active dates.
    inactive = np.full(n, "", dtype=object)
    tables, which = _covered(dates, "procedures", user_dir)
    codes, uniques = pd.factorize(lines[C.PROCEDURE_CODE].astype(object).where(lines[C.PROCEDURE_CODE].notna()))
    d = pd.to_datetime(dates).to_numpy(dtype="datetime64[ns]")
    for k, table in enumerate(tables):
        rows = np.flatnonzero((which == k) & (codes >= 0))
        if not len(rows):
            continue
        t = table.load().set_index("code")
        at = t.index.get_indexer(pd.Index(uniques))[codes[rows]]
        rows, at = rows[at >= 0], at[at >= 0]
        start = pd.to_datetime(t["active_from"]).to_numpy(dtype="datetime64[ns]")[at]
        end = pd.to_datetime(t["active_to"]).to_numpy(dtype="datetime64[ns]")[at]
        before = ~np.isnat(start) & (d[rows] < start)
        after = ~np.isnat(end) & (d[rows] > end)
        text = np.where(after, "ended " + pd.Series(end).dt.strftime("%Y-%m-%d").fillna("").to_numpy(object),
                        "starts " + pd.Series(start).dt.strftime("%Y-%m-%d").fillna("").to_numpy(object))
        inactive[rows[before | after]] = text[before | after]
    out["proc_inactive"] = inactive
    # Modifiers 1-4: well formed (STR-007's) but not in the list in force.
    mod_bad = np.full(n, "", dtype=object)
    tables, which = _covered(dates, "modifiers", user_dir)
    for col in C.MODIFIERS:
        values = lines[col].astype(object).where(lines[col].notna(), "").astype(str).str.strip().str.upper()
        formed = values.str.fullmatch(r"[A-Z0-9]{2}").to_numpy(bool)
        for k, table in enumerate(tables):
            rows = formed & (which == k)
            if rows.any():
                valid = _valid_on(table.load(), values[rows], d[rows])
                bad = np.flatnonzero(rows)[~valid]
                mod_bad[bad] = np.where(mod_bad[bad] == "", values.to_numpy(object)[bad],
                                        mod_bad[bad] + ", " + values.to_numpy(object)[bad])
    out["mod_invalid"] = mod_bad
    # Place of service: in the CMS list on the date.
    pos_bad = np.zeros(n, dtype=bool)
    tables, which = _covered(dates, "pos", user_dir)
    pos = lines[C.PLACE_OF_SERVICE].astype(object).where(lines[C.PLACE_OF_SERVICE].notna(), "").astype(str).str.strip()
    pos = pos.where(~pos.str.fullmatch(r"\d"), "0" + pos)  # a spreadsheet may drop the leading zero
    for k, table in enumerate(tables):
        rows = (which == k) & (pos != "").to_numpy()
        if rows.any():
            pos_bad[rows] = ~_valid_on(table.load(), pos[rows], d[rows])
    out["pos_invalid"] = pos_bad
    out["pos_telehealth"] = pos.isin(TELEHEALTH_POS).to_numpy()
    return out


def _valid_on(table: pd.DataFrame, values: pd.Series, dates: np.ndarray) -> np.ndarray:
    """Each value is in ``table`` (code, active_from, active_to) and active on its date."""
    t = table.set_index("code")
    at = t.index.get_indexer(pd.Index(values.to_numpy(object)))
    known = at >= 0
    start = pd.to_datetime(t["active_from"]).to_numpy(dtype="datetime64[ns]")[np.maximum(at, 0)]
    end = pd.to_datetime(t["active_to"]).to_numpy(dtype="datetime64[ns]")[np.maximum(at, 0)]
    ok = known & (np.isnat(start) | (dates >= start)) & (np.isnat(end) | (dates <= end))
    return ok
