"""Which build runs, for `job_exporter_build_info`: the release, the source revision and
the Python version, worked out once per process.

The revision is `JOB_EXPORTER_REVISION` when set (an image sets it when it is built; it is
read at start, not an option), else the commit of the checkout the package runs from
(`git rev-parse HEAD`, when the folder holding the package is a git work tree), else
`unknown`.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from exporter import __version__

REVISION_VARIABLE = "JOB_EXPORTER_REVISION"
UNKNOWN = "unknown"
MAX_REVISION_CHARS = 64  # a label value, whatever the variable holds
GIT_TIMEOUT_S = 5.0
CHECKOUT = Path(__file__).resolve().parents[2]  # the folder holding the package


@dataclass(frozen=True)
class BuildInfo:
    version: str
    revision: str
    python_version: str


def revision(environ: Mapping[str, str] = os.environ, checkout: Path = CHECKOUT) -> str:
    given = environ.get(REVISION_VARIABLE, "").strip()
    if given:
        return given[:MAX_REVISION_CHARS]
    if not (checkout / ".git").exists():  # an installed package, or an unpacked archive
        return UNKNOWN
    # Git's own variables would point it at another repository than the checkout.
    env = {k: v for k, v in environ.items() if not k.startswith("GIT_")}
    try:
        done = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "--verify", "HEAD"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            env=env,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):  # no git, or it hung
        return UNKNOWN
    commit = done.stdout.strip()
    if done.returncode != 0 or not commit or any(c not in "0123456789abcdef" for c in commit):
        return UNKNOWN
    return commit


@functools.cache
def build_info() -> BuildInfo:
    return BuildInfo(__version__, revision(), platform.python_version())
