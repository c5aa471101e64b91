"""Member names of a checkpoint archive, as Podman's `container checkpoint --export` writes them.

Podman ignores members it does not know, which is how ferry's manifest travels inside the same
archive without breaking `podman container restore --import`.
"""

from __future__ import annotations

CHECKPOINT_DIR = "checkpoint"
INVENTORY = "checkpoint/inventory.img"
DESCRIPTORS = "checkpoint/descriptors.json"
PSTREE = "checkpoint/pstree.img"
CPUINFO = "checkpoint/cpuinfo.img"
CONFIG_DUMP = "config.dump"
SPEC_DUMP = "spec.dump"
NETWORK_STATUS = "network.status"
STATS_DUMP = "stats-dump"
ROOTFS_DIFF = "rootfs-diff.tar"
DELETED_FILES = "deleted.files"
DEVSHM = "devshm-checkpoint.tar"
VOLUMES_DIR = "volumes"
CTR_LOG = "ctr.log"
ARTIFACTS_DIR = "artifacts"

#: ferry's own member; written last so its hashes cover every member before it.
MANIFEST = "ferry-manifest.json"

#: JSON members Podman, runc or CRIU act on: rebuilt by ferry before a restore.
REBUILT_JSON = (CONFIG_DUMP, SPEC_DUMP, NETWORK_STATUS, DESCRIPTORS)

#: Members Podman needs to restore at all.
REQUIRED = (INVENTORY, CONFIG_DUMP, SPEC_DUMP)
