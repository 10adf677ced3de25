"""Pictures of a real exceptions workbook as LibreOffice prints it, unedited (README).

Needs LibreOffice (soffice) and poppler-utils (pdftotext, pdftoppm):
`python docs/render_exceptions.py WORKBOOK [OUT_FOLDER]` writes OUT_FOLDER/summary.png, worklist.png
and exceptions.png (default docs/): the first printed page of each of those sheets, as LibreOffice Calc
renders the workbook to PDF with the print setup claimscrub writes (nothing hidden, resized or cropped).
"""

import subprocess
import sys
import tempfile
from pathlib import Path

FIRST_WORD = {"summary": "claimscrub:", "worklist": "Priority", "exceptions": "Exception"}


def main(workbook: str, out: str = "docs") -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["soffice", "--headless", "--norestore", f"-env:UserInstallation=file://{tmp}/profile",
                        "--convert-to", "pdf", "--outdir", tmp, workbook], check=True, capture_output=True)
        pdf = Path(tmp) / Path(workbook).with_suffix(".pdf").name
        text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True,
                              text=True).stdout
        firsts = [page.split()[0] if page.split() else "" for page in text.split("\f")]
        for name, word in FIRST_WORD.items():
            page = firsts.index(word) + 1
            target = Path(out) / f"{name}.png"
            subprocess.run(["pdftoppm", "-png", "-r", "110", "-singlefile", "-f", str(page), "-l", str(page),
                            str(pdf), str(target.with_suffix(""))], check=True)
            print(f"wrote {target} (page {page})")


if __name__ == "__main__":
    main(*sys.argv[1:])
