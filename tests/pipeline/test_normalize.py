"""Normalisers never raise and round-trip valid values."""

import datetime as dt

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from pipeline import normalize as N

ANY_CELL = st.one_of(st.none(), st.text(max_size=30), st.integers(-10**7, 10**7),
                     st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                     st.dates(), st.datetimes())


@given(ANY_CELL)
def test_normalisers_never_raise(cell):
    """It returns a value or a reason for any cell, never an exception."""
    for norm in (N.norm_text, N.norm_code, N.norm_pos, N.norm_icd10, N.norm_number, N.norm_date,
                 N.norm_flag, N.norm_pointer, N.norm_int):
        value, reason = norm(cell)
        assert reason is None or isinstance(reason, str)


@given(st.dates(min_value=dt.date(1900, 3, 1), max_value=dt.date(9999, 12, 31)))
def test_dates_round_trip_in_every_accepted_form(day):
    """It reads ISO text, US text, Excel dates and Excel serials to the same day."""
    expected = pd.Timestamp(day)
    serial = (day - dt.date(1899, 12, 30)).days
    for raw in (day.isoformat(), day.strftime("%m/%d/%Y"), day, serial, float(serial)):
        assert N.norm_date(raw) == (expected, None)


@given(st.from_regex(r"[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?", fullmatch=True))
def test_icd10_round_trips_with_and_without_dot(code):
    """It restores the dot and case of a valid ICD-10-CM code."""
    assert N.norm_icd10(code) == (code, None)
    assert N.norm_icd10(code.replace(".", "").lower()) == (code, None)


@given(st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False))
def test_money_round_trips(amount):
    """It reads plain, $ and thousands-separated amounts to the same number."""
    assert N.norm_number(f"{amount}") == (float(amount), None)
    assert N.norm_number(f"${amount:,.2f}") == (float(round(amount, 2)), None)


def test_examples():
    """It handles the documented odd values."""
    assert N.norm_icd10("g5133") == ("G51.33", None)
    assert N.norm_number("(100.00)") == (-100.0, None)
    assert N.norm_number("1.200,50")[1] is not None
    assert N.norm_date(60)[1] is not None  # 1900-02-29 does not exist
    assert N.norm_date("2024-13-01")[1] is not None
    assert N.norm_pointer("1,2") == ("AB", None)
    assert N.norm_code(64612.0) == ("64612", None)
    assert N.norm_pos(11) == ("11", None)
    assert N.norm_flag("X") == (True, None)
    assert N.norm_text("NA") == ("NA", None)


def test_unicode_digits_are_not_numbers():
    """It refuses superscript digits (str.isdigit() says yes, float() says no) instead of crashing."""
    assert N.norm_date("²")[0] is pd.NaT and N.norm_date("²")[1]
    assert N.norm_pointer("1,²") == ("1,²", None)


@given(st.lists(ANY_CELL, max_size=40))
def test_a_column_normalises_like_its_cells(cells):
    """Normalising once per distinct value gives what each cell gives on its own (True is not 1)."""
    for norm in (N.norm_text, N.norm_code, N.norm_number, N.norm_date, N.norm_flag, N.norm_int):
        values, problems, _ = N.normalize_column(pd.Series(cells, dtype=object), norm)
        expected = [norm(c) for c in cells]
        assert [None if pd.isna(v) else v for v in list(values)] == [None if pd.isna(v) else v for v, _ in expected]
        assert problems == {i: r for i, (_, r) in enumerate(expected) if r is not None}


WHITESPACE = "".join(chr(c) for c in range(0x110000) if chr(c).isspace() and not 0xD800 <= c < 0xE000)
ARROW_TEXT = st.one_of(st.none(), st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
                       st.builds(lambda a, b, c: a + b + c, st.text(WHITESPACE, max_size=2),
                                 st.text("ab é", max_size=8), st.text(WHITESPACE, max_size=2)))


@given(st.lists(ARROW_TEXT, max_size=30), st.sampled_from([None, 3]))
def test_arrow_text_normalises_like_its_cells(cells, max_text):
    """Arrow text (CSV columns) normalises as each cell on its own does, whether it is already clean
    (no blank, no whitespace at either end: kept as it is, nothing hashed) or not."""
    values, problems, long_pos = N.normalize_column(pd.Series(cells, dtype="str"), N.norm_text, max_text,
                                                   lambda v: pd.array(v, dtype="str"))
    assert [None if pd.isna(v) else v for v in values] == [N.norm_text(c)[0] for c in cells]
    assert problems == {}
    assert long_pos == ([i for i, c in enumerate(cells) if c is not None and len(c) > max_text] if max_text else [])


def test_clean_arrow_text_is_kept_as_it_is():
    text = pd.Series(["C1", "C2", None, "a b"], dtype="str")
    values, _, _ = N.normalize_column(text, N.norm_text, None, lambda v: pd.array(v, dtype="str"))
    assert values is text.array
    for dirty in ("", " C3", "C3\u3000", "\x1c"):  # \x1c: whitespace to str.strip
        column = pd.Series(["C1", dirty], dtype="str")
        values, _, _ = N.normalize_column(column, N.norm_text, None, lambda v: pd.array(v, dtype="str"))
        assert values is not column.array
        assert [None if pd.isna(v) else v for v in values] == ["C1", dirty.strip() or None]


def test_a_column_with_true_and_1_keeps_them_apart():
    values, _, _ = N.normalize_column(pd.Series([True, 1, 1.0, "1"], dtype=object), N.norm_text)
    assert list(values) == ["TRUE", "1", "1", "1"]
