"""Reusable vectorised predicates behind the checks (NPI Luhn, code shapes, vial combinations)."""

import re

import numpy as np
import pandas as pd

CPT_PATTERN = r"\d{5}|[A-Z]\d{4}|\d{4}[FT]"
ICD10_PATTERN = r"[A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?"
MODIFIER_PATTERN = r"[A-Z0-9]{2}"
POINTER_PATTERN = r"[A-L]{1,4}"
_NDC_STRIP = re.compile(r"^N4|[-\s]")


def group_codes(values: pd.Series) -> np.ndarray:
    """Integer codes of the values, with every missing value sharing one code of its own (a group-by's
    ``dropna=False``)."""
    codes, uniques = pd.factorize(values)
    return np.where(codes < 0, len(uniques), codes)


def combined_groups(*keys: np.ndarray) -> np.ndarray:
    """One integer code per distinct combination of the rows' non-negative integer keys (a group-by on
    several keys, in numpy): aggregate with ``np.bincount`` and spread back with ``[codes]``."""
    combined = np.zeros(len(keys[0]), dtype=np.int64)
    for k in keys:  # each key < rows, so the product fits in 64 bits for any realistic file
        combined = combined * (int(k.max(initial=0)) + 1) + k
    return pd.factorize(combined)[0]


def several_per_group(groups: np.ndarray, values: pd.Series) -> np.ndarray:
    """Per row: whether its group (integer ``groups``) holds two or more distinct non-missing ``values``:
    some value differs from the group's first one (no sort)."""
    codes, _ = pd.factorize(values)
    pos = np.flatnonzero(codes >= 0)
    first = np.full(int(groups.max(initial=-1)) + 1, len(codes), dtype=np.int64)
    np.minimum.at(first, groups[pos], pos)  # each group's first row with a value
    found = first < len(codes)
    first_code = np.full(len(first), -1, dtype=np.int64)
    first_code[found] = codes[first[found]]
    several = np.zeros(len(first), dtype=bool)
    several[groups[pos][codes[pos] != first_code[groups[pos]]]] = True
    return several[groups]


def repeated_keys(*keys: np.ndarray) -> np.ndarray:
    """True on each row whose combination of integer keys appeared on an earlier row."""
    combined = np.zeros(len(keys[0]), dtype=np.int64)
    for k in keys:
        combined = combined * (int(k.max(initial=0)) + 1) + k
    return pd.Series(combined).duplicated(keep="first").to_numpy(bool)  # hashed: no sort of the rows


def _per_distinct(check):
    """Run a text check once per distinct value (exports repeat a few NPIs and NDCs); blank reads as ""."""
    def run(values: pd.Series) -> pd.Series:
        if not values.notna().any():  # an empty column (most of dx_3..dx_12): one check of ""
            return pd.Series(bool(check(pd.Series([""], dtype="str")).to_numpy(bool)[0]), index=values.index)
        codes, uniques = pd.factorize(values.astype("str"))  # a blank: code -1, the "" appended last
        distinct = pd.Series([*uniques.tolist(), ""], dtype="str")
        return pd.Series(check(distinct).to_numpy(bool)[codes], index=values.index)

    run.__doc__ = check.__doc__
    return run


def text_matches(values: pd.Series, pattern: str) -> pd.Series:
    """True where the text fully matches ``pattern`` (a blank reads as "", which none of the patterns
    here matches); matched once per distinct text."""
    return _per_distinct(lambda texts: texts.str.fullmatch(pattern).fillna(False))(values)


@_per_distinct
def npi_is_valid(text: pd.Series) -> pd.Series:
    """10 digits, first 1 or 2, Luhn check digit over ``80840`` + the first 9 digits (CMS spec)."""
    shape = text.str.fullmatch(r"[12]\d{9}").fillna(False).to_numpy(bool)
    out = np.zeros(len(text), dtype=bool)
    if shape.any():
        digits = np.array([list(s) for s in text[shape]], dtype=np.int64)
        body = digits[:, :9]
        # Double every other digit from the right of the 9-digit body (positions 0, 2, 4, 6, 8).
        doubled = body.copy()
        doubled[:, 0::2] *= 2
        doubled = np.where(doubled > 9, doubled - 9, doubled)
        total = doubled.sum(axis=1) + 24  # 24 = the doubled-and-summed prefix 80840
        check = (10 - total % 10) % 10
        out[shape] = check == digits[:, 9]
    return pd.Series(out, index=text.index)


@_per_distinct
def ndc_is_valid(text: pd.Series) -> pd.Series:
    """11 digits once hyphens (and a leading ``N4`` qualifier) are removed; hyphenated must be 5-4-2."""
    text = text.str.upper().str.strip()
    digits = text.str.replace(_NDC_STRIP.pattern, "", regex=True)  # a pattern string: vectorised (Arrow)
    hyphenated = text.str.contains("-", regex=False)
    five_four_two = text.str.fullmatch(r"(?:N4)?\d{5}-\d{4}-\d{2}").fillna(False)
    ok = digits.str.fullmatch(r"\d{11}").fillna(False) & (~hyphenated | five_four_two)
    return ok.astype(bool)


def vial_totals(vials: tuple[int, ...], limit: int) -> frozenset[int]:
    """Every total up to ``limit`` that is a whole combination of the vial sizes."""
    reachable = np.zeros(limit + 1, dtype=bool)
    reachable[0] = True
    for v in vials:
        for t in range(v, limit + 1):
            if reachable[t - v]:
                reachable[t] = True
    return frozenset(np.flatnonzero(reachable).tolist())
