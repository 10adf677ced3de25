"""The command line: exit codes, outputs and a recorded Prefect flow run."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from tests.conftest import SAMPLES

runner = CliRunner()


def test_scrub_writes_outputs_and_exits_zero(tmp_path):
    """It writes the workbook and CSV and exits 0 when findings exist."""
    res = runner.invoke(app, ["scrub", str(SAMPLES / "mixed.csv"), "--out", str(tmp_path), "--as-of", "2024-06-30"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "mixed.exceptions.xlsx").exists() and (tmp_path / "mixed.findings.csv").exists()
    assert "HFS-013" in res.output


def test_fail_on_and_unreadable_inputs(tmp_path):
    """It exits 1 with --fail-on error when errors exist and 2 when an input cannot be read."""
    res = runner.invoke(app, ["scrub", str(SAMPLES / "mixed.csv"), "--out", str(tmp_path), "--fail-on", "error"])
    assert res.exit_code == 1
    bad = tmp_path / "empty.csv"
    bad.write_bytes(b"")
    res = runner.invoke(app, ["scrub", str(bad), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "E_EMPTY" in res.output


def test_rules_and_ingest_commands():
    """It prints the catalog and what a file holds."""
    assert "HFS-030" in runner.invoke(app, ["rules"]).output
    out = runner.invoke(app, ["ingest", str(SAMPLES / "messy.xlsx")]).output
    assert "'Svc Date' -> service_date" in out and "row 11" in out


def test_sample_generator_is_deterministic(tmp_path):
    """It writes the same synthetic file for the same seed."""
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    runner.invoke(app, ["sample", "--lines", "300", str(a)])
    runner.invoke(app, ["sample", "--lines", "300", str(b)])
    assert a.read_bytes() == b.read_bytes() and len(a.read_text().splitlines()) == 301


@pytest.mark.e2e
def test_recorded_scrub_runs_the_prefect_flow(tmp_path, prefect_harness):
    """It records an ad hoc scrub as a scrub-file flow run whose name carries no file name."""
    import asyncio

    from prefect.client.orchestration import get_client

    res = runner.invoke(app, ["scrub", str(SAMPLES / "clean.csv"), "--out", str(tmp_path), "--record",
                              "--as-of", "2024-06-30"])
    assert res.exit_code == 0, res.output
    assert Path(tmp_path / "clean.exceptions.xlsx").exists()

    async def runs():
        async with get_client() as client:
            return await client.read_flow_runs()

    flow_runs = asyncio.run(runs())
    assert flow_runs and all("clean" not in r.name for r in flow_runs)
    assert any(r.state and r.state.is_completed() for r in flow_runs)
