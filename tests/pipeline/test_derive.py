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


def _claim(claim_id: str, edit) -> list[dict]:
    from pipeline.sample import clean_claim

    lines = clean_claim(claim_id, patient_id=f"MBR-{claim_id}")
    edit(lines)
    return lines


def _extra(lines, code, **kw):
    lines.append({**lines[0], C.LINE_NO: len(lines) + 1, C.PROCEDURE_CODE: code, C.MODIFIERS[0]: None,
                  C.UNITS: 1, C.MUSCLES: None, **kw})


def test_reviewer_texts_of_each_branch():
    """It shows the reviewer's detail of each multi-part rule word for word, for every branch, with its
    severity: the combined place-of-service texts, guidance, one-side billing, sides, style, imaging and
    history (findings: rule, claim, value, severity)."""
    from pipeline.config import PayerProfile

    def every(**kw):  # the same fields on every line of the claim
        return lambda ls: [line.update(kw) for line in ls]

    def first(**kw):  # fields of the 64612 line
        return lambda ls: ls[0].update(kw)

    def extra(*codes, **kw):  # more lines with these codes
        return lambda ls: [_extra(ls, code, **kw) for code in codes]

    def larynx_and_units(ls):
        _extra(ls, "95874", **{C.UNITS: 2})
        _extra(ls, "64617")

    def rt_lt_lines(ls):
        ls[0][C.MODIFIERS[0]] = "RT"
        ls.insert(1, {**ls[0], C.LINE_NO: 3, C.MODIFIERS[0]: "LT"})
        every(**{C.PAYER: "Style50"})(ls)

    def pairing(ls):
        ls[1].update({C.SERVICE_DATE: "2024-05-15", C.RENDERING_NPI: "1234567893"})

    edits = {  # POS 22 is a facility and a hospital outpatient department; no UTN anywhere
        "SET2": every(**{C.PLACE_OF_SERVICE: "22"}), "SET1": every(**{C.PLACE_OF_SERVICE: "21"}),
        "LAR": extra("95874", "64617"), "LAR2": larynx_and_units, "LT": first(**{C.MODIFIERS[0]: "LT"}),
        "UNMOD": first(**{C.MODIFIERS[0]: None}), "RSOME": first(**{C.MUSCLES: "R OO 5u; ZM 5u"}),
        "NOSIDE": first(**{C.MUSCLES: "OO 5u; ZM 5u"}), "RONLY": first(**{C.MUSCLES: "R OO 5u; R ZM 5u"}),
        "STYLE": rt_lt_lines, "GUIDE": extra("95873", "95874"),
        "STRUCT": every(**{C.DX[1]: "D33.3", C.DOC_IMAGING: "N"}), "IMG": every(**{C.DOC_IMAGING: "N"}),
        "HIST": every(**{C.DOC_ONSET: "N", C.DOC_FREQUENCY: "N"}), "PAIR": pairing,
    }
    lines = lines_frame([line for cid, edit in edits.items() for line in _claim(cid, edit)])
    # Payers without NCCI: for those that apply it, the units, pair and two-line branches are MUE-001 and PTP-001.
    config = ScrubConfig(default=PayerProfile(ncci_applies=False),
                         payers={"Style50": PayerProfile(bilateral_style="50", ncci_applies=False)})
    found = find_violations(lines, AS_OF, config).findings

    def shown(rule, what="value"):
        hit = found[found["rule"] == rule]
        return {c: v for c, v in zip(hit[C.CLAIM_ID], hit[what], strict=True) if v}

    facility = "POS {0} (facility) with a toxin line: the drug usually belongs on the facility claim"
    outpatient = "POS 22 hospital outpatient 64612 + toxin with no prior authorization number (UTN)"
    assert shown("HFS-031") == {"SET2": facility.format(22) + "; " + outpatient, "SET1": facility.format(21)}
    larynx_text = "95874 with 64617 (guidance included)"
    assert shown("HFS-022") == {"LAR": larynx_text, "LAR2": "more than 1 unit of guidance on one date; " + larynx_text,
                                "GUIDE": "more than 1 unit of guidance on one date"}
    assert shown("HFS-023") == {"LAR": "guidance billed with 64612 for facial muscles",
                                "LAR2": "guidance billed with 64612 for facial muscles",
                                "GUIDE": "95873 and 95874 billed together"}
    assert shown("HFS-007") == {"LT": "LT only", "UNMOD": "no side modifier"}
    assert shown("HFS-021") == {"RSOME": "on the right side only (some sites state no side)",
                                "NOSIDE": "all without a side", "RONLY": "on the right side only"}
    assert shown("HFS-021", "severity") == {"RSOME": "warning", "NOSIDE": "warning", "RONLY": "error"}
    assert shown("HFS-009") == {"STYLE": "one line 64612-50 x1"}
    assert shown("HFS-027") == {"STRUCT": " and the claim carries a structural-cause diagnosis"}
    assert shown("HFS-027", "severity") == {"STRUCT": "error", "IMG": "warning"}
    assert set(found.loc[found["rule"] == "HFS-027", "message"]) == {
        "Imaging (e.g. MRI) is not documented and the claim carries a structural-cause diagnosis.",
        "Imaging (e.g. MRI) is not documented."}
    assert shown("HFS-025") == {"HIST": "onset, frequency of spasms"}
    assert shown("HFS-032") == {"PAIR": "different dates of service; different rendering NPIs"}


def test_code_matrix_leaves_out_empty_columns_and_reads_them_as_blank():
    """It codes every filled cell as its value and every empty one as -1, also for columns with no value."""
    from pipeline.derive import _carries, _code_matrix

    cells = pd.DataFrame({"a": ["X", "Y", None, "X"], "b": [None] * 4, "c": [None, "Y", "Z", None]}, dtype="str")
    codes, uniques, column = _code_matrix(cells)
    assert codes.shape == (4, 3) and column == {"a": 0, "b": 2, "c": 1}
    for name in cells.columns:
        got = [None if k < 0 else uniques[k] for k in codes[:, column[name]]]
        assert got == [None if pd.isna(v) else v for v in cells[name]]
    assert _carries(cells, [["X"], ["Z"], ["W"]]).tolist() == [0b001, 0, 0b010, 0b001]
    empty = pd.DataFrame({"a": [None, None], "b": [None, None]}, dtype="str")
    assert _carries(empty, [["X"]]).tolist() == [0, 0]
    assert _code_matrix(empty)[0].tolist() == [[-1], [-1]]
