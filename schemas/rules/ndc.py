"""NDC rules: the drug line's NDC is a product billed on its J-code (every claim, not only G51.33 claims)."""

import pandas as pd

from schemas import codesets as K
from schemas import columns as C
from schemas.ndc import FACTS, billed_elsewhere, product_of, wrong_product
from schemas.rules.core import Severity, examples, line_rule, on

E = Severity.ERROR


@line_rule(
    "NDC-001", E, field=C.NDC, needs=(C.NDC,), tables=("ndc",), title="NDC is not the billed toxin's product",
    checks="On a toxin line (J0585-J0589) an NDC of a listed botulinum-toxin product is that code's product "
           "(J0585 Botox, J0586 Dysport, J0587 Myobloc, J0588 Xeomin, J0589 Daxxify) and not a cosmetic-only product "
           "(Botox Cosmetic, Jeuveau, Letybo). Judged on the NDC table in force on the date of service: the shipped "
           "toxin table, or an imported CMS ASP NDC-HCPCS crosswalk (which keeps the shipped cosmetic-only "
           "products); NDCs the table does not list are not judged.",
    message="NDC {value}.",
    fix="Enter the NDC of the vial actually used and bill the J-code of that product; cosmetic-only products are "
        "not billed to a payer.",
    source="CMS ASP NDC-HCPCS crosswalk (quarterly); FDA National Drug Code Directory; HCPCS Level II descriptors "
           "J0585-J0589; CMS Pub. 100-02 Ch. 16, Sec. 120 (cosmetic procedures excluded)",
    examples=examples(fires=[on(1, ndc="00023-9232-01")], quiet=[on(1, ndc="00023-3921-02")],
                      value="00023-9232-01 is BOTOX Cosmetic, a cosmetic-only product: not billable on J0585"))
def ndc_is_billed_product(df: pd.DataFrame) -> pd.Series:
    if not set(FACTS) <= set(df.columns):  # the rule layer alone (no dated tables): the shipped toxin table
        return pd.Series(~wrong_product(df[C.PROCEDURE_CODE], df[C.NDC], K.TOXIN_CODES), index=df.index)
    return pd.Series(~billed_elsewhere(df[C.PROCEDURE_CODE], *(df[c] for c in FACTS), K.TOXIN_CODES), index=df.index)


@ndc_is_billed_product.detail(columns=(C.PROCEDURE_CODE, C.NDC, *FACTS))
def _(rows: pd.DataFrame, lines: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """The NDC, the product it is, and why it does not belong on the line's code."""
    if set(FACTS) <= set(rows.columns):
        product = pd.DataFrame({"brand": rows["ndc_brand"].astype(object).astype(str),
                                "hcpcs": rows["ndc_hcpcs"].astype(object).astype(str).str.replace(" ", " or "),
                                "cosmetic_only": rows["ndc_cosmetic"].fillna(False).astype(bool)}, index=rows.index)
    else:
        product = product_of(rows[C.NDC])
    ndc, code = rows[C.NDC].astype(object).astype(str), rows[C.PROCEDURE_CODE].astype(object).astype(str)
    cosmetic = ndc + " is " + product["brand"] + ", a cosmetic-only product: not billable on " + code
    other = ndc + " is " + product["brand"] + " (billed on " + product["hcpcs"] + "), not " + code
    return pd.Series(C.NDC, index=rows.index), cosmetic.where(product["cosmetic_only"], other)
