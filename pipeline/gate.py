"""The format gate: classify a file by its first bytes and refuse dangerous containers before parsing.

Runs before any spreadsheet parser. Raises ``IngestError`` with a reason code; returns the kind
("zip", "cfb" or "text") otherwise.
"""

import zipfile
from pathlib import Path

from pipeline.errors import IngestError
from schemas.rules.file import UNREADABLE

ZIP_MAGIC = b"PK\x03\x04"
CFB_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
MAX_ENTRIES = 5_000
MAX_ENTRY_BYTES = 1 << 30  # 1 GiB inflated for one part
MAX_TOTAL_BYTES = 2 << 30  # 2 GiB inflated for the whole workbook
MAX_RATIO = 200  # inflated / compressed, for parts over 1 MiB
XML_HEAD_BYTES = 4096
MAX_TEXT_BYTES = 1 << 30


def classify(path: Path) -> str:
    """"zip" (OOXML, ODS), "cfb" (legacy .xls or an encrypted workbook) or "text" (CSV/TSV)."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
    if not head:
        raise IngestError("E_EMPTY", UNREADABLE.id, "the file is empty (0 bytes)", path.name)
    if head.startswith(ZIP_MAGIC):
        zip_preflight(path)
        return "zip"
    if head.startswith(CFB_MAGIC):
        if cfb_is_encrypted(path):
            raise IngestError("E_ENCRYPTED", UNREADABLE.id,
                              "the workbook is password-protected; remove the password and drop it again",
                              path.name)
        return "cfb"
    if path.stat().st_size > MAX_TEXT_BYTES:
        raise IngestError("E_TOO_LARGE", UNREADABLE.id, "the text file is larger than 1 GiB", path.name)
    return "text"


def cfb_is_encrypted(path: Path) -> bool:
    """An encrypted OOXML workbook is a CFB container holding ``EncryptionInfo``/``EncryptedPackage``."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    return "EncryptionInfo".encode("utf-16-le") in head or "EncryptedPackage".encode("utf-16-le") in head


def zip_preflight(path: Path) -> None:
    """Refuse zip bombs, unsafe names, missing parts and XML with DTDs before any parser sees them."""
    name = Path(path).name

    def refuse(code: str, reason: str) -> None:
        raise IngestError(code, UNREADABLE.id, reason, name)

    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            if len(infos) > MAX_ENTRIES:
                refuse("E_TOO_LARGE", f"the workbook has {len(infos)} parts (limit {MAX_ENTRIES})")
            total = 0
            names = set()
            for info in infos:
                n = info.filename
                names.add(n)
                if n.startswith(("/", "\\")) or ".." in n.replace("\\", "/").split("/"):
                    refuse("E_CORRUPT_ZIP", "the workbook has a part with an unsafe path")
                total += info.file_size
                if info.file_size > MAX_ENTRY_BYTES or total > MAX_TOTAL_BYTES:
                    refuse("E_TOO_LARGE", "the workbook inflates to more than the size limit")
                if info.file_size > (1 << 20) and info.file_size > MAX_RATIO * max(info.compress_size, 1):
                    refuse("E_TOO_LARGE", "the workbook is compressed suspiciously well (possible zip bomb)")
            is_ods = "content.xml" in names and "mimetype" in names
            if not is_ods and ("[Content_Types].xml" not in names or not (
                    {"xl/workbook.xml", "xl/workbook.bin"} & names)):
                refuse("E_CORRUPT_ZIP", "the zip is not a workbook (required parts missing)")
            for info in infos:
                if info.filename.lower().endswith((".xml", ".rels", ".vml")):
                    with z.open(info) as part:
                        head = part.read(XML_HEAD_BYTES).upper()
                    if b"<!DOCTYPE" in head or b"<!ENTITY" in head:
                        refuse("E_UNSAFE_XML", "the workbook contains XML with a DTD (entity expansion or "
                                               "external reference), which is never parsed")
    except IngestError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
        refuse("E_CORRUPT_ZIP", f"the workbook is damaged or truncated ({type(exc).__name__})")
