"""The one private pandera hook claimscrub overrides: this fails loudly when a pandera upgrade breaks it."""

import pandas as pd
import pandera.pandas as pa
import pytest
from pandera.errors import SchemaErrors

from schemas.pandera_adapter import HOOK, hook_intact, rule_check, settle_optional_geopandas


def test_pandera_still_has_the_failure_case_hook():
    """It finds pandera's private PandasCheckBackend hook with the parameters the adapter overrides."""
    assert hook_intact(), (
        f"pandera {pa.__version__} changed PandasCheckBackend.{HOOK}: update schemas/pandera_adapter.py "
        "(or drop it and let pandera compute failure cases, about 2 ms per failing rule)")


def test_a_failing_rule_check_carries_its_output_and_no_failure_cases():
    """It reports the failing rows through check_output, named by the rule id, without failure cases."""
    frame = pd.DataFrame({"x": [1, -1, 2]})
    schema = pa.DataFrameSchema(checks=[rule_check(lambda df: df["x"] > 0, "TST-001")])
    with pytest.raises(SchemaErrors) as caught:
        schema.validate(frame, lazy=True)
    (err,) = caught.value.schema_errors
    assert err.check.name == "TST-001"
    assert err.check_output.tolist() == [True, False, True]
    assert not isinstance(err.failure_cases, pd.DataFrame | pd.Series)  # no per-row table was built


def test_a_dtype_contract_still_fails_once_geopandas_is_settled():
    """With geopandas recorded as absent, pandera still checks column dtypes (the path that looked for it)."""
    import sys

    if settle_optional_geopandas() or sys.modules.get("geopandas", "unset") is None:  # not installed here
        with pytest.raises(ImportError):
            import geopandas  # noqa: F401
    schema = pa.DataFrameSchema({"flag": pa.Column(bool), "when": pa.Column("datetime64[ns]")})
    good = pd.DataFrame({"flag": [True, False], "when": pd.to_datetime(["2026-01-02", "2026-03-04"])})
    schema.validate(good)
    with pytest.raises(SchemaErrors) as caught:
        schema.validate(good.assign(flag=["yes", "no"], when=["2026-01-02", "x"]), lazy=True)
    assert {e.schema.name for e in caught.value.schema_errors} == {"flag", "when"}
