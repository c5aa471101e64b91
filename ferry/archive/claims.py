"""What an archive's sidecar says it holds, used before the archive has been read.

A one-pass restore needs a few facts before it starts reading: the image (to load it and to
mount it for the diff's symlink check), the container's name (is it free?) and its named volumes
(are they free?). They come from the sidecar's manifest, which is signed, but an attacker who can
write the bucket can write a consistent manifest too (and leave it unsigned where unsigned
archives are allowed): so every claim is checked against the ``config.dump`` the walk rebuilt,
and the archive is refused when one disagrees, before anything is handed to Podman.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ferry.archive import nested
from ferry.archive.manifest import Manifest
from ferry.archive.podman_config import ID_RE, NAME_RE
from ferry.errors import UnsafeArchiveError

MAX_IMAGE_NAME = 4096
#: An image reference as Podman prints it (registry/path:tag@digest), or none; never an option.
_IMAGE_NAME = re.compile(r"^([a-zA-Z0-9][a-zA-Z0-9._/:@+-]*)?$")


@dataclass(frozen=True)
class Claims:
    name: str
    image_id: str
    image_name: str
    volumes: frozenset[str]

    @classmethod
    def of(cls, manifest: Manifest) -> Claims | None:
        """The manifest's claims; None when it names no image (written before ferry recorded it:
        such an archive is restored in two passes). Refuses values no honest snapshot writes,
        since they are passed to Podman's commands before the archive is read."""
        ref = manifest.container
        if not ref.image_id:
            return None
        for d in manifest.members:
            nested.kind_of(d.name)  # refuses what the walk would: e.g. volumes/<not a volume name>.tar
        volumes = frozenset(v for d in manifest.members if (v := nested.volume_name(d.name)) is not None)
        bad = [f"image id {ref.image_id!r}"] if not ID_RE.match(ref.image_id) else []
        bad += [f"container name {ref.name!r}"] if not NAME_RE.match(ref.name) else []
        bad += [f"volume name {v!r}" for v in sorted(volumes) if not NAME_RE.match(v)]  # (kind_of checked them)
        if len(ref.image_name) > MAX_IMAGE_NAME or not _IMAGE_NAME.match(ref.image_name):
            bad.append(f"image name {ref.image_name[:100]!r}")
        if bad:
            raise UnsafeArchiveError(f"The archive's manifest holds an invalid {', '.join(bad)}; refusing the archive.")
        return cls(ref.name, ref.image_id, ref.image_name, volumes)

    def check(self, name: str, image_id: str, image_name: str, volumes: frozenset[str]) -> None:
        """Refuse the archive when ``config.dump`` (as rebuilt) says otherwise than the manifest did."""
        seen = Claims(name, image_id, image_name, volumes)
        differ = [
            f"{what} {_shown(getattr(seen, attr))} (the manifest says {_shown(getattr(self, attr))})"
            for what, attr in (
                ("name", "name"),
                ("image id", "image_id"),
                ("image name", "image_name"),
                ("named volumes", "volumes"),
            )
            if getattr(seen, attr) != getattr(self, attr)
        ]
        if differ:
            raise UnsafeArchiveError(
                "The archive's config.dump disagrees with its manifest: " + "; ".join(differ) + ". An honest "
                "snapshot never does; refusing the archive (nothing was handed to Podman)."
            )


def _shown(value: str | frozenset[str]) -> str:
    return repr(value) if isinstance(value, str) else repr(sorted(value))
