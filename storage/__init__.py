"""Archive storage over fsspec URLs (file://, s3://, gs://, ...)."""

from storage.store import ArchiveStore, Entry, download, open_archive, read_sidecar

__all__ = ["ArchiveStore", "Entry", "download", "open_archive", "read_sidecar"]
