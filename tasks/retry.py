"""When a stage is worth retrying: storage hiccups yes; bad URLs, missing buckets, refused
credentials and everything else no (s3fs/gcsfs already retry each HTTP call on their own)."""

from __future__ import annotations

from typing import Any

from ferry.errors import ArchiveNotFoundError, StoreError, UsageError


def transient(task: object, task_run: object, state: Any) -> bool:
    try:
        state.result()
    except (UsageError, ArchiveNotFoundError, PermissionError):
        return False
    except StoreError:
        return True
    except Exception:
        return False
    return False
