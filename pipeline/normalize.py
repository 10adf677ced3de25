"""Cell normalisers: raw spreadsheet values -> typed canonical values, or a reason they can't be.

Each ``norm_*`` takes one raw cell (str, int, float, bool, date, datetime or None) and returns
``(value, reason)``: ``reason`` is None when the cell was read, else why it could not be. They never
raise. ``normalize_column`` applies one over a column, once per distinct value.
"""

import datetime as dt
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

BLANK = (None, "")
_EXCEL_EPOCH = dt.date(1899, 12, 30)  # 1900 date system, counting the phantom 1900-02-29
_MAX_SERIAL = 2958465  # 9999-12-31
_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$")
_US = re.compile(r"^(\d{1,2})([/.-])(\d{1,2})\2(\d{4})(?: \d{1,2}:\d{2}(?::\d{2})?(?: ?[AP]M)?)?$", re.IGNORECASE)
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
# 27-OCT-2026, 27-Oct-26, 27OCT2026 (SAS DATE9, CMS CCW files), 27 Oct 2026
_MON = re.compile(r"^(\d{1,2})([-/ ]?)([A-Za-z]{3})\2(\d{4}|\d{2})$")
_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                                      "dec"), start=1)}
# The two fields of a slash date, for deciding a column's order (``slash_date_order``).
SLASH_FIELDS = r"^\s*(\d{1,2})[/.-](\d{1,2})[/.-]\d{4}\b"
_MONEY_PLAIN = re.compile(r"^-?\d+(?:\.\d+)?$")
_MONEY_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_EUROPEAN = re.compile(r"^-?\d{1,3}(?:\.\d{3})+,\d+$|^-?\d+,\d{1,2}$")
_ICD_CORE = re.compile(r"^[A-Z][0-9][0-9A-Z][0-9A-Z]{0,4}$")
_TRUE = {"y", "yes", "true", "1", "x", "t", "documented"}
_FALSE = {"n", "no", "false", "0", "f"}

Result = tuple[Any, str | None]


def is_blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def norm_text(value: Any) -> Result:
    """Text exactly as written (trimmed); whole numbers from Excel lose their ``.0``."""
    if is_blank(value):
        return None, None
    if isinstance(value, bool):
        return str(value).upper(), None
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value)), None
        return repr(value), None
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(), None
    if isinstance(value, dt.date):
        return value.isoformat(), None
    return str(value).strip(), None


def norm_code(value: Any) -> Result:
    """Procedure codes, modifiers, POS: trimmed, upper case, no inner spaces, ``.0`` dropped."""
    text, _ = norm_text(value)
    if text is None:
        return None, None
    text = text.upper().replace(" ", "")
    if text.endswith(".0") and text[:-2].isdigit():
        text = text[:-2]
    return text, None


def norm_pos(value: Any) -> Result:
    """Place of service: two digits (``11``, ``3`` -> ``03``)."""
    text, _ = norm_code(value)
    if text is not None and text.isdigit() and len(text) == 1:
        text = "0" + text
    return text, None


def norm_icd10(value: Any) -> Result:
    """ICD-10-CM: upper case, trimmed, dot restored after the category (``g5133`` -> ``G51.33``).

    A value of the wrong shape is kept as written (upper-cased) so the diagnosis-shape rule can show it.
    """
    text, _ = norm_text(value)
    if text is None:
        return None, None
    raw = text.upper().strip()
    core = raw.replace(".", "").replace(" ", "")
    if _ICD_CORE.match(core) and (raw.count(".") == 0 or raw.index(".") == 3):
        return (core[:3] + "." + core[3:]) if len(core) > 3 else core, None
    return raw, None


def norm_number(value: Any) -> Result:
    """Units and money: ``$1,234.50``, ``(100.00)`` (negative), `` 12 ``; ``1.200,50`` is refused."""
    if is_blank(value):
        return math.nan, None
    if isinstance(value, bool):
        return math.nan, "a TRUE/FALSE value is not a number"
    if isinstance(value, int | float):
        return float(value), None
    if isinstance(value, dt.date):
        return math.nan, "a date is not a number"
    text = str(value).strip().replace("$", "").replace(" ", "")
    negative = text.startswith("(") and text.endswith(")")
    if negative:
        text = text[1:-1]
    if _MONEY_THOUSANDS.match(text):
        text = text.replace(",", "")
    if _MONEY_PLAIN.match(text):
        number = float(text)
        return (-number if negative else number), None
    if _EUROPEAN.match(text):
        return math.nan, "decimal comma is ambiguous; write 1200.50"
    return math.nan, "not a number"


_EPOCH_1904 = dt.date(1904, 1, 1)


def _serial_to_date(serial: float, date1904: bool = False) -> Result:
    if not (1 <= serial <= _MAX_SERIAL):
        return pd.NaT, "number is out of range for an Excel date serial"
    if date1904:  # Mac Excel's 1904 date system: day 0 is 1904-01-01, no phantom leap day
        return pd.Timestamp(_EPOCH_1904 + dt.timedelta(days=int(serial))), None
    if int(serial) == 60:
        return pd.NaT, "Excel serial 60 is 1900-02-29, a date that does not exist"
    day = int(serial) if serial >= 61 else int(serial) + 1  # before the phantom day, shift by one
    return pd.Timestamp(_EXCEL_EPOCH + dt.timedelta(days=day)), None


def _two_digit_year(yy: int, today: dt.date | None = None) -> int:
    """A two-digit year in the century that puts it no later than next year (26 -> 2026, 45 -> 1945)."""
    this = (today or dt.date.today()).year
    year = 2000 + yy
    return year if year <= this + 1 else year - 100


def norm_date(value: Any, date1904: bool = False, day_first: bool = False) -> Result:
    """Dates: Excel dates and serial numbers, ISO ``YYYY-MM-DD``, ``YYYYMMDD``, ``DD-MON-YYYY``/``DD-MON-YY``
    and slash dates, month first (``MM/DD/YYYY``) unless ``day_first``."""
    if is_blank(value):
        return pd.NaT, None
    if isinstance(value, dt.datetime):
        return pd.Timestamp(value.date()), None
    if isinstance(value, dt.date):
        return pd.Timestamp(value), None
    if isinstance(value, bool):
        return pd.NaT, "a TRUE/FALSE value is not a date"
    if isinstance(value, int | float):
        return _serial_to_date(float(value), date1904)
    text = str(value).strip()
    parts = None
    if m := _ISO.match(text):
        parts = int(m.group(1)), int(m.group(2)), int(m.group(3))
    elif m := _US.match(text):
        a, b, y = int(m.group(1)), int(m.group(3)), int(m.group(4))
        parts = (y, b, a) if day_first else (y, a, b)
    elif m := _COMPACT.match(text):
        parts = int(m.group(1)), int(m.group(2)), int(m.group(3))
    elif m := _MON.match(text):
        month = _MONTHS.get(m.group(3).lower())
        if month is None:
            return pd.NaT, "not a date (unknown month name)"
        y = int(m.group(4))
        parts = (_two_digit_year(y) if len(m.group(4)) == 2 else y), month, int(m.group(1))
    if parts is not None:
        try:
            return pd.Timestamp(dt.date(*parts)), None
        except ValueError:
            return pd.NaT, "no such calendar date"
    if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", text):  # ASCII digits: "²".isdigit() is True
        return _serial_to_date(float(text), date1904)
    return pd.NaT, "not a date (use YYYY-MM-DD or MM/DD/YYYY)"


def slash_date_order(values: pd.Series) -> str | None:
    """How a column's slash dates must be read, decided from all its values at once: "DMY" when a first field is
    above 12 and no second one is, "MDY" when the reverse, "conflict" when both, "ambiguous" when some date
    has two different fields of 12 or less and none decides, None when no date needs a decision."""
    text = pd.Series(values.unique())
    if not isinstance(text.dtype, pd.StringDtype):  # cells of any type (a workbook): its text cells only
        text = text[text.map(type).eq(str)].astype("str")
    if not len(text):
        return None
    fields = text.str.extract(SLASH_FIELDS).dropna()
    if not len(fields):
        return None
    first, second = fields[0].astype(int), fields[1].astype(int)
    day_first, month_first = bool((first > 12).any()), bool((second > 12).any())
    if day_first and month_first:
        return "conflict"
    if day_first or month_first:
        return "DMY" if day_first else "MDY"
    return "ambiguous" if bool((first != second).any()) else None


def norm_flag(value: Any) -> Result:
    """Documentation flags: Y/Yes/True/1/X -> True; N/No/False/0 and blank -> False."""
    if is_blank(value):
        return False, None
    if isinstance(value, bool):
        return value, None
    text, _ = norm_text(value)
    key = text.strip().lower()
    if key in _TRUE:
        return True, None
    if key in _FALSE:
        return False, None
    return False, "not a yes/no value (use Y or N)"


def norm_pointer(value: Any) -> Result:
    """Diagnosis pointers as letters: ``1,2`` -> ``AB``, ``a`` -> ``A``; odd values kept as written."""
    text, _ = norm_text(value)
    if text is None:
        return None, None
    parts = [p for p in re.split(r"[\s,;/]+", text.upper()) if p]
    if parts and all(p.isascii() and p.isdigit() for p in parts):
        if all(1 <= int(p) <= 12 for p in parts):
            return "".join(chr(64 + int(p)) for p in parts), None
        return text.upper(), None
    joined = "".join(parts)
    if re.fullmatch(r"[A-Z]+", joined):
        return joined, None
    return text.upper(), None


def norm_int(value: Any) -> Result:
    """Line numbers: whole numbers; anything else is refused."""
    number, reason = norm_number(value)
    if reason:
        return pd.NA, reason
    if math.isnan(number):
        return pd.NA, None
    if not float(number).is_integer():
        return pd.NA, "not a whole number"
    return int(number), None


def split_list(value: Any) -> list[str]:
    """A combined cell (``50, JZ`` or ``G51.33; G24.5``) split into its items."""
    text, _ = norm_text(value)
    if text is None:
        return []
    return [p for p in re.split(r"[\s,;|/]+", text) if p]


def normalize_column(values: pd.Series, norm: Callable[[Any], Result], max_text: int | None = None,
                     typed: Callable[[list], Any] | None = None, factorized: tuple | None = None,
                     ) -> tuple[Any, dict[int, str], list[int]]:
    """Apply ``norm`` once per distinct value; return values, {position: reason} and over-long positions.

    ``typed`` turns the distinct normalised values into a typed array (Arrow strings, datetime64,
    float64...); the column is then taken from it, with no Python object per cell.

    Columns with TRUE/FALSE cells among other values take the exact per-cell path: hashing would treat
    ``True`` and ``1`` as one value. ``factorized``: (codes, uniques as a list) of an object column,
    already computed by the caller (``pd.factorize`` with the NA sentinel).
    """
    index = None
    if norm is norm_text and typed is not None and isinstance(values.dtype, pd.StringDtype):
        long_pos = _clean_text_long_positions(values, max_text)
        if long_pos is not None:  # Arrow text that norm_text would leave as it is: nothing to hash
            return values.array, {}, long_pos
    if isinstance(values.dtype, pd.StringDtype):  # text read by pyarrow: no Python object per cell
        codes, index = pd.factorize(values, use_na_sentinel=True)
        uniques = index.tolist()
        text = True
    else:
        arr = values.to_numpy(dtype=object)
        kind = pd.api.types.infer_dtype(arr, skipna=True)
        if kind == "boolean" or (kind.startswith("mixed") and any(isinstance(v, (bool, np.bool_)) for v in arr)):
            return _normalize_cells(arr, norm, max_text)
        if factorized is None:
            codes, uniques = pd.factorize(arr, use_na_sentinel=True)
            uniques = uniques.tolist()
        else:
            codes, uniques = factorized
        text = kind == "string"
    if norm is norm_text and text:  # text as written, trimmed: for str values that is str.strip, nothing else
        trimmed = [u.strip() or None for u in uniques]
        if typed is not None and index is not None and trimmed == uniques:  # clean Arrow text: keep it
            out = values.array
        else:
            out = _take(trimmed + [None], codes, typed)
        return out, {}, _long_positions(codes, uniques if index is None else index, max_text)
    results = [norm(u) for u in uniques] + [norm(None)]
    out = _take([r[0] for r in results], codes, typed)
    problems: dict[int, str] = {}
    bad = [i for i, r in enumerate(results[:-1]) if r[1] is not None]
    if bad:
        for pos in np.flatnonzero(np.isin(codes, bad)):
            problems[int(pos)] = results[codes[pos]][1]
    return out, problems, _long_positions(codes, uniques, max_text)


def _take(normalised: list, codes: np.ndarray, typed: Callable[[list], Any] | None):
    """The column from its distinct normalised values (the last one stands for blank, code -1)."""
    if typed is not None:
        return typed(normalised).take(np.where(codes < 0, len(normalised) - 1, codes))
    lookup = np.empty(len(normalised), dtype=object)
    lookup[:] = normalised
    return lookup[codes]


def _clean_text_long_positions(values: pd.Series, max_text: int | None) -> list[int] | None:
    """For Arrow text with no blank and no whitespace at either end (what ``norm_text`` keeps as it
    is): the positions longer than ``max_text``. None for any other text. Arrow's trim takes the
    same characters as whitespace as ``str.strip`` (tests/pipeline/test_normalize.py)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pa.array(values.array)
    if pc.any(pc.equal(arr, "")).as_py() or pc.any(pc.not_equal(pc.utf8_trim_whitespace(arr), arr)).as_py():
        return None
    if max_text is None:
        return []
    long = pc.fill_null(pc.greater(pc.utf8_length(arr), max_text), False)
    return np.flatnonzero(long.to_numpy(zero_copy_only=False)).tolist()


def _long_positions(codes: np.ndarray, uniques, max_text: int | None) -> list[int]:
    """Positions whose text is longer than ``max_text`` (``uniques``: a list, or an Index of strings)."""
    if max_text is None:
        return []
    if isinstance(uniques, pd.Index):  # Arrow strings: lengths in one vectorised pass
        long_codes = np.flatnonzero(uniques.str.len().to_numpy(dtype=float, na_value=0) > max_text).tolist()
    else:
        long_codes = [i for i, u in enumerate(uniques) if isinstance(u, str) and len(u) > max_text]
    return np.flatnonzero(np.isin(codes, long_codes)).tolist() if long_codes else []


def _normalize_cells(arr, norm, max_text):
    out: list = []
    problems: dict[int, str] = {}
    long_pos: list[int] = []
    for pos, value in enumerate(arr):
        hit = norm(value)
        out.append(hit[0])
        if hit[1] is not None:
            problems[pos] = hit[1]
        if max_text is not None and isinstance(value, str) and len(value) > max_text:
            long_pos.append(pos)
    return out, problems, long_pos
