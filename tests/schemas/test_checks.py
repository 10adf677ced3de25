"""The vectorised predicates behind the line checks agree with the plain pandas they replace."""

import numpy as np
import pandas as pd
import pytest

from schemas.checks import group_codes, repeated_keys, several_per_group, text_matches


def _frame(seed: int, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    claim = pd.Series(rng.choice(["C1", "C2", "C3", "C4", None], n), dtype="str")
    patient = pd.Series(rng.choice(["P1", "P2", None, None], n), dtype="str")
    line = pd.Series(rng.choice([1, 2, 3, None], n), dtype="Int64")
    return pd.DataFrame({"claim": claim, "patient": patient, "line": line})


@pytest.mark.parametrize("seed", range(5))
def test_several_per_group_is_nunique_above_one(seed):
    """It flags a row when its claim (missing ids together) has two or more distinct patients."""
    df = _frame(seed)
    expected = df.groupby("claim", dropna=False)["patient"].transform("nunique").fillna(0) > 1
    got = several_per_group(group_codes(df["claim"]), df["patient"])
    assert got.tolist() == expected.tolist()


@pytest.mark.parametrize("seed", range(5))
def test_repeated_keys_is_duplicated_keep_first(seed):
    """It flags each repeat of a (claim, line) pair after its first row, as pandas' duplicated does."""
    df = _frame(seed).dropna()
    expected = df.duplicated(["claim", "line"], keep="first")
    got = repeated_keys(group_codes(df["claim"]), group_codes(df["line"]))
    assert got.tolist() == expected.tolist()


def test_text_matches_once_per_distinct_text():
    """It matches whole texts only, and a blank never matches."""
    values = pd.Series(["G51.33", "g51.33", None, "G51.33x", "G51.33", ""], dtype="str")
    assert text_matches(values, r"[A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?").tolist() == [
        True, False, False, False, True, False]
    assert text_matches(pd.Series([], dtype="str"), r"x").tolist() == []
