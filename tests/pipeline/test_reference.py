"""Reference tables (pipeline/reference.py) and the payer-edit and code-set rules decided on them, through
find_violations as a scrub runs it: real files imported into a real folder, real shipped tables."""

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from pipeline import reference as R
from pipeline.config import PayerProfile, ScrubConfig
from pipeline.report import summarize
from pipeline.sample import apply_edits
from pipeline.validate import find_violations
from schemas.ndc import toxin_ndc_table
from schemas.rules.core import add, every, on
from tests.conftest import lines_frame

AS_OF = dt.date(2026, 11, 30)
_RT_LT = [on(0, modifier_1="RT"), add(line_no=3, procedure_code="64612", modifier_1="LT", units=1)]


def _scrub(edits, dos: str, config: ScrubConfig | None = None, claim: str = "C1", patient: str = "M1"):
    lines = apply_edits(edits, claim, patient, dos)
    return find_violations(lines_frame(lines), AS_OF, config)


def _rules(v) -> dict[str, str]:
    return dict(zip(v.findings["rule"], v.findings["severity"], strict=True))


def _mue_file(path, value_64612: int) -> None:
    """A practitioner MUE table as CMS publishes it: notice lines, then the header and one row per code."""
    path.write_text(
        "CPT codes, descriptions and other data only are copyright 2025 American Medical Association.\n"
        "\n"
        "HCPCS/CPT Code,Practitioner Services MUE Values,MUE Adjudication Indicator,MUE Rationale\n"
        f"64612,{value_64612},2 Date of Service Edit: Policy,Anatomic Consideration\n"
        "J0585,800,3 Date of Service Edit: Clinical,Prescribing Information\n")


def test_shipped_tables_are_listed_with_source_version_and_coverage():
    """It ships every kind of table, each with a source, a version and dates of service covered."""
    kinds = {t.kind for t in R.tables()}
    assert {"mue", "ptp", "icd10cm", "procedures", "modifiers", "pos", "ndc"} <= kinds
    for t in R.tables():
        assert t.source and t.version and t.start <= t.end and t.rows > 0
    assert sum((Path(t.folder) / t.file).stat().st_size for t in R.tables()) < 5_000_000
    ndc = R.of_kind("ndc")[0]  # the NDC table NDC-001 reads, with its own version and dates
    assert (ndc.version, ndc.covers_from, ndc.covers_to) == ("2026-12", "2014-01-01", "2026-12-31")
    assert "openFDA" in ndc.source and ndc.rows == len(toxin_ndc_table().products)


def test_the_run_names_the_ndc_table_and_warns_after_its_coverage():
    """It names the NDC table version NDC-001 was decided on, and for a date after the table's coverage still
    judges the NDC (a product listing), saying so."""
    v = _scrub([on(1, ndc="00023-9232-01")], "2027-02-10", claim="C1")
    assert "NDC-001" in set(v.findings["rule"])
    ndc = next(u for u in v.reference["tables"] if u["kind"] == "ndc")
    assert [t["version"] for t in ndc["tables"]] == ["2026-12"]
    assert any("after the newest ndc table's coverage (2026-12-31): checked against it anyway" in w
               for w in v.reference["warnings"])


def test_mue_rt_lt_lines_on_one_medicare_date_is_the_mue_error_not_the_style_warning():
    """It flags 64612-RT + 64612-LT on one date as 2 units against MUE 1 (MAI 2), and not HFS-009 as well."""
    config = ScrubConfig(payers={"Medicare": PayerProfile(bilateral_style="50")})
    v = _scrub(_RT_LT, "2026-03-10", config)
    assert _rules(v) == {"MUE-001": "error"}
    assert "2 units on 2026-03-10 against MUE 1" in v.findings["value"].iat[0]
    assert "no appeal" in v.findings["value"].iat[0]


def test_mai3_finding_says_an_appeal_may_pay():
    """It flags units above an MAI 3 limit on any claim (not only G51.33), saying an appeal with records may pay."""
    v = _scrub([every(dx_1="G24.3"), on(1, units=900)], "2026-03-10")
    hit = v.findings[v.findings["rule"] == "MUE-001"]
    assert len(hit) == 1 and "J0585: 900 units" in hit["value"].iat[0]
    assert "appeal with medical records may pay" in hit["value"].iat[0]


def test_payer_without_ncci_gets_no_payer_edits():
    """It applies no MUE or PTP edit for a payer whose profile says NCCI does not apply."""
    config = ScrubConfig(payers={"Medicare": PayerProfile(ncci_applies=False)})
    v = _scrub([*_RT_LT, add(line_no=4, procedure_code="64615", modifier_1=None)], "2026-03-10", config)
    assert not {"MUE-001", "PTP-001", "PTP-002"} & set(v.findings["rule"])


@pytest.mark.parametrize("edits, ncci, want", [
    ([on(0, modifier_1=None, units=2)], True, {"MUE-001": "error"}),
    ([on(0, modifier_1=None, units=2)], False, {"HFS-008": "error"}),
    ([on(0, units=2)], True, {"MUE-001": "error"}),  # 64612-50 x2
    ([on(0, units=2)], False, {"HFS-008": "error"}),
    ([add(line_no=3, procedure_code="64612", modifier_1="RT", units=1)], True, {"MUE-001": "error"}),  # 50 + RT
    ([on(0, modifier_2="RT")], True, {"HFS-008": "error"}),  # 50 with RT on one line, 1 unit: not a unit fault
])
def test_hfs008_leaves_units_above_the_mue_to_mue001_for_ncci_payers(edits, ncci, want):
    """It reports 64612 units above the MUE once: MUE-001 for a payer that applies NCCI, HFS-008 for one that
    does not; a malformed line within the limit (50 with RT on one line) stays HFS-008's."""
    config = ScrubConfig(payers={"Medicare": PayerProfile(bilateral_style="50", ncci_applies=ncci)})
    v = _scrub(edits, "2026-03-10", config)
    assert {r: s for r, s in _rules(v).items() if r in ("MUE-001", "HFS-008")} == want


@pytest.mark.parametrize("code, modifier, rule, denied", [
    ("64615", None, "PTP-001", "the payer denies 64615"),
    ("95870", None, "PTP-001", "the payer denies 95870"),
    ("99213", None, "PTP-002", "99213 unless modifier 25"),
    ("96372", None, "PTP-002", "96372 unless an NCCI-associated modifier"),
])
def test_ptp_pairs_name_both_codes_and_the_denied_one(code, modifier, rule, denied):
    """It flags an NCCI pair on the same date and provider, naming both codes and the code the payer denies."""
    v = _scrub([add(line_no=3, procedure_code=code, modifier_1=modifier, units=1, muscles=None)], "2025-12-09")
    hit = v.findings[v.findings["rule"] == rule]
    assert len(hit) == 1, _rules(v)
    assert f"{code} with 64612 on 2025-12-09" in hit["value"].iat[0] and denied in hit["value"].iat[0]
    assert hit["line_no"].iat[0] == 3  # the denied line


def test_ptp_modifier_25_on_the_em_passes_and_96372_with_59_is_the_warning():
    """It accepts an E/M with 25 beside 64612, and reports 96372-59 beside 64612 once, as HFS-024's warning."""
    v = _scrub([add(line_no=3, procedure_code="99213", modifier_1="25", units=1, muscles=None)], "2025-12-09")
    assert not {"PTP-001", "PTP-002"} & set(v.findings["rule"])
    v = _scrub([add(line_no=3, procedure_code="96372", modifier_1="59", units=1, muscles=None)], "2025-12-09")
    assert _rules(v) == {"HFS-024": "warning"}


def test_ptp_pairs_across_claims_of_one_patient_date_and_provider():
    """It pairs codes billed on two claims for the same patient, date and rendering NPI, not for another NPI."""
    first = apply_edits([], "C1", "M1", "2026-03-10")
    second = apply_edits([on(0, procedure_code="64615", modifier_1=None, muscles=None), on(1, units=50)],
                         "C2", "M1", "2026-03-10")
    v = find_violations(lines_frame(first + second), AS_OF)
    assert ("C2", "PTP-001") in set(zip(v.findings["claim_id"], v.findings["rule"], strict=True))
    for line in second:
        line["rendering_npi"] = "1234567893"
    v = find_violations(lines_frame(first + second), AS_OF)
    assert "PTP-001" not in set(v.findings["rule"])


@pytest.mark.parametrize("edits, rule, value", [
    ([every(dx_2="G51.34", dx_pointer="A")], "CODE-001", "G51.34 (not in ICD-10-CM FY2026)"),
    ([on(0, procedure_code="64613")], "CODE-002", "64613 ended 2013-12-31"),
    ([on(0, modifier_2="ZZ")], "CODE-003", "ZZ on 64612"),
    ([on(0, place_of_service="02")], "CODE-004", "telehealth POS 02 on 64612"),
    ([every(place_of_service="98")], "CODE-004", "POS 98 is not a CMS place-of-service code"),
])
def test_code_sets_on_the_date_of_service(edits, rule, value):
    """It flags a code that does not exist or is not in force on the date of service, as an error."""
    v = _scrub(edits, "2026-03-12")
    hit = v.findings[v.findings["rule"] == rule]
    assert len(hit) == 1 and hit["severity"].iat[0] == "error" and hit["value"].iat[0] == value


def test_code_set_outside_the_shipped_releases_is_not_checked_never_passed():
    """It reports CODE-001 as not checked for a file dated before the oldest release or after the newest, and
    as checked on part of the lines when some dates are covered."""
    v = _scrub([every(dx_2="G51.34", dx_pointer="A")], "2020-05-12")  # before FY2021, the oldest shipped
    assert "CODE-001" not in set(v.findings["rule"])
    assert "outside the icd10cm tables" in v.not_checked["CODE-001"]
    lines = (apply_edits([every(dx_2="G51.34", dx_pointer="A")], "C1", "M1", "2026-10-12")  # after FY2026
             + apply_edits([every(dx_2="G51.34", dx_pointer="A")], "C2", "M2", "2026-01-12"))
    v = find_violations(lines_frame(lines), AS_OF)
    assert list(v.findings.loc[v.findings["rule"] == "CODE-001", "claim_id"]) == ["C2"]
    assert "CODE-001" not in v.not_checked and "2 of 4 dated lines" in v.reference["partly"]["CODE-001"]


def test_code_set_between_two_releases_is_judged_from_both():
    """For a date between two shipped ICD-10-CM releases (FY2024: between FY2023 and FY2025) a code billable in
    both passes, a code in no release is the error, and a code billable in one of the two only (A41.54, new
    in FY2024; B60.0, a header since) leaves CODE-001 not checked on that claim: the Summary counts it as
    checked in part and says which releases judged the dates."""
    lines = []
    for claim, dx in (("OK", "G24.5"), ("BAD", "G51.34"), ("NEW", "A41.54"), ("OLD", "B60.0")):
        lines += apply_edits([every(dx_2=dx, dx_pointer="A")], claim, "M-" + claim, "2024-05-14")
    v = find_violations(lines_frame(lines), dt.date(2024, 6, 30))
    code = v.findings[v.findings["rule"] == "CODE-001"]
    assert list(code["claim_id"]) == ["BAD"]
    assert code["value"].iat[0] == "G51.34 (not in ICD-10-CM FY2023 or FY2025)"
    assert "CODE-001" not in v.not_checked
    assert "not checked on 2 claim(s)" in v.reference["partly"]["CODE-001"]
    assert sorted(v.claims.loc[v.claims["dx_not_judged"], "claim_id"]) == ["NEW", "OLD"]
    icd = next(u for u in v.reference["tables"] if u["kind"] == "icd10cm")
    assert icd["uncovered_lines"] == 0
    assert icd["bracketed"] == [{"between": ["FY2023", "FY2025"], "dates": "2023-04-01 to 2024-09-30",
                                 "lines": len(lines)}]
    assert any("judged from the FY2023 and FY2025 releases" in w for w in v.reference["warnings"])
    s = summarize("f.csv", "", len(lines), lines_frame(lines), v.findings, v.claims, v.not_checked, "2024-06-30",
                  "r", "0", v.reference)
    assert (s.claims_with_errors, s.claims_checked_in_part, s.clean_claims) == (1, 2, 1)


def test_imported_mue_table_takes_precedence_for_its_dates(tmp_path):
    """It uses an imported MUE table for the dates it covers and the shipped one elsewhere."""
    official = tmp_path / "MCR_MUE_PractitionerServices.csv"
    _mue_file(official, 2)
    table = R.build_table("mue", [official], tmp_path / "ref", "2026-Q3", dt.date(2026, 7, 1), partial=True)
    assert (table.covers_to, table.rows, table.origin) == ("2026-09-30", 2, "imported")
    config = ScrubConfig(reference_dir=tmp_path / "ref")
    assert "MUE-001" not in set(_scrub(_RT_LT, "2026-08-04", config).findings["rule"])
    assert "MUE-001" in set(_scrub(_RT_LT, "2026-05-04", config).findings["rule"])
    used = _scrub(_RT_LT, "2026-08-04", config).reference["tables"]
    mue = next(u for u in used if u["kind"] == "mue")
    assert [t["version"] + " " + t["origin"] for t in mue["tables"]] == ["2026-Q3 imported"]


def test_official_ptp_file_dates_are_respected(tmp_path):
    """It reads CMS's dated PTP layout and applies a pair only between its effective and deletion dates."""
    f1 = tmp_path / "ccipra-v323r0-f1.txt"
    f1.write_text("Column 1\tColumn 2\t*=in existence prior to 1996\tEffective Date\tDeletion Date\tModifier\tRationale\n"
                  "64612\t64615\t\t20260701\t20260801\t0\tMutually exclusive procedures\n"
                  "64612\t96372\t\t20260701\t*\t9\tNot applicable\n")
    R.build_table("ptp", [f1], tmp_path / "ref", "2026-Q3", dt.date(2026, 7, 1), partial=True)
    config = ScrubConfig(reference_dir=tmp_path / "ref")
    pair = [add(line_no=3, procedure_code="64615", modifier_1=None, muscles=None)]
    assert "PTP-001" in set(_scrub(pair, "2026-07-15", config).findings["rule"])
    assert "PTP-001" not in set(_scrub(pair, "2026-08-15", config).findings["rule"])  # deleted 2026-08-01


@pytest.mark.parametrize("kind, content, says", [
    ("mue", "Column 1,Column 2,Modifier\n64612,64615,0\n", "not an NCCI MUE table"),
    ("ptp", "HCPCS/CPT Code,Practitioner Services MUE Values,MUE Adjudication Indicator\n64612,1,2\n",
     "not an NCCI PTP edit file"),
    ("icd10cm", "64612,1,2\n", "not an ICD-10-CM order file"),
    ("hcpcs", "code,description\nJ0585,toxin\n", "not a CMS HCPCS annual file"),
])
def test_import_refuses_a_file_that_is_not_what_it_claims(tmp_path, kind, content, says):
    """It refuses, with one line naming the file, a file whose shape is not the kind asked for, writing nothing."""
    bad = tmp_path / "download.csv"
    bad.write_text(content)
    with pytest.raises(R.RefDataError) as err:
        R.build_table(kind, [bad], tmp_path / "ref", "x", dt.date(2026, 7, 1))
    assert str(err.value).startswith("download.csv: " + says) and "\n" not in str(err.value)
    assert not (tmp_path / "ref").exists()


def test_hcpcs_import_gives_procedure_dates_and_modifiers(tmp_path):
    """It reads the HCPCS annual file's codes with their add and termination dates, and its modifiers."""
    f = tmp_path / "HCPC2027_CONTR_ANWEB.csv"
    pd.DataFrame({"HCPC": ["J0585", "J9999", "ZZ", "KX"], "SEQNUM": ["1", "1", "1", "1"],
                  "ADD_DT": ["20000101", "20270101", "19900101", "19900101"],
                  "TERM_DT": ["", "", "20261231", ""]}).to_csv(f, index=False)
    R.build_table("hcpcs", [f], tmp_path / "ref", "2027", dt.date(2027, 1, 1))
    kinds = {t.kind: t for t in R.tables(tmp_path / "ref") if t.origin == "imported"}
    shipped = {k: R.of_kind(k)[-1].rows for k in ("procedures", "modifiers")}
    assert kinds["procedures"].rows == 2 + shipped["procedures"] - 1  # J0585 is the file's; the others kept
    assert kinds["modifiers"].rows == 2 + shipped["modifiers"] - 1  # KX is the file's (ZZ is not shipped)
    config = ScrubConfig(reference_dir=tmp_path / "ref")
    v = _scrub([on(0, modifier_2="ZZ")], "2027-02-01", config)
    assert "CODE-003" in set(v.findings["rule"])  # ZZ terminated 2026-12-31 in this file


# --- importing what a user downloads (issue 19): real files written, imported, then scrubbed ---------------------

def _hcpcs_file(path) -> None:
    """The CMS alpha-numeric HCPCS file as published: Level II codes and Level II modifiers only (no CPT)."""
    path.write_text(
        "HCPC,SEQNUM,RECID,LONG DESCRIPTION,SHORT DESCRIPTION,ADD_DT,ACT_EFF_DT,TERM_DT,ACTION_CD\n"
        'J0585,0010,3,"Injection, onabotulinumtoxina, 1 unit",Onabotulinumtoxina,20000101,20000101,,N\n'
        'J0586,0010,3,"Injection, abobotulinumtoxina, 5 units",Abobotulinumtoxina,20100101,20100101,,N\n'
        "JZ,0010,7,Zero drug amount discarded,Zero drug wastage,20230101,20230101,,N\n"
        "RT,0010,7,Right side,Right side,19890101,19890101,,N\n"
        "LT,0010,7,Left side,Left side,19890101,19890101,,N\n")


def test_hcpcs_import_keeps_the_cpt_codes_modifiers_and_deletions_it_does_not_carry(tmp_path):
    """After importing the HCPCS file (Level II only) a clean 64612-50 claim stays clean (50 and 25 are CPT
    modifiers, not in the file), 64613 (deleted from CPT in 2014) is still the CODE-002 error, and the table's
    note says what was kept from the shipped tables."""
    f = tmp_path / "HCPC2026_CONTR_ANWEB.csv"
    _hcpcs_file(f)
    made = R.build_tables("hcpcs", [f], tmp_path / "ref", "2026", dt.date(2026, 1, 1))
    assert {t.kind for t in made} == {"procedures", "modifiers"}
    assert all("merged with the shipped" in t.note for t in made)
    config = ScrubConfig(reference_dir=tmp_path / "ref")
    v = _scrub([], "2026-11-20", config)
    assert "CODE-003" not in set(v.findings["rule"]) and "CODE-003" not in v.not_checked
    v = _scrub([add(line_no=3, procedure_code="99213", modifier_1="25", units=1, muscles=None)], "2026-03-10", config)
    assert "CODE-003" not in set(v.findings["rule"])
    v = _scrub([on(0, procedure_code="64613")], "2026-11-20", config)
    hit = v.findings[v.findings["rule"] == "CODE-002"]
    assert list(hit["value"]) == ["64613 ended 2013-12-31"]
    procedures = next(u for u in v.reference["tables"] if u["kind"] == "procedures")
    assert [t["version"] + " " + t["origin"] for t in procedures["tables"]] == ["2026 imported"]


def _crosswalk_file(path) -> None:
    """The CMS ASP NDC-HCPCS crosswalk as published: title lines, then the header (``_2027_CODE``, NDC2 ...),
    Windows-1252 text with CRLF line ends. 00259-1630 is a product the shipped toxin table does not list."""
    title = ['"January 2027 ASP NDC-HCPCS Crosswalk"', '"Effective January 1, 2027"', '""',
             '"CPT codes, descriptions and other data only are copyright 2026 American Medical Association."',
             '""', '""', '""', '""']
    rows = ["_2027_CODE,Short Description,LABELER NAME,NDC2,Drug Name,HCPCS dosage,PKG SIZE,PKG QTY,BILLUNITS,"
            "BILLUNITSPKG",
            "J0585,Injection onabotulinumtoxina,Allergan Inc,00023-1145-01,Botox,1 UNIT,100,1,100,100",
            "J0588,Incobotulinumtoxin a,Merz Pharmaceuticals,00259-1630-01,Xeomin,1 UNIT,300,1,300,300",
            "J9035,Injection bevacizumab,Genentech,50242-0060-01,Avastin\u00ae,10 MG,4,1,10,10"]
    path.write_bytes("\r\n".join(title + rows).encode("cp1252") + b"\r\n")


def test_asp_crosswalk_import_feeds_ndc001_and_keeps_the_cosmetic_only_products(tmp_path):
    """An imported ASP crosswalk decides NDC-001 for its quarter: a product it maps to another J-code is the error
    (the shipped table does not list it: quiet without the import); a cosmetic-only product (never in the
    crosswalk) is still the error; the run names the imported version and no longer warns past coverage."""
    f = tmp_path / "January 2027 ASP NDC-HCPCS Crosswalk.csv"
    _crosswalk_file(f)
    table = R.build_table("ndc", [f], tmp_path / "ref", "2027-Q1", dt.date(2027, 1, 1))
    assert (table.covers_to, table.origin) == ("2027-03-31", "imported")
    assert "cosmetic-only" in table.note
    wrong = [on(1, ndc="00259-1630-01")]
    assert "NDC-001" not in set(_scrub(wrong, "2027-02-10").findings["rule"])  # shipped table: not listed
    config = ScrubConfig(reference_dir=tmp_path / "ref")
    v = _scrub(wrong, "2027-02-10", config)
    hit = v.findings[v.findings["rule"] == "NDC-001"]
    assert list(hit["value"]) == ["00259-1630-01 is Xeomin (billed on J0588), not J0585"]
    ndc = next(u for u in v.reference["tables"] if u["kind"] == "ndc")
    assert [t["version"] + " " + t["origin"] for t in ndc["tables"]] == ["2027-Q1 imported"]
    assert not any("ndc table" in w for w in v.reference["warnings"])
    v = _scrub([on(1, ndc="00023-9232-01")], "2027-02-10", config)
    assert "cosmetic-only" in v.findings.loc[v.findings["rule"] == "NDC-001", "value"].iat[0]
    assert not _scrub([], "2027-02-10", config).findings["rule"].eq("NDC-001").any()  # Botox on J0585
    assert "NDC-001" not in set(_scrub(wrong, "2026-11-10", config).findings["rule"])  # before its quarter


_NOT_TABLES = {
    "random.csv": bytes(range(256)) * 40,
    "download.bin": b"\x00\x01\x02garbage\x00" * 100,
    "readme.pdf": b"%PDF-1.6\n%\xc3\xa4\n2 0 obj\n<< /Length 3 0 R >>\nstream\n",
    "broken.xlsx": b"this is not a spreadsheet" * 10,
    "empty.csv": b"",
}


@pytest.mark.parametrize("kind", ["mue", "ptp", "hcpcs", "ndc"])
@pytest.mark.parametrize("name", sorted(_NOT_TABLES))
def test_a_file_that_is_no_table_is_refused_in_one_line(tmp_path, kind, name):
    """A binary, PDF, damaged spreadsheet or empty file is refused with one line naming it (no traceback)."""
    bad = tmp_path / name
    bad.write_bytes(_NOT_TABLES[name])
    with pytest.raises(R.RefDataError) as err:
        R.build_table(kind, [bad], tmp_path / "ref", "x", dt.date(2026, 7, 1))
    assert str(err.value).startswith(name + ": ") and "\n" not in str(err.value)
    assert not (tmp_path / "ref").exists()


def test_mue_table_with_cr_line_ends_and_a_title_naming_mue_is_read(tmp_path):
    """An MUE table saved with old-Mac CR-only line ends, below a title line that names the MUE table, is read
    from its real header: its 64612 limit of 2 then lets RT + LT pass."""
    f = tmp_path / "mue_titled.csv"
    f.write_bytes(b'"Medicare NCCI Practitioner Services MUE Table, effective 2026-07-01"\r'
                  b'"CPT codes, descriptions and other data only are copyright 2025 American Medical Association."\r'
                  b'"HCPCS/CPT Code","Practitioner Services MUE Values","MUE Adjudication Indicator"\r'
                  b'"64612","2","2 Date of Service Edit: Policy"\r"J0585","600","3 Date of Service Edit: Clinical"\r')
    table = R.build_table("mue", [f], tmp_path / "ref", "2026-Q3", dt.date(2026, 7, 1), partial=True)
    assert table.rows == 2
    config = ScrubConfig(reference_dir=tmp_path / "ref")
    assert "MUE-001" not in set(_scrub(_RT_LT, "2026-08-04", config).findings["rule"])


@pytest.mark.parametrize("kind, content, says", [
    ("mue", "HCPCS/CPT Code,Practitioner Services MUE Values,MUE Adjudication Indicator\n64612,1,2 Policy\n"
            "64615,one,2 Policy\n",
     "row 3, column 'Practitioner Services MUE Values': 'one' is not a whole number of units"),
    ("mue", "HCPCS/CPT Code,Practitioner Services MUE Values,MUE Adjudication Indicator\n64612,1,2 Policy\n"
            "64615,1,7 Policy\n",
     "row 3, column 'MUE Adjudication Indicator': '7 Policy' is not an adjudication indicator 1, 2 or 3"),
    ("ptp", "Column 1\tColumn 2\t*\tEffective Date\tDeletion Date\tModifier\tRationale\n"
            "64612\t64615\t\t20140101\t*\t0\tMisuse\n64612\t95870\t\t20140101\t*\tx\tMisuse\n",
     "row 3, column 6 (modifier indicator): 'x' is not 0, 1 or 9"),
    ("ndc", "_2026_CODE,Short Description,LABELER NAME,NDC2,Drug Name\nJ0585,Botox,Allergan,00023-1145-01,Botox\n"
            "J05,Botox,Allergan,00023-3921-02,Botox\n",
     "row 3, column '_2026_CODE': 'J05' is not a 5-character HCPCS code"),
])
def test_a_bad_row_is_named_with_its_column_and_value(tmp_path, kind, content, says):
    """It names the row, the column and the value that is wrong."""
    bad = tmp_path / "download.csv"
    bad.write_text(content)
    with pytest.raises(R.RefDataError) as err:
        R.build_table(kind, [bad], tmp_path / "ref", "x", dt.date(2026, 7, 1), partial=True)
    assert says in str(err.value) and str(err.value).startswith("download.csv: ")


def test_partial_mue_and_ptp_tables_are_refused_and_the_shipped_edits_still_apply(tmp_path):
    """A 3-row PTP file or a 2-row MUE table is refused as far smaller than the official one (the scrub then still
    finds 64612 + 95870 on the shipped edits); so is a PTP set missing some of its four files; --partial
    (``partial=True``) loads them on purpose, saying so in the table's note."""
    ptp = tmp_path / "ptp_edits.txt"
    ptp.write_text("Column 1\tColumn 2\t*\tEffective Date\tDeletion Date\tModifier\tRationale\n"
                   "64612\t64615\t\t20140101\t*\t0\tMisuse\n64612\t95867\t\t20020101\t*\t0\tStandards\n"
                   "64612\t99213\t\t20000101\t*\t1\tStandards\n")
    with pytest.raises(R.RefDataError, match=r"only 3 PTP pairs, too few for the official table"):
        R.build_table("ptp", [ptp], tmp_path / "ref", "2026-Q1", dt.date(2026, 1, 1))
    assert not (tmp_path / "ref").exists()
    f1, f3 = tmp_path / "ccipra-v321r0-f1.txt", tmp_path / "ccipra-v321r0-f3.txt"
    f1.write_text(ptp.read_text())
    f3.write_text(ptp.read_text())
    with pytest.raises(R.RefDataError, match=r"4 files and f2, f4 are missing"):
        R.build_table("ptp", [f1, f3], tmp_path / "ref", "2026-Q1", dt.date(2026, 1, 1))
    config = ScrubConfig(reference_dir=tmp_path / "ref")
    emg = [add(line_no=3, procedure_code="95870", modifier_1=None, units=1, muscles=None)]
    assert "PTP-001" in set(_scrub(emg, "2026-02-10", config).findings["rule"])
    mue = tmp_path / "mue.csv"
    _mue_file(mue, 2)
    with pytest.raises(R.RefDataError, match=r"only 2 MUE codes.*--partial"):
        R.build_table("mue", [mue], tmp_path / "ref", "2026-Q1", dt.date(2026, 1, 1))
    table = R.build_table("ptp", [ptp], tmp_path / "ref", "2026-Q1", dt.date(2026, 1, 1), partial=True)
    assert "partial table" in table.note
    assert "PTP-001" not in set(_scrub(emg, "2026-02-10", config).findings["rule"])  # the user's choice
