"""The one place claimscrub reaches past pandera's public API: rule checks without per-row failure cases.

A catalog rule's failing rows are the False entries of its check output, which each pandera error carries
(``check_output``) and ``pipeline.validate`` reads. pandera's check backend would also select every failing
row, reshape it per column and format it into the error message, once per failing check, and nothing reads them. Measured on a 40k-line
``claimscrub sample`` file (3 runs each, 2 shared cores): ``find_violations`` 0.42-0.55 s with this hook,
0.59-0.69 s with pandera's own backend.
``_get_series_failure_cases`` is private: ``tests/schemas/test_pandera_adapter.py`` fails loudly when a pandera
upgrade removes or reshapes it.
"""

import importlib.util
import inspect
import sys

import pandas as pd
import pandera.pandas as pa
from pandera.backends.pandas.checks import PandasCheckBackend

HOOK = "_get_series_failure_cases"
HOOK_PARAMETERS = ("self", "check_obj", "check_output")


class RuleCheck(pa.Check):
    """A catalog rule's dataframe check (``rule_check``); only its backend differs from ``pa.Check``."""


class _RuleCheckBackend(PandasCheckBackend):
    """pandera's pandas check backend, without the failure cases (the error says which check failed)."""

    def _get_series_failure_cases(self, check_obj, check_output):
        return None


def hook_intact() -> bool:
    """Whether pandera still has the private hook, with the parameters overridden here."""
    hook = getattr(PandasCheckBackend, HOOK, None)
    return hook is not None and tuple(inspect.signature(hook).parameters) == HOOK_PARAMETERS


RuleCheck.register_backend(pd.DataFrame, _RuleCheckBackend)


def settle_optional_geopandas() -> bool:
    """Record once that geopandas is not installed, so pandera stops looking for it on every column.

    pandera's pandas dtype engine, checking a column's dtype that it has no entry for (bool, datetime64[us]:
    most claim facts), tries ``from geopandas.array import GeometryDtype`` first; the failed import is not
    remembered, so each such column of each validation searches ``sys.path`` again (about 0.1 ms a column,
    8 ms a run at 100k lines). A ``None`` entry in ``sys.modules`` is Python's own record of a module that is
    not there: the import then fails at once, with the same ``ImportError``. Nothing changes where geopandas
    is installed. Returns whether the record was made.
    """
    if "geopandas" in sys.modules or importlib.util.find_spec("geopandas") is not None:
        return False
    sys.modules["geopandas"] = None
    return True


settle_optional_geopandas()


def rule_check(predicate, rule_id: str) -> RuleCheck:
    """A rule's predicate as a dataframe check named by its id.

    ``ignore_na=False``: a rule decides about blanks itself, and pandera then skips a whole-frame ``isna()``
    per check (the frames here are wide).
    """
    return RuleCheck(predicate, name=rule_id, ignore_na=False)
