"""The sheets' XML compressed while it is built (pipeline.sheetzip) and copied into the workbook's zip."""

import gc
import threading
import zipfile
import zlib

import pytest

from pipeline import sheetzip


def _pieces(seed: int = 7) -> list[bytes]:
    import random

    rng = random.Random(seed)
    words = [b"<c r=\"A1\">", b"G51.33", b"64612", b"J0585", b"</row>", b"orbicularis oculi", b"\xc3\xbc"]
    return [b"".join(rng.choice(words) for _ in range(rng.randrange(0, 40_000))) for _ in range(12)]


@pytest.mark.parametrize("threads", [True, False], ids=["helper-thread", "calling-thread"])
def test_deflater_gives_the_raw_deflate_crc_and_size_of_what_it_was_given(monkeypatch, threads):
    monkeypatch.setattr(sheetzip, "room_for_threads", lambda: threads)
    pieces = _pieces()
    deflater = sheetzip.Deflater()
    assert (deflater._thread is not None) == threads
    for piece in pieces:
        deflater.write(memoryview(piece))
    state = deflater.finish()
    data = b"".join(pieces)
    state.out.seek(0)
    assert zlib.decompress(state.out.read(), -15) == data
    assert (state.crc, state.size) == (zlib.crc32(data), len(data))
    with pytest.raises(ValueError, match="finished"):
        deflater.write(b"more")


def test_an_error_while_compressing_is_raised_by_finish(monkeypatch):
    deflater = sheetzip.Deflater()

    class Full:
        def write(self, data):
            raise OSError(28, "No space left on device")

    deflater._state.out = Full()
    for piece in _pieces():  # the helper drops what follows the error; writing never blocks
        deflater.write(piece)
    with pytest.raises(OSError, match="No space"):
        deflater.finish()


def test_a_dropped_deflater_ends_its_thread():
    """A sheet whose building failed leaves no thread behind."""
    deflater = sheetzip.Deflater()
    deflater.write(b"<row/>")
    thread = deflater._thread
    assert thread.is_alive()
    del deflater
    gc.collect()
    thread.join(10)
    assert not thread.is_alive()


def _book(path) -> None:
    from openpyxl import Workbook

    from pipeline.xlsxrows import Column, Link, stream_rows

    wb = Workbook(write_only=True)
    small = wb.create_sheet("Small")
    small.append(["plain", 1])
    n = 9_000
    big = wb.create_sheet("Big")
    big.freeze_panes = "A2"
    stream_rows(big, ["claim", "units", "note"], [
        Column([f"C{i:06d}" for i in range(n)], links={3: Link("'Other'!A2", "go")}),
        Column(list(range(n))),
        Column([None if i % 5 else f" spaced & <{i}> " for i in range(n)]),
    ])
    stream_rows(wb.create_sheet("Other"), ["x"], [Column(["a", "b"])])
    wb.save(path)


def _members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None  # every member's CRC checked
        for info in z.infolist():
            assert info.compress_type == zipfile.ZIP_DEFLATED, info.filename
        return {name: z.read(name) for name in z.namelist() if name != "docProps/core.xml"}  # core: save time


def test_streamed_sheets_are_the_same_members_however_they_are_compressed(tmp_path, monkeypatch):
    """Compressed on a helper thread and copied in as they are; on the calling thread; through
    zipfile's own compressor (a zipfile without the internals used): the same workbook, which
    openpyxl reads back."""
    from openpyxl import load_workbook

    _book(tmp_path / "threads.xlsx")
    expected = _members(tmp_path / "threads.xlsx")
    with zipfile.ZipFile(tmp_path / "threads.xlsx") as z:
        big = z.getinfo("xl/worksheets/sheet2.xml")
        assert big.compress_size < big.file_size / 5
    back = load_workbook(tmp_path / "threads.xlsx")
    assert back["Big"].max_row == 9_001 and back["Big"]["A9001"].value == "C008999"
    assert back["Big"]["C2"].value == " spaced & <0> " and back["Big"]["A5"].hyperlink.location == "'Other'!A2"
    assert back["Small"]["A1"].value == "plain" and back["Other"]["A3"].value == "b"

    with monkeypatch.context() as m:
        m.setattr(sheetzip, "room_for_threads", lambda: False)
        _book(tmp_path / "inline.xlsx")
    with monkeypatch.context() as m:
        m.setattr(sheetzip, "_WRITER_FIELDS", (*sheetzip._WRITER_FIELDS, "_not_in_this_zipfile"))
        _book(tmp_path / "recompressed.xlsx")
    for name in ("inline", "recompressed"):
        assert _members(tmp_path / f"{name}.xlsx") == expected, name
    assert not [t for t in threading.enumerate() if t.name == "claimscrub-deflate"]
