"""The environment every benchmarked client runs with: a user's, as installed.

Sandboxes and CI set `PYTHON*` switches that a user's shell does not: `PYTHONUNBUFFERED`
changes how the baselines write, and `PYTHONDONTWRITEBYTECODE` makes every start of mavera
(run from this checkout) compile its sources again, some 40 ms that a `pip install`ed
mavera never pays, since pip writes the bytecode at install. Both are cleared, with
proxies and `MAVERA_`/`OPENAI_` settings; bytecode goes to a cache of our own
(`PYTHONPYCACHEPREFIX`), so nothing is written next to the sources.
"""

from __future__ import annotations

import os
from pathlib import Path

KEEP_PYTHON_VARS = {"PYTHONPATH", "PYTHONHOME", "PYTHONPYCACHEPREFIX"}


def client_environment(pycache: Path) -> tuple[dict[str, str], list[str]]:
    """The clients' environment, bytecode cached in `pycache`; and the variables cleared."""
    cleared = sorted(k for k in os.environ if k.startswith("PYTHON") and k not in KEEP_PYTHON_VARS)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy")
        and not k.startswith(("MAVERA_", "OPENAI_"))
        and k not in cleared
    }
    pycache.mkdir(parents=True, exist_ok=True)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env, cleared
