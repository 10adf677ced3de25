"""The shipped botulinum-toxin NDC table and its lookups (schemas/ndc.py)."""

import re

import pandas as pd
import pytest

from schemas import codesets as K
from schemas.ndc import labeler_product, product_of, toxin_ndc_table, wrong_product


def test_table_is_versioned_and_consistent_with_the_code_sets():
    """It carries a version and coverage, maps every therapeutic product to a toxin J-code whose vial sizes
    include the product's vial, and gives cosmetic-only products no J-code."""
    table = toxin_ndc_table()
    assert re.fullmatch(r"\d{4}-\d{2}", table.version) and table.coverage
    p = table.products
    assert all(re.fullmatch(r"\d{5}-\d{4}", k) for k in p.index) and p.index.is_unique
    therapeutic = p[~p["cosmetic_only"]]
    assert set(therapeutic["hcpcs"]) == set(K.TOXIN_CODES)
    for _, row in therapeutic.iterrows():
        assert int(row["vial_units"]) in K.TOXIN_VIALS[row["hcpcs"]], row["brand"]
    assert (p.loc[p["cosmetic_only"], "hcpcs"] == "").all()
    assert {"BOTOX Cosmetic", "Jeuveau", "Letybo"} <= set(p.loc[p["cosmetic_only"], "brand"])


@pytest.mark.parametrize(("ndc", "key"), [
    ("00023-9232-01", "00023-9232"), ("00023923201", "00023-9232"), ("N4 00023923201", "00023-9232"),
    ("0023-9232-01", None), ("", None), ("abc", None),
])
def test_labeler_product_of_an_11_digit_ndc(ndc, key):
    """It reads the labeler-product of an 11-digit NDC (hyphens, spaces, an N4 qualifier aside), nothing else."""
    assert labeler_product(ndc) == key


def test_lookups_are_per_line():
    """It decides each (NDC, code) pair once and answers per line, blanks and unlisted NDCs included."""
    ndcs = pd.Series(["00259-1620-01", None, "00023-1145-01", "00259-1620-01", "99999-9999-99"], dtype="str")
    codes = pd.Series(["J0585", "J0585", "J0585", "J0588", "J0585"], dtype="str")
    assert wrong_product(codes, ndcs, K.TOXIN_CODES).tolist() == [True, False, False, False, False]
    assert product_of(ndcs)["brand"].tolist() == ["Xeomin", "", "BOTOX", "Xeomin", ""]
