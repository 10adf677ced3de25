"""Shared fixtures: canonical frames from synthetic lines, and one Prefect harness per session."""

import datetime as dt
import os
import tempfile
from pathlib import Path

# No internet here: Prefect's telemetry would print errors a user should never see.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="claimscrub-prefect-")  # never the user's ~/.prefect

import pandas as pd
import pytest
from hypothesis import settings

from pipeline import normalize as N
from pipeline.config import ScrubConfig
from pipeline.validate import find_violations
from schemas import columns as C

settings.register_profile("ci", max_examples=150, deadline=None)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_claims"
AS_OF = dt.date(2024, 6, 30)


def lines_frame(lines: list[dict]) -> pd.DataFrame:
    """Synthetic canonical dict lines -> a frame as ingest would type it."""
    df = pd.DataFrame(lines)
    for col in (C.SERVICE_DATE, C.DOB):
        if col in df:
            df[col] = [N.norm_date(v)[0] for v in df[col]]
    for col in C.FLAG_COLUMNS:
        if col in df:
            df[col] = [N.norm_flag(v)[0] for v in df[col]]
    for col in (C.UNITS, C.CHARGE):
        if col in df:
            df[col] = [N.norm_number(v)[0] for v in df[col]]
    return df


def rules_fired(lines: list[dict], as_of: dt.date = AS_OF, config: ScrubConfig | None = None, **kw) -> set[str]:
    return set(find_violations(lines_frame(lines), as_of, config, **kw).findings["rule"])


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test harness (a temporary API and database) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield os.environ["PREFECT_HOME"]


async def read_all(read, **filters) -> list:
    """Every object a Prefect client ``read_*`` method returns, page by page (the API gives 200 at a time,
    and the session's one server holds every earlier test's runs and logs)."""
    found, offset = [], 0
    while True:
        page = await read(**filters, limit=200, offset=offset)
        found += page
        if len(page) < 200:
            return found
        offset += 200


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server for the session (see tests/pg.py): the one at 127.0.0.1:5432 (or
    CLAIMSCRUB_TEST_PG_URL), else a throwaway one from the Debian binaries, else a skip saying what is missing."""
    from tests import pg

    found = pg.server()
    if isinstance(found, str):
        pytest.skip(found)
    try:
        yield found
    finally:
        found.stop()


@pytest.fixture
def pg_url(pg_server):
    """The ``postgresql://`` URL of a brand-new empty database, dropped after the test."""
    from tests import pg

    with pg.database(pg_server.admin_url) as url:
        yield url
