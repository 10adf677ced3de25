"""The workbooks as LibreOffice Calc prints them: every sheet rendered to PDF and read back.

One soffice conversion for the module (it takes seconds). The PDF's words and their boxes
(``pdftotext -bbox``, poppler-utils) show what a reviewer sees: no ``###`` for a column too narrow,
every sheet printed with its header, and each wrapped cell's text drawn inside its own row (a row
too short for its text has LibreOffice draw the text over the row above: the words then fall in
another row's band). Skipped, saying so, where LibreOffice or poppler-utils is not installed
(``.ci/run`` installs both).
"""

import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from openpyxl import load_workbook

from pipeline.config import load_config
from pipeline.report import SHEETS
from pipeline.scrub import scrub_file
from tests.conftest import AS_OF, SAMPLES

_MISSING = [tool for tool in ("soffice", "pdftotext") if shutil.which(tool) is None]
pytestmark = pytest.mark.skipif(
    bool(_MISSING), reason=f"LibreOffice rendering tests skipped: {', '.join(_MISSING)} not installed "
    "(apt-get install libreoffice-calc-nogui poppler-utils; .ci/run does)")

_WORD = re.compile(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>')


def _pages(pdf: Path) -> list[list[tuple[float, float, float, float, str]]]:
    """Each page's words with their boxes (x0, y0, x1, y1, text), in points from the page's top left."""
    out = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], check=True, capture_output=True, text=True).stdout
    return [[(float(a), float(b), float(c), float(d), html.unescape(t)) for a, b, c, d, t in _WORD.findall(page)]
            for page in out.split("</page>")[:-1]]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The messy and mixed samples' workbooks, scrubbed and rendered by LibreOffice in one conversion."""
    out = tmp_path_factory.mktemp("lo")
    config = load_config(SAMPLES / "claimscrub.toml")
    books = [scrub_file(SAMPLES / name, out, config, AS_OF, run_id="lo").workbook for name in ("messy.xlsx",
                                                                                               "mixed.csv")]
    subprocess.run(["soffice", "--headless", "--norestore", f"-env:UserInstallation=file://{out}/profile",
                    "--convert-to", "pdf", "--outdir", str(out / "pdf"), *map(str, books)],
                   check=True, capture_output=True, timeout=240)
    return {book.name: (book, _pages(out / "pdf" / book.with_suffix(".pdf").name)) for book in books}


def test_every_sheet_is_printed_with_no_hashes(rendered):
    """It prints every sheet (its header row on each page), and no cell shows ### for want of width."""
    first_header = {"Summary": "claimscrub:", "Worklist": "Priority", "Exceptions": "Exception",
                    "Claims": "Row", "Ingest Issues": "File", "Rules": "Rule"}
    for name, (_book, pages) in rendered.items():
        text = " ".join(w[4] for page in pages for w in page)
        assert "###" not in text, name
        tops = [min(page, key=lambda w: (round(w[1]), w[0]))[4] for page in pages if page]
        summary = next(i for i, t in enumerate(tops) if t == first_header["Worklist"])  # the Summary's pages
        assert tops[0] == first_header["Summary"], name
        # Every other sheet, in order, with its header row at the top of each of its pages.
        assert [first_header[s] for s in SHEETS[1:]] == list(dict.fromkeys(tops[summary:])), name
        assert all(t in first_header.values() for t in tops[summary:]), name


def _bands(page, ids: set[str], id_right: float) -> list[tuple[str, float, float]]:
    """The rows of a page as (id, top, bottom) bands: a row's id cell is one line, drawn at the row's foot
    (cells sit at the bottom of their row), so its row spans from the previous id's foot to its own."""
    feet = sorted((w[3], w[4]) for w in page if w[4] in ids and w[2] <= id_right)
    header_foot = min(w[3] for w in page)
    out, top = [], header_foot
    for foot, ident in feet:
        out.append((ident, top, foot))
        top = foot
    return out


def _words_of(page, left: float, right: float, top: float, bottom: float) -> str:
    return " ".join(w[4] for w in sorted(page, key=lambda w: (round(w[1], 0), w[0]))
                    if left - 0.5 <= w[0] < right - 0.5 and top < (w[1] + w[3]) / 2 <= bottom)


@pytest.mark.parametrize(("sheet", "id_header", "column", "next_column", "id_col", "text_col"), [
    ("Exceptions", "Exception", "Message", "Suggested", 0, 11),
    ("Exceptions", "Exception", "Suggested", "Status", 0, 12),
    ("Rules", "Rule", "What", "Suggested", 0, 3),
])
def test_wrapped_text_stays_in_its_row(rendered, sheet, id_header, column, next_column, id_col, text_col):
    """It draws each wrapped cell's whole text inside its own row: the words printed between a row's top
    and foot, in that column, are the cell's text (none drawn over a neighbouring row)."""
    book, pages = rendered["mixed.exceptions.xlsx"]
    ws = load_workbook(book)[sheet]
    want = {r[id_col]: " ".join(str(r[text_col]).split()) for r in ws.iter_rows(min_row=2, values_only=True)}
    checked = 0
    for page in pages:
        heads = {w[4]: w for w in page if w[1] - min(x[1] for x in page) < 2}  # the header row's words
        if id_header not in heads or column not in heads or next_column not in heads:
            continue
        if sheet == "Rules" and "Exception" in heads:
            continue
        left, right = heads[column][0], heads[next_column][0]
        id_right = heads[id_header][0] + 80
        for ident, top, bottom in _bands(page, set(want), id_right):
            got = _words_of(page, left, right, top, bottom)
            assert got.replace(" ", "") == want[ident].replace(" ", ""), (sheet, ident)
            checked += 1
    assert checked == len(want), f"{checked} of {len(want)} rows of {sheet} found in the PDF"


def test_summary_says_what_was_not_checked(rendered):
    """It prints, on the messy sample's Summary, the rule that could not run and the column it needs,
    and counts claims so that the categories add up to the total."""
    _, pages = rendered["messy.exceptions.xlsx"]
    text = " ".join(w[4] for w in pages[0])
    assert "Not checked, and why" in text and "HFS-028" in text and "Surgical Notes Documented" in text
    counts = {}
    for label in ("errors", "only", "part", "Clean", "Total"):
        line = re.search(rf"{label} .*? (\d[\d,]*) ", text)
        assert line, label
    wb = load_workbook(rendered["messy.exceptions.xlsx"][0])["Summary"]
    for row in wb.iter_rows(values_only=True):
        if row[0] in ("With errors", "With warnings only", "Checked in part", "Clean", "Total claims"):
            counts[row[0]] = row[3]
    assert counts["Total claims"] == sum(v for k, v in counts.items() if k != "Total claims")
    # HFS-028 could not run on any claim, so none is clean; both claims have errors (M-1 bills 64612 x2: MUE-001)
    assert counts["Clean"] == 0 and counts["With errors"] == 2 and counts["Total claims"] == 2
