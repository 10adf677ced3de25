"""Arrow-backed text helpers shared by fact derivation and rule details (rule-free, vectorised).

Texts are built once per distinct value or per set of flags and taken per row with one Arrow take: never a
Python string per row of a large frame.
"""

import numpy as np
import pandas as pd
import pyarrow as pa

_STR = pd.Series(["x"]).dtype  # pandas' text dtype ("str": Arrow-backed from pandas 3)


def text(values) -> pd.Series:
    """Python texts (None: missing) as a text column, converted by Arrow rather than by pandas' inference."""
    if not hasattr(_STR, "__from_arrow__"):  # pandas before 3: texts are objects
        return pd.Series(values, dtype=object)
    return pd.Series(_STR.__from_arrow__(pa.array(values, type=pa.large_string(), from_pandas=True)))


def pick(codes, labels: list[str], index=None) -> pd.Series:
    """``labels[codes]`` as a text column: one Arrow take, never a Python string per row."""
    codes = np.asarray(codes, dtype=np.int64)
    if not hasattr(_STR, "__from_arrow__"):
        return pd.Series(np.array(labels, dtype=object)[codes], index=index, dtype=object)
    taken = pa.array(labels, type=pa.large_string()).take(pa.array(codes))
    return pd.Series(_STR.__from_arrow__(taken), index=index)


def choose(conditions: list[tuple[object, str]], n: int, index=None) -> pd.Series:
    """Per row the text of the first condition that holds ("" where none does), like nested np.where."""
    codes = np.zeros(n, dtype=np.int64)
    for k, (cond, _) in reversed(list(enumerate(conditions, start=1))):
        codes[np.asarray(cond, dtype=bool)] = k
    return pick(codes, [""] + [text for _, text in conditions], index)


def join_flags(flags: dict[str, pd.Series], sep: str = ", ") -> pd.Series:
    """Row-wise: the labels whose flag is True, joined (one code per row for the set of flags, then a
    lookup among the 2**len(flags) joined texts)."""
    if not flags:
        return pd.Series(dtype=object)
    labels = list(flags)
    index = next(iter(flags.values())).index
    codes = np.zeros(len(index), dtype=np.int64)
    for k, flag in enumerate(flags.values()):
        codes |= np.asarray(flag.to_numpy(bool), dtype=np.int64) << k
    table = [sep.join(label for k, label in enumerate(labels) if bits >> k & 1) for bits in range(1 << len(labels))]
    return pick(codes, table, index)


def join_texts(parts: list[pd.Series], sep: str = "; ") -> pd.Series:
    """Row-wise: the non-empty texts joined (in Python only for the rows with any text)."""
    texts = [part.astype(object).fillna("").to_numpy(dtype=object) for part in parts]
    rows = np.flatnonzero(np.logical_or.reduce([t != "" for t in texts]))
    out = np.full(len(texts[0]), "", dtype=object)
    out[rows] = [sep.join(t for t in row if t) for row in zip(*(t[rows] for t in texts), strict=True)]
    return pd.Series(out, index=parts[0].index, dtype=object)


def numbers(values: pd.Series) -> pd.Series:
    """Numbers as short text: 10.0 -> "10", 2.5 -> "2.5", NaN -> "?". It runs on the failing rows of a rule's
    detail (tens of rows): a Python pass over them costs far less than a chain of pandas steps."""
    v = pd.to_numeric(values, errors="coerce").astype(float)
    return pd.Series([_number(x) for x in v.to_numpy().tolist()], index=v.index, dtype=object)


def _number(x: float) -> str:
    if x != x:
        return "?"
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else str(x)


def put(out: np.ndarray, cond, make) -> None:
    """Set ``out`` to the texts ``make(m)`` where ``cond`` holds (built for those rows only)."""
    m = np.asarray(cond, dtype=bool)
    if m.any():
        out[m] = np.asarray(make(m), dtype=object)
