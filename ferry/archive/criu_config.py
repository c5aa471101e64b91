"""A per-container CRIU configuration file for the restore, named in the OCI spec.

Podman 4.3.1 cannot ask for ``tcp-close`` on restore. runc can: it passes CRIU the file named
by the ``org.criu.config`` annotation of the container's OCI spec, and CRIU's settings from
that file win over runc's own (a missing file is ignored). ferry writes the file in the run's
staging directory and puts its path in the spec Podman gets.

An archive's own ``org.criu.config`` is never kept: it would make CRIU, as root, read options
(``action-script`` runs a program) from any file on the restoring host.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ferry.errors import UnsafeArchiveError

ANNOTATION = "org.criu.config"


def with_criu_config(spec: dict[str, Any], path: str | None) -> dict[str, Any]:
    """The OCI spec with ``annotations["org.criu.config"]`` set to ``path`` (removed when None).

    Pure: returns a new dict. Refuses a spec whose ``annotations`` key appears in more than one
    spelling (Go reads JSON keys case-insensitively, so a second spelling could carry the
    annotation past this function)."""
    keys = [k for k in spec if isinstance(k, str) and k.lower() == "annotations"]
    if len(keys) > 1 or (keys and keys[0] != "annotations"):
        raise UnsafeArchiveError(
            f"spec.dump spells its annotations key as {', '.join(map(repr, keys))}; an OCI spec has "
            "exactly one, 'annotations'. Refusing the archive."
        )
    annotations = spec.get("annotations")
    annotations = {} if annotations is None else annotations
    if not isinstance(annotations, dict):
        raise UnsafeArchiveError("spec.dump: 'annotations' is not a JSON object. Refusing the archive.")
    annotations = {k: v for k, v in annotations.items() if k != ANNOTATION}
    if path is not None:
        annotations[ANNOTATION] = path
    out = dict(spec)
    if annotations:
        out["annotations"] = annotations
    else:
        out.pop("annotations", None)
    return out


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
