"""Archive storage over fsspec URLs (file://, s3://, gs://, ...)."""

from storage.reading import download, open_archive, read_sidecar
from storage.store import ArchiveStore, Entry

__all__ = ["ArchiveStore", "Entry", "download", "open_archive", "read_sidecar"]
