"""The botulinum-toxin NDC table (``schemas/data/toxin_ndc.csv``): which product an NDC is and its HCPCS code.

Rule-free and vectorised: NDCs are looked up once per distinct text, then taken per line.
"""

import csv
import functools
import hashlib
import io
import re
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd

TABLE = "toxin_ndc.csv"


@dataclass(frozen=True)
class NdcTable:
    """The table's version and coverage (from its header) and one row per labeler-product (``00023-9232``)."""

    version: str
    coverage: str
    products: pd.DataFrame
    covers_from: str = ""  # dates of service (ISO), as the reference tables list them (pipeline/reference.py)
    covers_to: str = ""
    source: str = ""
    sha256: str = ""


def data_folder():
    """Where the shipped table lives (the reference listing names it, pipeline/reference.py)."""
    return resources.files("schemas").joinpath("data")


@functools.cache
def toxin_ndc_table() -> NdcTable:
    """The shipped table, read once."""
    text = resources.files("schemas").joinpath("data", TABLE).read_text(encoding="utf-8")
    header = " ".join(line for line in text.splitlines() if line.startswith("#"))
    version = re.search(r"version:\s*(\S+)", header)
    coverage = re.search(r"coverage:\s*([^#]+?)\s*(?:#|$)", header)
    rows = list(csv.DictReader(io.StringIO("\n".join(x for x in text.splitlines() if not x.startswith("#")))))
    products = pd.DataFrame(rows).set_index("labeler_product")
    products["cosmetic_only"] = products["cosmetic_only"].str.lower().eq("yes")
    covers = re.search(r"covers:\s*(\d{4}-\d{2}-\d{2}) to (\d{4}-\d{2}-\d{2})", header)
    source = re.search(r"source:\s*(.+?)\s*(?:#|$)", header)
    return NdcTable(version.group(1) if version else "", coverage.group(1) if coverage else "", products,
                    *(covers.groups() if covers else ("", "")), source.group(1) if source else "",
                    hashlib.sha256(text.encode("utf-8")).hexdigest())


def labeler_product(ndc: str) -> str | None:
    """``LLLLL-PPPP`` of an 11-digit NDC (hyphens, spaces and an ``N4`` qualifier removed); None otherwise."""
    digits = re.sub(r"[\s-]", "", str(ndc).upper().removeprefix("N4"))
    return f"{digits[:5]}-{digits[5:9]}" if re.fullmatch(r"\d{11}", digits) else None


def product_of(ndcs: pd.Series) -> pd.DataFrame:
    """Per row: the listed product of its NDC (brand, hcpcs, cosmetic_only; brand "" when not listed)."""
    codes, uniques = pd.factorize(ndcs)
    products = toxin_ndc_table().products
    keys = [labeler_product(u) for u in uniques.tolist()]
    at = np.array([products.index.get_loc(k) if k in products.index else -1 for k in keys] + [-1], dtype=np.int64)
    rows = at[codes]  # code -1 (blank) takes the last entry: not listed
    listed = rows >= 0
    brand = np.full(len(ndcs), "", dtype=object)
    hcpcs = np.full(len(ndcs), "", dtype=object)
    cosmetic = np.zeros(len(ndcs), dtype=bool)
    brand[listed] = products["brand"].to_numpy(dtype=object)[rows[listed]]
    hcpcs[listed] = products["hcpcs"].to_numpy(dtype=object)[rows[listed]]
    cosmetic[listed] = products["cosmetic_only"].to_numpy(bool)[rows[listed]]
    return pd.DataFrame({"brand": brand, "hcpcs": hcpcs, "cosmetic_only": cosmetic}, index=ndcs.index)


def wrong_product(procedure_codes: pd.Series, ndcs: pd.Series, checked_codes: tuple[str, ...]) -> np.ndarray:
    """Per line: its code is one of ``checked_codes`` and its NDC is a listed product that is cosmetic-only or
    billed on another code. Decided per distinct (NDC, code) pair, then taken per line."""
    ndc_codes, ndc_uniques = pd.factorize(ndcs)
    proc_codes, proc_uniques = pd.factorize(procedure_codes)
    products = toxin_ndc_table().products
    keys = [labeler_product(u) for u in ndc_uniques.tolist()]
    bad = np.zeros((len(ndc_uniques) + 1, len(proc_uniques) + 1), dtype=bool)  # last row/column: blank
    checked = np.array([p in checked_codes for p in proc_uniques.tolist()] + [False], dtype=bool)
    procs = np.array([*proc_uniques.tolist(), ""], dtype=object)
    for i, key in enumerate(keys):
        if key in products.index:
            row = products.loc[key]
            bad[i] = checked & (bool(row["cosmetic_only"]) | (procs != row["hcpcs"]))
    return bad[ndc_codes, proc_codes]


# Per-line facts of the table in force on each line's date (pipeline/lookups.py ``ndc_facts``): the product's name
# ("" not listed), the HCPCS code(s) it is billed on (space-separated: the ASP crosswalk may list more than one)
# and whether it is cosmetic-only.
FACTS = ("ndc_brand", "ndc_hcpcs", "ndc_cosmetic")


def billed_elsewhere(procedure_codes: pd.Series, brand: pd.Series, hcpcs: pd.Series, cosmetic: pd.Series,
                     checked_codes: tuple[str, ...]) -> np.ndarray:
    """Per line (the facts above): its code is one of ``checked_codes`` and its NDC is a listed product that is
    cosmetic-only or billed on another code. Only the lines of those codes are looked at, and each distinct
    (code, codes billed on) pair is decided once."""
    out = np.zeros(len(procedure_codes), dtype=bool)
    rows = np.flatnonzero(procedure_codes.isin(checked_codes).to_numpy(bool))  # toxin lines: the others pass
    names = brand.to_numpy(object)[rows]
    rows = rows[pd.notna(names) & (names != "")]  # a listed product
    if not len(rows):
        return out
    proc, procs = pd.factorize(procedure_codes.take(rows))  # a few toxin codes
    billed, billed_on = pd.factorize(pd.Series(hcpcs.to_numpy(object)[rows], dtype=object).fillna(""))
    # Decided per (code, codes billed on): the product is billed on other codes than the line's.
    table = np.array([[str(p) not in str(b).split() for b in billed_on.tolist()] for p in procs.tolist()], dtype=bool)
    other = table[proc, billed] if table.size else np.zeros(len(rows), dtype=bool)
    out[rows] = cosmetic.to_numpy(dtype=bool, na_value=False)[rows] | other
    return out
