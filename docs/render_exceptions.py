"""Render the Exceptions sheet of a real exceptions workbook to docs/exceptions.png.

Needs LibreOffice (soffice) and poppler (pdftoppm): `python docs/render_exceptions.py WORKBOOK`.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

from openpyxl import load_workbook


def main(workbook: str, out: str = "docs/exceptions.png") -> None:
    wb = load_workbook(workbook)
    for name in wb.sheetnames:
        if name != "Exceptions":
            del wb[name]
    ws = wb["Exceptions"]
    for col in ("E", "M", "O", "P"):  # hide wide or empty columns so the picture stays readable
        ws.column_dimensions[col].hidden = True
    ws.column_dimensions["L"].width = 95
    ws.column_dimensions["K"].width = 34
    from openpyxl.styles import Alignment

    for row in ws.iter_rows(min_row=2):
        for cell in row:
            cell.alignment = Alignment(wrap_text=False, vertical="top")
    ws.page_setup.orientation = "landscape"
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.print_area = "A1:P18"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "exceptions.xlsx"
        wb.save(src)
        subprocess.run(["soffice", "--headless", "--norestore", f"-env:UserInstallation=file://{tmp}/profile",
                        "--convert-to", "pdf", "--outdir", tmp, str(src)], check=True, capture_output=True)
        subprocess.run(["pdftoppm", "-png", "-r", "160", "-singlefile", "-x", "100", "-y", "150", "-W", "1640", "-H", "420", "-f", "1", "-l", "1",
                        str(Path(tmp) / "exceptions.pdf"), str(Path(out).with_suffix(""))], check=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
