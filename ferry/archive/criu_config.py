"""A per-container CRIU configuration file for the restore, named in the OCI spec.

Podman 4.3.1 cannot ask for ``tcp-close`` on restore. runc can: it passes CRIU the file named
by the ``org.criu.config`` annotation of the container's OCI spec, and CRIU's settings from
that file win over runc's own (a missing file is ignored). ferry writes the file in the run's
staging directory and the spec rebuild (:mod:`ferry.archive.podman_spec`) names it.

An archive that names its own ``org.criu.config`` is refused: it would make CRIU, as root, read
options (``action-script`` runs a program) from any file on the restoring host.
"""

from __future__ import annotations

import os
from pathlib import Path

ANNOTATION = "org.criu.config"


def config_text(*, tcp_close: bool) -> str:
    """The CRIU configuration for one restore (CRIU's option names, one a line)."""
    return "tcp-close\n" if tcp_close else ""


def write_criu_config(path: Path, *, tcp_close: bool) -> Path:
    """Write the CRIU configuration file, root-only, replacing nothing but itself."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(config_text(tcp_close=tcp_close))
    return path
