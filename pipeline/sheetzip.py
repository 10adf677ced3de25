"""A large sheet's XML compressed on a helper thread while its rows are built, then copied into the
workbook's zip as it is.

openpyxl saves a workbook by compressing each sheet's XML file into the zip, one after the other, on
the calling thread: at 500k claim lines, about a quarter of the workbook's time. zlib releases the GIL
while it compresses, so a ``Deflater`` takes a sheet's XML as it is built and compresses it (raw
deflate at zlib's default level: what zipfile's ZIP_DEFLATED writes) on a helper thread; the
compressed bytes go to a temporary file. ``save_workbook`` is openpyxl's save, except that a sheet
with a ``Deflater`` goes into the zip as those bytes, with their CRC and size.

Near a memory limit, where a helper thread may not start (``threads.room_for_threads``), the same
work is done on the calling thread as the XML comes.
"""

import datetime as dt
import queue
import tempfile
import threading
import weakref
import zlib
from zipfile import ZIP_DEFLATED, ZipFile, ZipInfo

from pipeline.threads import room_for_threads

_STOP = object()
_BACKLOG = 3  # chunks waiting for the helper thread (a chunk of the Claims sheet is about 20 MB)
_COPY = 1 << 20
_WRITER_FIELDS = ("_compressor", "_crc", "_file_size")  # zipfile's member writer (3.11-3.14), set below


class _State:
    """What the compression has produced so far: the compressed file, the CRC and size of the input."""

    def __init__(self):
        self.out = tempfile.TemporaryFile()
        self.zip = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        self.crc = 0
        self.size = 0
        self.error: BaseException | None = None

    def take(self, data) -> None:
        if self.error is not None:
            return  # the first error is raised by finish(); the rest of the input is dropped
        try:
            self.crc = zlib.crc32(data, self.crc)
            self.size += len(memoryview(data).cast("B"))
            self.out.write(self.zip.compress(data))
        except BaseException as exc:  # a full disk, say: reported on the calling thread
            self.error = exc


def _work(backlog: queue.Queue, state: _State) -> None:
    while (data := backlog.get()) is not _STOP:
        state.take(data)


class Deflater:
    """Compress the bytes given to ``write`` in order; ``finish`` returns the state once all are in.

    The helper thread ends at ``finish``, or when the Deflater is dropped without it (a sheet whose
    building failed).
    """

    def __init__(self):
        self._state = _State()
        self._backlog: queue.Queue | None = None
        self._thread = None
        if room_for_threads():
            self._backlog = queue.Queue(_BACKLOG)
            self._thread = threading.Thread(target=_work, args=(self._backlog, self._state),
                                            name="claimscrub-deflate", daemon=True)
            self._thread.start()
            self._stop = weakref.finalize(self, self._backlog.put, _STOP)
        self._done = False

    def write(self, data) -> None:
        """Add bytes (bytes, or a buffer that is not changed afterwards)."""
        if self._done:
            raise ValueError("the deflater is finished")
        if self._backlog is None:
            self._state.take(data)
        else:
            self._backlog.put(data)

    def finish(self) -> _State:
        """Wait for the compression, end the stream; raises the helper's error, if any."""
        if not self._done:
            self._done = True
            if self._thread is not None:
                self._stop()  # puts the stop mark once
                self._thread.join()
            state = self._state
            if state.error is None:
                try:
                    state.out.write(state.zip.flush())
                except BaseException as exc:
                    state.error = exc
        if self._state.error is not None:
            raise self._state.error
        return self._state


class _AsIs:
    """A compressor that leaves the bytes as they are: they are compressed already."""

    @staticmethod
    def compress(data):
        return data

    @staticmethod
    def flush():
        return b""


def _write_deflated(archive: ZipFile, zinfo: ZipInfo, state: _State) -> None:
    """One zip member from bytes already deflated: the CRC and size are the uncompressed XML's."""
    zinfo.compress_type = ZIP_DEFLATED
    zinfo.file_size = state.size  # decides ZIP64 for the member
    state.out.seek(0)
    with archive.open(zinfo, "w") as dest:
        if all(hasattr(dest, name) for name in _WRITER_FIELDS):
            dest._compressor = _AsIs()
            while chunk := state.out.read(_COPY):
                dest.write(chunk)
            dest._crc, dest._file_size = state.crc, state.size  # what close() writes into the headers
        else:  # a zipfile without those internals: inflate, and let it compress again (slower, same member)
            inflate = zlib.decompressobj(-15)
            while chunk := state.out.read(_COPY):
                dest.write(inflate.decompress(chunk))
            dest.write(inflate.flush())
    state.out.close()


class _Archive(ZipFile):
    """The workbook's zip: a sheet file that has a Deflater goes in as its compressed bytes."""

    def __init__(self, path, deflated: dict):
        super().__init__(path, "w", ZIP_DEFLATED, allowZip64=True)
        self._deflated = deflated

    def write(self, filename, arcname=None, compress_type=None, compresslevel=None):
        deflater = self._deflated.pop(str(filename), None)
        if deflater is None:
            return super().write(filename, arcname, compress_type, compresslevel)
        return _write_deflated(self, ZipInfo.from_file(filename, arcname), deflater.finish())


def save_workbook(wb, path) -> None:
    """openpyxl's ``Workbook.save`` (write-only workbooks), with the deflated sheets copied in as they are.

    ``attach`` makes it the workbook's own ``save``."""
    from openpyxl.writer.excel import ExcelWriter

    if not wb.worksheets:
        wb.create_sheet()
    deflated = {str(ws._writer.out): ws._claimscrub_deflater for ws in wb.worksheets
                if getattr(ws, "_claimscrub_deflater", None) is not None}
    archive = _Archive(path, deflated)
    wb.properties.modified = dt.datetime.now(tz=dt.UTC).replace(tzinfo=None)
    ExcelWriter(wb, archive).save()  # closes the archive
    for ws in wb.worksheets:
        ws._claimscrub_deflater = None


def attach(ws, deflater: Deflater) -> None:
    """The write-only sheet ``ws`` goes into the zip from ``deflater``; its workbook saves with ``save_workbook``."""
    ws._claimscrub_deflater = deflater
    wb = ws.parent
    wb.save = lambda filename: save_workbook(wb, filename)
