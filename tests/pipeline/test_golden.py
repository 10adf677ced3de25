"""Golden workbook: the mixed sample's workbook, compared by values (never bytes) with a committed file.

Regenerate on purpose only: ``UPDATE_GOLDEN=1 make test``, then review the diff.
"""

import os
import shutil
import subprocess

import pytest
from openpyxl import load_workbook

from pipeline.config import load_config
from pipeline.scrub import scrub_file
from tests.conftest import AS_OF, ROOT, SAMPLES

GOLDEN = ROOT / "tests" / "golden" / "scrub_report.xlsx"
VOLATILE = {"Generated at"}  # the only run-dependent cell (Summary sheet)


def _values(path):
    wb = load_workbook(path)
    out = {}
    for ws in wb.worksheets:
        if ws.sheet_state != "visible":  # the hidden Review State sheet: run dates, not what a reviewer sees
            continue
        rows = []
        for row in ws.iter_rows(values_only=True):
            if ws.title == "Summary" and row and row[0] in VOLATILE:
                continue
            rows.append(tuple(row))
        out[ws.title] = rows
    return out


def _layout(path):
    """What the design sets per sheet: widths, wrapped row heights, panes, filter and print setup."""
    wb = load_workbook(path)
    out = {}
    for ws in wb.worksheets:
        out[ws.title] = {
            "widths": {k: d.width for k, d in sorted(ws.column_dimensions.items())},
            "heights": {r: d.height for r, d in sorted(ws.row_dimensions.items()) if d.height},
            "panes": ws.freeze_panes, "filter": ws.auto_filter.ref, "titles": ws.print_title_rows,
            "print": (ws.page_setup.orientation, ws.page_setup.fitToWidth, ws.page_setup.fitToHeight),
        }
    return out


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    out = tmp_path_factory.mktemp("golden")
    return scrub_file(SAMPLES / "mixed.csv", out, load_config(SAMPLES / "claimscrub.toml"), AS_OF,
                      run_id="golden").workbook


def test_workbook_matches_golden(fresh):
    """It writes the same sheets and cell values as the reviewed golden workbook."""
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(fresh, GOLDEN)
    got, want = _values(fresh), _values(GOLDEN)
    assert list(got) == list(want)
    for sheet in want:
        assert got[sheet] == want[sheet], f"sheet {sheet} differs from the golden workbook"
    got, want = _layout(fresh), _layout(GOLDEN)
    for sheet in want:
        assert got[sheet] == want[sheet], f"the layout of sheet {sheet} differs from the golden workbook"


@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice is not installed")
def test_status_dropdown_survives_a_libreoffice_save(fresh, tmp_path):
    """It keeps the Status drop-down and the values after LibreOffice opens and saves the file."""
    subprocess.run(["soffice", "--headless", "--norestore", f"-env:UserInstallation=file://{tmp_path}/profile",
                    "--convert-to", "xlsx:Calc MS Excel 2007 XML", "--outdir", str(tmp_path / "saved"),
                    str(fresh)], check=True, capture_output=True, timeout=180)
    saved = load_workbook(tmp_path / "saved" / fresh.name)
    (dv,) = saved["Exceptions"].data_validations.dataValidation
    assert dv.type == "list" and "Payer confirmed" in dv.formula1 and str(dv.sqref).startswith("N2:N")
    assert [c.value for c in saved["Exceptions"][1]] == [c.value for c in load_workbook(fresh)["Exceptions"][1]]
