"""ferry's one exception hierarchy.

Every error ferry raises on purpose is a :class:`FerryError`. Its message is written for an
operator: what failed, for which container or URL, and what to do next. Lower-level errors
(subprocess, fsspec, tarfile, zstd) are translated at the boundary with ``raise X(...) from exc``
so the cause stays in the traceback but never in place of the message.

    FerryError
    ├── UsageError(ValueError)            bad parameters: unknown compression, bad URL, ...
    ├── RuntimeCommandError               a podman/criu command failed
    │   ├── ContainerNotFoundError(LookupError)
    │   ├── ContainerStateError           container in the wrong state (not running, name taken)
    │   ├── CheckpointError               the dump failed (CRIU log tail attached)
    │   └── RestoreError                  the restore failed (CRIU log tail attached)
    ├── StoreError(OSError)               object store: cannot read, write, list
    │   ├── ArchiveNotFoundError(FileNotFoundError)
    │   └── AccessDeniedError(PermissionError)
    ├── ArchiveError                      the archive cannot be trusted or read
    │   ├── IntegrityError                sizes or sha256 do not match the manifest
    │   ├── UnsafeArchiveError            would write outside the container root, device nodes...
    │   ├── UnsupportedArchiveError       not a checkpoint archive, newer format, no manifest,
    │   │                             (also a sidecar that does not parse)
    │   └── MalformedMemberError(Unsafe…, Unsupported…)   a JSON member that does not parse
    ├── MigrationFailed                   a migration stage failed (flows/migrate.py says which)
    └── NightlyFailed                     some containers' nightly snapshots failed (flows/nightly.py)
"""

from __future__ import annotations


class FerryError(Exception):
    """Root of every error ferry raises on purpose."""

    #: Short stage or area name shown before the message by the CLI.
    area = "ferry"

    def __str__(self) -> str:
        # Notes added on the way up (e.g. "the container was restored here") are part of
        # what the operator must read, so they belong in the message itself.
        notes = getattr(self, "__notes__", [])
        return "\n".join([super().__str__(), *notes])


class UsageError(FerryError, ValueError):
    area = "usage"


class RuntimeCommandError(FerryError):
    area = "runtime"

    def __init__(self, message: str, *, argv: list[str] | None = None, stderr: str = "", log_tail: str = "") -> None:
        parts = [message]
        if argv:
            parts.append(f"Command: {' '.join(argv)}")
        if stderr.strip():
            parts.append(f"It said: {stderr.strip()[-2000:]}")
        if log_tail.strip():
            parts.append(f"Last lines of the CRIU log:\n{log_tail.rstrip()}")
        super().__init__("\n".join(parts))
        self.argv = argv or []
        self.stderr = stderr
        self.log_tail = log_tail


class ContainerNotFoundError(RuntimeCommandError, LookupError):
    pass


class ContainerStateError(RuntimeCommandError):
    pass


class CheckpointError(RuntimeCommandError):
    area = "dump"


class RestoreError(RuntimeCommandError):
    area = "restore"


class StoreError(FerryError, OSError):
    area = "store"


class ArchiveNotFoundError(StoreError, FileNotFoundError):
    pass


class AccessDeniedError(StoreError, PermissionError):
    pass


class ArchiveError(FerryError):
    area = "archive"


class IntegrityError(ArchiveError):
    pass


class UnsafeArchiveError(ArchiveError):
    pass


class UnsupportedArchiveError(ArchiveError):
    pass


class MalformedMemberError(UnsafeArchiveError, UnsupportedArchiveError):
    """A member that cannot be parsed at all (not JSON, not UTF-8): unreadable and untrusted."""


class MigrationFailed(FerryError):
    """The migration flow's stage on one host (snapshot, restore, source removal) failed."""

    area = "migrate"


class HandoffAborted(MigrationFailed):
    """A migration was called off while the target's restore waited for the archive."""


class NightlyFailed(FerryError):
    """The nightly flow snapshotted some containers but not all."""

    area = "nightly"
