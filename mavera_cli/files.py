"""What kind of file an input may be: a regular file, or a pipe (read once, as it comes).
A directory or a device (`/dev/zero` never ends) is a usage error saying so."""

from __future__ import annotations

import stat

from mavera_cli.errors import UsageError


def is_pipe(mode: int, source: str) -> bool:
    """Whether the file of this `st_mode` is a pipe (else a regular file); UsageError for a
    directory or a device, naming `source`."""
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return True
    if stat.S_ISREG(mode):
        return False
    if stat.S_ISDIR(mode):
        raise UsageError(f"cannot read {source}: it is a directory")
    raise UsageError(f"cannot read {source}: a device, not a file or a pipe")
