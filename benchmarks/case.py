"""One benchmark measurement in a fresh process; prints JSON (phase seconds, peak RSS).

    python -m benchmarks.case pipeline FILE   # read, normalise, validate, findings, write (peak RSS: claimscrub's)
    python -m benchmarks.case floor FILE      # fastest plain read + write-only workbook of the findings
"""

import datetime as dt
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

AS_OF = dt.date(2024, 6, 30)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pipeline(path: Path) -> dict:
    from pipeline import ingest, scrub
    from pipeline.config import ScrubConfig
    from pipeline.derive import derive_claims
    from pipeline.validate import find_violations

    t0 = time.perf_counter()
    result = ingest.read_claims(path)
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    derive_claims(result.lines, ScrubConfig(), result.present)
    t_derive = time.perf_counter() - t0
    t0 = time.perf_counter()
    checked = find_violations(result.lines, AS_OF, ScrubConfig(), result.present, None, "", result.issues)
    t_validate = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        scrub.write_outputs(result, checked, Path(out) / "x.exceptions.xlsx", Path(out) / "x.findings.csv", AS_OF,
                            "bench")
        t_write = time.perf_counter() - t0
    return {
        "lines": result.rows_read, "findings": len(checked.findings),
        "read_total": t_read,
        "derive": t_derive, "rules_and_findings": max(t_validate - t_derive, 0.0), "validate_total": t_validate,
        "write": t_write, "end_to_end": t_read + t_validate + t_write, "peak_rss_mb": _rss_mb(),
    }


def _raw_read(path: Path):
    from pipeline.gate import classify

    if classify(path) == "text":
        import pyarrow.csv as pacsv

        return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
    from python_calamine import CalamineWorkbook

    wb = CalamineWorkbook.from_path(str(path))
    return wb.get_sheet_by_name(wb.sheet_names[0]).to_python()


def floor(path: Path) -> dict:
    """The I/O floor: the fastest plain read of the input plus a write-only workbook of its findings."""
    from openpyxl import Workbook

    from pipeline import ingest
    from pipeline.report import EXCEPTION_HEADERS
    from pipeline.validate import find_violations

    # The read first, in a fresh process, as claimscrub's own read is measured (``pipeline``): its memory
    # is new to the process. The same read once more after the findings shows what a warm process gives.
    t0 = time.perf_counter()
    _raw_read(path)
    t_read = time.perf_counter() - t0
    result = ingest.read_claims(path)  # only to know the findings to write; not timed
    findings = find_violations(result.lines, AS_OF, None, result.present, None, "", result.issues).findings
    rows = [[str(v) if v is not None else None for v in rec] for rec in findings.itertuples(index=False)]
    del result
    t0 = time.perf_counter()
    _raw_read(path)
    t_read_warm = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        wb = Workbook(write_only=True)
        ws = wb.create_sheet("Exceptions")
        ws.append(list(EXCEPTION_HEADERS))
        for row in rows:
            ws.append(row[:16])
        wb.save(Path(out) / "floor.xlsx")
        t_write = time.perf_counter() - t0
    return {"floor_read": t_read, "floor_read_warm": t_read_warm, "floor_write": t_write, "floor": t_read + t_write}


if __name__ == "__main__":
    kind, file = sys.argv[1], Path(sys.argv[2])
    print(json.dumps({"pipeline": pipeline, "floor": floor}[kind](file)))
