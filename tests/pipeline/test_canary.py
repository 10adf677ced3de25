"""PHI canary: unique values in every column and a PHI-bearing file name appear only in the workbook."""

import asyncio
import logging
import os
import tempfile
import time
from pathlib import Path

import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.flows import run_nightly
from pipeline.sample import clean_claim, write_xlsx
from schemas import columns as C
from tests.conftest import AS_OF, read_all

pytestmark = pytest.mark.e2e
FILE_NAME = "Smith_John_1980-03-04.xlsx"
CANARIES = {
    C.CLAIM_ID: "CLMCANARY7Q", C.PATIENT_ID: "MBRCANARY9Z", C.PATIENT_NAME: "Zzcanary, Qqcanary",
    C.DOB: "1931-07-17", C.PAYER: "PayerCanaryX", C.NDC: "CANARYNDC42", C.PRIOR_AUTH: "UTNCANARY55",
    C.MUSCLES: "R OO 10u; L OO 10u; L canarymusclex 0u", C.DRUG_SOURCE: "officecanary",
}
CELL_NEEDLES = [v for k, v in CANARIES.items() if k != C.MUSCLES] + ["canarymusclex", "07/17/1931"]
# Needles are long and specific on purpose: a short one such as a bare year also occurs by chance
# inside the hex of the UUIDs in Prefect's database.
NEEDLES = CELL_NEEDLES + ["Smith_John", "1980-03-04"]


def _canary_file(folder: Path) -> Path:
    lines = clean_claim()
    for line in lines:
        line.update({k: v for k, v in CANARIES.items() if k != C.MUSCLES})
    lines[0][C.MUSCLES] = CANARIES[C.MUSCLES]
    path = write_xlsx(lines, folder / FILE_NAME)
    past = time.time() - 3600
    os.utime(path, (past, past))
    return path


def _grep_tree(root: Path, skip: tuple[Path, ...] = ()) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if not path.is_file() or any(s in path.parents or s == path for s in skip):
            continue
        data = path.read_bytes()
        for needle in NEEDLES:
            if needle.encode() in data or needle.encode("utf-16-le") in data:
                hits.append(f"{path}: {needle}")
        if FILE_NAME.split(".")[0] in path.name:
            hits.append(f"{path}: file name")
    return hits


def test_canary_values_only_reach_the_workbook(tmp_path, prefect_harness, caplog, monkeypatch):
    """It keeps every canary out of logs, the Prefect database, artifacts, run names, sidecars and temp files."""
    import prefect.settings

    caplog.set_level(logging.DEBUG)
    private_tmp = tmp_path / "tmpdir"
    private_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))

    adhoc_in, adhoc_out = tmp_path / "adhoc", tmp_path / "adhoc-out"
    adhoc_in.mkdir()
    src = _canary_file(adhoc_in)
    res = CliRunner().invoke(app, ["scrub", str(src), "--out", str(adhoc_out), "--record", "--as-of", "2024-06-30"])
    assert res.exit_code == 0, res.output

    night = tmp_path / "night"
    (night / "inbox").mkdir(parents=True)
    _canary_file(night / "inbox")
    broken = night / "inbox" / "Smith_John_1980-03-04-copy.xlsx"
    broken.write_bytes(b"PK\x03\x04 " + CANARIES[C.PATIENT_ID].encode())
    os.utime(broken, (time.time() - 3600,) * 2)
    summary = run_nightly(root=night, settle_seconds=0, as_of=AS_OF)  # ends Failed (Quarantined)
    assert summary["quarantined"] == 1

    # Positive control: the canaries did flow through to the workbooks.
    book = load_workbook(next(adhoc_out.glob("*.exceptions.xlsx")))
    cells = " ".join(str(v) for ws in book.worksheets for row in ws.iter_rows(values_only=True) for v in row)
    assert CANARIES[C.PATIENT_ID] in cells and "canarymusclex" in cells

    # Logs: everything Python logging saw, and everything Prefect stored.
    for needle in NEEDLES:
        assert needle not in caplog.text, f"log: {needle}"

    async def stored():
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import LogFilter

        async with get_client() as client:
            return (await read_all(client.read_logs, log_filter=LogFilter()), await read_all(client.read_artifacts),
                    await read_all(client.read_flow_runs), await read_all(client.read_task_runs))

    logs, artifacts, flow_runs, task_runs = asyncio.run(stored())
    prefect_text = " ".join(
        [log.message for log in logs] + [str(a.data) + str(a.description) for a in artifacts]
        + [f"{r.name} {r.parameters} {r.state.message if r.state else ''}" for r in flow_runs]
        + [f"{t.name} {t.state.message if t.state else ''}" for t in task_runs])
    for needle in NEEDLES:
        assert needle not in prefect_text, f"prefect: {needle}"

    # The Prefect database and home folder, byte for byte.
    db_url = prefect.settings.PREFECT_API_DATABASE_CONNECTION_URL.value()
    db_path = Path(db_url.split("///", 1)[1]) if db_url and "sqlite" in db_url else None
    if db_path:
        assert _grep_tree(db_path.parent) == []
    assert _grep_tree(Path(os.environ["PREFECT_HOME"])) == []

    # Sidecars may name the file, never its cell values; temp folders hold nothing.
    sidecar = next((night / "quarantine").glob("*.error.txt")).read_text()
    for needle in CELL_NEEDLES:
        assert needle not in sidecar
    assert _grep_tree(private_tmp) == []
