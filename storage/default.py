"""The default store of ferry's flows: a run's store parameter, else the Prefect Variable ``ferry-store``,
else the worker's ``FERRY_STORE``.

One Variable on the Prefect server names the store for every host's deployments, and changing it
takes effect on the next run (a deployment parameter would be fixed when it was registered). A
run that names its store still uses that one. Prefect is imported only when the parameter is empty.
"""

from __future__ import annotations

import os

from ferry.errors import UsageError

VARIABLE = "ferry-store"
ENV = "FERRY_STORE"


def store_url(url: str | None, what: str = "store") -> str:
    """``url`` itself, or the default store when it is empty."""
    if url and url.strip():
        return url.strip()
    from prefect.variables import Variable

    value = Variable.get(VARIABLE, default=None)
    if isinstance(value, str) and value.strip():
        return value.strip()
    env = os.environ.get(ENV, "").strip()
    if env:
        return env
    raise UsageError(
        f"No {what} given, and no default: pass it, or set the Prefect Variable {VARIABLE} "
        f"(`prefect variable set {VARIABLE} s3://bucket/prefix`) or {ENV} in the worker's environment."
    )
