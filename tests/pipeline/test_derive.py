"""Claim facts from lines: the per-claim aggregates (numpy passes over integer claim codes) and their
independence from how the claims' lines are interleaved in the file."""

import subprocess
import sys

import numpy as np
import pandas as pd

from pipeline.config import ScrubConfig
from pipeline.derive import Groups, derive_claims
from pipeline.ingest import to_canonical
from pipeline.sample import generate
from pipeline.validate import find_violations
from schemas import columns as C
from tests.conftest import AS_OF, ROOT, lines_frame


def _groups():
    claims = pd.Series(["B", "A", "B", "C", "A", "B"], index=[10, 11, 12, 13, 14, 15], dtype="str")
    return Groups(claims)


def test_groups_follow_first_appearance_and_index_labels():
    g = _groups()
    assert list(g.ids) == ["B", "A", "C"]
    assert g.first_label().tolist() == [10, 11, 13]
    mask = np.array([False, False, True, False, True, False])
    assert g.first_label(mask).tolist()[:2] == [12, 14] and np.isnan(g.first_label(mask)[2])
    assert g.any(mask).tolist() == [True, True, False]


def test_groups_sum_counts_missing_as_zero_and_max():
    g = _groups()
    units = pd.Series([1.0, np.nan, 2.5, 4.0, 3.0, np.nan])
    assert g.sum(units).tolist() == [3.5, 3.0, 4.0]
    assert g.sum(units, np.array([False, True, False, False, False, True])).tolist() == [0.0, 0.0, 0.0]
    assert g.max(np.array([1, 2, 3, 0, 1, 1])).tolist() == [3, 2, 0]


def test_groups_first_value_skips_blanks_and_dates_span():
    g = _groups()
    patient = pd.Series([None, "P2", "P1", None, "P3", "P9"], dtype="str")
    assert g.first_value(patient).tolist()[:2] == ["P1", "P2"] and pd.isna(g.first_value(patient)[2])
    dates = pd.Series(pd.to_datetime(["2024-03-02", None, "2024-01-05", None, "2024-02-01", "2024-05-01"]))
    lo, hi = g.date_range(dates)
    assert lo.dt.strftime("%Y-%m-%d").tolist()[:2] == ["2024-01-05", "2024-02-01"] and pd.isna(lo[2])
    assert hi.dt.strftime("%Y-%m-%d").tolist()[:2] == ["2024-05-01", "2024-02-01"] and pd.isna(hi[2])


def test_groups_join_keeps_distinct_texts_in_line_order():
    g = _groups()
    texts = pd.Series(["x", "y", "w", "z", None, "y"], dtype="str")
    assert g.join(texts).tolist() == ["x; w; y", "y", "z"]
    assert g.join(texts, fill="(blank)").tolist() == ["x; w; y", "y; (blank)", "z"]
    assert g.join(texts, np.array([False, True, True, False, False, True])).tolist() == ["w; y", "y", ""]
    assert g.join(pd.Series(["", "", "", "", "", ""], dtype="str")).tolist() == ["", "", ""]
    npi = pd.Series(["1", "2", "1", None, "2", "1"], dtype="str")
    assert g.nunique(npi).tolist() == [1, 1, 0]


def test_interleaved_claims_give_the_same_facts_and_findings():
    """An export may interleave the lines of its claims: facts and findings do not depend on it."""
    lines = to_canonical(lines_frame(generate(2400, seed=7, defect_rate=0.6)))
    order = lines.groupby(C.CLAIM_ID, sort=False).cumcount().sort_values(kind="stable").index
    mixed = lines.loc[order]  # round robin over claims; each claim's own lines keep their order
    assert not mixed.index.equals(lines.index)
    config = ScrubConfig()
    key = [C.CLAIM_ID]
    a = derive_claims(lines, config).sort_values(key).reset_index(drop=True)
    b = derive_claims(mixed, config).sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    fa = find_violations(lines, AS_OF, config).findings
    fb = find_violations(mixed, AS_OF, config).findings
    assert len(fa) > 100 and fa["rule"].nunique() > 20
    pd.testing.assert_frame_equal(fa, fb)


def test_validation_does_not_import_dask():
    """A scrub pays no dask import (about 0.4 s per process) for pandera's unused dask annotations."""
    code = ("import sys, datetime as dt; from pipeline.sample import clean_claim; "
            "from pipeline.validate import find_violations; from tests.conftest import lines_frame; "
            "f = find_violations(lines_frame(clean_claim()), dt.date(2024, 6, 30)).findings; "
            "print(len(f), 'dask.dataframe' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["0", "False"]
