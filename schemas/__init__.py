"""claimscrub schemas: canonical columns, code sets, rule catalog and pandera models."""

import sys
import types

if "pandera.typing.dask" not in sys.modules:
    # pandera imports dask.dataframe and dask.array (about 0.4 s) the first time it builds a schema, only
    # to learn whether dask DataFrame annotations exist; claimscrub's models are pandas-only (the Dask
    # runner hands workers pandas frames). Without this, every process that has the dask extra installed
    # pays that import on its first validation. pandera reads only DASK_INSTALLED when it is False.
    _stub = types.ModuleType("pandera.typing.dask", "pandas-only claimscrub: pandera's dask annotations unused")
    _stub.DASK_INSTALLED = False
    sys.modules["pandera.typing.dask"] = _stub
